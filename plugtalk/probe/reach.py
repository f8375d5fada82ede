"""Which swaps can change an animator's output at all.

A value the decoder never reads (plain LIA's source motion code, the driving frame's pyramid without
EMI, the source branch's FDM outputs in EDTalk) gives the same image whatever is written into it, so
its swap measures nothing and must not be ranked beside the swaps that do.  :func:`unreachable_sites`
finds those values for the model at hand, in two steps on one pair:

1. **graph**: every site's value gets a zero tensor that requires grad added to it, in one forward
   pass; sites whose zero tensor gets no gradient (``autograd.grad(..., allow_unused=True)`` returns
   ``None``) have no differentiable path to the image;
2. **confirmation**: those values are replaced by themselves plus Gaussian noise of their own scale in
   one more forward pass; only if the image stays bit-identical are they declared unreachable (a path
   through integer indices, ``.detach()`` or ``no_grad`` would show here).  When it is not identical
   each candidate is checked alone.

The probe renders and scores only the variants that write at least one reachable site; the others are
reported as ``inert`` with the reason (:func:`inert_variants`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..hooks import HookSite, patch
from .taps import DIRECTION_ARROWS, TapSpec, Variant

__all__ = ["unreachable_sites", "inert_variants", "written_sites"]

ForwardFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


def written_sites(variant: Variant, taps: Mapping[str, TapSpec]) -> list[str]:
    """Site keys (``"<tap>@source"`` / ``"<tap>@driving<j>"``, as :mod:`~plugtalk.probe.patching` names
    them) that ``variant`` writes: the source site for ``to_source``, every driving site for ``to_driving``."""
    keys = []
    for name in variant.taps:
        if variant.direction == "to_source":
            keys.append(f"{name}@source")
        else:
            keys += [f"{name}@driving{j}" for j in range(len(taps[name].driving_sites))]
    return keys


def _no_gradient_path(model: nn.Module, forward: ForwardFn, s: Tensor, d: Tensor,
                      sites: Mapping[str, HookSite]) -> set[str]:
    leaves: dict[str, list[Tensor]] = {}

    def adder(key: str):
        def add(x):
            if not isinstance(x, Tensor) or not x.is_floating_point():
                return None  # not differentiable: cannot be judged here, counts as reachable
            eps = torch.zeros_like(x, requires_grad=True)
            leaves.setdefault(key, []).append(eps)
            return x + eps
        return add

    with torch.enable_grad(), patch(model, sites, {k: adder(k) for k in sites}):
        out = forward(model, s, d)
    keys = [k for k in sites if k in leaves]
    flat = [e for k in keys for e in leaves[k]]
    if not flat:
        return set()
    if isinstance(out, Tensor) and out.requires_grad:
        grads = torch.autograd.grad(out.float().sum(), flat, allow_unused=True)
    else:
        grads = (None,) * len(flat)
    found, i = set(), 0
    for k in keys:
        n = len(leaves[k])
        if all(g is None for g in grads[i:i + n]):
            found.add(k)
        i += n
    return found


def _unchanged_with_noise(model: nn.Module, forward: ForwardFn, s: Tensor, d: Tensor, base: Tensor,
                          sites: Mapping[str, HookSite]) -> bool:
    gen = torch.Generator().manual_seed(0)

    def noise(x):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            return None
        scale = x.detach().float().abs().mean() + 1.0
        return x + (torch.randn(x.shape, generator=gen) * scale).to(device=x.device, dtype=x.dtype)

    with torch.no_grad(), patch(model, sites, {k: noise for k in sites}):
        moved = forward(model, s, d)
    return isinstance(moved, Tensor) and moved.shape == base.shape and torch.equal(moved, base)


def unreachable_sites(model: nn.Module, source: Tensor, driving: Tensor, sites: Mapping[str, HookSite],
                      forward: ForwardFn) -> set[str]:
    """Keys of ``sites`` whose value cannot change ``forward(model, source, driving)`` (see the module
    docstring), judged on the first pair; ``model`` runs in eval mode (restored afterwards).

    Args:
        model, forward: the animator and how to run it on ``(N, 3, H, W)`` batches.
        source, driving: ``(B, 3, H, W)``; only row 0 is used.
        sites: site key -> :class:`~plugtalk.hooks.HookSite`.

    Returns:
        The unreachable keys (a site that never runs, or holds no float tensor, is not among them).
    """
    s, d = source[:1], driving[:1]
    was_training = model.training
    model.eval()
    try:
        candidates = _no_gradient_path(model, forward, s, d, sites)
        if not candidates:
            return set()
        with torch.no_grad():
            base = forward(model, s, d)
        chosen = {k: sites[k] for k in candidates}
        if _unchanged_with_noise(model, forward, s, d, base, chosen):
            return candidates
        return {k for k in candidates if _unchanged_with_noise(model, forward, s, d, base, {k: sites[k]})}
    finally:
        model.train(was_training)


def inert_variants(variants: Sequence[Variant], taps: Mapping[str, TapSpec], unreachable: set[str]
                   ) -> dict[str, str]:
    """``{variant key: reason}`` for the variants all of whose written sites are ``unreachable``."""
    out = {}
    for v in variants:
        written = written_sites(v, taps)
        if written and all(k in unreachable for k in written):
            branch = "source" if v.direction == "to_source" else "driving"
            what = (f"none of the {branch} branch's {', '.join(v.taps)} reaches" if v.group
                    else f"the {branch} branch's {v.name} never reaches")
            out[v.key] = (f"{what} the output in this model, so the {DIRECTION_ARROWS[v.direction]} swap "
                          "cannot change a pixel")
    return out
