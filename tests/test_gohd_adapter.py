"""GoHD through the registry: detection of official files, retrofit (EDI yes, EMI no), plugtalk animate
with --coefficients / --gaze / --gaze-from, bench, and clear CLI errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import plugtalk.backbones as B
from plugtalk import retrofit
from plugtalk.adapters import adapter_for
from plugtalk.adapters.gohd import GoHDAdapter
from plugtalk.backbones.gohd_coefficients import coefficient_windows, frame_vectors, read_face_coefficients
from plugtalk.backbones.registry import guess_official_backbone
from plugtalk.cli import app
from plugtalk.errors import CheckpointError, ConversionError, InputError
from plugtalk.io.video import read_frames
from test_backbones import official_state_dict

TINY = dict(size=32, channel_base=512, channel_max=32, style_dim=64)
SMALL_EDI = dict(num_slots=8, decoder_channels=16, fusion_heads=2)
runner = CliRunner()


def tiny(name="gohd", seed=0):
    torch.manual_seed(seed)
    return B.create(name, **TINY).eval()


def test_registry_entry_and_adapter():
    entry = B.backbone_entry("gohd")
    assert entry.animator and entry.controls == ("coefficients", "gaze") and entry.motion_mode == "absolute"
    assert "gohd" in B.animator_backbones()
    assert isinstance(adapter_for(tiny()), GoHDAdapter)


def test_official_files_are_told_apart(tmp_path):
    gohd_sd, lia_sd = official_state_dict(tiny()), official_state_dict(tiny("lia"))
    assert guess_official_backbone(gohd_sd) == "gohd" and guess_official_backbone(lia_sd) == "lia"
    torch.save({"gen_pose": gohd_sd}, tmp_path / "FaceAnimator_GoHD.pt")
    torch.save({"gen": lia_sd}, tmp_path / "vox.pt")
    loaded = B.load_official("gohd", tmp_path / "FaceAnimator_GoHD.pt", **TINY)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in tiny().state_dict().items())
    with pytest.raises(CheckpointError, match="no 'gen_pose' entry.*looks like a 'lia' checkpoint"):
        B.load_official("gohd", tmp_path / "vox.pt", **TINY)
    with pytest.raises(CheckpointError, match="no 'gen' entry.*looks like a 'gohd' checkpoint"):
        B.load_official("lia", tmp_path / "FaceAnimator_GoHD.pt", **TINY)
    # the same state dicts under the other container: the keys tell them apart (GoHD's hold LIA's too)
    torch.save({"gen_pose": lia_sd}, tmp_path / "lia_as_gohd.pt")
    with pytest.raises(ConversionError, match="looks like a 'lia' checkpoint"):
        B.load_official("gohd", tmp_path / "lia_as_gohd.pt", **TINY)
    torch.save({"gen": gohd_sd}, tmp_path / "renamed.pt")
    with pytest.raises(ConversionError, match="looks like a 'gohd' checkpoint"):
        B.load_official("lia", tmp_path / "renamed.pt", **TINY)


def test_retrofit_uses_the_backbone_motion_stage_and_edi_but_refuses_emi():
    m = tiny()
    src, w = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 72, 27)
    with torch.no_grad():
        assert torch.equal(retrofit(m, emi=None, edi=None).eval()(src, coefficients=w), m(src, w))
        torch.manual_seed(1)
        r = retrofit(m, emi=None, edi=SMALL_EDI, init="random").eval()
        out = r(src[:1], coefficients=w)      # one source, a batch of windows
    assert out.shape == (2, 3, 32, 32) and not torch.allclose(out, m(src[:1].expand(2, -1, -1, -1), w))
    with pytest.raises(InputError, match="EMI cannot be plugged into gohd"):
        retrofit(m, emi=True, edi=None)
    with pytest.raises(InputError, match=r"\(B, 72, T>=25\)"):
        retrofit(m, emi=None, edi=None).eval()(src, coefficients=torch.randn(2, 72, 20))


def test_bench_times_gohd_and_skips_emi():
    from plugtalk import speed

    rows = speed.run(["gohd"], ["base", "emi"], [1], warmup=0, iters=1, size=32)
    assert [r.variant for r in rows] == ["base"] and rows[0].ms_per_batch > 0


# -- plugtalk animate -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gohd")
    paths = {"model": tiny().save_pretrained(d / "gohd.safetensors"),
             "lia": tiny("lia").save_pretrained(d / "lia.safetensors")}
    rng = np.random.default_rng(0)
    np.save(d / "coeffs.npy", rng.normal(scale=0.3, size=(6, 257)).astype(np.float32))
    np.save(d / "gaze.npy", rng.normal(scale=0.2, size=(6, 2)).astype(np.float32))
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / "face.png")
    paths.update(coeffs=d / "coeffs.npy", gaze=d / "gaze.npy", face=d / "face.png")
    return paths


def cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res, res.output


def test_animate_with_coefficients_and_gaze(files, tmp_path):
    base = ["animate", "-c", files["model"], "-s", files["face"], "--no-crop", "--coefficients", files["coeffs"],
            "--lossless", "--no-progress", "--batch-size", 4]
    res, text = cli(*base, "-o", tmp_path / "a.mp4")
    assert res.exit_code == 0, text
    res, text = cli(*base, "-o", tmp_path / "b.mp4", "--gaze", "0.4,-0.2")
    assert res.exit_code == 0, text
    res, text = cli(*base, "-o", tmp_path / "c.mp4", "--gaze-from", files["gaze"])
    assert res.exit_code == 0, text
    a, b, c = (read_frames(tmp_path / f"{k}.mp4") for k in "abc")
    assert len(a) == len(b) == len(c) == 6
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    # the first and last frames are the model's output for the demo's edge-clamped windows
    from plugtalk.animate import prepare_source
    from plugtalk.io.images import to_tensor, to_uint8

    model = B.load(files["model"])
    src = to_tensor(prepare_source(files["face"], 32, crop=False).crop[None])
    cf = read_face_coefficients(files["coeffs"])
    windows = coefficient_windows(frame_vectors(cf.expression, cf.pose, torch.tensor([0.4, -0.2])), indices=[0, 5])
    with torch.no_grad():
        want = to_uint8(model(src.expand(2, -1, -1, -1), windows))
    diff = np.abs(b[[0, 5]].astype(int) - want.astype(int)).max()
    assert diff <= 1, diff   # batching may flip a rounding
    assert np.abs(a[[0, 5]].astype(int) - want.astype(int)).max() > 1   # ... while the gaze moves it


@pytest.mark.parametrize("extra, expected", [
    (["--coefficients", "{coeffs}", "--gaze", "left"], "YAW,PITCH"),
    (["--coefficients", "{coeffs}", "--gaze", "0,0", "--gaze-from", "{gaze}"], "not both"),
    (["--coefficients", "{bad}"], "(T, 257)"),
    (["--coefficients", "{coeffs}", "-d", "{coeffs}"], "takes no driving video"),
    ([], "nothing drives"),
    (["--gaze", "0,0"], "the gaze control goes with the coefficients control"),
])
def test_animate_gohd_errors(files, tmp_path, extra, expected):
    np.save(tmp_path / "bad.npy", np.zeros((6, 64), np.float32))
    fill = {"coeffs": files["coeffs"], "gaze": files["gaze"], "bad": tmp_path / "bad.npy"}
    out = tmp_path / "out.mp4"
    res, text = cli("animate", "-c", files["model"], "-s", files["face"], "--no-crop", "-o", out, "--no-progress",
                    *[a.format(**fill) for a in extra])
    assert res.exit_code == 2, text
    assert expected in " ".join(text.split()), text
    assert not out.exists()


def test_coefficients_need_a_coefficient_driven_model(files, tmp_path):
    res, text = cli("animate", "-c", files["lia"], "-s", files["face"], "--no-crop", "-o", tmp_path / "o.mp4",
                    "--coefficients", files["coeffs"], "--no-progress")
    assert res.exit_code == 2 and "LIA has no control 'coefficients'" in " ".join(text.split()), text


def test_probe_builds_gohd_and_refuses_unknown_backbones():
    from plugtalk.probe.api import load_animator
    from plugtalk.probe.controlled import is_controlled

    model, info = load_animator("gohd", seed=0)
    assert is_controlled(model) and info["random_weights"]
    with pytest.raises(InputError, match="unknown backbone 'nope'"):
        load_animator("nope")


def test_training_config_refuses_gohd_and_unknown_backbones():
    from plugtalk.train.config import config_from_mapping

    with pytest.raises(InputError, match="'gohd' is driven by coefficients, gaze, not by driving frames"):
        config_from_mapping({"model": {"backbone": "gohd"}})
    with pytest.raises(InputError, match="must be one of lia, edtalk, dpe"):
        config_from_mapping({"model": {"backbone": "nope"}})
