"""plugtalk.io.video: streaming reader, fps resampling, atomic writer with audio, bad-file errors."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from data_support import shared_file, train_clip
from plugtalk.errors import InputError
from plugtalk.io.audio import load_audio, read_audio
from plugtalk.io.video import VideoReader, VideoWriter, probe_video, read_frames, read_frames_at


def _moving_square(n: int, h: int = 64, w: int = 80) -> np.ndarray:
    """Frames with a bright square moving one step per frame (each frame is distinguishable)."""
    frames = np.full((n, h, w, 3), 40, np.uint8)
    for i in range(n):
        x = 4 + 2 * i
        frames[i, 10:30, x:x + 20] = (230, 200, 60)
    return frames


def _square_x(frame: np.ndarray) -> int:
    cols = np.nonzero(frame[20, :, 0] > 150)[0]
    return int(cols[0])


def test_reader_metadata_of_a_real_clip():
    r = VideoReader(train_clip())
    assert r.size == (256, 256) and r.fps == 25 and r.frame_count == 223
    assert r.duration == pytest.approx(8.92, abs=0.05)
    assert r.has_audio


def test_write_read_round_trip_real_frames(tmp_path):
    frames = read_frames(train_clip(), max_frames=20)
    assert frames.shape == (20, 256, 256, 3)
    out = tmp_path / "rt.mp4"
    with VideoWriter(out, fps=25) as w:
        w.write(frames[:5])               # a batch
        for f in frames[5:]:              # and single frames
            w.write(f)
    info = probe_video(out)
    assert (info.height, info.width, info.fps, info.frame_count) == (256, 256, 25.0, 20)
    back = read_frames(out)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 3.0  # crf 18 H.264 + yuv420p
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"


def test_writer_accepts_tensors_and_pads_odd_sizes(tmp_path):
    frames = _moving_square(3, h=33, w=45)
    with VideoWriter(tmp_path / "odd.mp4", fps=10) as w:
        w.write(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1)
    info = probe_video(tmp_path / "odd.mp4")
    assert (info.height, info.width, info.frame_count, info.fps) == (34, 46, 3, 10.0)


def test_audio_is_muxed_as_aac_and_trimmed_to_the_video(tmp_path):
    wav = shared_file("data", "faces", "train", "obama__obama_00.wav")
    frames = read_frames(train_clip(), max_frames=25)
    out = tmp_path / "av.mp4"
    with VideoWriter(out, fps=25, audio=wav) as w:
        w.write(frames)
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and a.rate == 16000
        assert float(a.duration * a.time_base) == pytest.approx(1.0, abs=0.07)  # 25 frames at 25 fps
    decoded, sr = read_audio(out)
    ref = load_audio(wav)[:16000]
    assert sr == 16000
    # same sound: strong correlation with the source wav (AAC adds a small delay, search a few ms)
    best = max(np.corrcoef(decoded[d:d + 12000], ref[:12000])[0, 1] for d in range(0, 2048, 16))
    assert best > 0.9


def test_audio_array_needs_rate(tmp_path):
    with pytest.raises(InputError, match="sample_rate"):
        VideoWriter(tmp_path / "x.mp4", audio=np.zeros(100, np.float32))


def test_streaming_reader_yields_batches(tmp_path):
    r = VideoReader(train_clip())
    sizes, peak = [], 0
    for batch in r.batches(32):
        assert batch.dtype == np.uint8 and batch.shape[1:] == (256, 256, 3)
        sizes.append(len(batch))
        peak = max(peak, batch.nbytes)
    assert sum(sizes) == 223 and max(sizes) == 32 and sizes[-1] == 223 % 32
    assert peak == 32 * 256 * 256 * 3  # never more than one batch in hand
    # the iterator is lazy: taking 3 frames does not decode the rest
    it = iter(r)
    first = [next(it) for _ in range(3)]
    it.close()
    assert len(first) == 3


def test_streaming_reader_does_not_keep_frames():
    """Frames already yielded are freed once the caller drops them (the reader keeps no reference),
    and batching allocates one batch at a time."""
    import gc
    import tracemalloc
    import weakref

    for reader in (VideoReader(train_clip()), VideoReader(train_clip(), fps=30)):
        it = iter(reader)
        refs = [weakref.ref(next(it)) for _ in range(3)]
        for _ in range(5):
            next(it)
        gc.collect()
        assert all(r() is None for r in refs)
        it.close()
    frame_bytes = 256 * 256 * 3
    tracemalloc.start()  # tracks the numpy batches (PyAV's own frame buffers are not traced)
    try:
        n = sum(len(b) for b in VideoReader(train_clip()).batches(8))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 223 and peak < 24 * frame_bytes, f"peak {peak / 2**20:.1f} MiB"  # the clip is 42 MiB


def test_resampling_picks_the_nearest_frame(tmp_path):
    frames = _moving_square(25)
    out = tmp_path / "sq.mp4"
    with VideoWriter(out, fps=25, crf=0) as w:
        w.write(frames)
    xs = [_square_x(f) for f in frames]
    # 25 -> 10 fps: output k at k/10 s = source frame 2.5k, ties to the earlier frame
    r10 = VideoReader(out, fps=10)
    got = [_square_x(f) for f in r10]
    want = [xs[int(np.ceil(2.5 * k - 0.5))] for k in range(10)]  # nearest, ties to the earlier
    assert got == want and r10.frame_count == 10
    # 25 -> 50 fps: every source frame twice
    r50 = VideoReader(out, fps=50)
    got50 = [_square_x(f) for f in r50]
    assert got50 == [x for x in xs for _ in range(2)] and r50.frame_count == 50
    # same rate: identity
    assert [_square_x(f) for f in VideoReader(out, fps=25)] == xs


def test_max_frames(tmp_path):
    assert read_frames(train_clip(), max_frames=7).shape[0] == 7
    assert VideoReader(train_clip(), max_frames=7).frame_count == 7


def test_display_rotation_is_applied(tmp_path):
    p = tmp_path / "rot.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)
        img = np.zeros((32, 64, 3), np.uint8)
        img[:8, :8] = 255  # top-left corner white
        for i in range(2):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    frame = read_frames(p)[0]
    assert frame.shape == (64, 32, 3)
    assert frame[-4, 4].mean() > 200 and frame[4, 4].mean() < 50  # turned 90 degrees counter-clockwise


def test_truncated_video_raises(tmp_path):
    data = train_clip().read_bytes()
    for name, chunk in [("head.mp4", data[: len(data) // 2]), ("tail.mp4", data[len(data) // 2:])]:
        p = tmp_path / name
        p.write_bytes(chunk)
        with pytest.raises(InputError, match=name):
            for _ in VideoReader(p):
                pass


def test_empty_missing_and_non_video_files(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty.mp4.*empty"):
        VideoReader(tmp_path / "empty.mp4")
    with pytest.raises(InputError, match="does not exist"):
        VideoReader(tmp_path / "missing.mp4")
    (tmp_path / "text.mp4").write_text("hello, not a video")
    with pytest.raises(InputError, match="text.mp4"):
        read_frames(tmp_path / "text.mp4")
    with pytest.raises(InputError, match="no video stream"):
        VideoReader(shared_file("data", "audio", "edtalk_test_11.wav"))


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
def test_zero_frame_video_raises(tmp_path, ext):
    p = tmp_path / f"zero.{ext}"
    with av.open(str(p), "w") as c:  # a container header with a video stream and no frames
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    assert p.stat().st_size > 0
    with pytest.raises(InputError, match=f"zero.{ext}"):
        VideoReader(p)


def test_writer_leaves_nothing_on_exception(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out) as w:
            w.write(_moving_square(3))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # an existing file survives a failed overwrite untouched
    with VideoWriter(out, fps=5) as w:
        w.write(_moving_square(2))
    before = out.read_bytes()
    with pytest.raises(InputError, match="differs"):
        with VideoWriter(out) as w:
            w.write(_moving_square(2))
            w.write(_moving_square(1, h=32))  # size change mid-stream
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]


def test_writer_with_no_frames_and_missing_folder(tmp_path):
    with pytest.raises(InputError, match="no frames"):
        with VideoWriter(tmp_path / "none.mp4"):
            pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="does not exist"):
        with VideoWriter(tmp_path / "missing" / "x.mp4") as w:
            w.write(_moving_square(1))
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_frames(tmp_path):
    with pytest.raises(InputError, match="uint8"):
        with VideoWriter(tmp_path / "x.mp4") as w:
            w.write(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InputError, match="fps"):
        VideoWriter(tmp_path / "x.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []


def test_random_access_matches_sequential_decoding():
    clip = train_clip("dpe_d__d_00")  # keyframes every 50 frames
    frames = read_frames(clip)
    idx = [0, 49, 50, 51, 166, 7, 120, 50, 1]
    got = read_frames_at(clip, idx)
    assert got.shape == (len(idx), 256, 256, 3)
    for g, i in zip(got, idx):
        np.testing.assert_array_equal(g, frames[i])
    with pytest.raises(InputError, match="past the end"):
        read_frames_at(clip, [len(frames)])
    assert read_frames_at(clip, []).shape == (0, 256, 256, 3)
