"""``--protocol leakage``: the v2 reference protocol for any checkpoint ``animate`` accepts.

Cross-reenactment pairs from the data folder (never one identity on both sides) scored for CSIM to the
source, the identity shift toward the driver per frame, NIQE, CPBD and faces found; self-reenactment for
PSNR, SSIM, F-LMD and CSIM to the true frame; tables over all pairs, photo vs stylised sources and the
top third by head-pose and by expression difference, and by tercile; with two or more models, every
model minus the first with 95 % pair-bootstrap intervals (resolved or not).  Reference rows:
``copy-source`` (the source frame repeated) and, for self-reenactment, ``<S>px-ceiling`` (the true frames
down-sampled to the models' size and back).
"""

from __future__ import annotations

import time
from pathlib import Path

from .pairs import cross_pairs, load_data, self_pairs, sources, spread
from .report import plot_bins, plot_identity_shift, write_report
from .runner import SCORE_SIZE, ModelSpec, evaluate_pairs
from .tables import CROSS_METRICS, SELF_METRICS, delta, delta_cell, metric_table, subsets, tercile_lines

__all__ = ["run_leakage"]


def _timing(rows: list[dict], labels: list[str], seconds: float, jobs: int) -> tuple[dict, str]:
    cpu = sum(r.get("cpu_seconds", 0.0) for r in rows)
    per_model = {m: sum(r.get("cpu_seconds_per_model", {}).get(m, 0.0) for r in rows) for m in labels}
    faces = cpu - sum(per_model.values())
    line = (f"time: {seconds:.0f} s wall on {jobs} process(es); {cpu:.0f} CPU-s summed over the pairs: "
            + ", ".join(f"{m} render + score {v:.0f} s" for m, v in per_model.items())
            + f", decoding + source/driver face analysis + reference rows {faces:.0f} s")
    return {"seconds": seconds, "pair_cpu_seconds": cpu, "cpu_seconds_per_model": per_model,
            "cpu_seconds_faces_and_references": faces, "jobs": jobs}, line


def _networks(settings) -> dict[str, str]:
    enc = f"ArcFace ({Path(settings.arcface_weights).name})" if settings.arcface_weights else \
        "dlib ResNet face descriptor (a substitute for the papers' ArcFace)"
    return {"csim": enc, "identity_shift": enc, "f_lmd": "dlib 68-point landmarks",
            "niqe": "NIQE with the pristine-image parameters (no network)", "cpbd": "CPBD (no network)",
            "faces_found": "dlib HOG face detector", "pose_diff": "head pose from dlib landmarks"}


def run_leakage(settings, models: list[ModelSpec], log=print) -> dict | None:
    """Run the protocol and write ``report.md``, ``report.json`` and the plots into ``settings.out``.

    Returns:
        The report's data (``None`` on torchrun ranks other than 0).
    """
    t0 = time.perf_counter()
    data = load_data(settings.data, split=settings.split, stills=settings.stills)
    cross, own = cross_pairs(data), self_pairs(data)
    log(f"{data.layout}: {len(cross)} cross-reenactment pairs ({len(sources(data))} sources x the clips of other "
        f"identities), {len(own)} self-reenactment pairs")
    cross, own = spread(cross, settings.max_pairs), spread(own, settings.max_self)
    rows = evaluate_pairs(cross + own, models, frames=settings.frames, self_frames=settings.self_frames,
                          jobs=settings.jobs, cache_dir=settings.out, resume=settings.resume,
                          arcface_weights=None if settings.arcface_weights is None else str(settings.arcface_weights),
                          log=log)
    if rows is None:
        return None
    labels = [m.label for m in models]
    base = labels[0] if len(labels) > 1 else None
    c_rows = [r for r in rows if r["kind"] == "cross"]
    s_rows = [r for r in rows if r["kind"] == "self"]
    refs = sorted({m for r in s_rows for m in r["scores"]} - set(labels))
    timing, time_line = _timing(rows, labels, time.perf_counter() - t0, settings.jobs)
    out = ["# plugtalk benchmark: identity leakage (protocol v2)", "",
           f"Data: {settings.data} ({data.layout}). Models: " + ", ".join(
               f"`{m.label}` ({m.checkpoint or ('renderer' if m.renderer else 'embedded default')})" for m in models)
           + ".", "",
           f"{len(c_rows)} cross-reenactment pairs ({settings.frames} frames each, evenly spaced over the driver's "
           f"first 100), {len(s_rows)} self-reenactment pairs ({settings.self_frames} frames after the source "
           f"frame); absolute motion; scored at {SCORE_SIZE} px; mean ± sd over pairs; (n=k): pairs with a value "
           "where fewer than all had one (no face found).", "",
           "Networks: " + "; ".join(f"{k}: {v}" for k, v in _networks(settings).items()) + ".", "", time_line, ""]
    summary: dict = {"cross": {}, "self": {}}
    for label, sub in subsets(c_rows).items():
        out += [f"## Cross-reenactment: {label} ({len(sub)} pairs)", ""]
        lines, summary["cross"][label] = metric_table(sub, [*labels, "copy-source"], CROSS_METRICS, base,
                                                      seed=settings.seed)
        out += lines + [""]
    for key, label in (("pose_diff", "head-pose difference (degrees)"), ("expression_dist", "expression distance")):
        lines, summary.setdefault("terciles", {})[key] = tercile_lines(c_rows, labels, base, key, label)
        out += lines
    out += [f"## Self-reenactment ({len(s_rows)} clips)", ""]
    lines, summary["self"] = metric_table(s_rows, [*labels, *refs], SELF_METRICS, base, seed=settings.seed)
    out += lines + ["", "Against copying the source frame (model minus copy-source; ✓: resolved):", "",
                    "| model | ΔPSNR | ΔSSIM |", "|---|---|---|"]
    for v in labels:
        d = {m: delta(v, "copy-source", s_rows, m, settings.seed + 1) for m in ("psnr", "ssim")}
        summary["self"].setdefault(v, {})["minus_copy-source"] = d
        out.append(f"| {v} | {delta_cell(d['psnr'], len(s_rows))} | {delta_cell(d['ssim'], len(s_rows))} |")
    no_face = sorted({(r["source"], r["style"]) for r in c_rows if not r["source_face"]})
    out += ["", f"Sources without a face found: {len(no_face)}"
            + (f" ({', '.join(f'{n} [{s}]' for n, s in no_face)})" if no_face else "") + "; their pairs stay in "
            "the tables (no CSIM / identity shift there), not in the top-third tables.", ""]
    plots = []
    if c_rows:
        plots.append(plot_identity_shift(c_rows, labels, Path(settings.out) / "identity_shift_per_pair.png").name)
        plots.append(plot_bins(summary["cross"], labels, Path(settings.out) / "extreme_bins.png").name)
    out += [f"Plots: {', '.join(plots)}." if plots else ""]
    report = {"protocol": "leakage", "config": {"data": str(settings.data), "layout": data.layout,
                                                "frames": settings.frames, "self_frames": settings.self_frames,
                                                "score_size": SCORE_SIZE, "cross_pairs": len(c_rows),
                                                "self_pairs": len(s_rows), "seed": settings.seed},
              "models": [{"label": m.label, "checkpoint": m.checkpoint, "backbone": m.backbone} for m in models],
              "networks": _networks(settings), "not_run": {}, "summary": summary, "timing": timing,
              "plots": plots, "rows": rows}
    write_report(Path(settings.out), out, report)
    log(time_line)
    return report
