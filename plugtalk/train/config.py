"""Training configuration: a YAML file mapped onto typed dataclasses (unknown keys are errors).

Sections (every key optional; defaults are FixTalk's setting, suppl. Sec. 1.2):

* ``stage``: a registered training stage (:mod:`plugtalk.train.stages`): ``stage1`` (backbone + EMI,
  LIA-style pre-training), ``stage2`` (EDI only, everything else frozen, from the stage-1 result),
  ``retrofit`` (EMI/EDI on a frozen pretrained backbone), ``baseline`` (the plain backbone, no EMI/EDI:
  for ablations), EDTalk's decoupling stages, ...;
* ``model``: backbone name + config overrides, adapter options, checkpoint, EMI/EDI options, init,
  discriminator geometry;
* ``data``: clip folder, image size, global batch size, loader workers;
* ``optim``: Adam (lr 2e-4), betas, gradient clipping, steps, schedule;
* ``loss``: weights of L_rec, L_per, L_adv, L_dis, L_dmem, L_align (all 1), VGG19 weights file, R1;
* ``log``: logging / image / checkpoint intervals, how many checkpoints to keep;
* ``emi_bridge``: the schedule that closes EMI's latent bridge (pass-through start -> leak-free EMI);
* ``audio``: the windows and companion model of EDTalk's audio stages (``edtalk-audio-lip``, ``edtalk-audio-pose``);
* ``output_dir``, ``seed``, ``precision``, ``device``.

Paths are taken relative to the working directory; ``~`` and ``$VARIABLES`` are expanded.
"""

from __future__ import annotations

import dataclasses
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .._optional import require
require("yaml", "train", "training configs")
import yaml
require("pydantic", "train", "training configs")
from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from ..data.decoupling import DEFAULT_MOUTH_BOX
from ..errors import InputError

__all__ = ["ModelSection", "DataSection", "OptimSection", "LossSection", "LogSection", "EMIBridgeSection",
           "AudioSection",
           "TrainConfig",
           "load_config", "config_from_mapping", "apply_overrides", "packaged_configs", "resolve_config_path",
           "expand_path"]

_STRICT = ConfigDict(extra="forbid", validate_assignment=True)


def expand_path(value: str | os.PathLike | None) -> str | None:
    """``~`` and ``$VARIABLES`` expanded (``None`` stays ``None``)."""
    if value is None:
        return None
    return os.path.expanduser(os.path.expandvars(str(value)))


@dataclass(config=_STRICT)
class ModelSection:
    """What is trained.

    Attributes:
        backbone: a registered animator trained from videos (its registry entry accepts driving frames:
            ``lia``, ``edtalk``, ``dpe``).
        overrides: backbone config overrides (e.g. ``{size: 64, channel_max: 64}``); also applied
            when loading an official checkpoint.
        adapter: adapter options (DPE: ``{mode: expression}``).
        checkpoint: initial weights: an official ``.pt``/``.pth`` (read with ``weights_only=True``),
            a plugtalk backbone ``.safetensors`` or a retrofitted ``.safetensors`` (e.g. the stage-1
            result).  Required for ``stage2`` and ``retrofit``.
        emi, edi: ``true`` (defaults), ``false`` (leave out) or a dict of config overrides.  Modules
            present in a retrofitted checkpoint are loaded from it instead.
        init: start of newly built EMI/EDI: ``passthrough`` (reproduce the backbone) or ``random``.
        fresh_edi: build EDI from ``model.edi`` even when ``model.checkpoint`` holds one (e.g. to
            retrain EDI with other options on the same backbone and EMI).
        fresh: backbone parts (dotted submodule or parameter names, e.g. ``[mouth_head, banks.mouth]``) that
            start as a newly built backbone of the checkpoint's config has them (seeded by ``seed``) instead of
            the checkpoint's values: a module the stage adds to its start (EDTalk's mouth-pose decouple module
            is new after a LIA-style pre-training: its official trainer loads E, G and the shared trunk only).
        unfreeze_backbone: ``retrofit`` stage only: also train the backbone.
        discriminator: :class:`~plugtalk.train.discriminator.DiscriminatorConfig` overrides
            (``size`` follows the backbone).
        discriminator_checkpoint: initial discriminator weights (e.g. the stage-1 run's).
    """

    backbone: str = "lia"
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    adapter: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None
    emi: bool | dict[str, Any] = True
    edi: bool | dict[str, Any] = True
    init: Literal["passthrough", "random"] = "passthrough"
    fresh_edi: bool = False
    fresh: list[str] = dataclasses.field(default_factory=list)
    unfreeze_backbone: bool = False
    discriminator: dict[str, Any] = dataclasses.field(default_factory=dict)
    discriminator_checkpoint: str | None = None


@dataclass(config=_STRICT)
class DataSection:
    """Training pairs (self-reenactment: two frames of one clip).

    Attributes:
        folder: folder of clips (``<identity>__<clip>.mp4`` or folders of frames).
        size: frame size fed to the model (defaults to the backbone's size).
        batch_size: *global* batch (split evenly over processes).
        workers: DataLoader worker processes per training process.
        repeats: pairs drawn per clip per epoch.
        hflip: mirror source and driving together with probability 1/2.
        mouth_box: (top, bottom, left, right) of the mouth region as fractions of the aligned crop: the region
            EDTalk's mouth-pose stage swaps between clips and scores with L_rec^m
            (:data:`plugtalk.data.decoupling.DEFAULT_MOUTH_BOX`).
    """

    folder: str | None = None
    size: int | None = None
    batch_size: int = 16
    workers: int = 4
    repeats: int = 100
    hflip: bool = True
    mouth_box: tuple[float, float, float, float] = DEFAULT_MOUTH_BOX


@dataclass(config=_STRICT)
class OptimSection:
    """Adam on the trainable parameters (and a second Adam for the discriminator).

    Attributes:
        lr: learning rate (FixTalk: fixed 2e-4).
        discriminator_lr: the discriminator's (default: ``lr``).
        betas: Adam betas (StyleGAN2 / LIA use ``(0, 0.99)``).
        weight_decay: Adam weight decay.
        grad_clip: clip the global gradient norm to this (``null``: no clipping).
        steps: total optimizer steps.
        schedule: ``constant`` (the paper) or ``cosine`` decay to 0 at ``steps``.
        warmup_steps: linear warm-up from 0.
        find_unused_parameters: passed to DistributedDataParallel (needed when part of the model
            gets no gradient, e.g. DPE's other branch).
    """

    lr: float = 2e-4
    discriminator_lr: float | None = None
    betas: tuple[float, float] = (0.0, 0.99)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    steps: int = 100_000
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    find_unused_parameters: bool = True


@dataclass(config=_STRICT)
class LossSection:
    """Loss weights (FixTalk suppl. 1.2: all 1) and loss options.

    Attributes:
        rec, per, adv, dis, dmem, align: weights of L1 reconstruction, perceptual (VGG19, or
            discriminator feature matching without VGG weights), non-saturating adversarial,
            EMI's disentanglement (Eq. 4), EDI's memory (Eq. 6) and alignment (Eq. 8) losses.
        vgg_weights: a user-supplied torchvision VGG19 weights file (``.pth`` / ``.safetensors``).
        vgg_layer_weights: weights of relu1_1 .. relu5_1 (LIA's perceptual loss uses 10 each).
        vgg_scales: image-pyramid scales the perceptual loss is summed over.
        vgg_distance: feature distance of the perceptual loss: ``l1`` (LIA's, the default) or
            ``squared_l2`` (FixTalk's Eq. 2, ``||Phi(I^d) - Phi(I^g)||_2^2``, per-element mean).
        r1_gamma: R1 regularisation strength (0: off); applied lazily every ``r1_every`` steps.
        stage_weights: weights of a stage's own losses by name (EDTalk's ``cross``, ``fea``, ``mouth``,
            ``sync``, ...); a name not given here takes the stage's default (:attr:`Stage.weights`, 1 for
            EDTalk's stages as in EDTalk suppl. 1.3).
        syncnet_weights: a user-supplied SyncNet file (Wav2Lip's ``lipsync_expert.pth`` or EDTalk's
            ``ckpt/checkpoint.pth``) for L_sync: ``edtalk-audio-lip``'s ``sync`` term (required while its weight
            is non-zero) and ``edtalk-mouth-pose``'s L_sync^m (on while given).
    """

    rec: float = 1.0
    per: float = 1.0
    adv: float = 1.0
    dis: float = 1.0
    dmem: float = 1.0
    align: float = 1.0
    vgg_weights: str | None = None
    vgg_layer_weights: tuple[float, float, float, float, float] = (10.0, 10.0, 10.0, 10.0, 10.0)
    vgg_scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    vgg_distance: Literal["l1", "squared_l2"] = "l1"
    r1_gamma: float = 0.0
    r1_every: int = 16
    stage_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    syncnet_weights: str | None = None


@dataclass(config=_STRICT)
class LogSection:
    """Intervals are in optimizer steps.

    Attributes:
        every: scalars to tensorboard / ``metrics.jsonl`` and the progress bar.
        image_every: source | driving | output grids to tensorboard (0: never).
        checkpoint_every: checkpoint interval (a last one is always written at the end).
        keep_last: checkpoints kept (older ones are deleted).
        num_images: rows of the image grid.
        progress: show a progress bar.
    """

    every: int = 50
    image_every: int = 1000
    checkpoint_every: int = 5000
    keep_last: int = 3
    num_images: int = 4
    progress: bool = True


def _backbone_problems(name: str) -> list[str]:
    """Why ``name`` cannot be trained here, from its registry entry (empty: it can).  Training pairs
    frames of one video, so the animator must be driven by driving frames."""
    from ..backbones import animator_backbones, backbone_entry

    if name not in animator_backbones():
        return [f"model.backbone must be one of {', '.join(animator_backbones())} (got {name!r})"]
    controls = backbone_entry(name).controls
    if "driving" not in controls:
        return [f"model.backbone {name!r} is driven by {', '.join(controls)}, not by driving frames; training "
                "reconstructs video frames from a driving frame, so it supports video-driven animators only"]
    return []


def _stage_problems(cfg: "TrainConfig") -> list[str]:
    """Why ``cfg.stage`` cannot run with ``cfg`` (unknown stage, or the stage's own rules)."""
    from .stages import get_stage, stage_names

    if cfg.stage not in stage_names():
        return [f"stage must be one of {', '.join(stage_names())} (got {cfg.stage!r})"]
    return get_stage(cfg.stage).problems(cfg)


@dataclass(config=_STRICT)
class EMIBridgeSection:
    """When EMI starts as a pass-through (``model.init: passthrough``: its latent bridge open, ``z = latent``)
    the bridge is closed during training so that no path from the latent remains (plugtalk's, not the
    paper's: see :mod:`plugtalk.emi`).  Fractions are of ``optim.steps``; the gate for step ``t`` is

    * 1 for ``t < warmup * steps`` (the backbone's own motion code drives; EMI's leak-free code is
      distilled onto it, L_dis off);
    * falling linearly to 0 over the next ``ramp * steps`` steps (L_dis on, the distillation weighted by the gate);
    * exactly 0 from ``(warmup + ramp) * steps`` on, so the saved end-of-training model reads no latent.

    The gate is logged as ``emi/gate``.  An EMI whose bridge is closed when training starts (``init: random``,
    a trained or frozen EMI from a checkpoint) is left alone.

    Attributes:
        warmup: fraction of the steps with the gate open.
        ramp: fraction of the steps over which it closes (``warmup + ramp <= 1``).
        distill: weight of L_distill (:func:`plugtalk.emi.distill_loss`), times the gate.
    """

    warmup: float = 0.1
    ramp: float = 0.4
    distill: float = 1.0

    def gate(self, step: int, steps: int) -> float:
        """The bridge gate in [0, 1] for 0-based ``step`` of ``steps``."""
        start, end = self.warmup * steps, (self.warmup + self.ramp) * steps
        if step < start:
            return 1.0
        if step >= end:
            return 0.0
        return 1.0 - (step - start) / (end - start)


@dataclass(config=_STRICT)
class AudioSection:
    """EDTalk's audio stages (EDTalk suppl. 1.1, 1.3): a companion model trained on windows of consecutive
    frames of clips with sound, against the frozen animator of ``model.checkpoint``
    (:mod:`plugtalk.data.audio_windows`).

    Attributes:
        window: frames per window (``None``: the stage's, 5 for Audio-to-Lip as SyncNet sees 5, 25 for
            Audio-to-Pose).
        holdout: fraction at the end of every clip kept out of training (held-out windows of the
            training identities, for :func:`~plugtalk.train.stages.edtalk_audio_lip.mouth_errors`).
        max_clips, max_frames: clips read (sorted by path) and frames read per clip; all are decoded
            once and kept in memory.
        fps: the clips' frame rate (EDTalk: 25), which places each frame's mel window.
        companion: config overrides of a freshly built companion model (e.g. the flow's ``steps``).
        companion_checkpoint: start the companion from this file instead (an official checkpoint, e.g.
            ``Audio2Lip.pt``, or a plugtalk file of the same model).
        wav2lip: ``edtalk-audio-lip``: a Wav2Lip checkpoint whose audio encoder initialises the model's
            (the official start).
        freeze_encoder: ``edtalk-audio-lip``: train only the linear map (``None``: frozen exactly when
            ``wav2lip`` is given, as the official script).
        face_box: ``edtalk-audio-lip``: (left, top, right, bottom) fractions of the aligned crop that
            L_rec^m and SyncNet see, resized to 96 x 96.
        init_at_mean: ``edtalk-audio-lip``: start the linear map as the mean predictor (weight 0, bias =
            the training targets' mean; official: default init).
        bn_windows: ``edtalk-audio-lip``: training windows that re-estimate a trained encoder's
            BatchNorm statistics at the end (0: keep the running averages).
        init_windows: ``edtalk-audio-pose``: training windows its actnorm initialisation reads.
    """

    window: int | None = None
    holdout: float = 0.0
    max_clips: int = 200
    max_frames: int = 250
    fps: float = 25.0
    companion: dict[str, Any] = dataclasses.field(default_factory=dict)
    companion_checkpoint: str | None = None
    wav2lip: str | None = None
    freeze_encoder: bool | None = None
    face_box: tuple[float, float, float, float] = (0.15, 0.15, 0.85, 0.95)
    init_at_mean: bool = True
    bn_windows: int = 256
    init_windows: int = 512

    def problems(self) -> list[str]:
        """Out-of-range settings (empty: none)."""
        out = []
        if self.window is not None and not 1 <= self.window <= 1000:
            out.append(f"audio.window must be in [1, 1000] frames (got {self.window})")
        if not 0.0 <= self.holdout < 1.0:
            out.append(f"audio.holdout must be in [0, 1) (got {self.holdout})")
        if not 1 <= self.max_clips <= 10_000 or not 1 <= self.max_frames <= 100_000:
            out.append("audio.max_clips must be in [1, 10000] and audio.max_frames in [1, 100000]")
        if not 1.0 <= self.fps <= 120.0:
            out.append(f"audio.fps must be in [1, 120] (got {self.fps})")
        l, t, r, b = self.face_box
        if not (0 <= l < r <= 1 and 0 <= t < b <= 1):
            out.append("audio.face_box must be fractions 0 <= left < right <= 1, 0 <= top < bottom <= 1")
        if not 0 <= self.bn_windows <= 100_000 or not 1 <= self.init_windows <= 100_000:
            out.append("audio.bn_windows must be in [0, 100000] and audio.init_windows in [1, 100000]")
        return out


@dataclass(config=_STRICT)
class TrainConfig:
    """The whole training configuration (see the module docstring)."""

    stage: str = "stage1"
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    optim: OptimSection = dataclasses.field(default_factory=OptimSection)
    loss: LossSection = dataclasses.field(default_factory=LossSection)
    log: LogSection = dataclasses.field(default_factory=LogSection)
    emi_bridge: EMIBridgeSection = dataclasses.field(default_factory=EMIBridgeSection)
    audio: AudioSection = dataclasses.field(default_factory=AudioSection)
    output_dir: str = "runs/plugtalk"
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        problems = []
        positive = {"data.batch_size": self.data.batch_size, "optim.steps": self.optim.steps,
                    "log.every": self.log.every, "log.checkpoint_every": self.log.checkpoint_every,
                    "log.keep_last": self.log.keep_last, "loss.r1_every": self.loss.r1_every}
        problems += [f"{k} must be >= 1 (got {v})" for k, v in positive.items() if v < 1]
        if self.optim.lr <= 0:
            problems.append(f"optim.lr must be > 0 (got {self.optim.lr})")
        if self.data.workers < 0 or self.log.image_every < 0 or self.optim.warmup_steps < 0:
            problems.append("data.workers, log.image_every and optim.warmup_steps must be >= 0")
        weights = {k: getattr(self.loss, k) for k in ("rec", "per", "adv", "dis", "dmem", "align", "r1_gamma")}
        weights.update({f"stage_weights.{k}": v for k, v in self.loss.stage_weights.items()})
        problems += [f"loss.{k} must be >= 0 (got {v})" for k, v in weights.items() if v < 0]
        b = self.emi_bridge
        if not (0 <= b.warmup <= 1 and 0 <= b.ramp <= 1 and b.warmup + b.ramp <= 1) or b.distill < 0:
            problems.append(f"emi_bridge: need warmup, ramp in [0, 1] with warmup + ramp <= 1 (the gate must reach 0 "
                            f"by the end) and distill >= 0 (got {b.warmup}, {b.ramp}, {b.distill})")
        problems += self.audio.problems()
        problems += _stage_problems(self)
        problems += _backbone_problems(self.model.backbone)
        problems += [f"{k} must be a finite number (got {v})" for k, v in _numbers(self.to_dict())
                     if isinstance(v, float) and not math.isfinite(v)]
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` / ``list`` / scalars (YAML- and ``torch.load(weights_only=True)``-safe)."""
        return _plain(dataclasses.asdict(self))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            lines.append(f"unknown key {loc!r}")
            continue
        # a rule of the config itself (raised in __post_init__) names its keys: its own words, no pydantic prefix
        own = e.get("ctx", {}).get("error") if e["type"] == "value_error" else None
        msg = str(own) if own is not None else e["msg"]
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def config_from_mapping(values: dict[str, Any] | None, origin: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts (as read from YAML).

    Raises:
        InputError: unknown keys (named with their dotted path and the valid keys of that section),
            values of the wrong type, or inconsistent settings.
    """
    values = dict(values or {})
    try:
        return TrainConfig(**_sections(values, origin))
    except InputError:  # already names its origin
        raise
    except ValidationError as e:
        raise InputError(f"{origin}: {_describe(e)}") from None
    except (TypeError, ValueError) as e:
        raise InputError(f"{origin}: {e}") from None


_SECTION_TYPES = {"model": ModelSection, "data": DataSection, "optim": OptimSection, "loss": LossSection,
                  "log": LogSection, "emi_bridge": EMIBridgeSection}


def _sections(values: dict[str, Any], origin: str) -> dict[str, Any]:
    top = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - top)
    if unknown:
        raise InputError(f"{origin}: unknown key(s) {unknown}; valid top-level keys: {sorted(top)}")
    out = dict(values)
    for name, cls in _SECTION_TYPES.items():
        if name not in out:
            continue
        section = out[name] if out[name] is not None else {}
        if not isinstance(section, dict):
            raise InputError(f"{origin}: {name!r} must be a mapping, got {type(section).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(section) - fields)
        if bad:
            raise InputError(f"{origin}: unknown key(s) {[f'{name}.{k}' for k in bad]}; valid keys of "
                             f"{name!r}: {sorted(fields)}")
        try:
            out[name] = cls(**section)
        except ValidationError as e:
            raise InputError(f"{origin}: {name}.{_describe(e)}") from None
    return out


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to nested ``values``.

    Raises:
        InputError: an override without ``=`` or a dotted path through a non-mapping.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r}: expected KEY=VALUE, e.g. optim.steps=1000")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise InputError(f"override {item!r}: {p!r} is not a section")
            node[p] = child = dict(child)
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as e:  # e.g. a !!python/... tag: never constructed, refused like in a file
            why = " ".join(str(getattr(e, "problem", None) or e).split())
            raise InputError(f"--set {item}: not a plain YAML value ({why})") from None
    return out


def _numbers(tree: Any, prefix: str = ""):
    """``(dotted key, value)`` of every leaf of a nested dict / list."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list)):
            yield from _numbers(v, key + ".")
        else:
            yield key, v


def packaged_configs() -> dict[str, Path]:
    """Configs shipped in ``plugtalk/configs`` by name (``fixtalk-edtalk256``, ``small-cpu``, ...)."""
    folder = resources.files("plugtalk") / "configs"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A config file path, or the name of a packaged config.

    Raises:
        InputError: neither a file nor a packaged config name.
    """
    p = Path(expand_path(name))
    if p.is_file():
        return p
    shipped = packaged_configs()
    if str(name) in shipped:
        return shipped[str(name)]
    raise InputError(f"config {str(name)!r} is neither a file nor a packaged config ({', '.join(sorted(shipped))})")


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config (a file or a packaged config name), apply ``overrides``
    (``section.key=value``) and validate it.

    Raises:
        InputError: unreadable / invalid YAML, unknown keys, wrong types or inconsistent values.
    """
    p = resolve_config_path(path)
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{p}: not valid YAML: {_yaml_problem(e)}") from None
    if not isinstance(values, dict):
        raise InputError(f"{p}: expected a mapping of sections at the top level, got {type(values).__name__}")
    combined = apply_overrides(values, overrides or [])
    try:
        return config_from_mapping(combined, origin=str(p))
    except InputError:
        if not overrides or not _valid(values):
            raise
    # the file alone is valid: the overrides are at fault, so name them, not the file
    return config_from_mapping(combined, origin="--set " + " ".join(overrides))


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line for a YAML parse error: what went wrong and where (1-based line and column)."""
    mark = getattr(e, "problem_mark", None)
    what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
    return f"{what} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else " ".join(what.split())


def _valid(values: dict[str, Any]) -> bool:
    try:
        config_from_mapping(values)
    except InputError:
        return False
    return True
