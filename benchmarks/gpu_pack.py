"""``gpu_report.py --pack DIR``: the git-ignored folder that travels to the GPU machine (``carry``).

Holds what the GPU machine cannot get otherwise, within 60 MiB together with the repository:

* ``fixtures/``: the four parity fixtures (manifest + recorded tensors; the weights are rebuilt from
  the rule there), ~45 MB;
* ``data/MANIFEST.json`` and ``data/faces/{train,test}/<clip>/<frame index>.jpg`` (+ ``clip.json``: the
  clip's frame count): JPEG (quality 90) frames decoded here with PyAV, so the GPU machine needs no video
  decoder: ``TRAIN_FRAMES`` frames evenly spaced over one clip per training identity, and for every test
  clip exactly the frames the reference protocol scores (frame 0, the cross-reenactment frames over the
  first 100, the self-reenactment frames after frame 0);
* ``wheels/``: pydantic and its dependencies, the one training requirement missing there (pip download,
  CPython 3.12 manylinux x86-64 wheels of the versions installed here).

``--tiny`` (tests): 4 training and 3 test clips, few frames, no fixtures and no wheels.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 60 * 2**20
TRAIN_FRAMES = 12
JPEG_QUALITY = 90
WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def _jpeg(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def write_clip(src: Path, dest: Path, indices, frames: np.ndarray, count: int, shared: Path) -> int:
    """``frames[i]`` (original index ``indices[i]``) as JPEGs in ``dest``; returns the bytes written."""
    dest.mkdir(parents=True)
    total = 0
    for i, f in zip(indices, frames):
        data = _jpeg(f)
        (dest / f"{i:06d}.jpg").write_bytes(data)
        total += len(data)
    (dest / "clip.json").write_text(json.dumps({"frames": count, "from": str(src.relative_to(shared))}))
    return total


def pack_train(shared: Path, dest: Path, tiny: bool) -> int:
    from plugtalk.data.datasets import identity_of
    from plugtalk.io.video import read_frames

    by_identity: dict[str, Path] = {}
    for clip in sorted((shared / "data" / "faces" / "train").glob("*.mp4")):
        by_identity.setdefault(identity_of(clip), clip)
    chosen = list(by_identity.values())
    chosen, per_clip = (chosen[:: max(1, len(chosen) // 4)][:4], 8) if tiny else (chosen, TRAIN_FRAMES)
    total = 0
    for clip in chosen:
        frames = read_frames(clip, max_frames=per_clip if tiny else None)
        idx = sorted({int(i) for i in np.linspace(0, len(frames) - 1, min(per_clip, len(frames))).round()})
        total += write_clip(clip, dest / "data" / "faces" / "train" / clip.stem, idx, frames[idx], len(frames),
                            shared)
    return total


def pack_test(shared: Path, dest: Path, tiny: bool) -> int:
    import gpu_report_train as T
    import reference_protocol as P
    from plugtalk.io.video import probe_video, read_frames

    frames_scored = T.REFERENCE_FRAMES[tiny]
    test = sorted((shared / "data" / "faces" / "test").glob("*.mp4"))
    total = 0
    for clip in test[:3] if tiny else test:
        n = probe_video(clip).frame_count
        idx = sorted({0, *P.frame_indices(min(n, P.DRIVER_FRAMES), frames_scored),
                      *P.frame_indices(n, frames_scored, start=1)})
        frames = read_frames(clip, max_frames=max(idx) + 1)
        total += write_clip(clip, dest / "data" / "faces" / "test" / clip.stem, idx, frames[idx], n, shared)
    return total


def pack_wheels(dest: Path) -> list[str]:
    """Download the wheels of :data:`WHEELS` (versions installed here) for the GPU machine's Python."""
    specs = [f"{n}=={importlib.metadata.version(n)}" for n in WHEELS]
    folder = dest / "wheels"
    folder.mkdir()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", *(a for p in PLATFORMS for a in ("--platform", p)), "-d", str(folder), *specs]
    subprocess.run(cmd, check=True, timeout=600)
    return sorted(p.name for p in folder.iterdir())


def repo_bytes() -> int:
    """Bytes of what travels with the repository: tracked files and untracked files git does not ignore."""
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True, timeout=60).stdout
    files = (ROOT / f for f in out.decode().split("\0") if f)
    return sum(p.stat().st_size for p in files if p.is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(dest: Path, tiny: bool = False, shared: Path | None = None) -> int:
    """Build the pack in ``dest`` (replaced if it is an earlier pack).  Returns the exit code (2: over the limit
    or a folder that is not a pack)."""
    from plugtalk.shared_data import find_shared

    shared = Path(shared) if shared else find_shared()
    if shared is None or not (shared / "data").is_dir():
        print("error: the shared folder was not found: pass --shared PATH or set PLUGTALK_SHARED", file=sys.stderr)
        return 2
    dest = Path(dest)
    if dest.exists():
        if not (dest / "pack.json").is_file():
            print(f"error: {dest} exists and is not a gpu_report pack: choose another folder", file=sys.stderr)
            return 2
        shutil.rmtree(dest)
    (dest / "data").mkdir(parents=True)
    shutil.copy(shared / "data" / "MANIFEST.json", dest / "data" / "MANIFEST.json")
    if not tiny:
        (dest / "fixtures").mkdir()
        for f in sorted((shared / "fixtures").glob("*_official_256.*")):
            shutil.copy(f, dest / "fixtures" / f.name)
    content = {"train_jpeg_bytes": pack_train(shared, dest, tiny), "test_jpeg_bytes": pack_test(shared, dest, tiny),
               "wheels": [] if tiny else pack_wheels(dest), "tiny": tiny, "shared": str(shared)}
    inside = ROOT in dest.resolve().parents
    content.update(pack_bytes=folder_bytes(dest), repo_bytes=repo_bytes() if inside else None)
    total = content["pack_bytes"] + (content["repo_bytes"] or 0)
    content["travels_bytes"] = total
    (dest / "pack.json").write_text(json.dumps(content, indent=1))
    print(f"pack {dest}: {content['pack_bytes'] / 2**20:.1f} MiB"
          + (f" + repository {content['repo_bytes'] / 2**20:.1f} MiB = {total / 2**20:.1f} MiB" if inside else ""))
    if inside and total > LIMIT_BYTES:
        print(f"error: {total / 2**20:.1f} MiB would travel, over the {LIMIT_BYTES / 2**20:.0f} MiB allowed: lower "
              f"gpu_pack.TRAIN_FRAMES ({TRAIN_FRAMES})", file=sys.stderr)
        return 2
    return 0
