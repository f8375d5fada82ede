"""plugtalk prepare: raw (uncropped) videos -> 256 px face clips with one crop box per clip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from data_support import train_clip
from plugtalk.cli import app
from plugtalk.data.prepare import PrepareSettings, SkippedVideoWarning, prepare_videos
from plugtalk.errors import InputError
from plugtalk.face.detect import detect_faces
from plugtalk.io.audio import load_audio
from plugtalk.io.video import VideoReader, VideoWriter, probe_video, read_frames

CANVAS = (480, 720)


def _background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(80, 150, CANVAS + (3,)).astype(np.uint8)


def _uncropped(path, clip, *, seconds: float, fps: int = 30, left: int = 400, top: int = 150,
               blank: tuple[float, float] | None = None, audio: bool = True):
    """Simulate a raw video: a real 256 px clip pasted off-centre on a larger frame, drifting right;
    optionally with a stretch of frames without the face (``blank`` = (from_s, to_s))."""
    bg = _background()
    n = int(seconds * fps)
    wav = load_audio(clip.with_suffix(".wav"))[: int(seconds * 16000)] if audio else None
    with VideoWriter(path, fps=fps, audio=wav, sample_rate=16000 if audio else None) as w:
        for i, f in enumerate(VideoReader(clip, fps=fps, max_frames=n)):
            frame = bg.copy()
            t = i / fps
            if blank is None or not (blank[0] <= t < blank[1]):
                x = left + i // 6
                frame[top:top + 256, x:x + 256] = f
            w.write(frame)
    return path


@pytest.fixture(scope="module")
def raw_video(tmp_path_factory):
    return _uncropped(tmp_path_factory.mktemp("raw") / "speaker.mp4", train_clip("obama__uncrop_Obama_00"),
                      seconds=2.0)


@pytest.mark.slow
def test_prepare_crops_an_uncropped_video_with_the_face_centred(raw_video, tmp_path):
    out = tmp_path / "out"
    result = prepare_videos([raw_video], out, PrepareSettings(), progress=False)
    assert len(result.clips) == 1 and not result.skipped
    c = result.clips[0]
    assert c.path == out / "speaker__speaker.mp4" and c.identity == "speaker"
    info = probe_video(c.path)
    assert (info.height, info.width, info.fps) == (256, 256, 25.0)
    assert info.frame_count == 50  # 2 s resampled from 30 to 25 fps
    frames = read_frames(c.path)
    for i in (0, 25, 49):
        faces = detect_faces(frames[i])
        assert len(faces) == 1
        cx, cy = faces[0].center
        assert abs(cx - 128) < 0.08 * 256, f"frame {i}: face centre x {cx}"
        assert abs(cy - (128 + 0.18 * 128)) < 0.1 * 256, f"frame {i}: face centre y {cy}"
        assert 0.35 * 256 < faces[0].width < 0.65 * 256  # about half the crop (2x face size)
    # the crop comes from where the face is in the source frame (x 400..~660, y 150..406)
    x0, y0, x1, y1 = c.box.as_xyxy()
    assert 380 <= (x0 + x1) / 2 <= 560 and 200 <= (y0 + y1) / 2 <= 300 and x1 - x0 == y1 - y0
    # audio: muxed in the mp4 and as a 16 kHz wav covering exactly the clip's frames
    assert info.has_audio and c.wav == out / "speaker__speaker.wav"
    wav_info = sf.info(c.wav)
    assert (wav_info.samplerate, wav_info.channels, wav_info.frames) == (16000, 1, 2 * 16000)
    src = load_audio(raw_video)[: 2 * 16000]
    got = load_audio(c.wav)
    assert np.corrcoef(src[:30000], got[:30000])[0, 1] > 0.95
    manifest = json.loads((out / "prepared.json").read_text())
    entry = manifest["clips"]["speaker__speaker.mp4"]
    assert entry["frames"] == 50 and entry["crop_box_xyxy"] == list(c.box.as_xyxy())
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "prepared.json", "speaker__speaker.mp4",
                                                    "speaker__speaker.wav"]


@pytest.mark.slow
def test_no_face_video_is_skipped_with_a_warning(raw_video, tmp_path):
    noface = tmp_path / "wall.mp4"
    with VideoWriter(noface, fps=25) as w:
        w.write(np.repeat(_background(1)[None], 30, axis=0))
    with pytest.warns(SkippedVideoWarning, match="wall.mp4"):
        result = prepare_videos([noface, raw_video], tmp_path / "out", PrepareSettings(detect_every=10),
                                identity="obama", progress=False)
    assert [p.name for p, _ in result.skipped] == ["wall.mp4"]
    assert [c.path.name for c in result.clips] == ["obama__speaker.mp4"]
    with pytest.warns(SkippedVideoWarning), pytest.raises(InputError, match="no usable video.*wall.mp4.*no face"):
        prepare_videos([noface], tmp_path / "out2", progress=False)
    assert not any((tmp_path / "out2").iterdir())


@pytest.mark.slow
def test_face_lost_for_long_splits_the_clip_and_long_tracks_are_cut(tmp_path):
    src = _uncropped(tmp_path / "gap.mp4", train_clip("obama__obama_00"), seconds=3.6, fps=25, blank=(1.4, 2.2),
                     audio=False)
    fast = dict(detect_every=3, detect_side=240)  # the pasted face is large: a small detector input finds it
    result = prepare_videos([src], tmp_path / "out", PrepareSettings(min_seconds=0.8, max_seconds=10, **fast),
                            progress=False)
    spans = [(c.start, c.end) for c in result.clips]
    assert len(spans) == 2, spans
    (a0, a1), (b0, b1) = spans
    assert a0 == 0 and 30 <= a1 <= 36           # face until 1.4 s = frame 35
    assert 55 <= b0 <= 60 and b1 == 90          # back from 2.2 s = frame 55 to the end
    assert all(c.wav is None for c in result.clips) and not probe_video(result.clips[0].path).has_audio
    # max_seconds splits a long track into equal parts
    result = prepare_videos([src], tmp_path / "out3", PrepareSettings(min_seconds=0.4, max_seconds=0.8, **fast),
                            progress=False)
    lengths = [c.frames for c in result.clips]
    assert all(len_ <= 20 for len_ in lengths) and max(lengths) - min(lengths) <= 3 and len(lengths) >= 4


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        prepare_videos([tmp_path / "missing.mp4"], tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        prepare_videos([tmp_path / "empty"], tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="min_seconds"):
        prepare_videos([tmp_path], tmp_path / "out", PrepareSettings(min_seconds=5, max_seconds=2), progress=False)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    with pytest.warns(SkippedVideoWarning, match="broken.mp4"), pytest.raises(InputError, match="no usable video"):
        prepare_videos([broken], tmp_path / "out", progress=False)


@pytest.mark.slow
def test_cli_prepare(raw_video, tmp_path):
    runner = CliRunner()
    noface = tmp_path / "blank.mp4"
    with VideoWriter(noface, fps=25) as w:
        w.write(np.zeros((10, 64, 64, 3), np.uint8))
    res = runner.invoke(app, ["prepare", str(raw_video), str(noface), "--out", str(tmp_path / "o"),
                              "--size", "128", "--fps", "20", "--max-seconds", "10", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "warning" in res.output and "blank.mp4" in res.output and "wrote 1 clips" in res.output
    info = probe_video(tmp_path / "o" / "speaker__speaker.mp4")
    assert (info.height, info.width, info.fps, info.frame_count) == (128, 128, 20.0, 40)
    res = runner.invoke(app, ["prepare", str(noface), "--out", str(tmp_path / "o2"), "--no-progress"])
    assert res.exit_code == 2 and "error:" in res.output and "blank.mp4" in res.output
