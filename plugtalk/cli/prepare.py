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
) -> None:
    """Crop faces out of raw videos the FOMM/LIA way: one fixed square box per clip.

    Writes <identity>__<clip>.mp4 (H.264, SIZE px, FPS) and, when the source has sound, a 16 kHz wav beside it; prepared.json records the sources and crop boxes.

    Videos without a detectable face are skipped with a warning; if none is usable the command fails (exit 2).
    """
    from ..data.prepare import PrepareSettings, SkippedVideoWarning, find_videos, prepare_videos
    from ..io.paths import check_folder_holds_no_inputs, removing_new_folders

    with user_errors(), removing_new_folders(out):
        check_folder_holds_no_inputs(out, "--out", find_videos(sources), "source video")
        settings = PrepareSettings(size=size, fps=fps, max_seconds=max_seconds, min_seconds=min_seconds,
                                   detect_every=detect_every)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SkippedVideoWarning)
            try:
                result = prepare_videos(sources, out, settings, identity=identity, progress=progress)
            finally:
                for w in caught:
                    if issubclass(w.category, SkippedVideoWarning):
                        tell("warning", w.message)
                    else:
                        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    seconds = sum(c.frames for c in result.clips) / fps
    used = len({c.source for c in result.clips})
    say(f"wrote {len(result.clips)} clips ({seconds:.1f} s) from {used} videos to {out}"
        + (f"; skipped {len(result.skipped)}" if result.skipped else ""))
