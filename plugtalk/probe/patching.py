"""Activation patching between the source and the driving branch of an animator, batched.

For a batch of B source/driving pairs:

1. **capture**: one ordinary forward pass records every tap's value in both branches (forward hooks,
   :func:`plugtalk.hooks.capture`) and the unpatched output; the outputs of the ``reuse`` modules
   (typically the encoder) are recorded too;
2. **patch**: each forward pass stacks K variants (the inputs tiled K times, rows ``k*B:(k+1)*B``
   belonging to variant ``k``); a forward hook at every patched site writes the donor branch's
   captured value over that variant's rows (:func:`plugtalk.hooks.patch`).  The ``reuse`` modules
   do not run again: their recorded outputs are replayed (:func:`replay`), after checking their
   inputs are the recorded ones, so the encoder runs once per image, never per tap.

This is the experiment of FixTalk (main paper Sec. 3.2, suppl. Sec. 2.7) generalised to every tap,
in the manner of TransformerLens' ``run_with_cache`` / ``run_with_hooks``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..hooks import HookSite, capture, patch, resolve_module
from .taps import TapInfo, TapSpec, Variant

__all__ = [
    "ForwardFn",
    "PatchOutputs",
    "ReplayError",
    "auto_batch_size",
    "count_images",
    "default_forward",
    "record",
    "replay",
    "run_patching",
    "site_keys",
    "tile",
]

#: ``forward(model, source, driving) -> image``: how to run the animator on ``(N, 3, H, W)`` batches.
ForwardFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


def default_forward(model: nn.Module, source: Tensor, driving: Tensor) -> Tensor:
    return model(source, driving)


class ReplayError(InputError):
    """A module whose output is replayed received other inputs than when it was recorded."""


def _map_tensors(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple (Encoding)
        return type(value)(*(_map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def _tensors(value: Any) -> list[Tensor]:
    out: list[Tensor] = []
    _map_tensors(value, lambda t: out.append(t) or t)
    return out


def tile(value: Any, times: int) -> Any:
    """Repeat every tensor in ``value`` ``times`` times along dim 0: rows ``k*B:(k+1)*B`` are copy ``k``."""
    if times == 1:
        return value
    return _map_tensors(value, lambda t: t.repeat(times, *([1] * (t.ndim - 1))) if t.ndim else t)


@dataclasses.dataclass
class _Call:
    inputs: list[Tensor]
    output: Any


@contextlib.contextmanager
def record(model: nn.Module, paths: Sequence[str]) -> Iterator[dict[str, list[_Call]]]:
    """Record the tensor inputs and the output of each call of the modules at ``paths``."""
    calls: dict[str, list[_Call]] = {p: [] for p in paths}
    handles = []
    try:
        for p in paths:
            def hook(mod, args, kwargs, output, _p=p):
                calls[_p].append(_Call(_tensors((args, kwargs)), _map_tensors(output, lambda t: t.detach())))
            handles.append(resolve_module(model, p).register_forward_hook(hook, with_kwargs=True))
        yield calls
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def replay(model: nn.Module, recorded: Mapping[str, Sequence[_Call]], times: int) -> Iterator[None]:
    """Make the recorded modules return their recorded outputs (tiled ``times`` times) instead of running.

    Call ``i`` of a module inside the block returns the output of its recorded call ``i``.  Its
    inputs must equal the recorded inputs tiled ``times`` times, else :class:`ReplayError` (a patch
    upstream of a replayed module would otherwise be silently lost).  Forward hooks on the module
    still run on the replayed output, so a tap at the module's output can be patched.
    """
    saved = []
    try:
        for path, calls in recorded.items():
            module = resolve_module(model, path)
            counter = iter(range(1 << 62))

            def fake_forward(*args, _calls=calls, _path=path, _counter=counter, **kwargs):
                i = next(_counter)
                if i >= len(_calls):
                    raise ReplayError(f"replay: {_path!r} was called {i + 1} times, {len(_calls)} when recorded")
                got = _tensors((args, kwargs))
                want = _calls[i].inputs
                if len(got) != len(want) or any(g.shape[0] != w.shape[0] * times or g.shape[1:] != w.shape[1:] or
                                                not torch.equal(g, tile(w, times)) for g, w in zip(got, want)):
                    raise ReplayError(f"replay: {_path!r} call {i} received other inputs than when it was recorded "
                                      "(a patched site lies upstream of it): leave it out of `reuse`")
                return tile(_calls[i].output, times)

            saved.append((module, module.__dict__.get("forward")))
            module.forward = fake_forward
        yield
    finally:
        for module, previous in saved:
            if previous is None:
                del module.forward
            else:
                module.forward = previous


@dataclasses.dataclass
class PatchOutputs:
    """Result of :func:`run_patching`.

    Attributes:
        baseline: unpatched outputs ``(B, 3, H, W)`` (the model's dtype, on the CPU).
        outputs: variant key -> patched outputs ``(B, 3, H, W)`` (likewise).
        taps: tap name -> :class:`TapInfo` (shapes as captured).
        forward_passes: forward passes run (capture + patched).
        images_rendered: images rendered in the patched passes (variants x pairs).
        batch_size: images per forward pass used.
        timing: seconds: ``capture_s`` (unpatched passes), ``patched_s`` (patched passes).
    """

    baseline: Tensor
    outputs: dict[str, Tensor]
    taps: dict[str, TapInfo]
    forward_passes: int
    images_rendered: int
    timing: dict[str, float]
    batch_size: int = 0


def site_keys(taps: Mapping[str, TapSpec]) -> dict[str, HookSite]:
    """Every site of ``taps`` by key: ``"<tap>@source"`` and ``"<tap>@driving<j>"``."""
    sites = {}
    for t in taps.values():
        sites[f"{t.name}@source"] = t.source
        for j, s in enumerate(t.driving_sites):
            sites[f"{t.name}@driving{j}"] = s
    return sites


def _check_image_output(out: Any, n: int) -> Tensor:
    if not isinstance(out, Tensor) or out.ndim != 4 or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise InputError(f"the animator's forward must return images (N={n}, 3, H, W); got {shape} "
                         "(pass forward=lambda m, s, d: ... returning the image)")
    return out


def _captured(cache, sites: Mapping[str, HookSite], taps: Mapping[str, TapSpec], n: int) -> dict[str, Tensor]:
    values = {}
    for key, site in sites.items():
        got = cache[key]
        tap = key.split("@")[0]
        if not got:
            raise InputError(f"tap {tap!r}: {site.describe()} did not run in the forward pass")
        v = got[0]
        if not isinstance(v, Tensor) or v.ndim == 0 or v.shape[0] != n:
            what = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise InputError(f"tap {tap!r}: {site.describe()} is {what}, not a tensor with the batch ({n}) "
                             "as first dimension; it cannot be patched per pair")
        values[key] = v
    for t in taps.values():
        ref = values[f"{t.name}@source"]
        for j in range(len(t.driving_sites)):
            v = values[f"{t.name}@driving{j}"]
            if v.shape != ref.shape:
                raise InputError(f"tap {t.name!r}: the source value {tuple(ref.shape)} and the driving value "
                                 f"{tuple(v.shape)} differ in shape; they cannot be swapped")
    return values


def _patches(variants: Sequence[Variant], taps: Mapping[str, TapSpec], values: Mapping[str, Tensor],
             n: int) -> dict[str, Callable[[Tensor], Tensor]]:
    """Hook replacements writing each variant's donor values over its rows."""
    by_site: dict[str, list[tuple[int, Tensor]]] = defaultdict(list)
    for k, v in enumerate(variants):
        for name in v.taps:
            t = taps[name]
            if v.direction == "to_source":
                by_site[f"{name}@source"].append((k, values[f"{name}@driving0"]))
            else:
                for j in range(len(t.driving_sites)):
                    by_site[f"{name}@driving{j}"].append((k, values[f"{name}@source"]))

    def writer(entries: list[tuple[int, Tensor]]) -> Callable[[Tensor], Tensor]:
        def write(x: Tensor) -> Tensor:
            x = x.clone()
            for k, donor in entries:
                x[k * n:(k + 1) * n] = donor.to(device=x.device, dtype=x.dtype)
            return x
        return write

    return {key: writer(entries) for key, entries in by_site.items()}


def run_patching(model: nn.Module, source: Tensor, driving: Tensor, taps: Mapping[str, TapSpec],
                 variants: Sequence[Variant], *, forward: ForwardFn | None = None, reuse: Sequence[str] = (),
                 batch_size: int | None = None, progress: Callable[[int], None] | None = None) -> PatchOutputs:
    """Render every variant for every source/driving pair.

    Args:
        model: the animator (run in eval mode and without gradients; its mode is restored afterwards).
        source, driving: ``(B, 3, H, W)`` in the model's input range (plugtalk animators: [-1, 1]);
            row ``i`` of each is pair ``i``.
        taps: tap name -> :class:`TapSpec`; every tap a variant uses must be here.
        variants: the patched passes to run; variants with equal taps and direction run once.
        forward: ``forward(model, source, driving) -> (N, 3, H, W)`` (default ``model(source, driving)``).
        reuse: module paths whose outputs are recorded in the unpatched pass and replayed in the
            patched ones (e.g. the encoder); they must lie upstream of every patched site.
        batch_size: images per forward pass (pairs x stacked variants); 1 disables stacking; ``None``:
            :func:`auto_batch_size` of the inputs' device.
        progress: called with the number of images just rendered, after each forward pass.

    Returns:
        :class:`PatchOutputs`.

    Raises:
        InputError: a tap that never runs, is not batched, or whose two branches differ in shape; a
            forward that does not return images; a replayed module that received other inputs.
    """
    forward = forward or default_forward
    if source.shape[0] != driving.shape[0] or source.shape[0] < 1:
        raise InputError(f"source and driving need the same, non-zero batch size; got {source.shape[0]} and "
                         f"{driving.shape[0]}")
    batch_size = auto_batch_size(source.device) if batch_size is None else batch_size
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    missing = sorted({t for v in variants for t in v.taps} - set(taps))
    if missing:
        raise InputError(f"variants use unknown taps {missing}; known: {', '.join(taps)}")
    sites = site_keys(taps)
    patched_modules = {s.module for s in sites.values()}
    for r in reuse:
        inner = [m for m in patched_modules if m.startswith(r + ".")]
        if inner:
            raise InputError(f"reuse={r!r} contains patched site(s) {inner}; a replayed module does not run its "
                             "submodules: leave it out of `reuse`")
    unique: dict[tuple, Variant] = {}
    for v in variants:
        unique.setdefault(v.patch_key, v)
    todo = list(unique.values())

    total = source.shape[0]
    per_pass = min(total, batch_size)
    stack = max(1, batch_size // per_pass)
    baseline, outputs = [], defaultdict(list)
    infos: dict[str, TapInfo] = {}
    passes = rendered = 0
    timing = {"capture_s": 0.0, "patched_s": 0.0}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for lo in range(0, total, per_pass):
                s, d = source[lo:lo + per_pass], driving[lo:lo + per_pass]
                n = s.shape[0]
                t0 = time.perf_counter()
                with capture(model, sites) as cache, record(model, list(reuse)) as recorded:
                    base = _check_image_output(forward(model, s, d), n)
                timing["capture_s"] += time.perf_counter() - t0
                passes += 1
                values = _captured(cache, sites, taps, n)
                if not infos:
                    infos = {t.name: TapInfo(t.name, t.source.describe(), tuple(x.describe() for x in t.driving_sites),
                                             tuple(values[f"{t.name}@source"].shape[1:]),
                                             str(values[f"{t.name}@source"].dtype)) for t in taps.values()}
                baseline.append(base.detach().cpu())
                if progress:
                    progress(n)
                for vlo in range(0, len(todo), stack):
                    chunk = todo[vlo:vlo + stack]
                    k = len(chunk)
                    t0 = time.perf_counter()
                    patches = _patches(chunk, taps, values, n)
                    with replay(model, recorded, k), patch(model, {key: sites[key] for key in patches}, patches):
                        out = _check_image_output(forward(model, tile(s, k), tile(d, k)), n * k)
                    timing["patched_s"] += time.perf_counter() - t0
                    passes += 1
                    rendered += n * k
                    out = out.detach().cpu()
                    for j, v in enumerate(chunk):
                        outputs[v.patch_key].append(out[j * n:(j + 1) * n])
                    if progress:
                        progress(n * k)
                del recorded, values, cache
    finally:
        model.train(was_training)
    merged = {key: torch.cat(chunks) for key, chunks in outputs.items()}
    return PatchOutputs(torch.cat(baseline), {v.key: merged[v.patch_key] for v in variants}, infos, passes,
                        rendered, timing, batch_size)


def auto_batch_size(device: torch.device | str) -> int:
    """Images per forward pass when not given: 1 on the CPU (measured on LIA at 256 px, 2 cores: batches of
    8 render ~30% slower per image than single images), 8 on accelerators."""
    return 1 if torch.device(device).type == "cpu" else 8


def count_images(num_pairs: int, variants: Sequence[Variant]) -> int:
    """Images :func:`run_patching` renders: one unpatched and one per distinct variant, per pair."""
    return num_pairs * (1 + len({v.patch_key for v in variants}))
