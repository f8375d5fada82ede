"""Speed of plugtalk's media IO and training data path on the shared real clips.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_data_io.py [--workers 2]

Prints one line per measurement: video decode (frames/s), random frame-pair access (ms), dataset
sampling in cache and seek mode (samples/s, single process and through a DataLoader), EDTalk mel
features (ms per 10 s of audio), and ``prepare`` throughput (seconds of video per second).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _timeit(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()

    import torch
    from torch.utils.data import DataLoader

    from plugtalk.data.datasets import SelfReenactmentDataset
    from plugtalk.data.prepare import PrepareSettings, prepare_videos
    from plugtalk.io.audio import audio_mel_windows, load_audio
    from plugtalk.io.video import VideoReader, VideoWriter, probe_video, read_frames_at
    from plugtalk.shared_data import shared_path

    torch.set_num_threads(1)
    train = shared_path("data", "faces", "train")
    clip = train / "obama__uncrop_Obama_00.mp4"

    n = sum(1 for _ in VideoReader(clip))
    t = _timeit(lambda: sum(len(b) for b in VideoReader(clip).batches(32)))
    print(f"decode 256px H.264 (VideoReader.batches): {n / t:.0f} frames/s")

    info = probe_video(clip)
    rng = np.random.default_rng(0)
    pairs = [rng.choice(info.frame_count, 2, replace=False) for _ in range(30)]
    t = _timeit(lambda: [read_frames_at(clip, p, info=info) for p in pairs], repeat=1)
    print(f"random frame pair by seeking (read_frames_at): {t / len(pairs) * 1000:.1f} ms")

    for mode in ("cache", "seek"):
        ds = SelfReenactmentDataset(train, repeats=100, seed=0, frame_access=mode)
        t0 = time.perf_counter()
        ds.preload()
        warm = time.perf_counter() - t0
        k = min(args.samples, len(ds))
        t = _timeit(lambda: [ds[i] for i in range(k)], repeat=1)
        extra = f" (preload {warm:.1f} s, {sum(c.nbytes for c in ds.clips) / 2**20:.0f} MiB)" if mode == "cache" else ""
        print(f"SelfReenactmentDataset[{mode}] single process: {k / t:.0f} samples/s{extra}")
        if args.workers:
            dl = DataLoader(ds, batch_size=16, num_workers=args.workers, shuffle=True)
            it = iter(dl)
            next(it)  # start-up
            t0 = time.perf_counter()
            m = 0
            for b in it:
                m += len(b["source"])
                if m >= k:
                    break
            print(f"SelfReenactmentDataset[{mode}] DataLoader({args.workers} workers, batch 16): "
                  f"{m / (time.perf_counter() - t0):.0f} samples/s")

    wav = load_audio(shared_path("data", "audio", "edtalk_mouth_source.wav"))
    t = _timeit(lambda: audio_mel_windows(wav))
    print(f"EDTalk mel windows for {len(wav) / 16000:.1f} s of audio: {t * 1000:.0f} ms")

    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "raw.mp4"
        bg = np.random.default_rng(0).integers(80, 150, (720, 1280, 3)).astype(np.uint8)
        frames = 0
        with VideoWriter(raw, fps=30) as w:
            for i, f in enumerate(VideoReader(clip, fps=30, max_frames=150)):
                x = bg.copy()
                x[200:456, 500 + i // 4:756 + i // 4] = f
                w.write(x)
                frames += 1
        t0 = time.perf_counter()
        prepare_videos([raw], Path(d) / "out", PrepareSettings(), progress=False)
        dt = time.perf_counter() - t0
        print(f"prepare 1280x720 30 fps -> 256 px 25 fps: {frames / 30 / dt:.2f} s of video per s "
              f"({frames / 30:.0f} s clip in {dt:.1f} s)")


if __name__ == "__main__":
    main()
