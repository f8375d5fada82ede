"""A backbone with a new driving control, registered in the tests only (tests/toy_control.py), driven through
animate(), the CLI (--control NAME=VALUE) and the UI's request function (issue 22.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import plugtalk.backbones as B
import toy_control
from plugtalk import retrofit
from plugtalk.animate import AnimateOptions, animate
from plugtalk.cli import app
from plugtalk.errors import InputError
from plugtalk.io.video import VideoWriter, read_frames

SIZE = 32
TINY = dict(size=SIZE, channel_base=512, channel_max=32, style_dim=64)
#: per-frame offsets: 0 leaves a frame as without the control, 0.5 / -0.5 brighten / darken it by ~64 levels
OFFSETS = [0.0, 0.5, -0.5, 0.0, 0.5]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    toy_control.register()
    d = tmp_path_factory.mktemp("toy")
    torch.manual_seed(0)
    model = B.create(toy_control.NAME, **TINY).eval()
    model.save_pretrained(d / "toy.safetensors")
    rng = np.random.default_rng(0)
    src = rng.integers(40, 216, (SIZE, SIZE, 3), dtype=np.uint8)
    with VideoWriter(d / "drive.mp4", fps=25, lossless=True) as w:
        for i in range(len(OFFSETS)):
            w.write(np.roll(src, 2 * i, axis=1)[None])
    np.save(d / "b.npy", np.array(OFFSETS, np.float32))
    yield {"dir": d, "model": model, "file": d / "toy.safetensors", "src": src, "video": d / "drive.mp4",
           "offsets": d / "b.npy"}
    B.registry.unregister_backbone(toy_control.NAME)


def _shift(with_control: np.ndarray, without: np.ndarray) -> list[float]:
    return [float(d) for d in (with_control.astype(float) - without.astype(float)).mean(axis=(1, 2, 3))]


def check_follows_offsets(with_control: np.ndarray, without: np.ndarray) -> None:
    shift = _shift(with_control, without)
    assert len(shift) == len(OFFSETS)
    for s, o in zip(shift, OFFSETS):
        assert abs(s - o * 127.5) < 16, (shift, OFFSETS)   # clipping at 0 / 255 takes a little off


def test_the_registry_lists_the_toy_with_its_control(toy):
    assert B.backbone_entry(toy_control.NAME).controls == ("driving", "brightness")
    assert toy_control.NAME in B.animator_backbones()
    from plugtalk.ui.app import backbone_choices

    assert toy_control.NAME in backbone_choices()


def test_animate_drives_the_new_control_per_frame(toy, tmp_path):
    model = retrofit(toy["model"], emi=None, edi=None).eval()
    opts = AnimateOptions(crop_source=False, crop_driving=False, lossless=True)
    plain = animate(model, toy["src"], tmp_path / "plain.mp4", drivers={"driving": toy["video"]}, options=opts)
    lit = animate(model, toy["src"], tmp_path / "lit.mp4", drivers={"driving": toy["video"]},
                  controls={"brightness": toy["offsets"]}, options=opts)
    assert lit.frames == plain.frames == len(OFFSETS)
    assert lit.drivers == {"driving": "drive.mp4", "brightness": "brightness b.npy"}
    check_follows_offsets(read_frames(lit.path), read_frames(plain.path))
    # a shorter control sequence ends the output, like a shorter video
    short = animate(model, toy["src"], tmp_path / "short.mp4", drivers={"driving": toy["video"]},
                    controls={"brightness": "0.5,0.5"}, options=opts)
    assert short.frames == 2 and any("differ in length" in w for w in short.warnings)
    with pytest.raises(InputError, match="has no control 'loudness'.*brightness"):
        animate(model, toy["src"], tmp_path / "x.mp4", drivers={"driving": toy["video"]},
                controls={"loudness": "1"}, options=opts)
    assert not (tmp_path / "x.mp4").exists()


def test_the_cli_passes_the_control_by_name(toy, tmp_path):
    base = ["animate", "-c", str(toy["file"]), "-s", str(toy["dir"] / "src.png"), "--no-crop", "-d", str(toy["video"]),
            "--driving-cropped", "--lossless", "--no-progress"]
    from PIL import Image

    Image.fromarray(toy["src"]).save(toy["dir"] / "src.png")
    runner = CliRunner()
    plain = runner.invoke(app, [*base, "-o", str(tmp_path / "plain.mp4")])
    assert plain.exit_code == 0, plain.output
    lit = runner.invoke(app, [*base, "-o", str(tmp_path / "lit.mp4"), "--control", f"brightness={toy['offsets']}"])
    assert lit.exit_code == 0, lit.output
    assert "brightness <- brightness b.npy" in lit.output
    check_follows_offsets(read_frames(tmp_path / "lit.mp4"), read_frames(tmp_path / "plain.mp4"))
    bad = runner.invoke(app, [*base, "-o", str(tmp_path / "bad.mp4"), "--control", "brightness"])
    assert bad.exit_code == 2 and "expected NAME=VALUE" in bad.output
    assert not (tmp_path / "bad.mp4").exists()


def test_the_ui_request_passes_the_control(toy, tmp_path):
    pytest.importorskip("gradio")
    from plugtalk.ui.app import ModelCache, UIConfig, demo_pair, run_request

    cfg = UIConfig(workdir=tmp_path / "ui")
    cfg.workdir.mkdir()
    src, drv = demo_pair(cfg.workdir)
    cache = ModelCache()
    common = dict(source=src, driving=drv, checkpoint=str(toy["file"]), frames=len(OFFSETS), compare=False)
    plain = run_request(cfg, cache, **common)
    lit = run_request(cfg, cache, controls=f"brightness={toy['offsets']}", **common)
    check_follows_offsets(read_frames(lit.video), read_frames(plain.video))
    with pytest.raises(InputError, match="no control 'loudness'"):
        run_request(cfg, cache, controls={"loudness": "1"}, **common)
