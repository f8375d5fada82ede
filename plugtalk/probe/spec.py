"""A probe run as data: :class:`ProbeSpec` (backbone, checkpoint, taps, groups, pairs, metrics, seed)
round-trips through JSON, and ``report.json`` embeds it, so ``plugtalk probe --spec report.json``
repeats a run exactly (random weights are drawn from ``seed``)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from .scoring import DEFAULT_METRICS, OUTPUT_FACES, SCORER_METRICS
from .taps import DIRECTIONS

__all__ = ["image_driven", "probe_backbones", "PAIR_KINDS", "PairSpec", "ProbeSpec", "load_spec"]



def check_probe_backbone(name: str) -> None:
    """Raise :class:`InputError` unless the probe can build ``name``."""
    if name not in probe_backbones():
        raise InputError(f"probe: unknown backbone {name!r}; choose from {probe_backbones()}")


def probe_backbones() -> tuple[str, ...]:
    """Backbones the probe can build by name: every registered animator.  Those driven by driving frames
    swap taps between a source/driving pair's runs; those driven by controls only (GoHD's coefficient
    windows) between the runs of a source and a donor portrait (:mod:`plugtalk.probe.controlled`)."""
    from ..backbones import animator_backbones

    return tuple(animator_backbones())


def image_driven(name: str) -> bool:
    """Whether the backbone ``name`` is driven by driving images (else by controls only: GoHD)."""
    from ..backbones import backbone_entry

    return "driving" in backbone_entry(name).controls


PAIR_KINDS = ("self", "cross")
SPEC_VERSION = 1
#: Scoring size for animators smaller than NIQE's 96 px patches when ``ProbeSpec.score_size`` is ``None``.
SMALL_MODEL_SCORE_SIZE = 256
#: The smallest output NIQE can score (its patch size).
NIQE_MIN_SIZE = 96


def _fields(cls, d: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise InputError(f"{what}: expected a JSON object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(f"{what}: unknown field(s) {unknown}; fields: {sorted(names)}")
    return dict(d)


@dataclasses.dataclass
class PairSpec:
    """One source/driving pair (for an animator without a driving image, GoHD: ``driving`` is the donor
    portrait whose taps go into the source's run): a frame of a video (``*_frame`` = frame index, 0-based, at the
    file's native rate) or an image file (frame index ignored, 0); ``kind`` is ``"self"`` (same clip /
    identity) or ``"cross"`` (different identities)."""

    source: str
    driving: str
    source_frame: int = 0
    driving_frame: int = 0
    kind: str = "cross"

    def __post_init__(self) -> None:
        if self.kind not in PAIR_KINDS:
            raise InputError(f"pair kind must be one of {PAIR_KINDS}, got {self.kind!r}")
        for name in ("source_frame", "driving_frame"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f"pair {name} must be an integer >= 0, got {v!r}")
        self.source, self.driving = str(self.source), str(self.driving)

    @property
    def labels(self) -> tuple[str, str]:
        """``("clip.mp4#12", "other.mp4#80")`` for messages and the grid."""
        return f"{Path(self.source).name}#{self.source_frame}", f"{Path(self.driving).name}#{self.driving_frame}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PairSpec:
        return cls(**_fields(cls, d, "pair"))


@dataclasses.dataclass
class ProbeSpec:
    """Everything that defines a probe run.

    Attributes:
        backbone: one of :func:`probe_backbones` (``"lia"``, ``"edtalk"``, ``"dpe"``, ``"gohd"``).
        pairs: the source/driving pairs.
        checkpoint: official ``.pt``, plugtalk backbone or retrofit ``.safetensors``; ``None``: the
            default checkpoint if one is installed, else random weights drawn from ``seed``.
        backbone_options: adapter options (DPE: ``{"mode": "expression" | "pose"}``).
        taps: tap names to swap one by one (``None``: every paired tap).
        groups: names of FixTalk's groups to swap (``pyramid``, ``identity``, ``pyramid-but-identity``;
            ``None``: all of them).
        directions: ``"to_source"`` (driving value into the source branch) and/or ``"to_driving"``;
            ``None``: both, or ``["to_source"]`` alone for animators without a driving image (GoHD).
        coefficients: GoHD only: a coefficient file whose middle window drives both runs of every pair
            (``None``: a neutral window, zero expression / pose / gaze).
        metrics: subset of ``csim``, ``lmd``, ``niqe``, ``cpbd``.
        output_faces: ``"detect"`` or ``"driving"`` (see :class:`~plugtalk.probe.scoring.FaceScorer`).
        score_size: score at this size in px (see :class:`~plugtalk.probe.scoring.FaceScorer`); ``None``:
            the animator's size, or :data:`SMALL_MODEL_SCORE_SIZE` for animators under NIQE's 96 px.
        seed: random weights (without checkpoint) and pair sampling.
        batch_size: images per forward pass (``None``: 1 on the CPU, 8 on accelerators).
        device: torch device, e.g. ``"cpu"``, ``"cuda"``.
    """

    backbone: str
    pairs: list[PairSpec]
    checkpoint: str | None = None
    backbone_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    taps: list[str] | None = None
    groups: list[str] | None = None
    directions: list[str] | None = None
    metrics: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_METRICS))
    output_faces: str = "detect"
    score_size: int | None = None
    seed: int = 0
    batch_size: int | None = None
    device: str = "cpu"
    coefficients: str | None = None

    def __post_init__(self) -> None:
        check_probe_backbone(self.backbone)
        controlled = not image_driven(self.backbone)
        if self.directions is None:
            self.directions = ["to_source"] if controlled else list(DIRECTIONS)
        if controlled:
            from .controlled import check_directions

            check_directions(self.directions)
        if self.coefficients is not None:
            if not controlled:
                raise InputError(f"probe: coefficients drive animators without a driving image; {self.backbone} "
                                 "is driven by driving frames")
            self.coefficients = str(self.coefficients)
        self.pairs = [p if isinstance(p, PairSpec) else PairSpec.from_json(p) for p in self.pairs]
        if not self.pairs:
            raise InputError("probe: no source/driving pairs")
        self.directions = list(self.directions)
        bad = [d for d in self.directions if d not in DIRECTIONS]
        if bad or not self.directions:
            raise InputError(f"probe: directions must be a non-empty subset of {DIRECTIONS}, got {self.directions}")
        self.metrics = list(self.metrics)
        bad = [m for m in self.metrics if m not in SCORER_METRICS]
        if bad or not self.metrics:
            raise InputError(f"probe: metrics must be a non-empty subset of {SCORER_METRICS}, got {self.metrics}")
        if self.output_faces not in OUTPUT_FACES:
            raise InputError(f"probe: output_faces must be one of {OUTPUT_FACES}, got {self.output_faces!r}")
        if self.score_size is not None and (not isinstance(self.score_size, int) or self.score_size < 16):
            raise InputError(f"probe: score_size must be an integer >= 16, got {self.score_size!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise InputError(f"probe: batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.checkpoint is not None:
            self.checkpoint = str(self.checkpoint)
        self.taps = list(self.taps) if self.taps is not None else None
        self.groups = list(self.groups) if self.groups is not None else None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pairs"] = [p.to_json() for p in self.pairs]
        return {"plugtalk_probe_spec": SPEC_VERSION, **d}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ProbeSpec:
        """From :meth:`to_json`'s dict, or from a whole ``report.json`` (its ``spec``)."""
        if isinstance(d, Mapping) and "plugtalk_probe_report" in d:
            d = d.get("spec") or {}
        d = dict(d) if isinstance(d, Mapping) else d
        if isinstance(d, dict):
            version = d.pop("plugtalk_probe_spec", SPEC_VERSION)
            if version != SPEC_VERSION:
                raise InputError(f"probe spec version {version!r} is not supported (expected {SPEC_VERSION})")
        fields = _fields(cls, d, "probe spec")
        missing = [f for f in ("backbone", "pairs") if f not in fields]
        if missing:
            raise InputError(f"probe spec: missing field(s) {missing}")
        return cls(**fields)


def load_spec(path: str | os.PathLike) -> ProbeSpec:
    """Read a spec, or the spec inside a ``report.json``.

    Raises:
        InputError: missing file, not JSON, or not a probe spec/report.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"probe spec {str(p)!r} does not exist")
    try:
        d = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"probe spec {p.name!r} is not valid JSON ({e})") from None
    if isinstance(d, dict) and "plugtalk_probe_report" in d and not d.get("spec"):
        raise InputError(f"{p.name!r} is a probe report without a spec (made by the Python API on tensors); "
                         "it cannot be re-run from the command line")
    return ProbeSpec.from_json(d)
