"""Training stages: one registered, declarative :class:`Stage` per step of a training recipe.

A stage says *what trains* (``build``: the model it starts from with ``requires_grad`` set on exactly
the parts that train), *which losses* (``losses``: generator-loss names, each weighted by the config's
``loss.<name>``), *which data and labels* (``data``: a dataset kind of :mod:`plugtalk.train.data`,
``labels``: per-clip labels it reads), *what it starts from* (``start``: words for the docs and
errors, ``needs_checkpoint``: refuse a config without ``model.checkpoint``) and *how one batch becomes
outputs and targets* (``objective``).  :class:`~plugtalk.train.trainer.Trainer` has no per-stage code:
it calls these.

Registry API (all a new stage needs)::

    # plugtalk/train/stages/my_stage.py
    from . import Stage, register_stage, start_model
    register_stage(Stage(name="my-stage", summary="...", build=..., losses=("rec", "per", "adv")))

plus one line ``from . import my_stage`` at the end of this file.  Then ``stage: my-stage`` in a
config (or ``--set stage=my-stage``) runs it.

* :func:`register_stage` (``Stage``) - add a stage (a name registered twice is an error);
* :func:`get_stage` (name) -> ``Stage``, raising :class:`~plugtalk.errors.InputError` that lists the
  registered names; :func:`stage_names` - the registered names in registration order;
* helpers for ``build``: :func:`start_model` (the configured backbone / checkpoint, see
  :class:`Start`), :func:`new_module` (a fresh or loaded EMI/EDI), :func:`train_only` (freeze a model
  and unfreeze named submodules of the backbone);
* :func:`self_reenactment` - the default ``objective``: ``model(source, driving)`` against ``driving``;
* data kinds: :func:`plugtalk.train.data.register_dataset`; per-clip labels:
  :func:`plugtalk.data.labels.clip_labels`.

Built-in stages (FixTalk suppl. Sec. 1.2; EDTalk suppl. Sec. 1.3):

=====================  ==================================================================
stage                  trains
=====================  ==================================================================
stage1                 backbone + EMI (LIA-style pre-training)
stage2                 EDI only (from the stage-1 model)
retrofit               EMI + EDI on a frozen pretrained backbone (+ backbone if unfrozen)
baseline               the plain backbone, no EMI/EDI
edtalk-mouth-pose      EDTalk's mouth-pose decouple module (E, G, expression, EMI, EDI frozen)
edtalk-expression      EDTalk's MLP^e, expression bank B^e and EEM only (emotion-labelled clips)
edtalk-audio-lip       EDTalk's Audio-to-Lip model (a companion: the animator stays frozen)
edtalk-audio-pose      EDTalk's Audio-to-Pose normalizing flow (a companion)
=====================  ==================================================================

A *companion* stage (``Stage.companion``, :mod:`.companion`) trains a separate model beside the frozen
animator of ``model.checkpoint`` and writes it next to the step's ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

from torch import Tensor, nn

from ...edi import EDI
from ...emi import EMI
from ...errors import InputError
from ...weights.load import open_weights
from ...retrofitting import Retrofitted, _build_module
from .companion import Companion, CompanionModel

__all__ = ["Stage", "Objective", "Start", "register_stage", "get_stage", "stage_names", "start_model",
           "new_module", "train_only", "self_reenactment", "build_model", "set_train_mode", "frozen_modules",
           "describe", "trainable_names", "refresh_parts", "training_parts", "load_training_weights", "Companion",
           "CompanionModel", "loss_weight"]


class Objective(NamedTuple):
    """What one generator step of a stage produced.

    Attributes:
        fake: rendered images ``(N, 3, S, S)`` (roughly [-1, 1]); L_rec, L_per and L_adv are taken on them, and
            the discriminator sees them as fakes.  ``None`` (with ``target``) for a stage that renders nothing
            (e.g. the pose flow's likelihood): only ``losses`` count.
        target: the real images ``(N, 3, S, S)`` in [-1, 1] they should match (the discriminator's reals).
        losses: stage-specific generator losses (scalars) by name; ``rec`` here replaces the default
            L1 ``mean |fake - target|``.
    """

    fake: Tensor | None
    target: Tensor | None
    losses: dict[str, Tensor]


def self_reenactment(model: nn.Module, batch: Mapping[str, Tensor], trainer: Any) -> Objective:
    """The default objective: ``model(source, driving)`` (a training-mode Retrofitted, possibly DDP-wrapped)
    against ``driving``; the model's own losses (L_dis, L_distill, L_dmem, L_align) pass through."""
    out = model(batch["source"], batch["driving"])
    return Objective(out.image, batch["driving"], {k: v.float() for k, v in out.losses.items()})


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage (see the module docstring).

    Attributes:
        name: the config's ``stage`` value.
        summary: one line for ``--help``, ``--show-config`` and the README.
        build: ``(config, start) -> Retrofitted`` (a companion stage: ``CompanionModel``) with ``requires_grad`` on
            exactly the trained parameters.
        losses: generator-loss names this stage uses, each weighted by ``loss.stage_weights[name]``, else
            ``weights[name]``, else ``loss.<name>`` (``distill``: by the ``emi_bridge`` schedule); any other
            loss a model returns is dropped.  ``rec``, ``per`` and ``adv``
            are computed by the trainer on the objective's ``(fake, target)``.
        data: dataset kind (a name of :data:`plugtalk.train.data.DATASETS`).
        labels: per-clip labels the stage needs (read with :func:`plugtalk.train.data.clip_labels`).
        start: what the stage starts from, in words.
        needs_checkpoint: when set, a config without ``model.checkpoint`` is refused with this text.
        backbones: the backbones the stage applies to (``None``: every trainable one).
        weights: default weights of the stage's own losses (those without a ``loss.<name>`` field).
        objective: ``(model, batch, trainer) -> Objective``: ``model`` is the (possibly DDP-wrapped) training-mode
            Retrofitted to call once, ``batch`` the collated items on the device, ``trainer`` the
            :class:`~plugtalk.train.Trainer` (``trainer.cfg``, ``trainer.stage_state``, ...).
        setup: optional ``(trainer) -> dict`` run once when the trainer is built, its result kept as
            ``trainer.stage_state`` (e.g. a loss network loaded from a user file; or warn that an optional
            loss is off).
        paper: the paper's batch size and learning rate, for ``--show-config`` and the README.
        check: ``config -> [problems]`` for config validation (a stage's own consistency rules).
        companion: set for a stage that trains a separate model beside the frozen animator
            (:class:`~.companion.Companion`; ``build`` then returns a :class:`~.companion.CompanionModel`).
        finish: optional ``(trainer) -> None`` run after the last step, before the model is written (e.g.
            re-estimate BatchNorm statistics).
        data_options: optional ``config -> dict`` of the data kind's options for this stage (``audio-windows``:
            ``banks``, ``length``, ``frames``; ``mouth-swap``: ``sync_window``, ``fps``).
    """

    name: str
    summary: str
    build: Callable[[Any, "Start"], Retrofitted]
    losses: tuple[str, ...]
    data: str = "pairs"
    labels: tuple[str, ...] = ()
    start: str = "the configured backbone (from scratch or model.checkpoint)"
    needs_checkpoint: str | None = None
    backbones: tuple[str, ...] | None = None
    weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    objective: Callable[[nn.Module, Mapping[str, Tensor], Any], Objective] = self_reenactment
    setup: Callable[[Any], dict] | None = None
    paper: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    check: Callable[[Any], list[str]] | None = None
    companion: Companion | None = None
    finish: Callable[[Any], None] | None = None
    data_options: Callable[[Any], dict] | None = None

    def problems(self, cfg) -> list[str]:
        """Why ``cfg`` cannot run this stage (empty: it can)."""
        out = []
        if self.needs_checkpoint and not cfg.model.checkpoint:
            out.append(f"stage {self.name!r} needs model.checkpoint ({self.needs_checkpoint})")
        if self.backbones is not None and cfg.model.backbone not in self.backbones:
            out.append(f"stage {self.name!r} trains {', '.join(self.backbones)} only (model.backbone is "
                       f"{cfg.model.backbone!r})")
        return out + (self.check(cfg) if self.check is not None else [])

    def describe(self) -> dict[str, Any]:
        """Plain description (``--show-config``)."""
        return {"summary": self.summary, "starts_from": self.start, "losses": list(self.losses), "data": self.data,
                "labels": list(self.labels), **({"paper": dict(self.paper)} if self.paper else {}),
                **({"trains": self.companion.backbone, "writes": self.companion.file} if self.companion else {})}


_REGISTRY: dict[str, Stage] = {}


def register_stage(stage: Stage) -> Stage:
    """Register ``stage`` under ``stage.name``.

    Raises:
        ValueError: the name is taken.
    """
    if stage.name in _REGISTRY:
        raise ValueError(f"training stage {stage.name!r} is already registered")
    _REGISTRY[stage.name] = stage
    return stage


def stage_names() -> list[str]:
    """Registered stage names, in registration order."""
    return list(_REGISTRY)


def get_stage(name: str) -> Stage:
    """The registered stage ``name``.

    Raises:
        InputError: no such stage (the message lists the registered ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown stage {name!r}; registered stages: {', '.join(_REGISTRY)}") from None


def loss_weight(cfg, stage: Stage, name: str) -> float:
    """Weight of generator loss ``name`` in ``stage``: ``loss.stage_weights[name]``, else the stage's default
    (:attr:`Stage.weights`), else ``loss.<name>`` (``distill`` is scheduled by the trainer)."""
    if name in cfg.loss.stage_weights:
        return cfg.loss.stage_weights[name]
    if name in stage.weights:
        return stage.weights[name]
    return getattr(cfg.loss, name)


# -- helpers for ``Stage.build`` ------------------------------------------------------------------------
@dataclasses.dataclass
class Start:
    """The model a stage starts from.

    Attributes:
        backbone: the backbone (fresh, or loaded from ``model.checkpoint``), in training mode.
        adapter: its adapter (the checkpoint's, with ``model.adapter``'s options on top).
        loaded: the whole retrofitted model when ``model.checkpoint`` is a retrofitted file, else ``None``.
    """

    backbone: nn.Module
    adapter: Any
    loaded: Retrofitted | None

    @property
    def emi(self) -> EMI | None:
        return self.loaded.emi if self.loaded is not None else None

    @property
    def edi(self) -> EDI | None:
        return self.loaded.edi if self.loaded is not None else None


def _load_backbone(cfg) -> tuple[nn.Module, Retrofitted | None]:
    from ... import backbones
    from ..config import expand_path

    m = cfg.model
    if not m.checkpoint:
        return backbones.create(m.backbone, **m.overrides), None
    path = Path(expand_path(m.checkpoint))
    if not path.is_file():
        raise InputError(f"model.checkpoint {str(path)!r} does not exist")
    weights = open_weights(path)
    if weights.backbone is not None and weights.backbone != m.backbone:
        what = "a retrofitted" if weights.kind == "retrofit" else "a"
        raise InputError(f"model.checkpoint {str(path)!r} holds {what} {weights.backbone!r}"
                         f"{'' if weights.kind == 'retrofit' else ' backbone'}, but model.backbone is {m.backbone!r}")
    if weights.kind == "retrofit":
        r = weights.load_retrofitted()
        return r.backbone, r
    return weights.load_backbone(m.backbone, **(m.overrides if weights.kind == "official" else {})), None


def start_model(cfg) -> Start:
    """The backbone, adapter and (retrofitted checkpoint) modules ``cfg`` starts from.

    Raises:
        InputError: missing/wrong checkpoint, or an adapter identity level the checkpoint's EMI/EDI do not fit.
        CheckpointError / ConversionError: an unreadable or mismatching checkpoint.
    """
    from ...adapters import adapter_for

    backbone, loaded = _load_backbone(cfg)
    backbone.train()
    m = cfg.model
    if m.fresh:
        refresh_parts(backbone, m.fresh, cfg.seed)
    if loaded is None:
        return Start(backbone, adapter_for(backbone, **m.adapter), None)
    # the checkpoint's adapter, with model.adapter's options on top (e.g. an identity_level for EMI/EDI)
    options = {**loaded.adapter.options(), **m.adapter}
    adapter = loaded.adapter if options == loaded.adapter.options() else adapter_for(backbone, **options)
    level, was = adapter.feature_spec.identity_level, loaded.spec.identity_level
    if level != was and (loaded.emi is not None or loaded.edi is not None):
        raise InputError(f"model.adapter: identity level {level}, but the checkpoint's EMI/EDI were built for "
                         f"level {was} ({m.checkpoint})")
    return Start(backbone, adapter, loaded)


def refresh_parts(backbone: nn.Module, parts: list[str], seed: int) -> None:
    """Give ``backbone``'s ``parts`` (dotted submodule or parameter names) the values a newly built backbone of the
    same config has, built with ``torch.manual_seed(seed)`` (the global RNG is left as it was).

    Raises:
        InputError: a name that is neither a submodule nor a parameter of the backbone.
    """
    import torch

    names = dict(backbone.named_parameters())
    prefixes = {n for n, _ in backbone.named_modules() if n}
    unknown = [p for p in parts if p not in names and p not in prefixes]
    if unknown:
        raise InputError(f"model.fresh: {', '.join(map(repr, unknown))} name no part of the {backbone.name} backbone "
                         f"(its top-level parts: {', '.join(n for n, _ in backbone.named_children())})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(backbone)(backbone.config)
    new = fresh.state_dict()
    mine = backbone.state_dict()
    with torch.no_grad():
        for key, value in mine.items():
            if any(key == p or key.startswith(p + ".") for p in parts):
                value.copy_(new[key])


def new_module(cls, loaded: Any, option: Any, spec, cfg, name: str):
    """``loaded`` if given, else a new EMI/EDI from ``option`` (``True`` / dict of overrides; ``False``: none),
    pass-through when ``model.init`` is ``passthrough``.

    Raises:
        InputError: options that do not fit the backbone.
    """
    if loaded is not None:
        return loaded
    if option is False:
        return None
    try:
        return _build_module(cls, option, spec, cfg.model.init == "passthrough")
    except (TypeError, ValueError) as e:
        raise InputError(f"model.{name}: {e}") from None


def train_only(model: Retrofitted, backbone_parts: tuple[str, ...]) -> Retrofitted:
    """Freeze every parameter of ``model`` except those of the backbone submodules/parameters named in
    ``backbone_parts`` (dotted paths, e.g. ``"banks.mouth"``, ``"generator.levels.0.expression"``)."""
    model.requires_grad_(False)
    backbone = model.adapter.backbone
    for path in backbone_parts:
        try:
            part = backbone.get_submodule(path)
            part.requires_grad_(True)
        except AttributeError:
            backbone.get_parameter(path).requires_grad_(True)
    return model


def build_model(cfg) -> Retrofitted | CompanionModel:
    """The model of ``cfg.stage`` (its :attr:`Stage.build`) with ``requires_grad`` on exactly the parts that train
    (a :class:`~.companion.CompanionModel` for a companion stage).

    Raises:
        InputError: an unknown stage, missing/wrong checkpoint, module options that do not fit the backbone,
            or nothing to train.
        CheckpointError / ConversionError: an unreadable or mismatching checkpoint.
    """
    stage = get_stage(cfg.stage)
    model = stage.build(cfg, start_model(cfg))
    if not model.trainable_parameters():
        raise InputError(f"stage {stage.name!r}: nothing to train")
    return model


def trainable_names(model: nn.Module) -> set[str]:
    """Names of the parameters of ``model`` that require gradients."""
    return {n for n, p in model.named_parameters() if p.requires_grad}


def training_parts(model: Retrofitted | CompanionModel) -> dict[str, nn.Module]:
    """The parts of the model a stage trains, by name: backbone, EMI, EDI (or a companion and its animator)."""
    if isinstance(model, CompanionModel):
        return model.parts()
    parts = {"backbone": model.adapter.backbone, "emi": model.emi, "edi": model.edi}
    return {k: v for k, v in parts.items() if v is not None}


def frozen_modules(model: Retrofitted | CompanionModel) -> list[nn.Module]:
    """Parts of ``model`` (:func:`training_parts`) whose parameters all stay fixed."""
    return [p for p in training_parts(model).values() if not any(q.requires_grad for q in p.parameters())]


def set_train_mode(model: nn.Module, trained: Retrofitted | CompanionModel) -> None:
    """``model.train()`` with every frozen part kept in eval mode (no dropout, fixed statistics)."""
    model.train()
    for part in frozen_modules(trained):
        part.eval()


def describe(model: Retrofitted | CompanionModel) -> dict[str, Any]:
    """Parameter counts per part: ``{part: (trainable, total)}``."""
    out = {}
    for name, part in training_parts(model).items():
        ps = list(part.parameters())
        out[name] = (sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps))
    return out


def load_training_weights(model: Retrofitted | CompanionModel, path: Path, device) -> None:
    """Load the trained weights of a checkpoint's ``model.safetensors`` (``path``) into ``model`` (resume).

    Raises:
        CheckpointError: missing or unfitting tensors (named).
    """
    from ...weights.configurable import load_state_dict_checked
    from ...weights.plugtalk_format import load_safetensors

    if isinstance(model, CompanionModel):
        model.load_training_weights(path, device)
        return
    tensors, _ = load_safetensors(path, device)
    for prefix, part in (("backbone.", model.adapter.backbone), ("emi.", model.emi), ("edi.", model.edi)):
        if part is not None:
            load_state_dict_checked(part, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                    repr(str(path)))


# -- the built-in stages: one file each, registered on import -------------------------------------------
from . import stage1, stage2, retrofit, baseline, edtalk_mouth_pose, edtalk_expression  # noqa: E402,F401,I001
from . import edtalk_audio_lip, edtalk_audio_pose  # noqa: E402,F401,I001
