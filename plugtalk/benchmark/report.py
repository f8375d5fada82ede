"""``report.md``, ``report.json`` and the plots of a benchmark, written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path, save_figure
from ..io.jsonfile import write_json
from .tables import values

__all__ = ["write_report", "plot_identity_shift", "plot_bins"]


def write_report(out: Path, lines: list[str], data: dict) -> None:
    """``out/report.md`` (``lines``) and ``out/report.json`` (``data``), each atomically."""
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines).rstrip("\n") + "\n")
    write_json(out / "report.json", data, indent=1)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_identity_shift(cross: list[dict], models: list[str], path: Path) -> Path:
    """Per-pair identity shift toward the driver of each model, pairs sorted by the first model's value."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    order = sorted(cross, key=lambda r: values([r], models[0], "identity_shift").get(r["key"], math.inf))
    x = np.arange(len(order))
    for m in [*models, "copy-source"]:
        v = [values([r], m, "identity_shift").get(r["key"], np.nan) for r in order]
        ax.plot(x, v, marker="." if len(x) < 80 else None, lw=1, label=m, ls="--" if m == "copy-source" else "-")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel(f"cross-reenactment pair (sorted by {models[0]})")
    ax.set_ylabel("identity shift toward the driver\nCSIM(out, drv) - CSIM(src, drv)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bins(summary: dict, models: list[str], path: Path, metric: str = "identity_shift") -> Path:
    """Mean ``metric`` per model over all cross pairs and the extreme-pose / extreme-expression thirds."""
    plt = _plt()
    bins = [k for k in summary if k.startswith(("all", "top third"))]
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [*models, "copy-source"]
    width = 0.8 / max(len(names), 1)
    for j, m in enumerate(names):
        v = [((summary[b].get(m) or {}).get(metric) or {}).get("mean") for b in bins]
        ax.bar(np.arange(len(bins)) + j * width, [np.nan if x is None else x for x in v], width, label=m)
    ax.set_xticks(np.arange(len(bins)) + 0.4 - width / 2, [b.split(" (")[0] for b in bins], fontsize=7)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel(f"mean {metric}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
