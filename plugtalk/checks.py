"""Shape checks for the tensors that flow between a backbone and a retrofit module (EMI, EDI, ...).

Each check raises :class:`~plugtalk.errors.InputError` whose message starts with the owning module's
name and states the expected shape, so a wiring mistake (a pyramid given fine-to-coarse, a motion
code of the wrong width, source and driving batches of different sizes) is reported where it happens.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .errors import InputError

__all__ = ["check_feature_map", "check_vectors", "check_batch", "available_cpus", "bounded_threads", "check_dtype"]


def _expect_float_tensor(x: Any, owner: str, name: str, expected: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise InputError(f"{owner}: {name} should be a torch.Tensor {expected}, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise InputError(f"{owner}: {name} should be a float tensor {expected}, got dtype {x.dtype}")
    return x


def check_feature_map(x: Any, owner: str, name: str, channels: int, size: tuple[int, int] | None = None,
                      batch: int | None = None) -> Tensor:
    """Check ``x`` is a float ``(B, channels, H, W)`` map (``(H, W) == size`` when given, ``B == batch``).

    Raises:
        InputError: naming ``owner`` and ``name`` and the expected shape.
    """
    h, w = size if size is not None else ("H", "W")
    expected = f"(B, {channels}, {h}, {w})" if batch is None else f"({batch}, {channels}, {h}, {w})"
    x = _expect_float_tensor(x, owner, name, expected)
    if x.ndim != 4 or x.shape[1] != channels or (size is not None and tuple(x.shape[-2:]) != tuple(size)):
        raise InputError(f"{owner}: {name} should be {expected}, got {tuple(x.shape)}")
    check_batch(x, owner, name, batch)
    return x


def check_vectors(x: Any, owner: str, name: str, dim: int, batch: int | None = None) -> Tensor:
    """Check ``x`` is a float ``(B, dim)`` batch of vectors (``B == batch`` when given).

    Raises:
        InputError: naming ``owner`` and ``name`` and the expected shape.
    """
    expected = f"(B, {dim})" if batch is None else f"({batch}, {dim})"
    x = _expect_float_tensor(x, owner, name, expected)
    if x.ndim != 2 or x.shape[1] != dim:
        raise InputError(f"{owner}: {name} should be {expected}, got {tuple(x.shape)}")
    check_batch(x, owner, name, batch)
    return x


def check_batch(x: Tensor, owner: str, name: str, batch: int | None) -> None:
    """Raise :class:`InputError` if ``x``'s batch size differs from ``batch`` (no check when ``None``)."""
    if batch is not None and x.shape[0] != batch:
        raise InputError(f"{owner}: {name} has batch size {x.shape[0]}, but the other inputs have {batch}")


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def bounded_threads(threads: int | None, option: str = "threads") -> int | None:
    """A user's thread count, checked and capped at the cores available (a warning says so).

    ``--threads 1000`` on a 2-core machine once hung ``animate --runtime onnx`` and pushed the load to ~700;
    more threads than cores is never faster.

    Args:
        threads: ``None`` or ``0`` (the library's default: returned unchanged), or a positive count.
        option: how the user gave it (``"--threads"``), for the messages.

    Returns:
        ``threads``, or :func:`available_cpus` when it asked for more.

    Raises:
        InputError: a negative or non-integer count.
    """
    import warnings

    if threads is None or threads == 0:
        return threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise InputError(f"{option} must be a whole number >= 0 (0: the default), got {threads!r}")
    cpus = available_cpus()
    if threads > cpus:
        warnings.warn(f"{option} {threads} is more than the {cpus} CPU core(s) available; using {cpus}", stacklevel=2)
        return cpus
    return threads


def check_dtype(x: Tensor, module: torch.nn.Module, owner: str, name: str) -> None:
    """Refuse a float input whose dtype is not the module's weights' (e.g. float64 into a float32 model), outside
    autocast, with the conversion to make instead of torch's dtype error deep inside a layer.

    Raises:
        InputError: naming both dtypes.
    """
    p = next(module.parameters(), None)
    if p is None or x.dtype == p.dtype or torch.is_autocast_enabled(x.device.type):
        return
    raise InputError(f"{owner}: {name} is {str(x.dtype).replace('torch.', '')} but the weights are "
                     f"{str(p.dtype).replace('torch.', '')}: convert the input with x.to({p.dtype}) (e.g. x.float()) "
                     "or the model with .to(dtype)")
