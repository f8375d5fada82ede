"""Dataset recipes (plugtalk prepare --dataset mead / hdtf / vfhq) on small folder trees that mimic the published
layouts, built here from the shared clips (short, few frames); the clip manifest; resume; failures."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from data_support import train_clip
from plugtalk.cli import app
from plugtalk.data.datasets import clip_labels
from plugtalk.data.manifest import read_manifest
from plugtalk.data.prepare import PrepareSettings, prepare_jobs
from plugtalk.data.recipes import recipe
from plugtalk.data.recipes.hdtf import SPLIT_FILE
from plugtalk.data.recipes.mead import TEST_SPEAKERS
from plugtalk.data.recipes.vfhq import read_annotation
from plugtalk.errors import InputError
from plugtalk.io.audio import load_audio
from plugtalk.io.video import VideoReader, VideoWriter, probe_video

FAST = PrepareSettings(size=64, min_seconds=0.4, detect_every=8, detect_side=256)


def _short(path, frames: int = 16, name: str = "obama__obama_00", canvas=None, left=0, top=0, audio=False):
    """The first ``frames`` frames of a shared clip (optionally pasted on a larger grey canvas)."""
    src = train_clip(name)
    wav = load_audio(src.with_suffix(".wav"))[: frames * 640] if audio else None
    with VideoWriter(path, fps=25, audio=wav, sample_rate=16000 if audio else None) as w:
        for f in VideoReader(src, max_frames=frames):
            if canvas is not None:
                big = np.full(canvas + (3,), 110, np.uint8)
                big[top:top + 256, left:left + 256] = f
                f = big
            w.write(f)
    return path


def _m4a(path, seconds: float = 0.64):
    """A 16 kHz AAC tone in an .m4a file (MEAD ships its audio this way)."""
    t = np.arange(int(seconds * 16000)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None]
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = 16000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def clip16(tmp_path_factory):
    return _short(tmp_path_factory.mktemp("clips") / "short.mp4")


def _mead_tree(root, clip, speakers, emotions=(("angry", 3), ("neutral", 1))):
    for spk in speakers:
        for emo, level in emotions:
            d = root / spk / "video" / "front" / emo / f"level_{level}"
            d.mkdir(parents=True)
            shutil.copy(clip, d / "001.mp4")
        (root / spk / "video" / "left_30" / "angry" / "level_3").mkdir(parents=True)  # other views: not read
        shutil.copy(clip, root / spk / "video" / "left_30" / "angry" / "level_3" / "001.mp4")
    return root


def test_mead_reader_puts_the_four_test_speakers_in_test(tmp_path, clip16):
    root = _mead_tree(tmp_path / "MEAD", clip16, ["M003", "M005", "M030", "W009", "W011", "W015"])
    jobs = recipe("mead").jobs(root)
    assert len(jobs) == 12 and {j.labels["view"] for j in jobs} == {"front"}
    split = {j.identity: j.split for j in jobs}
    assert {i for i, s in split.items() if s == "test"} == set(TEST_SPEAKERS) == {"M003", "M030", "W009", "W015"}
    assert {i for i, s in split.items() if s == "train"} == {"M005", "W011"}
    angry = next(j for j in jobs if j.identity == "W011" and j.labels["emotion"] == "angry")
    assert angry.labels == {"emotion": "angry", "intensity": 3, "view": "front", "sentence": "001"}
    assert angry.clip == "front_angry_level3_001" and angry.dataset == "mead"


def test_mead_names_from_paths_must_be_one_component(tmp_path, clip16):
    root = _mead_tree(tmp_path / "MEAD", clip16, ["M003"])
    bad = root / "M003" / "video" / "front" / "an\x07gry" / "level_1"
    bad.mkdir(parents=True)
    shutil.copy(clip16, bad / "002.mp4")
    with pytest.raises(InputError, match="MEAD emotion.*control character"):
        recipe("mead").jobs(root)
    with pytest.raises(InputError, match="no video.*MEAD's layout"):
        recipe("mead").jobs(tmp_path / "MEAD" / "M003" / "video")


@pytest.mark.slow
def test_prepare_mead_cli_manifest_audio_resume_and_failures(tmp_path):
    root = tmp_path / "MEAD"
    for spk, emo, level in (("M003", "happy", 2), ("W011", "neutral", 1)):
        d = root / spk / "video" / "front" / emo / f"level_{level}"
        d.mkdir(parents=True)
        _short(d / "001.mp4", frames=16)
        a = root / spk / "audio" / emo / f"level_{level}"
        a.mkdir(parents=True)
        _m4a(a / "001.m4a")
    broken = root / "W011" / "video" / "front" / "neutral" / "level_1" / "002.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    out = tmp_path / "clips"
    args = ["prepare", "--dataset", "mead", str(root), "--out", str(out), "--size", "64", "--min-seconds", "0.4",
            "--detect-every", "8", "--no-progress", "--jobs", "2"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "wrote 2 clips" in res.output and "skipped 002.mp4 (front_neutral_level1_002)" in res.output
    recs = read_manifest(out)
    assert sorted(recs) == ["M003__front_happy_level2_001.mp4",
                            "W011__front_neutral_level1_001.mp4"]
    m = recs["M003__front_happy_level2_001.mp4"]
    assert (m.identity, m.split, m.labels["emotion"], m.labels["intensity"]) == ("M003", "test", "happy", 2)
    assert recs["W011__front_neutral_level1_001.mp4"].split == "train"
    assert m.frames == probe_video(out / m.clip).frame_count == 16 and m.fps == 25.0 and m.boxes == "detected"
    assert m.audio == "M003__front_happy_level2_001.wav"          # the speaker's .m4a, cut to the clip
    assert abs(len(load_audio(out / m.audio)) - 16 * 640) <= 1 and len(m.crop_box_xyxy) == 4
    failures = json.loads((out / "failures.json").read_text())
    assert [f["source"] for f in failures] == [str(broken)] and failures[0]["error"]
    # datasets.py reads the labels (and finds the audio) through one public function
    labels = clip_labels(out)
    assert {p.name: r.labels.get("emotion") for p, r in labels.items()} == {
        "M003__front_happy_level2_001.mp4": "happy", "W011__front_neutral_level1_001.mp4": "neutral"}
    assert labels[out / m.clip].audio_path(out) == out / m.audio
    # resume: verified clips are skipped (not rewritten); a clip that no longer verifies is written again
    stamp = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    (out / "W011__front_neutral_level1_001.mp4").write_bytes(b"truncated")
    res = CliRunner().invoke(app, args[:-2] + ["--jobs", "1"])
    assert res.exit_code == 0, res.output
    assert "wrote 1 clips" in res.output and "1 clips already done" in res.output
    assert (out / "M003__front_happy_level2_001.mp4").stat().st_mtime_ns == stamp["M003__front_happy_level2_001.mp4"]
    assert probe_video(out / "W011__front_neutral_level1_001.mp4").frame_count == 16
    assert sorted(read_manifest(out)) == sorted(recs)


def _hdtf_tree(root, clip, names):
    root.mkdir(parents=True)
    for n in names:
        shutil.copy(clip, root / f"{n}.mp4")
    return root


def test_hdtf_split_is_8_to_2_by_identity_seeded_and_reused(tmp_path, clip16):
    names = [f"WDA_Person{i}_{k:03d}" for i in range(10) for k in range(2)] + ["RD_Radio3_000"]
    root = _hdtf_tree(tmp_path / "HDTF", clip16, names)
    out = tmp_path / "clips"
    jobs = recipe("hdtf").jobs(root, out=out, seed=3)
    ids = {j.identity for j in jobs}
    assert len(ids) == 11 and "WDA_Person0" in ids and "RD_Radio3" in ids
    per_id = {}
    for j in jobs:
        per_id.setdefault(j.identity, set()).add(j.split)
    assert all(len(s) == 1 for s in per_id.values())         # never one identity on both sides
    test = sorted(i for i, s in per_id.items() if s == {"test"})
    assert len(test) == 2                                    # round(0.2 * 11)
    saved = json.loads((out / SPLIT_FILE).read_text())
    assert saved["test"] == test and saved["seed"] == 3 and len(saved["train"]) == 9
    # a later run with another seed reads the file back instead of drawing again
    again = recipe("hdtf").jobs(root, out=out, seed=99)
    assert {j.identity: j.split for j in again} == {j.identity: j.split for j in jobs}
    other = recipe("hdtf").jobs(root, out=tmp_path / "other", seed=99)
    assert {j.identity: j.split for j in other} != {j.identity: j.split for j in jobs}  # the seed matters
    shutil.copy(clip16, root / "WDA_Newcomer_000.mp4")
    with pytest.raises(InputError, match="WDA_Newcomer.*not in the split file"):
        recipe("hdtf").jobs(root, out=out)


@pytest.mark.slow
def test_vfhq_uses_the_annotated_boxes_instead_of_detecting(tmp_path, monkeypatch):
    root = tmp_path / "VFHQ" / "VFHQ-Test"
    root.mkdir(parents=True)
    stem = "Clip+Ab_cd-EF12+P1+C0+F120-135"
    _short(root / f"{stem}.mp4", frames=16, canvas=(320, 480), left=180, top=40)
    rows = [f"{120 + i:06d} 210 90 190 190 1 2 3 4 5 6 7 8 9 10" for i in range(16)]
    (root / f"{stem}.txt").write_text("Video: Ab_cd-EF12\nH: 320\nW: 480\nFPS: 25\nPID: 1\nCLIP: 0\n"
                                      "FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]\n" + "\n".join(rows) + "\n")
    (root / "no_video.txt").write_text("FRAME INDEX X0 Y0 W H\n0 1 1 5 5\n")  # an annotation alone: ignored
    header, boxes = read_annotation(root / f"{stem}.txt")
    assert header["pid"] == "1" and sorted(boxes) == list(range(16)) and boxes[0].right == 400
    jobs = recipe("vfhq").jobs(tmp_path / "VFHQ")
    assert [(j.identity, j.split) for j in jobs] == [("Ab_cd-EF12_P1", "test")]

    import plugtalk.data.prepare as prep

    def no_detector(*a, **k):
        raise AssertionError("the detector ran although VFHQ gives the boxes")

    monkeypatch.setattr(prep, "follow_face", no_detector)
    result = prepare_jobs(jobs, tmp_path / "out", FAST, progress=False)
    (c,) = result.clips
    x0, y0, x1, y1 = c.box.as_xyxy()
    assert abs((x0 + x1) / 2 - 305) < 3 and x1 - x0 == y1 - y0 > 190  # around the annotated box, 2x its size
    rec = read_manifest(tmp_path / "out")[c.path.name]
    assert rec.boxes == "annotated" and rec.identity == "Ab_cd-EF12_P1" and rec.split == "test" and rec.frames == 16


@pytest.mark.slow
def test_vfhq_cuts_each_annotated_clip_from_its_raw_video_and_resumes_per_clip(tmp_path, monkeypatch):
    """VFHQ ships annotations for YouTube downloads: ``<video id>.mp4`` (here at half the annotated size) holds
    both clips; each is cut at its clip name's frame range, with the boxes scaled, and resumes on its own."""
    root = tmp_path / "VFHQ"
    (root / "downloads").mkdir(parents=True)
    with VideoWriter(root / "downloads" / "Ab_cd-EF12.mp4", fps=25) as w:  # background grey codes the frame
        for i, f in enumerate(VideoReader(train_clip("obama__obama_00"), max_frames=40)):
            big = np.full((320, 480, 3), 20 + 5 * i, np.uint8)
            big[40:296, 180:436] = f
            w.write(big)
    header = "Video: Ab_cd-EF12\nH: 640\nW: 960\nFPS: 25\nPID: 0\nFRAME INDEX X0 Y0 W H [Landmarks]\n"
    for cid, start in ((0, 4), (1, 22)):
        rows = [f"{start + k:06d} 420 180 380 380 1 2 3 4" for k in range(16)]  # 2x the download's pixels
        (root / f"Clip+Ab_cd-EF12+P0+C{cid}+F{start}-{start + 15}.txt").write_text(header + "\n".join(rows) + "\n")
    jobs = recipe("vfhq").jobs(root)
    assert [(j.source.name, j.identity) for j in jobs] == [("Ab_cd-EF12.mp4", "Ab_cd-EF12_P0")] * 2
    assert sorted(jobs[0].boxes) == list(range(4, 20)) and sorted(jobs[1].boxes) == list(range(22, 38))
    assert (jobs[0].boxes[4].left, jobs[0].boxes[4].right) == (210, 400)  # scaled to the download's size

    import plugtalk.data.prepare as prep

    def no_detector(*a, **k):
        raise AssertionError("the detector ran although VFHQ gives the boxes")

    monkeypatch.setattr(prep, "follow_face", no_detector)
    out = tmp_path / "out"
    first = prepare_jobs(jobs[:1], out, FAST, progress=False)
    both = prepare_jobs(jobs, out, FAST, progress=False)  # the second clip of the same raw video is still to do
    assert [c.path.name for c in first.clips] == ["Ab_cd-EF12_P0__Clip+Ab_cd-EF12+P0+C0+F4-19.mp4"]
    assert [r.clip for r in both.resumed] == [first.clips[0].path.name]
    (second,) = both.clips
    for clip, start in ((first.clips[0], 4), (second, 22)):
        frames = list(VideoReader(clip.path))
        assert len(frames) == 16
        shown = np.array([(np.asarray(f)[24:40, :4].mean() - 20) / 5 for f in frames])  # raw frame, from its grey
        off = shown - np.arange(start, start + 16)
        assert np.median(off) == pytest.approx(0, abs=0.5) and np.abs(off).max() < 1.2, (clip.path.name, shown)
    rows = "".join(f"{30 + k} 420 180 380 380\n" for k in range(6))
    (root / "Clip+Ab_cd-EF12+P0+C2+F30-33.txt").write_text(header + rows)
    with pytest.raises(InputError, match=r"6 rows, but its frame range F30-33 holds 4 frames"):
        recipe("vfhq").jobs(root)


def test_unknown_dataset_and_bad_jobs(tmp_path, clip16):
    res = CliRunner().invoke(app, ["prepare", "--dataset", "voxceleb", str(clip16), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown --dataset" in res.output
    res = CliRunner().invoke(app, ["prepare", str(clip16), "--out", str(tmp_path / "o"), "--jobs", "0"])
    assert res.exit_code == 2 and "--jobs must be between 1 and 64" in res.output
    assert not (tmp_path / "o").exists()
