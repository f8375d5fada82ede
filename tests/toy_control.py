"""A toy backbone registered from the tests only, with a driving control of its own: ``brightness``, a per-frame
scalar added to the rendered image (a ``.npy`` of shape ``(T,)`` or comma-separated numbers, one per output
frame).  Nothing in plugtalk knows it: it proves that an adapter's declaration is all ``animate``, the CLI and the
UI need (issue 22.2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import plugtalk.backbones as B
from plugtalk.adapters import LIAAdapter, Motion
from plugtalk.adapters.controls import Control, sequence_stream
from plugtalk.backbones.lia import LIA
from plugtalk.errors import InputError

NAME = "toy-brightness"


class BrightLIA(LIA):
    """LIA whose adapter takes a per-frame brightness offset (tests only)."""

    name = NAME


def read_brightness(value, ctx):
    if str(value).endswith(".npy"):
        arr = np.load(value, allow_pickle=False)
    else:
        try:
            arr = np.array([float(v) for v in str(value).split(",")])
        except ValueError:
            raise InputError(f"brightness: expected numbers, got {value!r}") from None
    return sequence_stream("brightness", torch.as_tensor(arr, dtype=ctx.dtype, device=ctx.device),
                           f"brightness {Path(str(value)).name}")


BRIGHTNESS = Control("brightness", "per-frame brightness offset in image units ([-1, 1] scale)", read_brightness,
                     value="file-or-text")


class BrightAdapter(LIAAdapter):
    controls = (BRIGHTNESS,)

    def motion(self, source, source_code, codes, tap=None, brightness=None, **controls):
        m = super().motion(source, source_code, codes, **({} if tap is None else {"tap": tap}), **controls)
        if brightness is not None:
            m.condition["brightness"] = brightness
        return m

    def decode(self, motion: Motion, pyramid):
        image = super().decode(motion, pyramid)
        b = motion.condition.get("brightness")
        return image if b is None else image + b.view(-1, 1, 1, 1)


def register() -> None:
    if NAME not in B.list_backbones():
        B.register_backbone(BrightLIA, "gen", adapter=f"{__name__}:BrightAdapter", motion_mode="absolute")
