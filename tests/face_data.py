"""Real face frames from the shared folder for the face and metric tests (skip when it is absent)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from plugtalk.shared_data import SharedDataMissing, shared_path


def clip_path(rel: str):
    try:
        return shared_path("data", *rel.split("/"))
    except SharedDataMissing as e:
        pytest.skip(f"real face data not available ({e}); set PLUGTALK_SHARED or put shared/ beside the checkout")


def read_frames(rel: str, n: int = 3, step: int = 40) -> np.ndarray:
    """``n`` frames, every ``step``-th from the start, of ``data/<rel>``: ``(n, H, W, 3)`` uint8 RGB."""
    out = []
    with av.open(str(clip_path(rel))) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i % step == 0:
                out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return np.stack(out)


def identity_of(rel: str) -> str:
    """Identity of a clip: its file name before ``__`` (see data/README.md)."""
    return rel.rsplit("/", 1)[-1].split("__")[0]


def gray_image(size: int = 256) -> np.ndarray:
    return np.full((size, size, 3), 128, np.uint8)
