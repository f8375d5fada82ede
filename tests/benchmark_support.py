"""Planted renderers for the benchmark tests (module level, so worker processes and torchrun ranks import them)."""

from __future__ import annotations

import numpy as np

CALLS = {"n": 0, "fail_after": None}


def copy_source(source: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """A model without leakage and without motion: every output frame is the source."""
    return np.repeat(source[None], len(driving), axis=0)


def copy_driver(source: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """A maximally leaky model: the output is the driving frame (the driver's identity, not the source's)."""
    CALLS["n"] += 1
    if CALLS["fail_after"] is not None and CALLS["n"] > CALLS["fail_after"]:
        raise KeyboardInterrupt("planted interruption")
    return np.ascontiguousarray(driving)


def small_settings(data, out, **kw):
    from plugtalk.benchmark import BenchmarkSettings

    base = dict(frames=2, self_frames=2, max_pairs=4, max_self=1, jobs=1)
    return BenchmarkSettings(data=data, out=out, **{**base, **kw})


def planted_models():
    from plugtalk.benchmark import ModelSpec

    return [ModelSpec("copy", renderer=copy_source), ModelSpec("leaky", renderer=copy_driver)]


def without_timing(report: dict) -> str:
    """The report's content that must not depend on how or when it was computed, as canonical JSON text (NaN
    compares equal to NaN there)."""
    import json

    drop = {"seconds", "cpu_seconds", "cpu_seconds_per_model"}
    return json.dumps({"summary": report["summary"], "rows": [{k: v for k, v in r.items() if k not in drop}
                                                               for r in report["rows"]]}, sort_keys=True)
