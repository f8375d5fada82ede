"""The rich result of a backbone forward pass: the image plus named intermediates."""

from __future__ import annotations

import dataclasses

from torch import Tensor

from .synthesis import SynthesisOutput

__all__ = ["Reenactment"]


@dataclasses.dataclass
class Reenactment:
    """``image (B, 3, S, S)`` and a dict of named intermediate tensors.

    Names used by every backbone: ``source.latent``, ``latent`` (the synthesis style),
    ``pyramid.{i}`` (source features, coarse to fine), ``feature.{i}`` (features as warped, after
    any expression block), ``flow.{i}`` (raw flow fields); backbone-specific ones are documented on
    each backbone's ``forward``.
    """

    image: Tensor
    values: dict[str, Tensor]

    @classmethod
    def build(cls, synthesis: SynthesisOutput, pyramid, values: dict[str, Tensor]) -> "Reenactment":
        values = dict(values)
        for i, f in enumerate(pyramid):
            values[f"pyramid.{i}"] = f
        for i, f in enumerate(synthesis.features):
            values[f"feature.{i}"] = f
        for i, f in enumerate(synthesis.flows):
            values[f"flow.{i}"] = f
        return cls(synthesis.image, values)

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.values[name]
        except KeyError:
            raise KeyError(f"no intermediate {name!r}; available: {sorted(self.values)}") from None
