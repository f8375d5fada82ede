"""Probe results: per-pair scores, their summaries over self- and cross-reenactment pairs, the ranking,
and the JSON form written to ``report.json``.

Derived per output (pair ``i``), with CSIM from :class:`~plugtalk.probe.scoring.FaceScorer`:

* ``identity_shift = CSIM(out, driving) - CSIM(out, source)`` (DESIGN.md Sec. 4; higher: the output
  looks more like the driver);
* ``identity_shift_delta``: the patched output's identity shift minus the unpatched output's;
* ``identity_transfer``: how far the output's identity moves toward the *donor* branch when the
  tap's value is swapped in: ``identity_shift_delta`` for ``d->s`` patches (the driver's value goes
  into the source branch) and ``-identity_shift_delta`` for ``s->d`` patches.  The ranking key: a
  tap that carries identity scores high in both directions, a tap the decoder ignores scores 0;
* ``lmd_delta``, ``niqe_delta``, ``cpbd_delta``, ``csim_source_delta``: changes against the unpatched output;
* ``pixel_change``: mean absolute difference to the unpatched output (image units, [-1, 1] range):
  0 when the tap has no effect at all.

Summaries give mean, spread (sample standard deviation) and count of non-NaN values per pair kind
(``self``, ``cross``, ``all``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..io.jsonfile import to_jsonable
from .taps import TapInfo, Variant

__all__ = [
    "KINDS",
    "ProbeImages",
    "ProbeResult",
    "Scores",
    "VariantResult",
    "baseline_scores",
    "derive_scores",
    "rank_variants",
    "summarize",
]

KINDS = ("self", "cross")
SIGN = {"to_source": 1.0, "to_driving": -1.0}


def _stats(v: np.ndarray) -> dict[str, float]:
    ok = v[~np.isnan(v)]
    n = int(ok.size)
    return {"mean": float(ok.mean()) if n else float("nan"),
            "std": float(ok.std(ddof=1)) if n > 1 else (0.0 if n == 1 else float("nan")), "n": n}


def summarize(per_pair: Mapping[str, np.ndarray], kinds: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """``{kind: {metric: {"mean", "std", "n"}}}`` for ``self``, ``cross`` (those present) and ``all``."""
    k = np.asarray(list(kinds))
    out = {}
    for kind in [*(x for x in KINDS if (k == x).any()), "all"]:
        mask = np.ones(len(k), bool) if kind == "all" else k == kind
        out[kind] = {m: _stats(np.asarray(v, np.float64)[mask]) for m, v in per_pair.items()}
    return out


@dataclasses.dataclass
class Scores:
    """Per-pair values (``metric -> (N,)``) and their :func:`summarize` summary."""

    per_pair: dict[str, np.ndarray]
    summary: dict[str, dict[str, dict[str, float]]]

    def mean(self, metric: str, kind: str = "cross") -> float:
        return self.summary.get(kind, {}).get(metric, {}).get("mean", float("nan"))

    def to_json(self) -> dict[str, Any]:
        return {"per_pair": {m: v for m, v in self.per_pair.items()}, "summary": self.summary}


def baseline_scores(raw: Mapping[str, np.ndarray], kinds: Sequence[str]) -> Scores:
    """Scores of the unpatched outputs (adds ``identity_shift``)."""
    per = {m: np.asarray(v, np.float64) for m, v in raw.items()}
    if "csim_source" in per and "csim_driving" in per:
        per["identity_shift"] = per["csim_driving"] - per["csim_source"]
    return Scores(per, summarize(per, kinds))


def derive_scores(raw: Mapping[str, np.ndarray], baseline: Scores, variant: Variant, pixel_change: np.ndarray,
                  kinds: Sequence[str]) -> Scores:
    """Scores of a patched variant: raw values, identity shift/transfer and deltas against ``baseline``."""
    per = {m: np.asarray(v, np.float64) for m, v in raw.items()}
    base = baseline.per_pair
    if "csim_source" in per and "csim_driving" in per:
        per["identity_shift"] = per["csim_driving"] - per["csim_source"]
        per["identity_shift_delta"] = per["identity_shift"] - base["identity_shift"]
        per["identity_transfer"] = SIGN[variant.direction] * per["identity_shift_delta"]
        per["csim_source_delta"] = per["csim_source"] - base["csim_source"]
    for m in ("lmd", "niqe", "cpbd"):
        if m in per:
            per[f"{m}_delta"] = per[m] - base[m]
    per["pixel_change"] = np.asarray(pixel_change, np.float64)
    return Scores(per, summarize(per, kinds))


@dataclasses.dataclass
class VariantResult:
    """One variant's scores and rank (1 = moves identity most); ``inert``: why the variant cannot change
    the output of this model (then it is neither rendered, scored nor ranked: rank 0, empty scores)."""

    variant: Variant
    scores: Scores
    rank: int = 0
    inert: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {**self.variant.to_json(), "rank": self.rank, **self.scores.to_json()}
        if self.inert is not None:
            out["inert"] = self.inert
        return out

    @classmethod
    def unranked(cls, variant: Variant, reason: str) -> "VariantResult":
        """An inert variant: no scores, rank 0."""
        return cls(variant, Scores({}, {}), 0, reason)


def _rank_key(kinds: Sequence[str]) -> tuple[str, str]:
    kind = "cross" if "cross" in kinds else ("self" if "self" in kinds else "all")
    return kind, "identity_transfer"


def rank_variants(results: list[VariantResult], kinds: Sequence[str]) -> str:
    """Sort ``results`` in place by identity transfer on cross-reenactment pairs (self-reenactment when
    there are none), highest first, NaN last, ties broken by pixel change; set ``rank`` (1 = first).
    Returns a description of the key."""
    kind, metric = _rank_key(kinds)

    def key(r: VariantResult):
        v = r.scores.mean(metric, kind)
        p = r.scores.mean("pixel_change", "all")
        return (math.isnan(v), -v if not math.isnan(v) else 0.0, -p if not math.isnan(p) else 0.0)

    results.sort(key=key)
    for i, r in enumerate(results, 1):
        r.rank = i
    return f"{metric} ({kind}-reenactment mean), then pixel_change"


@dataclasses.dataclass
class ProbeImages:
    """uint8 ``(N, H, W, 3)`` images of the scored pairs, for the grid."""

    sources: np.ndarray
    drivings: np.ndarray
    baseline: np.ndarray
    outputs: dict[str, np.ndarray]   #: variant key -> outputs


@dataclasses.dataclass
class ProbeResult:
    """Everything a probe run found.

    Attributes:
        taps: tap name -> :class:`TapInfo` (like timm's FeatureInfo).
        groups: group name -> member taps.
        unpaired_taps: hook points that could not be swapped (no counterpart in the other branch).
        pairs: per scored pair: labels and ``kind`` (``"self"`` / ``"cross"``).
        skipped_pairs: pairs left out, with the reason.
        baseline: :class:`Scores` of the unpatched outputs.
        variants: :class:`VariantResult` s in rank order (the swaps that can change the output).
        inert: variants that cannot change this model's output (a value the decoder never reads, found
            by :mod:`plugtalk.probe.reach`), with the reason; not rendered, scored or ranked.
        rank_by: the ranking key.
        scorer: what was measured and with which models.
        timing: seconds and counts (``model_s``, ``scoring_s``, ``total_s``, ``images_rendered``, ...).
        warnings: messages for the user (random weights, skipped pairs, substitute CSIM model, ...).
        model: description of the animator probed.
        spec: the :class:`~plugtalk.probe.spec.ProbeSpec` when the run came from one.
        images: the images (not serialised to JSON).
    """

    taps: dict[str, TapInfo]
    groups: dict[str, tuple[str, ...]]
    unpaired_taps: list[str]
    pairs: list[dict[str, Any]]
    skipped_pairs: list[dict[str, Any]]
    baseline: Scores
    variants: list[VariantResult]
    rank_by: str
    scorer: dict[str, Any]
    timing: dict[str, Any]
    warnings: list[str]
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    spec: Any = None
    images: ProbeImages | None = None
    inert: list[VariantResult] = dataclasses.field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [p["kind"] for p in self.pairs]

    def variant(self, key: str) -> VariantResult:
        for r in [*self.variants, *self.inert]:
            if r.variant.key == key:
                return r
        raise KeyError(f"no variant {key!r}; variants: {[r.variant.key for r in [*self.variants, *self.inert]]}")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> null); contains the spec, so the run can be reproduced from it."""
        import torch

        from .. import __version__

        return to_jsonable({
            "plugtalk_probe_report": 1,
            "spec": self.spec.to_json() if self.spec is not None else None,
            "model": self.model,
            "taps": [t.to_json() for t in self.taps.values()],
            "groups": {g: list(m) for g, m in self.groups.items()},
            "unpaired_taps": self.unpaired_taps,
            "pairs": self.pairs,
            "skipped_pairs": self.skipped_pairs,
            "scorer": self.scorer,
            "rank_by": self.rank_by,
            "baseline": self.baseline.to_json(),
            "variants": [r.to_json() for r in self.variants],
            "inert_variants": [{**r.variant.to_json(), "inert": r.inert} for r in self.inert],
            "timing": self.timing,
            "warnings": self.warnings,
            "versions": {"plugtalk": __version__, "torch": torch.__version__},
        }, nonfinite="null")
