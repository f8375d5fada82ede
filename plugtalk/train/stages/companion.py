"""Companion stages: a separate model (EDTalk's Audio-to-Lip, its pose flow) trained beside a frozen animator.

:class:`CompanionModel` is what :class:`~plugtalk.train.Trainer` trains in such a stage (``Stage.companion``):
the companion model, every parameter of which may train, next to the animator of ``model.checkpoint``
(frozen, in eval mode, as at inference).  It looks to the trainer like a
:class:`~plugtalk.Retrofitted`: ``trainable_parameters``, ``save_pretrained``, ``emi`` / ``edi`` /
``adapter`` (the animator's, frozen), so one training loop serves both kinds of stage.

Files: ``save_pretrained(folder / "model.safetensors")`` writes the companion to
``folder / Companion.file`` (its own plugtalk file, ``plugtalk.backbones.load`` reads it) and then the
animator, unchanged, to ``model.safetensors``: the next recipe step starts from the same animator, and
``plugtalk animate -c model.safetensors --companion NAME=<folder>/<file>`` drives it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import InputError
from ...retrofitting import Retrofitted

__all__ = ["Companion", "CompanionModel", "companion_model"]


@dataclasses.dataclass(frozen=True)
class Companion:
    """What a companion stage trains.

    Attributes:
        backbone: registry name of the companion model (``edtalk-audio``, ``edtalk-pose-flow``).
        file: the file it is written to, beside the step's ``model.safetensors``.
    """

    backbone: str
    file: str


class CompanionModel(nn.Module):
    """``companion`` (trains) beside ``animator`` (frozen); ``forward(*args, method=name)`` calls
    ``companion.<name>(*args)`` so that a DistributedDataParallel wrapper sees every training call."""

    def __init__(self, companion: nn.Module, animator: Retrofitted, spec: Companion):
        super().__init__()
        self.companion, self.animator, self.spec = companion, animator.requires_grad_(False).eval(), spec

    # -- what the trainer reads from the model it trains -------------------------------------------------
    @property
    def adapter(self):
        return self.animator.adapter

    @property
    def emi(self):
        return self.animator.emi

    @property
    def edi(self):
        return self.animator.edi

    def parts(self) -> dict[str, nn.Module]:
        """The parts the trainer reports and keeps in eval mode when frozen."""
        return {self.spec.backbone: self.companion, "animator": self.animator}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.companion.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> "CompanionModel":
        """Train mode for the companion, except its submodules whose parameters are all frozen (e.g. an
        encoder started from Wav2Lip keeps its BatchNorm statistics); the animator stays in eval mode."""
        super().train(mode)
        self.animator.eval()
        for m in self.companion.modules():
            ps = list(m.parameters())
            if ps and not any(p.requires_grad for p in ps):
                m.eval()
        return self

    def forward(self, *args: Any, method: str = "forward", **kwargs: Any) -> Any:
        return getattr(self.companion, method)(*args, **kwargs)

    # -- files ------------------------------------------------------------------------------------------
    def companion_path(self, model_path: str | Path) -> Path:
        return Path(model_path).with_name(self.spec.file)

    def save_pretrained(self, path: str | Path, extra_metadata: dict[str, Any] | None = None) -> Path:
        """Write the companion to ``path``'s folder as ``spec.file``, then the animator to ``path`` (last:
        ``model.safetensors`` marks a finished step).  Returns the companion's file."""
        out = self.companion.save_pretrained(self.companion_path(path), dict(extra_metadata or {}))
        self.animator.save_pretrained(path, extra_metadata)
        return out

    def load_training_weights(self, model_path: Path, device: torch.device) -> None:
        """Load the companion written next to ``model_path`` (a checkpoint of this run).

        Raises:
            CheckpointError: a missing file, or tensors that do not fit.
        """
        from ...weights.configurable import load_state_dict_checked
        from ...weights.plugtalk_format import load_safetensors

        path = self.companion_path(model_path)
        tensors, _ = load_safetensors(path, device)
        load_state_dict_checked(self.companion, tensors, repr(str(path)))


def companion_model(cfg, start, spec: Companion) -> CompanionModel:
    """The stage's :class:`CompanionModel`: the animator ``start`` describes (frozen; a retrofitted file
    keeps its EMI / EDI) and the companion, fresh with ``audio.companion`` overrides or loaded from
    ``audio.companion_checkpoint``.

    Raises:
        InputError: overrides that do not fit the companion, or a missing file.
        CheckpointError / ConversionError: a file of another model.
    """
    from ... import backbones as B
    from ...weights.load import load_companion
    from ..config import expand_path

    a = cfg.audio
    if a.companion_checkpoint:
        path = Path(expand_path(a.companion_checkpoint))
        if not path.is_file():
            raise InputError(f"audio.companion_checkpoint {str(path)!r} does not exist")
        if a.companion:
            raise InputError("audio.companion (overrides of a fresh model) and audio.companion_checkpoint exclude "
                             "each other: the file holds its own config")
        companion, _ = load_companion(spec.backbone, path)
    else:
        try:
            companion = B.create(spec.backbone, **a.companion)
        except (TypeError, ValueError) as e:
            raise InputError(f"audio.companion: {e}") from None
    animator = start.loaded if start.loaded is not None else Retrofitted(start.adapter, None, None)
    companion.requires_grad_(True).train()
    return CompanionModel(companion, animator, spec)


def frames_bank_reader(animator: Retrofitted, banks: tuple[str, ...]):
    """Frames ``(N, 3, S, S)`` in [-1, 1] -> ``{bank: (N, k)}``: the coefficients ``animator`` gives each
    bank when that frame drives it (read at its ``<bank>.alpha`` tap points, through EMI when it has one:
    the values the animator reads at inference from a driving video)."""
    from .edtalk_common import recorded

    def read(frames: Tensor) -> dict[str, Tensor]:
        p = next(animator.parameters())
        x = frames.to(device=p.device, dtype=p.dtype)
        was = animator.training
        animator.eval()
        with torch.no_grad(), recorded(animator, tuple(f"{b}.alpha" for b in banks)) as alpha:
            animator(x, **{b: x for b in banks})
        animator.train(was)
        return {b: alpha[f"{b}.alpha"].float() for b in banks}

    return read
