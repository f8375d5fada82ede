"""``plugtalk prepare``: raw talking-head videos -> 256 px face-cropped training clips."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import say, tell, user_errors


@app.command()
def prepare(
    sources: List[Path] = typer.Argument(..., help="video files, or folders of videos"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (created if missing)"),
    size: int = typer.Option(256, help="side of the square output clips in pixels"),
    fps: float = typer.Option(25.0, help="output frame rate (nearest-frame resampling)"),
    max_seconds: float = typer.Option(10.0, help="longer face tracks are split into equal parts"),
    min_seconds: float = typer.Option(1.0, help="shorter face tracks are dropped"),
    identity: Optional[str] = typer.Option(None, "--id", help="identity prefix of the clip names "
                                           "(default: the source's 'id__' prefix or its file name)"),
    detect_every: int = typer.Option(5, help="run the face detector on every N-th output frame"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    dataset: str = typer.Option("folder", "--dataset", help="folder | mead | hdtf | vfhq: how to read SOURCES "
                                "(the datasets take one ROOT in their published layout)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="videos prepared in parallel (default: the CPU "
                                       "count, at most 64)"),
    seed: int = typer.Option(0, "--seed", help="hdtf: seed of the 8:2 identity split (when no split file exists)"),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="hdtf: the split file to write or reuse "
                                              "(default: OUT/hdtf_split.json)"),
) -> None:
    """Crop faces out of raw videos the FOMM/LIA way: one fixed square box per clip.

    Writes <identity>__<clip>.mp4 (H.264, SIZE px, FPS) and, when the source has sound, a 16 kHz wav beside it; prepared.json records the sources and crop boxes.

    manifest.jsonl lists every clip (identity, split, labels, frames, fps, audio, crop box); failures.json the videos that gave none. A second run skips the clips already written and verified.

    Videos without a detectable face are skipped with a warning; if none is usable the command fails (exit 2).
    """
    from ..data.prepare import PrepareSettings, SkippedVideoWarning, check_jobs, prepare_jobs
    from ..data.recipes import recipe
    from ..errors import InputError
    from ..io.paths import check_folder_holds_no_inputs, removing_new_folders

    with user_errors(), removing_new_folders(out):
        reader, workers = recipe(dataset), check_jobs(jobs)
        if dataset != "folder" and (len(sources) != 1 or identity is not None):
            raise InputError(f"--dataset {dataset} takes exactly one ROOT folder and no --id")
        settings = PrepareSettings(size=size, fps=fps, max_seconds=max_seconds, min_seconds=min_seconds,
                                   detect_every=detect_every)
        settings.check()
        video_jobs = reader.jobs(*sources, out=out, seed=seed, split_file=split_file, identity=identity)
        if not video_jobs:
            raise InputError("no video files given")
        inputs = [j.source for j in video_jobs] + [j.audio for j in video_jobs if j.audio is not None]
        check_folder_holds_no_inputs(out, "--out", inputs, "source video")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SkippedVideoWarning)
            try:
                result = prepare_jobs(video_jobs, out, settings, progress=progress, jobs=workers,
                                      protect=[j.source for j in video_jobs] if dataset == "folder" else ())
            finally:
                for w in caught:
                    if issubclass(w.category, SkippedVideoWarning):
                        tell("warning", w.message)
                    else:
                        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    seconds = sum(c.frames for c in result.clips) / fps
    used = len({c.source for c in result.clips})
    say(f"wrote {len(result.clips)} clips ({seconds:.1f} s) from {used} videos to {out}"
        + (f"; {len(result.resumed)} clips already done" if result.resumed else "")
        + (f"; skipped {len(result.skipped)} (failures.json)" if result.skipped else ""))
