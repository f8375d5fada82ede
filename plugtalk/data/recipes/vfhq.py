"""``--dataset vfhq``: VFHQ clips (Xie et al., CVPRW 2022) with their per-frame annotation files.

Each annotation ``<clip>.txt`` (VFHQ's meta-info format: ``Video: <id>`` / ``FPS`` / ``PID`` ... header
lines, then a ``FRAME INDEX X0 Y0 W H ...`` line and one row per frame: frame index, face box, landmarks)
sits next to its cut clip ``<clip>.mp4`` (any video suffix); frame indices count from the first annotated
row.  The annotated boxes replace the face detector.  Identity: ``<video id>_P<person id>`` (from the
header, else from VFHQ's clip name ``Clip+<id>+P<pid>+C<cid>+F<start>-<end>``).  Split: ``test`` for
clips below a folder whose name contains "test" (VFHQ-Test), else ``train``.

Raw, uncut videos (VFHQ distributes only the annotations; the videos are the YouTube downloads
``<video id>.mp4``): an annotation without its cut clip beside it takes the raw video ``<video id>.<suffix>``
found anywhere under the root (the id from the clip name).  The clip is frames
``start .. end`` of that video (the clip name's ``F<start>-<end>``, native frame indices); the annotation's
rows are its frames in order, so row ``k`` is native frame ``start + k``.  A download whose size differs from
the annotated ``W`` x ``H`` gets the boxes scaled to its own size.  Several clips of one raw video are
separate jobs (each decodes the video up to its end frame).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ...errors import InputError
from ...face.detect import FaceBox
from ...io.paths import VIDEO_SUFFIXES
from ...io.video import probe_video
from .base import Recipe, VideoJob, existing_root, name_part, register

_CLIP_NAME = re.compile(r"^Clip\+(?P<video>.+)\+P(?P<pid>\d+)\+C(?P<cid>\d+)\+F(?P<start>\d+)-(?P<end>\d+)$")
MAX_ANNOTATION_BYTES = 64 << 20


def read_annotation(path: str | Path) -> tuple[dict[str, str], dict[int, FaceBox]]:
    """``(header, boxes)`` of a VFHQ annotation file; boxes by frame index counted from the first row, in
    source pixels (``X0 Y0 W H`` columns; ``X0 Y0 X1 Y1`` when the column line says so).

    Raises:
        InputError: unreadable, too large, no column line, a malformed row, or no row at all.
    """
    p = Path(path)
    if p.stat().st_size > MAX_ANNOTATION_BYTES:
        raise InputError(f"VFHQ annotation {p.name!r} is larger than {MAX_ANNOTATION_BYTES >> 20} MiB")
    header: dict[str, str] = {}
    rows: list[tuple[int, FaceBox]] = []
    corners = None
    for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if corners is None:
            if line.upper().startswith("FRAME INDEX"):
                cols = line.upper().split()
                corners = "X1" in cols and "Y1" in cols
            elif ":" in line:
                k, v = line.split(":", 1)
                header[k.strip().lower()] = v.strip()
            continue
        parts = line.split()
        try:
            idx, a, b, c, d = int(parts[0]), *map(float, parts[1:5])
        except (ValueError, IndexError):
            raise InputError(f"VFHQ annotation {p.name!r} line {n}: expected 'frame x0 y0 w h ...', "
                             f"got {line[:60]!r}") from None
        box = FaceBox(a, b, c, d, 1.0) if corners else FaceBox(a, b, a + c, b + d, 1.0)
        if not (box.width > 0 and box.height > 0):
            raise InputError(f"VFHQ annotation {p.name!r} line {n}: empty face box")
        rows.append((idx, box))
    if corners is None or not rows:
        raise InputError(f"VFHQ annotation {p.name!r} has no 'FRAME INDEX' column line or no rows")
    first = min(i for i, _ in rows)
    return header, {i - first: b for i, b in rows}


def _identity(header: dict[str, str], stem: str) -> str:
    m = _CLIP_NAME.match(stem)
    video = header.get("video") or header.get("video id") or (m.group("video") if m else None)
    pid = header.get("pid") or (m.group("pid") if m else None)
    if video is None:
        return stem
    return f"{video}_P{pid}" if pid is not None else video


def _video_for(ann: Path) -> Path | None:
    for suf in VIDEO_SUFFIXES:
        for cand in (ann.with_suffix(suf), ann.with_suffix(suf.upper())):
            if cand.is_file():
                return cand
    return None


def _raw_videos(root: Path) -> dict[str, Path]:
    """Video files under ``root`` by stem (the raw downloads ``<video id>.<suffix>``)."""
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file():
            found.setdefault(p.stem, p)
    return found


@functools.lru_cache(maxsize=256)
def _video_size(video: Path) -> tuple[int, int]:
    """``(width, height)`` of a raw video (probed once for all its clips)."""
    info = probe_video(video)
    return info.width, info.height


def _raw_clip_boxes(ann: Path, header: dict[str, str], boxes: dict[int, FaceBox], video: Path) -> dict[int, FaceBox]:
    """The annotation's boxes at native frames ``start + k`` of the raw ``video``, scaled to its size.

    Raises:
        InputError: more rows than the clip name's frame range, bad W / H header values, an unreadable video.
    """
    m = _CLIP_NAME.match(ann.stem)
    start, end = int(m.group("start")), int(m.group("end"))
    if max(boxes) > end - start:
        raise InputError(f"VFHQ annotation {ann.name!r}: {max(boxes) + 1} rows, but its frame range "
                         f"F{start}-{end} holds {end - start + 1} frames")
    width, height = _video_size(video)
    try:
        sx = width / float(header["w"]) if "w" in header else 1.0
        sy = height / float(header["h"]) if "h" in header else 1.0
    except (ValueError, ZeroDivisionError):
        raise InputError(f"VFHQ annotation {ann.name!r}: W / H header values are not positive numbers") from None
    return {start + k: FaceBox(b.left * sx, b.top * sy, b.right * sx, b.bottom * sy, b.score)
            for k, b in boxes.items()}


def vfhq_jobs(root, *, out=None, seed: int = 0, split_file=None, identity=None) -> list[VideoJob]:
    """One job per annotation file under ``root`` that has its cut clip beside it, or its raw video
    ``<video id>.<suffix>`` somewhere under ``root`` (others are listed in the error when none has either).

    Raises:
        InputError: no annotated clip; a malformed annotation or one that does not fit its raw video; a name that is
            not one file-name component.
    """
    root = existing_root(root, "vfhq")
    jobs, lonely = [], []
    raw: dict[str, Path] | None = None
    for ann in sorted(root.rglob("*.txt")):
        video = _video_for(ann)
        cut = video is not None
        if not cut:  # the raw download of the clip name's video, if there is one
            m = _CLIP_NAME.match(ann.stem)
            raw = _raw_videos(root) if raw is None and m else raw
            video = raw.get(m.group("video")) if m else None
            if video is None:
                lonely.append(ann.name)
                continue
        header, boxes = read_annotation(ann)
        if not cut:
            boxes = _raw_clip_boxes(ann, header, boxes, video)
        ident = name_part(_identity(header, ann.stem), "VFHQ identity")
        rel = ann.relative_to(root).parts[:-1]
        split = "test" if any("test" in part.lower() for part in rel) else "train"
        jobs.append(VideoJob(video, ident, name_part(ann.stem, "VFHQ clip"), split=split,
                             labels={"fps_annotated": header.get("fps")} if header.get("fps") else {},
                             boxes=boxes, dataset="vfhq"))
    if not jobs:
        alone = f" (annotations without a video: {', '.join(lonely[:5])})" if lonely else ""
        raise InputError(f"--dataset vfhq: no annotation file with its clip beside it or its raw video under "
                         f"{str(root)!r}{alone}")
    return jobs


register(Recipe("vfhq", "VFHQ: <clip>.txt annotations beside <clip>.mp4 or with the raw <video id>.mp4 under the "
                        "root; their face boxes replace detection",
                vfhq_jobs))
