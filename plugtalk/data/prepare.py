"""Raw talking-head videos -> face-cropped training clips (``plugtalk prepare``).

For each source video (resampled to ``fps`` by nearest frame):

1. detect faces with dlib's HOG detector on every ``detect_every``-th frame (and the last one), on a
   copy scaled down to ``detect_side`` px on its shorter side; where several faces are found the one
   nearest the previous detection is followed;
2. split the detections into face tracks: misses up to ``max_gap`` seconds are interpolated, longer
   losses or jumps of the face centre (shot changes) cut the track; tracks shorter than
   ``min_seconds`` are dropped and longer than ``max_seconds`` are split into equal parts;
3. give each part ONE square crop box (:func:`plugtalk.face.crop.clip_crop_box`: FOMM/LIA style) and
   write its frames cropped and resized to ``size`` px as H.264 mp4, named
   ``<identity>__<clip>.mp4`` (the dataset's identity convention); when the source has (non-silent)
   audio it is muxed as AAC and also written beside the clip as a 16 kHz mono 16-bit wav covering
   exactly the clip's frames.

Every file is written atomically.  ``prepared.json`` in the output folder records each clip's source,
frame range, crop box and detection counts; ``manifest.jsonl`` (:mod:`plugtalk.data.manifest`) lists every
clip with its identity, split, labels, frames, fps, audio and crop box, and ``failures.json`` the videos
that gave no clip.  Videos that cannot be read or show no face are skipped with a
:class:`SkippedVideoWarning`.  :func:`prepare_jobs` runs the :class:`~plugtalk.data.recipes.VideoJob` of a
dataset recipe (MEAD, HDTF, VFHQ, a folder) over worker processes and skips videos whose clips are already
written and verified (resume).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError, NoFaceError
from ..face.crop import CropBox, FaceTrack, clip_crop_box, crop_and_resize, split_face_track
from ..face.detect import FaceBox, follow_face
from ..io.jsonfile import write_json
from ..io.paths import TEMP_NAME_EXTRA, check_inside, check_path_component, same_file
from ..io.audio import load_audio, save_wav
from ..io.video import VIDEO_SUFFIXES, VideoReader, VideoWriter, probe_video
from .manifest import FAILURES_NAME, ClipRecord, read_manifest, write_failures, write_manifest
from .recipes import VideoJob

__all__ = ["PrepareSettings", "PreparedClip", "PrepareResult", "SkippedVideoWarning", "prepare_video",
           "prepare_videos", "prepare_jobs", "find_videos", "MANIFEST_NAME", "AUDIO_RATE", "MAX_JOBS"]

MANIFEST_NAME = "prepared.json"
#: Sample rate of the wav files written beside the clips (EDTalk's audio front end).
AUDIO_RATE = 16000
_SILENCE = 1e-4  # peak amplitude below which an audio track counts as silent and is dropped
#: Upper bound of ``--jobs`` (worker processes).
MAX_JOBS = 64


class SkippedVideoWarning(UserWarning):
    """A source video gave no clip (unreadable, no face, or face tracks too short)."""


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
    """Options of :func:`prepare_video` (see the module docstring for what each one does)."""

    size: int = 256
    fps: float = 25.0
    max_seconds: float = 10.0
    min_seconds: float = 1.0
    detect_every: int = 5
    detect_side: int = 360
    max_gap: float = 0.5
    max_jump: float = 0.5
    scale: float = 2.0
    shift_up: float = 0.18
    min_scale: float = 1.3
    max_scale: float = 2.4
    crf: int = 18

    def check(self) -> None:
        from ..io.video import MAX_FPS

        if not 16 <= self.size <= MAX_CLIP_SIZE:  # 100000 px was OOM-killed, leaving a partial file
            raise InputError(f"size must be from 16 to {MAX_CLIP_SIZE} px, got {self.size}")
        if not (self.fps > 0 and math.isfinite(self.fps) and self.fps <= MAX_FPS):
            raise InputError(f"fps must be a positive number up to {MAX_FPS}, got {self.fps}")
        if not (0 < self.min_seconds <= self.max_seconds):
            raise InputError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}")
        if self.detect_every < 1:
            raise InputError(f"detect_every must be >= 1, got {self.detect_every}")


#: The largest clip side ``prepare`` writes (px): 8x the official models' 256.
MAX_CLIP_SIZE = 2048


@dataclasses.dataclass
class PreparedClip:
    """One written clip.  Frame indices are at the output ``fps``, counted from the source's first frame."""

    path: Path
    wav: Path | None
    source: Path
    identity: str
    box: CropBox
    start: int
    end: int
    detected: int
    split: str | None = None
    labels: Mapping[str, object] = dataclasses.field(default_factory=dict)
    dataset: str = "folder"
    annotated: bool = False

    @property
    def frames(self) -> int:
        return self.end - self.start

    def record(self, fps: float) -> ClipRecord:
        """The clip's line in ``manifest.jsonl``."""
        return ClipRecord(self.path.name, self.identity, self.split, dict(self.labels), self.frames, float(fps),
                          self.wav.name if self.wav else None, tuple(self.box.as_xyxy()), str(self.source),
                          (self.start, self.end), self.dataset, "annotated" if self.annotated else "detected")

    def to_json(self) -> dict:
        return {"source": str(self.source), "identity": self.identity, "wav": self.wav.name if self.wav else None,
                "frames": self.frames, "source_frames": [self.start, self.end],
                "crop_box_xyxy": list(self.box.as_xyxy()), "frames_with_detection": self.detected}


@dataclasses.dataclass
class PrepareResult:
    """``clips`` written by this run, ``skipped`` ``(video, reason)``, ``resumed``: the manifest lines of
    videos an earlier run had already prepared (verified, not written again)."""

    clips: list[PreparedClip]
    skipped: list[tuple[Path, str]]
    resumed: list[ClipRecord] = dataclasses.field(default_factory=list)


def find_videos(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand the arguments: files are kept, folders give their video files (non-recursive, sorted).

    Raises:
        InputError: a path does not exist.
    """
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise InputError(f"source {str(p)!r} does not exist")
    return out


def _names(source: Path, identity: str | None, clip: str | None = None) -> tuple[str, str]:
    """``(identity, clip stem)`` for a source file (``id__clip.mp4`` sources keep their identity)."""
    stem = source.stem
    if "__" in stem:
        ident, own = stem.split("__", 1)
    else:
        ident, own = stem, stem
    return (identity or ident), (clip or own)


def _check_identity(identity: str | None) -> None:
    if identity is not None:
        check_path_component(identity, "--id", reserve=len("__") + len(".mp4") + TEMP_NAME_EXTRA)


def _clip_path(out: Path, name: str, protect: Sequence[Path]) -> Path:
    """``out/<name>.mp4``, checked: one path component, inside ``out``, and none of the inputs (nor their wav)."""
    check_path_component(name, "clip name", reserve=len(".mp4") + TEMP_NAME_EXTRA)
    path = check_inside(out / f"{name}.mp4", out, "--out")
    for p in protect:
        if same_file(path, p) or same_file(path.with_suffix(".wav"), p):
            raise InputError(f"the clip {str(path)!r} would replace the input {str(p)!r}; refused")
    return path


def _parts(tracks: Sequence[FaceTrack], min_frames: int, max_frames: int) -> list[FaceTrack]:
    parts = []
    for t in tracks:
        if len(t) < min_frames:
            continue
        n = math.ceil(len(t) / max_frames)
        edges = [round(k * len(t) / n) for k in range(n + 1)]
        for a, b in zip(edges[:-1], edges[1:]):
            parts.append(FaceTrack(t.start + a, t.boxes[a:b], detected=0))
    return parts


def _audio_for(source: Path, reader: VideoReader, audio_source: Path | None = None) -> np.ndarray | None:
    if not reader.has_audio:
        if audio_source is None:
            return None
        try:  # a separate sound file (MEAD's .m4a) starts with the video
            audio = load_audio(audio_source, sample_rate=AUDIO_RATE)
        except InputError as e:
            warnings.warn(f"{source.name}: audio {audio_source.name} ignored ({e})", SkippedVideoWarning, stacklevel=3)
            return None
        return None if np.abs(audio).max(initial=0.0) < _SILENCE else audio
    try:
        audio = load_audio(source, sample_rate=AUDIO_RATE)
    except InputError as e:
        warnings.warn(f"{source.name}: audio ignored ({e})", SkippedVideoWarning, stacklevel=3)
        return None
    if np.abs(audio).max(initial=0.0) < _SILENCE:
        return None
    # put sample 0 at the first video frame's time
    offset = (reader.info.audio_start or 0.0) - reader.info.start_time
    shift = int(round(offset * AUDIO_RATE))
    return np.pad(audio, (shift, 0)) if shift > 0 else audio[-shift:]


def _audio_slice(audio: np.ndarray, start: int, end: int, fps: float) -> np.ndarray:
    a, b = int(round(start / fps * AUDIO_RATE)), int(round(end / fps * AUDIO_RATE))
    seg = audio[a:b]
    return np.pad(seg, (0, (b - a) - len(seg)))


def _frame_boxes(reader: VideoReader, settings: PrepareSettings, face_boxes: Mapping[int, FaceBox] | None,
                 tick: Callable[[str, int, int | None], None]) -> list[FaceBox | None]:
    """One face box (or ``None``) per output frame: the annotated boxes when given (output frame ``i`` shows
    native frame ``round(i * native_fps / fps)``), else a detection every ``detect_every`` frames, following
    the previous face, and on the last frame."""
    total = reader.frame_count
    if face_boxes is not None:
        ratio = reader.native_fps / settings.fps
        n = total if total is not None else sum(1 for _ in reader)
        tick("boxes", n, n)
        return [face_boxes.get(int(math.floor(i * ratio + 0.5 - 1e-9))) for i in range(n)]
    boxes: list[FaceBox | None] = []
    prev: FaceBox | None = None
    last_frame = None
    for i, frame in enumerate(reader):
        if i % settings.detect_every == 0:
            b = follow_face(frame, detect_side=settings.detect_side, near=prev)
            prev = b or prev
            boxes.append(b)
        else:
            boxes.append(None)
        last_frame = frame
        tick("detect", i + 1, total)
    if boxes and (len(boxes) - 1) % settings.detect_every != 0:
        boxes[-1] = follow_face(last_frame, detect_side=settings.detect_side, near=prev)
    return boxes


def prepare_video(source: str | os.PathLike, out_dir: str | os.PathLike, settings: PrepareSettings = PrepareSettings(),
                  *, identity: str | None = None,
                  on_frames: Callable[[str, int, int | None], None] | None = None,
                  protect: Sequence[str | os.PathLike] = (), clip: str | None = None,
                  face_boxes: Mapping[int, FaceBox] | None = None,
                  audio_source: str | os.PathLike | None = None) -> list[PreparedClip]:
    """Crop one raw video into face clips (see the module docstring).

    Args:
        source: a video file.
        out_dir: existing output folder.
        identity: identity prefix of the clip names (default: the source's ``id__`` prefix or its stem); one
            file-name component (no separator, ``..`` or control character).
        on_frames: progress callback ``(stage, frames_done, frames_total_or_None)``.
        protect: further input files no clip may replace (``source`` is always protected).
        clip: the clip stem of the names (default: the source's own, after its ``id__`` prefix).
        face_boxes: annotated face boxes ``{native frame index: FaceBox}`` in source pixels (VFHQ): used
            instead of running the detector (frames without a box count as misses).
        audio_source: a sound file used when the video has no audio track (MEAD's ``.m4a``); it starts with
            the video's first frame.

    Returns:
        The written clips (possibly several per source).

    Raises:
        InputError: unreadable / corrupt / empty video; an ``identity`` that is not one path component, or a
            clip path that would leave ``out_dir``, exceed the file-name limit or replace an input (checked
            before anything is read).
        NoFaceError: no face detected, or no face track at least ``min_seconds`` long.
    """
    settings.check()
    _check_identity(identity)
    src = Path(source)
    out = Path(out_dir)
    guard = [src, *map(Path, protect), *([Path(audio_source)] if audio_source is not None else [])]
    ident, clip = _names(src, identity, clip)
    for name in (f"{ident}__{clip}", f"{ident}__{clip}_00"):  # refuse a bad name before any decoding
        _clip_path(out, name, guard)
    reader = VideoReader(src, fps=settings.fps)
    total = reader.frame_count
    tick = on_frames or (lambda stage, done, tot: None)

    # pass 1: sampled detections (or the annotation's boxes)
    boxes = _frame_boxes(reader, settings, face_boxes, tick)
    n = len(boxes)
    detected = sum(b is not None for b in boxes)
    if detected == 0:
        how = "no annotated box matches a frame" if face_boxes is not None else \
            f"every {settings.detect_every}th checked"
        raise NoFaceError(f"no face detected in {src.name!r} ({n} frames, {how})")
    tracks = split_face_track(boxes, max_gap=int(round(settings.max_gap * settings.fps)), max_jump=settings.max_jump)
    parts = _parts(tracks, min_frames=max(1, int(round(settings.min_seconds * settings.fps))),
                   max_frames=max(1, int(round(settings.max_seconds * settings.fps))))
    if not parts:
        longest = max((len(t) for t in tracks), default=0) / settings.fps
        raise NoFaceError(f"no face track in {src.name!r} lasts {settings.min_seconds:g} s "
                          f"(longest {longest:.2f} s; {detected} detections)")
    for p in parts:
        p.detected = sum(boxes[i] is not None for i in range(p.start, p.end))
    crop_boxes = [clip_crop_box(p.boxes, reader.size, scale=settings.scale, shift_up=settings.shift_up,
                                min_scale=settings.min_scale, max_scale=settings.max_scale, name=src.name)
                  for p in parts]

    # pass 2: crop and write, one writer open at a time
    audio = _audio_for(src, reader, None if audio_source is None else Path(audio_source))
    written: list[PreparedClip] = []
    k = 0
    writer: VideoWriter | None = None
    try:
        for i, frame in enumerate(reader):
            tick("write", i + 1, total)
            if k >= len(parts):
                break
            part = parts[k]
            if i < part.start:
                continue
            if writer is None:
                name = f"{ident}__{clip}" + (f"_{k:02d}" if len(parts) > 1 else "")
                seg = None if audio is None else _audio_slice(audio, part.start, part.end, settings.fps)
                writer = VideoWriter(_clip_path(out, name, guard), fps=settings.fps, crf=settings.crf, audio=seg,
                                     sample_rate=AUDIO_RATE if seg is not None else None).open()
            writer.write(crop_and_resize(frame, crop_boxes[k], settings.size))
            if i + 1 == part.end:
                path = writer.close()
                writer = None
                wav = None
                if audio is not None:
                    wav = save_wav(path.with_suffix(".wav"), _audio_slice(audio, part.start, part.end, settings.fps),
                                   AUDIO_RATE)
                written.append(PreparedClip(path, wav, src, ident, crop_boxes[k], part.start, part.end, part.detected,
                                            annotated=face_boxes is not None))
                k += 1
    finally:
        if writer is not None:
            writer.abort()
    return written


def _update_manifest(out: Path, clips: list[PreparedClip], settings: PrepareSettings) -> None:
    path = out / MANIFEST_NAME
    data: dict = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
    data["settings"] = dataclasses.asdict(settings)
    entries = data.get("clips") if isinstance(data.get("clips"), dict) else {}
    for c in clips:
        entries[c.path.name] = c.to_json()
    data["clips"] = dict(sorted(entries.items()))
    write_json(path, data, indent=1)


def prepare_videos(sources: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                   settings: PrepareSettings = PrepareSettings(), *, identity: str | None = None,
                   progress: bool = True, jobs: int = 1) -> PrepareResult:
    """Prepare many videos (files or folders of videos) into ``out_dir`` (created if missing): the ``folder``
    recipe through :func:`prepare_jobs`.

    Videos that fail (unreadable, no face, tracks too short) are skipped with a
    :class:`SkippedVideoWarning` and listed in ``PrepareResult.skipped``.

    Raises:
        InputError: a source path does not exist, no video was given, or none gave a clip.
    """
    settings.check()
    _check_identity(identity)
    videos = find_videos(sources)
    if not videos:
        raise InputError("no video files given (folders are scanned for " + ", ".join(VIDEO_SUFFIXES) + ")")
    return prepare_jobs([VideoJob(v, identity) for v in videos], out_dir, settings, progress=progress, jobs=jobs,
                        protect=videos)


def check_jobs(jobs: int | None) -> int:
    """``--jobs``: ``None`` -> the CPU count; bounded to ``1..MAX_JOBS``.

    Raises:
        InputError: below 1 or above :data:`MAX_JOBS`.
    """
    if jobs is None:
        return max(1, min(os.cpu_count() or 1, MAX_JOBS))
    if not 1 <= int(jobs) <= MAX_JOBS:
        raise InputError(f"--jobs must be between 1 and {MAX_JOBS}, got {jobs}")
    return int(jobs)


def _verified(rec: ClipRecord, out: Path) -> bool:
    """The clip file exists and has its recorded frame count (and its wav, if one was written)."""
    path = out / rec.clip
    if not path.is_file() or (rec.audio is not None and not (out / rec.audio).is_file()):
        return False
    try:
        return probe_video(path).frame_count == rec.frames
    except InputError:
        return False


def _job_records(job: VideoJob, by_source: Mapping[str, list[ClipRecord]]) -> list[ClipRecord]:
    """The manifest's clips of ``job``: those of its source named ``<identity>__<clip>[_NN]`` (a raw VFHQ video is the
    source of several jobs, one per annotated clip)."""
    ident, clip = _names(job.source, job.identity, job.clip)
    base = f"{ident}__{clip}"
    return [r for r in by_source.get(str(job.source), [])
            if Path(r.clip).stem == base or re.fullmatch(re.escape(base) + r"_\d\d", Path(r.clip).stem)]


def _run_job(job: VideoJob, out: Path, settings: PrepareSettings, protect: Sequence[Path],
             on_frames=None) -> tuple[list[PreparedClip], str | None, list[str]]:
    """One video in a worker: ``(clips, error or None, warning texts)`` (never raises for a bad video)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedVideoWarning)
        try:
            made = prepare_video(job.source, out, settings, identity=job.identity, on_frames=on_frames,
                                 protect=protect, clip=job.clip, face_boxes=job.boxes, audio_source=job.audio)
            error = None
        except InputError as e:  # includes NoFaceError
            made, error = [], str(e)
    notes = [str(w.message) for w in caught if issubclass(w.category, SkippedVideoWarning)]
    for c in made:
        c.split, c.labels, c.dataset = job.split, dict(job.labels), job.dataset
    return made, error, notes


def _pool_job(args):
    return _run_job(*args)


def prepare_jobs(video_jobs: Sequence[VideoJob], out_dir: str | os.PathLike,
                 settings: PrepareSettings = PrepareSettings(), *, progress: bool = True, jobs: int | None = 1,
                 protect: Sequence[str | os.PathLike] = ()) -> PrepareResult:
    """Prepare the videos of a dataset recipe into ``out_dir``, ``jobs`` videos at a time (worker processes).

    Resumable: a video whose clips ``manifest.jsonl`` lists and which verify (file there, recorded frame count,
    wav) is skipped and keeps its lines.  A video that fails (corrupt, no face) goes into ``failures.json``
    and ``PrepareResult.skipped`` with a :class:`SkippedVideoWarning`; the run goes on.

    Args:
        video_jobs: from a recipe (:mod:`plugtalk.data.recipes`).
        jobs: worker processes (``None``: the CPU count; at most :data:`MAX_JOBS`).
        protect: input files no clip may replace, besides each job's own video and audio.

    Returns:
        :class:`PrepareResult` of the clips written now and before (resumed) and the skipped videos.

    Raises:
        InputError: bad settings / jobs, an output that is a file, or no video gave a clip.
    """
    settings.check()
    workers = check_jobs(jobs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} is a file, expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    guard = [Path(p) for p in protect]
    records = read_manifest(out)
    by_source: dict[str, list[ClipRecord]] = {}
    for r in records.values():
        by_source.setdefault(r.source, []).append(r)
    todo, resumed = [], []
    for job in video_jobs:
        old = _job_records(job, by_source)
        if old and all(_verified(r, out) for r in old):
            resumed.extend(old)
        else:
            for r in old:  # a clip that does not verify is written again
                records.pop(r.clip, None)
            todo.append(job)
    clips: list[PreparedClip] = []
    skipped: list[tuple[Path, str]] = []

    def done(job: VideoJob, made: list[PreparedClip], error: str | None, notes: list[str]) -> None:
        for note in notes:
            warnings.warn(note, SkippedVideoWarning, stacklevel=3)
        if error is not None:
            skipped.append((job.source, error))
            which = job.source.name + (f" ({job.clip})" if job.clip else "")  # MEAD's 001.mp4 are many
            warnings.warn(f"skipped {which}: {error}", SkippedVideoWarning, stacklevel=3)
            if records:  # (a run that gives no clip at all leaves no file: its error lists the reasons)
                write_failures(out, [(str(p), e) for p, e in skipped])
            return
        clips.extend(made)
        for c in made:
            records[c.path.name] = c.record(settings.fps)
        if made:
            _update_manifest(out, made, settings)
            write_manifest(out, records.values())

    with _progress(progress) as prog:
        overall = prog.add_task(f"{len(todo)} videos ({len(resumed)} clips already done)", total=len(todo)) \
            if prog else None
        if workers <= 1 or len(todo) <= 1:
            for job in todo:
                task = prog.add_task(job.source.name, total=None) if prog else None

                def tick(stage: str, n: int, total: int | None, _task=task, _name=job.source.name) -> None:
                    if prog is not None:
                        prog.update(_task, description=f"{stage:6s} {_name}", completed=n, total=total)

                done(job, *_run_job(job, out, settings, guard, tick))
                if prog is not None:
                    prog.remove_task(task)
                    prog.advance(overall)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
                results = pool.map(_pool_job, [(job, out, settings, guard) for job in todo], chunksize=1)
                for job, res in zip(todo, results):
                    done(job, *res)
                    if prog is not None:
                        prog.advance(overall)
    if records:
        write_manifest(out, records.values())
        if skipped or (out / FAILURES_NAME).is_file():
            write_failures(out, [(str(p), e) for p, e in skipped])
    if not clips and not resumed:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in skipped)
        raise InputError(f"no usable video among {len(video_jobs)}: {reasons}")
    return PrepareResult(clips, skipped, resumed)


class _progress:
    """A rich progress display (or ``None`` when ``enabled`` is false) as a context manager."""

    def __init__(self, enabled: bool):
        self.prog = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), transient=False)

    def __enter__(self):
        if self.prog is not None:
            self.prog.start()
        return self.prog

    def __exit__(self, *exc) -> None:
        if self.prog is not None:
            self.prog.stop()
