"""The probe on real faces: pairs from the shared clips, the face scorer, and ``plugtalk probe`` end to end
on CPU for LIA, EDTalk and DPE (random weights), plus the command's error messages."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from face_data import gray_image, read_frames
from PIL import Image
from typer.testing import CliRunner

from plugtalk.cli import app
from plugtalk.errors import InputError
from plugtalk.probe import (
    FaceScorer,
    PairSpec,
    identity_of,
    load_pair_frames,
    pairs_from_files,
    pairs_from_folder,
    usable_pairs_from_folder,
)


def write_video(path, frames: np.ndarray, fps: int = 25):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def gray_video(path, n=6, size=64):
    return write_video(path, np.full((n, size, size, 3), 128, np.uint8))


# -- pairs ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pairs_from_the_shared_clips(shared_data):
    faces = shared_data / "faces"
    pairs, notes = pairs_from_folder(faces, 6, seed=0)
    assert notes == [] and [p.kind for p in pairs] == ["self"] * 3 + ["cross"] * 3
    for p in pairs[:3]:
        assert p.source == p.driving
        n = av.open(p.source).streams.video[0].frames
        assert p.source_frame < n // 4 and p.driving_frame >= n - n // 4  # far apart: first / last quarter
    assert len({identity_of(p.source) for p in pairs[:3]}) == 3
    for p in pairs[3:]:
        assert identity_of(p.source) != identity_of(p.driving)
    again, _ = pairs_from_folder(faces, 6, seed=0)
    other, _ = pairs_from_folder(faces, 6, seed=1)
    assert again == pairs and other != pairs


def test_pairs_with_one_identity_files_and_unreadable_ones(tmp_path):
    gray_video(tmp_path / "anna__a.mp4", n=8)
    gray_video(tmp_path / "anna__b.mp4", n=8)
    pairs, notes = pairs_from_folder(tmp_path, 3)
    assert [p.kind for p in pairs] == ["self"] * 3 and any("only one identity" in n for n in notes)
    assert pairs_from_files(tmp_path / "anna__a.mp4", tmp_path / "anna__b.mp4", 3)[0].kind == "self"
    still = tmp_path / "carl.png"
    Image.fromarray(gray_image(64)).save(still)
    ps = pairs_from_files(still, tmp_path / "anna__a.mp4", 3)
    assert [(p.kind, p.driving_frame) for p in ps] == [("cross", 0), ("cross", 4), ("cross", 7)]
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(tmp_path / "wide.png")
    loaded = load_pair_frames([*ps, PairSpec(str(still), str(tmp_path / "anna__a.mp4"), 0, 99),
                               PairSpec(str(tmp_path / "gone.png"), str(still)),
                               PairSpec(str(tmp_path / "wide.png"), str(still))], size=32)
    assert loaded.indices == [0, 1, 2] and loaded.sources.shape == (3, 32, 32, 3)
    assert "past the end" in loaded.problems[3] and "gone.png" in loaded.problems[4]
    assert "expected square face crops" in loaded.problems[5]
    (tmp_path / "bob__broken.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match="bob__broken.mp4"):
        pairs_from_folder(tmp_path, 3)
    with pytest.raises(InputError, match="driving"):
        pairs_from_files(still, tmp_path / "bob__broken.mp4")


def test_usable_pairs_pass_over_frames_without_faces(tmp_path):
    write_video(tmp_path / "anna__a.mp4", np.full((8, 32, 32, 3), 200, np.uint8))
    write_video(tmp_path / "bob__b.mp4", np.full((8, 32, 32, 3), 200, np.uint8))
    write_video(tmp_path / "dark__d.mp4", np.full((8, 32, 32, 3), 20, np.uint8))
    bright = lambda image, name: image.mean() > 100
    pairs, notes = usable_pairs_from_folder(tmp_path, 4, seed=0, has_face=bright, size=32)
    assert [p.kind for p in pairs] == ["self", "self", "cross", "cross"]
    assert all("dark" not in p.source + p.driving for p in pairs)
    assert any("passed over" in n and "dark__d.mp4" in n for n in notes)
    (tmp_path / "bob__b.mp4").unlink()  # left: anna and a faceless identity, so no usable cross pair
    pairs, notes = usable_pairs_from_folder(tmp_path, 4, seed=0, has_face=bright, size=32)
    assert [p.kind for p in pairs] == ["self", "self"] and notes[-1] == "only 2 usable pairs found (asked for 4)"


# -- scoring on real faces -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_face_scorer_on_real_frames():
    a = read_frames("faces/test/vox_driving2__driving2.mp4", n=2, step=100)
    b = read_frames("faces/test/dpe_s__s.mp4", n=1)
    sources = np.stack([a[0], a[0], gray_image()])
    drivings = np.stack([a[1], b[0], a[1]])
    sc = FaceScorer()
    refs = sc.prepare(sources, drivings, [("a0", "a1"), ("a0", "b0"), ("gray.png", "a1")])
    assert refs.problems[:2] == [None, None] and refs.problems[2] == "no face found in the source (gray.png)"
    refs = refs.select([0, 1])
    res = sc.score(drivings[:2], refs)  # outputs identical to the driving frames
    assert np.allclose(res["csim_driving"], 1.0) and np.allclose(res["lmd"], 0.0)
    assert res["csim_source"][0] > res["csim_source"][1]  # same person vs another person
    assert np.array_equal(res["face_found"], [1.0, 1.0]) and np.isfinite(res["niqe"]).all()
    blank = sc.score(np.stack([gray_image(), gray_image()]), refs)
    assert np.isnan(blank["csim_source"]).all() and np.array_equal(blank["face_found"], [0.0, 0.0])
    boxed = FaceScorer(output_faces="driving").score(np.stack([gray_image(), gray_image()]),
                                                     FaceScorer(output_faces="driving").prepare(sources[:2], drivings[:2]))
    assert np.isfinite(boxed["lmd"]).all()  # scored in the driving frame's box even without a face


@pytest.mark.slow
def test_face_scorer_score_size_lets_a_64px_model_be_scored():
    """NIQE refuses 64 px frames; with score_size the same frames are scored at 256 px and the faces found."""
    a = read_frames("faces/test/vox_driving2__driving2.mp4", n=2, step=100)
    small = np.stack([np.asarray(Image.fromarray(f).resize((64, 64), Image.LANCZOS)) for f in a])
    with pytest.raises(InputError, match="96"):
        FaceScorer(["niqe"]).score(small[:1], FaceScorer(["niqe"]).prepare(small[:1], small[1:]))
    sc = FaceScorer(score_size=256)
    refs = sc.prepare(small[:1], small[1:])
    assert refs.problems == [None]
    res = sc.score(small[1:], refs)
    assert np.isfinite(res["niqe"]).all() and res["face_found"][0] == 1.0
    assert np.allclose(res["csim_driving"], 1.0) and np.allclose(res["lmd"], 0.0)
    assert sc.describe()["score_size"] == 256
    with pytest.raises(InputError, match="score_size"):
        FaceScorer(score_size=8)


# -- the command ------------------------------------------------------------------------------------------------


def run(*args):
    return CliRunner().invoke(app, ["probe", *map(str, args)])


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["lia", "edtalk", "dpe"])
def test_probe_command_end_to_end_on_real_faces(shared_data, tmp_path, backbone):
    out = tmp_path / "out"
    res = run("--backbone", backbone, "--pairs", shared_data / "faces", "--num-pairs", 2, "--taps", "pyramid.2",
              "--groups", "identity", "--directions", "to-source", "--batch-size", 4, "--out", out)
    assert res.exit_code == 0, res.output
    # without --checkpoint: the embedded default model where it fits the backbone (a lia), else random weights
    from plugtalk.default_model import default_model_path

    random_weights = not (backbone == "lia" and default_model_path() is not None)
    assert ("RANDOM weights" in res.output) == random_weights and "identity transfer ranking" in res.output
    report = json.loads((out / "report.json").read_text())
    assert {p["kind"] for p in report["pairs"]} == {"self", "cross"} and report["skipped_pairs"] == []
    assert [v["key"] for v in report["variants"]] in (["pyramid.2:d->s", "identity:d->s"],
                                                       ["identity:d->s", "pyramid.2:d->s"])
    assert report["model"]["random_weights"] == random_weights and report["model"]["identity_level"] == "pyramid.2"
    assert report["timing"]["images_rendered"] == 4 and report["spec"]["backbone"] == backbone
    for name in ("grid.png", "identity_shift.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 200
    if backbone == "lia":  # the report reproduces itself
        res2 = run("--spec", out / "report.json", "--out", tmp_path / "again")
        assert res2.exit_code == 0, res2.output
        again = json.loads((tmp_path / "again" / "report.json").read_text())
        assert again["spec"] == report["spec"]
        assert [v["per_pair"] for v in again["variants"]] == [v["per_pair"] for v in report["variants"]]


def test_probe_command_errors(tmp_path):
    res = run("--backbone", "lia", "--spec", tmp_path / "r.json", "--out", tmp_path)
    assert res.exit_code == 2 and "drop --backbone" in res.output
    res = run("--backbone", "lia", "--source", tmp_path / "a.png", "--out", tmp_path)
    assert res.exit_code == 2 and "--source and --driving go together" in res.output
    res = run("--backbone", "lia")
    assert res.exit_code == 2 and "--out" in res.output
    res = run("--backbone", "lia", "--list-taps", "--mode", "pose")
    assert res.exit_code == 2 and "no backbone options" in res.output


def test_probe_command_unknown_tap_and_faceless_pairs(tmp_path):
    still = tmp_path / "gray.png"
    Image.fromarray(gray_image(256)).save(still)
    video = gray_video(tmp_path / "clip.mp4", n=4, size=256)
    res = run("--backbone", "dpe", "--source", still, "--driving", video, "--taps", "f4", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "valid taps: latent, pyramid.0" in res.output
    res = run("--backbone", "dpe", "--source", still, "--driving", video, "-n", 2, "--taps", "latent",
              "--groups", "none", "--out", tmp_path / "o")
    assert res.exit_code == 2
    assert "no usable source/driving pair" in res.output and "gray.png#0" in res.output
    assert "warning: skipped pair 0 (gray.png#0 driven by clip.mp4#0)" in res.output
    assert not (tmp_path / "o" / "report.json").exists()
