"""NumPy ``.npy`` files given by the user (EDTalk expression weights, GoHD coefficients and gaze), read without
pickles and with a message that says what the file is when it is not an array file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["load_npy"]

_MAGIC = b"\x93NUMPY"


def load_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """Read a ``.npy`` array (``allow_pickle=False``).

    Args:
        path: the file.
        what: how to name it in messages (``"expression weights"``).

    Raises:
        InputError: missing, not a ``.npy`` file (text, an ``.npz`` or other bytes: named as such, not as a
            pickle), an object array (would need a pickle: refused), or a truncated file.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file {str(p)!r} does not exist")
    with open(p, "rb") as f:
        head = f.read(len(_MAGIC))
    if head != _MAGIC:
        kind = "a zip (.npz) archive" if head.startswith(b"PK") else (
            "a text file" if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "not a .npy file")
        raise InputError(f"{what} {p.name!r} is {kind}, not a NumPy .npy array (write it with numpy.save)")
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise InputError(f"{what} {p.name!r} holds Python objects (an object array, readable only by running a "
                             "pickle): refused; save a numeric array") from None
        raise InputError(f"{what} {p.name!r} is not a readable .npy array ({e})") from None
    except OSError as e:
        raise InputError(f"{what} {p.name!r} is not a readable .npy array, truncated? ({e})") from None
