"""plugtalk eval: metric plumbing through the CLI (a clip against itself is perfect), frame pairing between
videos and image folders, CSIM against a source, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from data_support import shared_file
from plugtalk.cli import app
from plugtalk.demo import demo_driving_path
from plugtalk.evaluate import EvalSettings, FrameSource, build_suite, evaluate_frames
from plugtalk.errors import InputError
from plugtalk.io.video import VideoWriter, read_frames

runner = CliRunner()


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


def write_video(path, frames, lossless=True):
    with VideoWriter(path, fps=25, lossless=lossless) as w:
        w.write(frames)
    return path


def write_folder(folder, frames, names=None):
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / (names[i] if names else f"frame_{i:04d}.png"))
    return folder


@pytest.fixture(scope="module")
def clip():
    """6 real 256 px face frames (shared data)."""
    return read_frames(shared_file("data", "faces", "test", "vox_driving2__driving2.mp4"), max_frames=6)


def _strict_json(token):
    raise AssertionError(f"report is not strict JSON: it contains {token}")


@pytest.mark.slow
def test_a_clip_against_itself_is_perfect(clip, tmp_path):
    video = write_video(tmp_path / "clip.mp4", clip)
    report = tmp_path / "self.json"
    res, text = cli("eval", "--pred", video, "--ref", video, "--json", report, "--no-progress")
    assert res.exit_code == 0, text
    r = json.loads(report.read_text(), parse_constant=_strict_json)
    m = r["metrics"]
    assert r["frames"] == 6 and r["face_frames_skipped"] == 0
    assert m["psnr"] == "inf" and float(m["psnr"]) == float("inf") and m["ssim"] == pytest.approx(1.0)
    assert m["f_lmd"] == 0.0 and m["m_lmd"] == 0.0 and m["akd"] == 0.0
    assert m["csim"] == pytest.approx(1.0) and r["csim_reference"] == "reference frames"
    assert "substitute for ArcFace" in r["csim_encoder"]
    assert np.isfinite(m["niqe"]) and 0 <= m["cpbd"] <= 1
    assert r["better"]["psnr"] == "higher" and r["better"]["niqe"] == "lower"
    for shown in ("PSNR", "inf", "SSIM", "1.0000", "CSIM", "F-LMD", "M-LMD", "AKD", "NIQE", "CPBD", "dlib"):
        assert shown in text
    # an altered copy is worse on every full-reference metric
    shifted = np.roll(clip, 6, axis=2)
    res, text = cli("eval", "--pred", write_video(tmp_path / "shifted.mp4", shifted), "--ref", video, "--json",
                    report, "--no-progress", "--metrics", "psnr,ssim,f_lmd")
    m = json.loads(report.read_text())["metrics"]
    assert res.exit_code == 0 and m["psnr"] < 40 and m["ssim"] < 0.99 and 3 < m["f_lmd"] < 9


@pytest.mark.slow
def test_csim_against_a_source_image(clip, tmp_path):
    video = write_video(tmp_path / "clip.mp4", clip)
    same = tmp_path / "same.png"
    Image.fromarray(clip[0]).save(same)
    other = shared_file("data", "stills", "vox_monroe.png")
    results = {}
    for name, src in (("same", same), ("other", other)):
        report = tmp_path / f"{name}.json"
        res, text = cli("eval", "--pred", video, "--source", src, "--metrics", "csim", "--json", report,
                        "--no-progress")
        assert res.exit_code == 0, text
        results[name] = json.loads(report.read_text())
        assert results[name]["csim_reference"] == "source image" and results[name]["ref"] is None
    assert results["same"]["metrics"]["csim"] > results["other"]["metrics"]["csim"]


def test_image_folders_pair_by_sorted_name_with_videos(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    video = write_video(tmp_path / "v.mp4", frames)
    names = ["b_01.png", "b_00.png", "b_03.png", "b_02.png", "b_04.png"]  # written out of order
    order = [1, 0, 3, 2, 4]
    folder = write_folder(tmp_path / "imgs", frames[order], names)
    r = evaluate_frames(folder, video, settings=EvalSettings(metrics=["psnr", "ssim"]))
    assert r["frames"] == 5 and r["metrics"]["psnr"] == float("inf") and not r["warnings"]
    assert FrameSource(folder).count == 5


def test_different_lengths_are_trimmed_with_a_warning(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    long_video = write_video(tmp_path / "long.mp4", frames)
    short = write_folder(tmp_path / "short", frames[:4])
    report = tmp_path / "r.json"
    res, text = cli("eval", "--pred", long_video, "--ref", short, "--metrics", "psnr", "--json", report,
                    "--no-progress")
    assert res.exit_code == 0, text
    r = json.loads(report.read_text(), parse_constant=_strict_json)
    assert r["frames"] == 4 and r["pred_frames"] == 7 and r["ref_frames"] == 4
    assert "evaluated the first 4" in text and float(r["metrics"]["psnr"]) == float("inf")
    # chunk boundaries do not change the pairing
    small_chunks = evaluate_frames(long_video, short, settings=EvalSettings(metrics=["psnr"]), chunk=3)
    assert small_chunks["frames"] == 4 and small_chunks["metrics"]["psnr"] == float("inf")


def test_frames_too_small_for_niqe_are_reported_not_fatal(tmp_path):
    frames = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    video = write_video(tmp_path / "v.mp4", frames)
    r = evaluate_frames(video, video, settings=EvalSettings(metrics=["psnr", "niqe", "cpbd"]))
    assert "niqe" not in r["metrics"] and "96x96" in r["not_computed"]["niqe"] and "cpbd" in r["metrics"]


def test_eval_errors(tmp_path):
    frames = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    video = write_video(tmp_path / "v.mp4", frames)
    bigger = write_video(tmp_path / "big.mp4", np.zeros((3, 48, 48, 3), np.uint8))
    corrupt = tmp_path / "bad.mp4"
    corrupt.write_bytes(b"\x00" * 2048)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    cases = [
        (["--pred", video, "--ref", bigger], "32x32 but ref frames are 48x48"),
        (["--pred", corrupt, "--ref", video], "corrupt"),
        (["--pred", tmp_path / "missing.mp4", "--ref", video], "does not exist"),
        (["--pred", empty_dir, "--ref", video], "has no images"),
        (["--pred", video, "--ref", video, "--metrics", "psnr,lpips"], "unknown metric"),
        (["--pred", video, "--ref", video, "--metrics", "fid"], "--inception-weights"),
        (["--pred", video, "--ref", video, "--identity-model", "arcface"], "--arcface-weights"),
        (["--pred", video, "--ref", video, "--json", tmp_path / "nope" / "r.json"], "does not exist"),
    ]
    for args, expected in cases:
        res, text = cli("eval", "--no-progress", *args)
        assert res.exit_code == 2 and "error:" in text and expected in text, (args, text)
    assert not (tmp_path / "nope").exists()


def test_build_suite_rejects_bad_settings():
    with pytest.raises(InputError, match="identity model"):
        build_suite(EvalSettings(identity_model="vgg"))
    suite, fid = build_suite(EvalSettings(metrics=["psnr", "cpbd"]))
    assert suite.metrics == ("psnr", "cpbd") and fid is None


def test_fid_accumulates_features_over_chunks(tmp_path):
    """FID is computed once from the features of every chunk (a tiny random network stands in for the
    user's Inception weights; InceptionFeatures itself is tested in test_metrics_fid)."""
    from plugtalk.metrics import MetricSuite, TorchFeatures, fid

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten())
    ext = TorchFeatures(net, input_size=32, name="tiny-random")
    frames = read_frames(demo_driving_path(), max_frames=12)
    video = write_video(tmp_path / "v.mp4", frames)
    darker = write_video(tmp_path / "d.mp4", (frames // 2).astype(np.uint8))
    r = evaluate_frames(darker, video, suite=(MetricSuite(["psnr"]), ext), chunk=5)
    assert r["fid_features"] == "tiny-random"
    assert r["metrics"]["fid"] == pytest.approx(fid(read_frames(darker), read_frames(video), ext), rel=1e-9)
    assert evaluate_frames(video, video, suite=(MetricSuite(["psnr"]), ext), chunk=5)["metrics"]["fid"] \
        == pytest.approx(0.0, abs=1e-6)


def test_resize_scores_small_predictions_against_full_size_references(tmp_path):
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    small = np.stack([np.asarray(Image.fromarray(f).resize((48, 48), Image.LANCZOS)) for f in ref])
    pred_v, ref_v = write_video(tmp_path / "p.mp4", small), write_video(tmp_path / "r.mp4", ref)
    with pytest.raises(InputError, match="same size"):
        evaluate_frames(pred_v, ref_v, settings=EvalSettings(metrics=["psnr"]))
    r = evaluate_frames(pred_v, ref_v, settings=EvalSettings(metrics=["psnr"]), resize=96)
    assert r["resize"] == 96 and r["frames"] == 3 and 5 < r["metrics"]["psnr"] < 40


def test_skip_leaves_out_the_first_frames_across_chunk_boundaries(tmp_path):
    """A copy of the source (frame 0) scores PSNR inf; --skip 1 scores only the frames after it."""
    rng = np.random.default_rng(4)
    ref = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    copy = np.broadcast_to(ref[0], ref.shape).copy()
    pred_v, ref_v = write_video(tmp_path / "p.mp4", copy), write_video(tmp_path / "r.mp4", ref)
    psnr = EvalSettings(metrics=["psnr"])
    assert evaluate_frames(pred_v, ref_v, settings=psnr)["metrics"]["psnr"] == float("inf")
    expected = np.mean([10 * np.log10(255.0 ** 2 / np.mean((copy[i].astype(float) - ref[i]) ** 2)) for i in range(1, 7)])
    for chunk in (1, 3, 32):
        r = evaluate_frames(pred_v, ref_v, settings=psnr, skip=1, chunk=chunk)
        assert r["frames"] == 6 and r["skip"] == 1 and r["pred_frames"] == 7
        assert r["metrics"]["psnr"] == pytest.approx(expected, rel=1e-6)
    assert evaluate_frames(pred_v, ref_v, settings=psnr, skip=3, max_frames=2)["frames"] == 2
    with pytest.raises(InputError, match="after skipping 7"):
        evaluate_frames(pred_v, ref_v, settings=psnr, skip=7)
    res, text = cli("eval", "--pred", pred_v, "--ref", ref_v, "--metrics", "psnr", "--skip", "1", "--no-progress")
    import re

    shown = re.search(r"PSNR \(dB\) │ (\S+)", text)
    assert res.exit_code == 0 and shown, text
    assert float(shown.group(1)) == pytest.approx(expected, abs=1e-3)
