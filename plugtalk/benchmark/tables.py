"""The protocol's tables from the per-pair rows: means ± sd over pairs, paired differences to the first model
with 95 % pair-bootstrap intervals (:func:`plugtalk.metrics.bootstrap.paired_difference`; resolved when the
interval excludes 0), over all cross pairs, photo vs stylised sources, the top third by head-pose difference
and by expression distance, and by tercile."""

from __future__ import annotations

import math
import statistics

__all__ = ["CROSS_METRICS", "SELF_METRICS", "values", "delta", "metric_table", "subsets", "tercile_lines",
           "delta_cell"]

#: csim: output vs the source (identity kept?); identity_shift: CSIM(output, driving) - CSIM(source, driving);
#: faces_found: the share of output frames with a face (CSIM and the shift average over those frames only).
CROSS_METRICS = ("csim", "identity_shift", "niqe", "cpbd", "faces_found")
SELF_METRICS = ("psnr", "ssim", "f_lmd", "csim")
ARROWS = {"csim": "↑", "identity_shift": "↓", "niqe": "↓", "cpbd": "↑", "faces_found": "↑", "psnr": "↑",
          "ssim": "↑", "f_lmd": "↓", "m_lmd": "↓", "fid": "↓", "sync_conf": "↑", "sync_dist": "↓",
          "acc_emo": "↑"}
N_RESAMPLES = 10000


def values(rows: list[dict], model: str, metric: str) -> dict[str, float]:
    """``{pair key: value}`` of the pairs where ``model`` has a finite ``metric``."""
    out = {}
    for r in rows:
        v = r["scores"].get(model, {}).get(metric)
        if v is not None and math.isfinite(float(v)):
            out[r["key"]] = float(v)
    return out


def cell(vals: dict[str, float], total: int) -> str:
    if not vals:
        return "-"
    v = list(vals.values())
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.fmean(v):.3f} ± {sd:.3f}" + (f" (n={len(v)})" if len(v) < total else "")


def delta(model: str, base: str, rows: list[dict], metric: str, seed: int) -> dict | None:
    """``model - base`` on the pairs both scored, with its 95 % pair-bootstrap interval (``None``: no pairs)."""
    from ..metrics.bootstrap import paired_difference

    a, b = values(rows, model, metric), values(rows, base, metric)
    if not a or not b:
        return None
    return paired_difference(a, b, n_resamples=N_RESAMPLES, seed=seed).as_dict()


def delta_cell(d: dict | None, total: int | None = None) -> str:
    if d is None or d["n"] == 0:
        return "-"
    return (f"{d['estimate']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" + (" ✓" if d["resolved"] else "")
            + (f" (n={d['n']})" if total is None or d["n"] < total else ""))


def _name(m: str) -> str:
    return m.upper().replace("_", "-").replace("IDENTITY-SHIFT", "ID shift")


def metric_table(rows: list[dict], models: list[str], metrics: tuple[str, ...], base: str | None, seed: int = 0
                 ) -> tuple[list[str], dict]:
    """Markdown lines (means ± sd over pairs, then paired differences to ``base``) and their summary."""
    lines = ["| model | " + " | ".join(f"{_name(m)} {ARROWS.get(m, '')}" for m in metrics) + " |",
             "|" + "---|" * (len(metrics) + 1)]
    summary: dict = {}
    for model in models:
        vals = {m: values(rows, model, m) for m in metrics}
        if not any(vals.values()):
            continue
        summary[model] = {m: {"mean": statistics.fmean(v.values()) if v else None, "n": len(v)}
                          for m, v in vals.items()}
        lines.append(f"| {model} | " + " | ".join(cell(vals[m], len(rows)) for m in metrics) + " |")
    others = [m for m in models if m != base and m in summary]
    if base is not None and base in summary and others:
        lines += ["", f"Paired difference to `{base}` (model minus {base} on the same pairs), mean [95 % bootstrap CI "
                  "over pairs]; ✓: the CI excludes 0 (resolved):", "",
                  "| model | " + " | ".join(f"Δ{_name(m)}" for m in metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
        for model in others:
            deltas = {m: delta(model, base, rows, m, seed) for m in metrics}
            summary[model]["minus_" + base] = deltas
            lines.append(f"| {model} | " + " | ".join(delta_cell(deltas[m], len(rows)) for m in metrics) + " |")
    return lines, summary


def subsets(cross: list[dict]) -> dict[str, list[dict]]:
    """All cross pairs, by source style, and the top third by pose difference / expression distance."""
    out = {"all cross-reenactment pairs": cross,
           "photo sources": [r for r in cross if r["style"] == "photo"],
           "stylised sources (paintings, drawings, sculptures, cartoons)":
               [r for r in cross if r["style"] == "stylised"]}
    for key, label in (("pose_diff", "head-pose difference"), ("expression_dist", "expression distance")):
        known = [r for r in cross if math.isfinite(float(r.get(key, float("nan"))))]
        if known:
            cut = statistics.quantiles([float(r[key]) for r in known], n=3)[1] if len(known) > 2 else \
                min(float(r[key]) for r in known)
            out[f"top third by {label} (≥ {cut:.3g}{'°' if key == 'pose_diff' else ''})"] = \
                [r for r in known if float(r[key]) >= cut]
    return out


def tercile_lines(cross: list[dict], models: list[str], base: str | None, key: str, label: str
                  ) -> tuple[list[str], dict]:
    """Paired identity-shift and CSIM differences to ``base`` per tercile of ``key`` (low, middle, top)."""
    known = sorted((r for r in cross if math.isfinite(float(r.get(key, float("nan"))))), key=lambda r: float(r[key]))
    others = [m for m in models if m != base]
    if len(known) < 3 or base is None or not others:
        return [], {}
    thirds = [known[i * len(known) // 3:(i + 1) * len(known) // 3] for i in range(3)]
    lines = [f"Paired difference to `{base}` by {label} tercile, mean [95 % CI]; ✓: resolved:", "",
             "| model | metric | " + " | ".join(f"{name} {float(t[0][key]):.3g}–{float(t[-1][key]):.3g} (n={len(t)})"
                                               for name, t in zip(("low", "middle", "top"), thirds)) + " |",
             "|---|---|---|---|---|"]
    out: dict = {}
    for v in others:
        for m in ("identity_shift", "csim"):
            ds = [delta(v, base, t, m, 2) for t in thirds]
            out.setdefault(v, {})[m] = ds
            lines.append(f"| {v} | {m} | " + " | ".join(delta_cell(d, len(t)) for d, t in zip(ds, thirds)) + " |")
    return lines + [""], out
