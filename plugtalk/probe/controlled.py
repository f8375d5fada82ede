"""The probe for animators driven by controls instead of a driving image (GoHD: coefficient windows).

GoHD renders ``model(source, coefficients (B, 72, T>=25))``: there is no driving branch to swap with.
The probe pairs two *source* runs instead:

* a pair is a source portrait ``A`` and a donor portrait ``B`` (``cross``: another identity; ``self``:
  another frame of the same identity), given as a :class:`~plugtalk.probe.spec.PairSpec` whose
  ``driving`` is the donor;
* both are rendered with a coefficient window (the same one by default: a neutral window, or the
  middle window of a coefficient file); ``A``'s render is the output scored;
* each source-branch tap of ``B``'s run (``latent``, ``pyramid.0`` .. ``pyramid.{n-1}``, ``motion_code``)
  and the coefficient embedding ``h`` (``coefficients.embedding``, GoHD paper Sec. 3.3's motion code of
  the driver) is written into ``A``'s run (direction ``to_source``, ``d->s``), and the usual scores
  (identity transfer: CSIM to ``B`` minus CSIM to ``A``, pixel change, ...) say how much identity moved.

With one window for both runs the embedding swap moves nothing (a check of the wiring); with another
window for the donor's run (``donor_coefficients``) it measures identity carried by the motion code.
Only ``to_source`` exists: ``B``'s run is not scored, so patching it would change nothing; the swap of
``A`` into ``B`` is the reversed pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..adapters.controls import ControlContext
from ..errors import InputError
from ..hooks import HookSite
from .taps import TapSpec

__all__ = ["CONTROLLED_DIRECTIONS", "EMBEDDING_TAP", "TwoSourceRun", "check_directions", "controlled_taps",
           "controlled_unpaired",
           "is_controlled", "neutral_window", "window_from_file"]

#: The only patch direction for control-driven animators (donor's value into the source's run).
CONTROLLED_DIRECTIONS = ("to_source",)
#: GoHD's coefficient embedding ``h`` (the driver's motion code) as a tap name.
EMBEDDING_TAP = "coefficients.embedding"


def neutral_window(model, frames: int = 27) -> Tensor:
    """A neutral coefficient window ``(1, 72, frames)``: zero expression, pose and gaze (straight ahead,
    mean 3DMM face) for every frame; the model's dtype and device."""
    p = next(model.parameters())
    return torch.zeros(1, 72, frames, device=p.device, dtype=p.dtype)


def window_from_file(model, path: str) -> Tensor:
    """The control window for the middle output frame of a control file, read by the adapter's own file control
    (:attr:`~plugtalk.adapters.base.Adapter.controls`, as ``plugtalk animate --control`` reads it; GoHD: its
    ``coefficients`` control, a ``(1, 72, 27)`` window of a Deep3DFaceRecon coefficient file).

    Raises:
        InputError: the adapter reads no control from files, or the file is unreadable or malformed.
    """
    adapter = model.adapter
    readers = [c for c in adapter.controls if c.value == "file" and c.with_control is None]
    if not readers:
        raise InputError(f"{type(adapter).__name__} reads no control from a file")
    control = readers[0]
    p = next(model.parameters())
    stream = control.read(path, ControlContext(adapter=adapter, device=p.device, dtype=p.dtype))
    return stream.batch(torch.tensor([(stream.length or 1) // 2]))[control.name]


class TwoSourceRun(nn.Module):
    """``forward(source, donor)``: render ``source`` (call 0 of every hook point) then ``donor`` (call 1),
    both with a coefficient window, and return the source's render.

    Args:
        model: a :class:`~plugtalk.retrofitting.Retrofitted` animator taking ``coefficients``.
        coefficients: ``(1 or B, 72, T>=25)`` window for the source's run (broadcast over the batch).
        donor_coefficients: the donor's window (default: the same).

    ``forward`` takes ``(N, 3, S, S)`` in [-1, 1] twice and returns ``(N, 3, S, S)`` in [-1, 1].
    """

    def __init__(self, model: nn.Module, coefficients: Tensor, donor_coefficients: Tensor | None = None):
        super().__init__()
        self.model = model
        self.coefficients = coefficients
        self.donor_coefficients = coefficients if donor_coefficients is None else donor_coefficients

    @staticmethod
    def _batch(w: Tensor, n: int) -> Tensor:
        if w.shape[0] == n:
            return w
        if w.shape[0] == 1:
            return w.expand(n, -1, -1)
        if n % w.shape[0] == 0:  # a stack of variants: rows k*B:(k+1)*B repeat the pairs
            return w.repeat(n // w.shape[0], 1, 1)
        raise InputError(f"coefficient windows for {w.shape[0]} pairs cannot drive a batch of {n}")

    def forward(self, source: Tensor, donor: Tensor) -> Tensor:
        n = source.shape[0]
        out = self.model(source, coefficients=self._batch(self.coefficients, n))
        self.model(donor, coefficients=self._batch(self.donor_coefficients, n))
        return out


def controlled_taps(model: nn.Module, prefix: str = "model.") -> dict[str, TapSpec]:
    """Taps of a control-driven Retrofitted animator, paired between the source's run (call 0) and the
    donor's run (call 1) of :class:`TwoSourceRun`: ``source.<x>`` as ``<x>`` (latent, pyramid levels,
    motion code) and each adapter motion tap read off a control (GoHD: ``coefficients.embedding``)."""
    out: dict[str, TapSpec] = {}
    for n in model.taps.names():
        if n.startswith("source."):
            name = n[len("source."):]
        elif n == EMBEDDING_TAP:
            name = n
        else:
            continue
        site = f"{prefix}taps.{n}"
        out[name] = TapSpec(name, HookSite(site, call=0), HookSite(site, call=1))
    return out


def controlled_unpaired(model: nn.Module) -> list[str]:
    """Hook points of a control-driven Retrofitted animator that :func:`controlled_taps` does not pair
    (motion coefficients, directions, skips, decoder latent, image): captured, never swapped."""
    paired = {t.source.module for t in controlled_taps(model, prefix="").values()}
    return [n for n in model.taps.names() if f"taps.{n}" not in paired]


def is_controlled(model: nn.Module) -> bool:
    """Whether a Retrofitted animator is driven by controls only (no driving image: GoHD)."""
    return not model.adapter.drivers and bool(model.adapter.controls)


def check_directions(directions: Sequence[str]) -> None:
    bad = [d for d in directions if d not in CONTROLLED_DIRECTIONS]
    if bad:
        raise InputError(f"direction(s) {bad} do not apply to an animator without a driving image: the donor's run "
                         "is not scored; probe the reversed pair instead (directions: to_source)")

