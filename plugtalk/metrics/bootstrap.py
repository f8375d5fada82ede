"""Bootstrap confidence intervals for evaluation tables: means over pairs and paired differences to a baseline.

The unit of resampling is the *pair* (source, driving video): frames within one pair share the source
and the driver and are not independent, so a pair's frames are first averaged to one value and the
pairs are then resampled with replacement (Efron & Tibshirani 1993, ch. 13; percentile interval).
Paired differences (variant minus baseline on the same pairs) remove the between-pair spread that both
share, which is what lets a small effect be resolved.
"""

from __future__ import annotations

import dataclasses
from typing import Hashable, Mapping

import numpy as np

from ..errors import InputError

__all__ = ["Interval", "bootstrap_ci", "paired_difference"]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval: ``estimate`` (the statistic of the sample), ``low`` /
    ``high`` (the ``confidence`` percentile interval), ``n`` (values used; non-finite ones are left out)."""

    estimate: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (the effect's sign is resolved at this confidence)."""
        return bool(self.n > 1 and (self.low > 0 or self.high < 0))

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "resolved": self.resolved}


def bootstrap_ci(values, *, n_resamples: int = 10000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval (values resampled with replacement).

    Args:
        values: 1-D per-pair values (NaN / inf are left out and not counted in ``n``).
        n_resamples: bootstrap resamples.
        confidence: interval coverage in ``(0, 1)``.
        seed: the generator's seed (same seed and values -> the same interval).

    Returns:
        :class:`Interval`; all NaN when no value is finite, ``low == high == estimate`` for one value.

    Raises:
        InputError: ``values`` not 1-D, ``confidence`` outside ``(0, 1)`` or ``n_resamples < 1``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise InputError(f"bootstrap: expected 1-D values, got shape {v.shape}")
    if not 0 < confidence < 1:
        raise InputError(f"bootstrap: confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise InputError(f"bootstrap: n_resamples must be >= 1, got {n_resamples}")
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, confidence)
    est = float(v.mean())
    if len(v) == 1:
        return Interval(est, est, est, 1, confidence)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, 2_000_000 // len(v))  # bounded memory
    for s in range(0, n_resamples, step):
        k = min(step, n_resamples - s)
        means[s:s + k] = v[rng.integers(0, len(v), size=(k, len(v)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(est, float(low), float(high), len(v), confidence)


def paired_difference(variant: Mapping[Hashable, float], baseline: Mapping[Hashable, float], **kwargs) -> Interval:
    """Mean of ``variant[k] - baseline[k]`` over the pairs ``k`` both scored (finite values), with a
    bootstrap interval that resamples those pairs (:func:`bootstrap_ci`; same keyword arguments).

    Args:
        variant, baseline: ``{pair key: per-pair value}`` (e.g. the pair's mean over its frames).
    """
    keys = [k for k in variant if k in baseline]
    diffs = np.array([float(variant[k]) - float(baseline[k]) for k in keys], dtype=np.float64)
    return bootstrap_ci(diffs, **kwargs)
