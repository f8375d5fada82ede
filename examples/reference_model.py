"""The small reference model: FixTalk's ablation (baseline, +EMI, +EDI, +both) on real faces, end to end.

Training and probing run through the project's own commands (``plugtalk train``, ``plugtalk probe``); the
evaluation scores every protocol pair in-process with plugtalk's metrics (face models and every variant
loaded once per worker process: one subprocess per pair would load them 400 times), so the tables are
produced by this script, not typed:

    python examples/reference_model.py train      # B0 from scratch, then the four variants from B0
    python examples/reference_model.py evaluate   # protocol v2 = plugtalk benchmark -> eval/pairs.json, results.md
    python examples/reference_model.py probe      # plugtalk probe on the trained baseline B0
    python examples/reference_model.py table      # the tables again from eval/pairs.json
    python examples/reference_model.py export     # fp16 weights of one variant -> the package's default model
                                                  # (and the other side of the ablation -> compare.mp4's model)
    python examples/reference_model.py curve      # B0's kept checkpoints vs copy-source -> eval/curve.md
    python examples/reference_model.py card       # the probe, results and curve outputs -> docs/model_card.md

Data: ``faces/train`` of the shared folder (v2: 34 identities) for training; ``faces/test`` (9 held-out
identities) and ``stills/`` for evaluation; nothing is tuned on them.  Every step is resumable: a finished
run is skipped, an interrupted one continues from its last checkpoint; scored pairs are cached in
``eval/benchmark/rows.jsonl``.

Protocol v2 (``plugtalk benchmark --protocol leakage``, pairs and frames in plugtalk/benchmark/pairs.py; written
down in docs/model_card.md):
* B0: a 64 px LIA-family backbone trained from scratch (``b0.yaml``), or continuing an earlier model trained
  on training identities only (``--b0-init``; the v2 run continued the v1 default); then, from B0 and with the same
  number of optimizer steps each: ``baseline`` (B0 trained on), ``emi`` (FixTalk stage 1: backbone + EMI),
  ``edi`` (baseline for half the steps, then stage 2: EDI only, backbone frozen), ``both`` (stage 1 for half
  the steps, then stage 2) -- a 2x2 design: +EDI differs from its partner only in how the second half is spent;
* cross-reenactment: every still and the first frame of every test clip, driven by every test clip of
  another identity (``--frames`` frames evenly spaced over the driver's first 100), absolute motion ->
  CSIM to the source (dlib's ResNet, a substitute for ArcFace), identity shift toward the driver
  (CSIM(output, driving) - CSIM(source, driving)), NIQE, CPBD, share of frames with a face; all at 256 px;
* self-reenactment: each test clip from its own first frame (``--self-frames`` frames after it) ->
  PSNR, SSIM, F-LMD, CSIM to the true frame;
* tables: all pairs, photo vs stylised sources, the top third by head-pose difference and by expression
  distance; paired differences to ``baseline`` with 95 % bootstrap CIs over pairs; reference rows
  ``copy-source`` (the source frame repeated) and, for self-reenactment, ``64px-ceiling`` (the true frames
  down-sampled to the model's size and back); the shipped default by :data:`SELECTION_RULE`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from plugtalk.benchmark import tables

HERE = Path(__file__).resolve().parent / "reference_model"
sys.path.insert(0, str(HERE.parent))  # reference_protocol.py lives next to this script
VARIANTS = ("baseline", "emi", "edi", "both")
SELF_METRICS = ("psnr", "ssim", "f_lmd", "csim")    # csim here: output vs the true frame (is it the person?)
#: csim: output vs the source (identity kept?); identity_shift: CSIM(output, driving) - CSIM(source, driving)
#: (identity leakage toward the driver); faces_found: the share of output frames in which dlib finds a face (CSIM
#: and the shift are averaged over those frames only, so a model whose faces fall apart must not look better).
CROSS_METRICS = ("csim", "identity_shift", "niqe", "cpbd", "faces_found")


def plugtalk(*args: str) -> None:
    """Run one plugtalk command (the installed CLI, as a user would)."""
    exe = Path(sys.executable).with_name("plugtalk")
    cmd = [str(exe) if exe.exists() else "plugtalk", *map(str, args)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def shared_data() -> Path:
    from plugtalk.shared_data import shared_path

    return shared_path("data")


# -- training --------------------------------------------------------------------------------------------
def last_checkpoint(run: Path) -> Path | None:
    steps = sorted((run / "checkpoints").glob("step-*")) if (run / "checkpoints").is_dir() else []
    return steps[-1] if steps else None


def train_run(config: str, run: Path, data: Path, steps: int, checkpoint: Path | None = None,
              discriminator: Path | None = None) -> Path:
    """One ``plugtalk train`` run; skipped when finished, resumed when interrupted."""
    final = run / "model.safetensors"
    if final.is_file():
        print(f"{run.name}: done", flush=True)
        return final
    args = ["train", "-c", HERE / config, "--data", data, "-o", run, "--set", f"optim.steps={steps}"]
    if checkpoint is not None:
        args += ["--set", f"model.checkpoint={checkpoint}"]
    if discriminator is not None:
        args += ["--set", f"model.discriminator_checkpoint={discriminator}"]
    if last_checkpoint(run) is not None:
        args.append("--resume")
    plugtalk(*args)
    return final


def reuse_first_half(source: Path, step: int, run: Path) -> bool:
    """Make ``run`` the ``step``-step prefix of ``source`` when ``source`` has that checkpoint.

    +EDI's first half is baseline's first half: the same config and seed on the same data give the same
    weights bit for bit (the two runs' logged losses agree to the last digit), so training it twice
    would only spend CPU.  Returns False (train it then) when the checkpoint is not there.
    """
    if (run / "model.safetensors").is_file():
        return True
    ck = source / "checkpoints" / f"step-{step:08d}"
    if not ck.is_dir():
        return False
    run.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ck, run / "checkpoints" / ck.name, dirs_exist_ok=True)
    shutil.copy(source / "config.yaml", run / "config.yaml")
    records = [r for r in (source / "metrics.jsonl").read_text().splitlines() if json.loads(r)["step"] <= step]
    (run / "metrics.jsonl").write_text("\n".join(records) + "\n")
    write_json(run / "reused.json", {"from": str(ck), "note": "the first half of baseline (same config and seed)"})
    shutil.copy(ck / "model.safetensors", run / "model.safetensors")  # last: marks the run finished
    print(f"{run.name}: reused {ck}", flush=True)
    return True


def train(args) -> None:
    runs, data = args.runs, shared_data() / "faces" / "train"
    if args.b0_init is not None:  # B0 continues an earlier model (trained on training identities only)
        (runs / "b0").mkdir(parents=True, exist_ok=True)
        write_json(runs / "b0" / "lineage.json", {"init": str(args.b0_init), "init_steps": args.b0_init_steps})
    b0 = train_run("b0.yaml", runs / "b0", data, args.b0_steps, checkpoint=args.b0_init)
    b0_disc = last_checkpoint(runs / "b0") / "discriminator.safetensors"
    plan = {"baseline": [("baseline.yaml", "baseline", args.steps)],
            "emi": [("emi.yaml", "emi", args.steps)],
            # a 2x2 design: EDI's variants spend half the budget as their partner without EDI does (baseline /
            # stage 1), then half in stage 2 (EDI only), so +EDI is not also "no backbone fine-tuning" (v1's confound)
            "edi": [("baseline.yaml", "edi-stage1", args.steps // 2), ("edi.yaml", "edi", args.steps // 2)],
            "both": [("emi.yaml", "both-stage1", args.steps // 2), ("both_stage2.yaml", "both", args.steps // 2)]}
    for variant in args.variants:
        checkpoint, disc = b0, b0_disc
        if variant == "edi":
            reuse_first_half(runs / "baseline", args.steps // 2, runs / "edi-stage1")
        for config, name, steps in plan[variant]:
            checkpoint = train_run(config, runs / name, data, steps, checkpoint, disc)
            disc = last_checkpoint(runs / name) / "discriminator.safetensors"


# -- evaluation (protocol v2: plugtalk benchmark --protocol leakage, in plugtalk/benchmark/) ---------------------------
def model_files(runs: Path, variants) -> dict[str, Path]:
    """The trained variants' weights (variants not trained yet are skipped with a note)."""
    out = {}
    for v in variants:
        f = runs / v / "model.safetensors"
        if f.is_file():
            out[v] = f
        else:
            print(f"skipping {v}: {f} not trained yet", flush=True)
    return out


def evaluate(args) -> None:
    """Protocol v2 through ``plugtalk benchmark --protocol leakage`` (in-process: face models and variants loaded
    once per worker; report in eval/benchmark/), then eval/pairs.json and the tables."""
    import time

    from plugtalk.benchmark import BenchmarkSettings, ModelSpec, run_benchmark

    t0 = time.perf_counter()
    data, root = shared_data(), args.runs / "eval"
    root.mkdir(parents=True, exist_ok=True)
    models = model_files(args.runs, args.variants)
    settings = BenchmarkSettings(data=data, out=root / "benchmark", frames=args.frames, self_frames=args.self_frames,
                                 max_pairs=args.max_pairs, max_self=args.max_self, jobs=args.jobs, resume=True)
    report = run_benchmark(settings, [ModelSpec(v, str(p)) for v, p in models.items()],
                           log=lambda m: print(m, flush=True))
    rows, seconds = report["rows"], time.perf_counter() - t0
    cpu = report["timing"]["pair_cpu_seconds"]
    config = {"variants": list(models), "frames": args.frames, "self_frames": args.self_frames,
              "driver_frames": 100, "score_size": report["config"]["score_size"], "jobs": args.jobs,
              "cross_pairs": report["config"]["cross_pairs"], "self_pairs": report["config"]["self_pairs"],
              "seconds": seconds, "pair_cpu_seconds": cpu}
    write_json(root / "pairs.json", {"config": config, "rows": rows})
    print(f"evaluation: {len(rows)} pairs x {len(models)} model(s) in {seconds:.0f} s wall "
          f"({seconds / 60:.1f} min, {args.jobs} process(es)); {cpu:.0f} s CPU summed over the pairs "
          "(cached pairs count with their first run)", flush=True)
    table(args)


def write_json(path: Path, obj) -> None:
    from plugtalk.io.jsonfile import write_json as _write

    _write(path, obj)


# -- tables ----------------------------------------------------------------------------------------------
#: The rule that picks the shipped default, fixed before any evaluation: among the trained variants whose
#: mean self-reenactment PSNR is within PSNR_TOLERANCE_DB of the best variant's, the one with the lowest
#: mean identity shift toward the driver over all cross-reenactment pairs (ties: the higher cross CSIM).
PSNR_TOLERANCE_DB = 0.5
SELECTION_RULE = (f"among the variants whose mean self-reenactment PSNR is within {PSNR_TOLERANCE_DB} dB of the "
                  "best variant's, the lowest mean identity shift over all cross-reenactment pairs "
                  "(ties: higher cross CSIM)")


# the protocol's table cells: one home, plugtalk.benchmark.tables
_values, _cell, _delta, _delta_cell = tables.values, tables.cell, tables.delta, tables.delta_cell


subsets = tables.subsets


def tercile_lines(cross: list[dict], variants: list[str], key: str, label: str) -> tuple[list[str], dict]:
    """Paired identity-shift and CSIM differences to the baseline per tercile of ``key`` (low, middle, top)."""
    known = sorted((r for r in cross if math.isfinite(float(r.get(key, float("nan"))))), key=lambda r: float(r[key]))
    if len(known) < 3 or "baseline" not in variants:
        return [], {}
    thirds = [known[i * len(known) // 3:(i + 1) * len(known) // 3] for i in range(3)]
    lines = [f"Paired difference to `baseline` by {label} tercile, mean [95 % CI]; ✓: resolved:", "",
             "| model | metric | " + " | ".join(f"{name} {float(t[0][key]):.3g}–{float(t[-1][key]):.3g} (n={len(t)})"
                                               for name, t in zip(("low", "middle", "top"), thirds)) + " |",
             "|---|---|---|---|---|"]
    out: dict = {}
    for v in variants:
        if v == "baseline":
            continue
        for m in ("identity_shift", "csim"):
            ds = [_delta(v, "baseline", t, m, 2) for t in thirds]
            out.setdefault(v, {})[m] = ds
            lines.append(f"| {v} | {m} | " + " | ".join(_delta_cell(d, len(t)) for d, t in zip(ds, thirds)) + " |")
    return lines + [""], out


def metric_table(rows: list[dict], models: list[str], metrics: tuple[str, ...], base: str | None, seed: int = 0
                 ) -> tuple[list[str], dict]:
    """Markdown lines (means ± sd over pairs, then paired differences to ``base`` with 95 % bootstrap CIs)."""
    arrows = {"csim": "↑", "identity_shift": "↓", "niqe": "↓", "cpbd": "↑", "faces_found": "↑", "psnr": "↑",
              "ssim": "↑", "f_lmd": "↓"}
    name = lambda m: m.upper().replace("_", "-").replace("IDENTITY-SHIFT", "ID shift")  # noqa: E731
    lines = ["| model | " + " | ".join(f"{name(m)} {arrows[m]}" for m in metrics) + " |",
             "|" + "---|" * (len(metrics) + 1)]
    summary: dict = {}
    for model in models:
        vals = {m: _values(rows, model, m) for m in metrics}
        if not any(vals.values()):
            continue
        summary[model] = {m: {"mean": statistics.fmean(v.values()) if v else None, "n": len(v)}
                          for m, v in vals.items()}
        lines.append(f"| {model} | " + " | ".join(_cell(vals[m], len(rows)) for m in metrics) + " |")
    if base is not None and base in summary:
        lines += ["", f"Paired difference to `{base}` (model minus {base} on the same pairs), mean [95 % bootstrap CI "
                  "over pairs]; ✓: the CI excludes 0 (resolved):", "",
                  "| model | " + " | ".join(f"Δ{name(m)}" for m in metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
        for model in models:
            if model == base or model not in summary:
                continue
            deltas = {m: _delta(model, base, rows, m, seed) for m in metrics}
            summary[model]["minus_" + base] = deltas
            lines.append(f"| {model} | " + " | ".join(_delta_cell(deltas[m], len(rows)) for m in metrics) + " |")
    return lines, summary


def select_default(summary: dict, variants: list[str]) -> tuple[str | None, str]:
    """Apply :data:`SELECTION_RULE` to the summary of ``table``; returns the variant and the reasoning."""
    psnr = {v: summary["self"].get(v, {}).get("psnr", {}).get("mean") for v in variants}
    psnr = {v: p for v, p in psnr.items() if p is not None}
    if not psnr:
        return None, "no self-reenactment PSNR: nothing selected"
    best = max(psnr.values())
    eligible = [v for v, p in psnr.items() if p >= best - PSNR_TOLERANCE_DB]
    cross = summary["cross"]["all cross-reenactment pairs"]

    def key(v):
        s = cross.get(v, {})
        shift, csim = s.get("identity_shift", {}).get("mean"), s.get("csim", {}).get("mean")
        return (shift if shift is not None else math.inf, -(csim if csim is not None else -math.inf))

    chosen = min(eligible, key=key)
    why = (f"self PSNR: " + ", ".join(f"{v} {p:.2f} dB" for v, p in psnr.items()) + f"; eligible (within "
           f"{PSNR_TOLERANCE_DB} dB of {best:.2f}): {', '.join(eligible)}; lowest identity shift: {chosen}")
    return chosen, why


def table(args) -> None:
    root = args.runs / "eval"
    data = json.loads((root / "pairs.json").read_text())
    rows, config = data["rows"], data["config"]
    variants = [v for v in VARIANTS if v in config["variants"]]
    cross = [r for r in rows if r["kind"] == "cross"]
    own = [r for r in rows if r["kind"] == "self"]
    refs = sorted({m for r in own for m in r["scores"]} - set(variants))
    base = "baseline" if "baseline" in variants else None
    out = [f"Protocol v2: {len(cross)} cross-reenactment pairs ({config['frames']} frames each, evenly spaced over "
           f"the driver's first {config['driver_frames']}), {len(own)} self-reenactment pairs ({config['self_frames']}"
           f" frames each after the source frame); scored at {config['score_size']} px; mean ± sd over pairs; "
           f"(n=k): pairs with a value where fewer than all had one (no face found). Evaluation: "
           f"{config.get('pair_cpu_seconds', float('nan')) / 60:.1f} CPU-min summed over the pairs; the last "
           f"`evaluate` call took {config['seconds'] / 60:.1f} min wall on {config['jobs']} process(es) "
           "(pairs scored earlier are read from eval/benchmark/rows.jsonl).", ""]
    summary: dict = {"config": config, "cross": {}, "self": {}}
    for label, sub in subsets(cross).items():
        out += [f"### Cross-reenactment: {label} ({len(sub)} pairs)", ""]
        lines, summary["cross"][label] = metric_table(sub, [*variants, "copy-source"], CROSS_METRICS, base)
        out += lines + [""]
    for key, label in (("pose_diff", "head-pose difference (degrees)"), ("expression_dist", "expression distance")):
        lines, summary.setdefault("terciles", {})[key] = tercile_lines(cross, variants, key, label)
        out += lines
    out += [f"### Self-reenactment ({len(own)} clips)", ""]
    lines, summary["self"] = metric_table(own, [*variants, *refs], SELF_METRICS, base)
    out += lines + ["", "Against copying the source frame (model minus copy-source, PSNR / SSIM; ✓: resolved):", "",
                    "| model | ΔPSNR | ΔSSIM | beats copy-source |", "|---|---|---|---|"]
    for v in variants:
        d = {m: _delta(v, "copy-source", own, m, 1) for m in ("psnr", "ssim")}
        summary["self"].setdefault(v, {})["minus_copy-source"] = d
        beats = all(x is not None and x["low"] > 0 for x in d.values())
        out.append(f"| {v} | {_delta_cell(d['psnr'], len(own))} | {_delta_cell(d['ssim'], len(own))} | "
                   f"{'yes' if beats else 'no'} |")
    if {"emi", "both"} <= set(variants):  # the 2x2 design's second reading of EDI: +both against +EMI
        out += ["### EDI on top of EMI: +both minus +EMI (same pairs; 95 % bootstrap CI; ✓: resolved)", "",
                "| pairs | " + " | ".join([f"Δ{m} (cross)" for m in CROSS_METRICS] + [f"Δ{m} (self)" for m in SELF_METRICS])
                + " |",
                "|" + "---|" * (len(CROSS_METRICS) + len(SELF_METRICS) + 1)]
        d_cross = {m: _delta("both", "emi", cross, m, 2) for m in CROSS_METRICS}
        d_self = {m: _delta("both", "emi", own, m, 2) for m in SELF_METRICS}
        summary["both_minus_emi"] = {"cross": d_cross, "self": d_self}
        out += [f"| {len(cross)} cross / {len(own)} self | " + " | ".join(_delta_cell(d_cross[m], len(cross)) for m in CROSS_METRICS)
                + " | " + " | ".join(_delta_cell(d_self[m], len(own)) for m in SELF_METRICS) + " |", ""]
    no_face = sorted({(r["source"], r["style"]) for r in cross if not r["source_face"]})
    out += ["", f"Sources in which dlib finds no face: {len(no_face)}"
            + (f" ({', '.join(f'{n} [{s}]' for n, s in no_face)})" if no_face else "") + "; "
            + "their pairs stay in every table (CSIM and identity shift have no value there, NIQE/CPBD/faces-found do; "
              "pose and expression are unknown, so they are not in the top-third tables).", ""]
    chosen, why = select_default(summary, variants)
    summary["selection"] = {"rule": SELECTION_RULE, "chosen": chosen, "why": why}
    out += [f"Shipped-default rule (fixed before evaluation): {SELECTION_RULE}.", f"Result: **{chosen}** ({why}).", ""]
    out += budget_lines(args.runs)
    text = "\n".join(out) + "\n"
    print(text)
    (root / "results.md").write_text(text)
    write_json(root / "results.json", summary)


def train_budget(run: Path) -> dict | None:
    """Steps, images and seconds of one training run, from its metrics.jsonl (the last record of each step,
    so a resumed run is not counted twice)."""
    import yaml

    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    config = yaml.safe_load((run / "config.yaml").read_text())
    batch, every = config["data"]["batch_size"], config["log"]["every"]
    records = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if "speed/images_per_s" in r:
            records[r["step"]] = r["speed/images_per_s"]
    steps = max(records, default=0)
    return {"steps": steps, "images": steps * batch, "seconds": sum(every * batch / v for v in records.values() if v > 0)}


def budget_lines(runs: Path) -> list[str]:
    lines = ["| run | steps | images seen | training time (sum over logged steps) |", "|---|---|---|---|"]
    for run in ("b0", "baseline", "emi", "edi-stage1", "edi", "both-stage1", "both"):
        b = train_budget(runs / run)
        if b is not None and (runs / run / "reused.json").is_file():
            lines.append(f"| {run} | {b['steps']} | {b['images']} | (baseline's first {b['steps']} steps, reused) |")
        elif b is not None:
            lines.append(f"| {run} | {b['steps']} | {b['images']} | {b['seconds'] / 3600:.2f} h |")
    return lines


# -- learning curve --------------------------------------------------------------------------------------
def curve_fit(points: list[tuple[int, float]]) -> dict:
    """Least-squares line ``delta = a + b * log10(steps)`` through ``(steps, delta)`` points; where it crosses 0.

    Returns ``{"slope_per_decade": b, "intercept": a, "zero_at_steps": s or None}`` (``None`` when the line
    does not rise, so no budget can be read from it).  An extrapolation, and said to be one where it is used.
    """
    xs = [math.log10(s) for s, _ in points]
    ys = [d for _, d in points]
    if len(points) < 2 or len(set(xs)) < 2:
        raise ValueError("curve_fit: need points at two or more different step counts")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    return {"slope_per_decade": b, "intercept": a, "zero_at_steps": 10 ** (-a / b) if b > 0 else None}


def curve(args) -> None:
    """Self-reenactment against copy-source along B0's kept checkpoints: the learning curve from which the card
    estimates the budget a model would need to beat copying the source frame.  Reported only: no checkpoint,
    variant or setting is chosen from it."""
    import reference_protocol as P

    b0, root = args.runs / "b0", args.runs / "eval"
    root.mkdir(parents=True, exist_ok=True)
    lineage = json.loads((b0 / "lineage.json").read_text()) if (b0 / "lineage.json").is_file() else {}
    offset = int(lineage.get("init_steps", 0))
    ckpts = sorted((b0 / "checkpoints").glob("step-*")) if (b0 / "checkpoints").is_dir() else []
    if len(ckpts) < 2:
        sys.exit(f"curve: need two or more checkpoints under {b0 / 'checkpoints'} (found {len(ckpts)})")
    models = {c.name: c / "model.safetensors" for c in ckpts}
    own = P.spread(P.self_pairs(shared_data()), args.max_self)
    rows = P.evaluate_pairs(own, models, frames=args.frames, self_frames=args.self_frames, jobs=args.jobs,
                            cache=root / "curve_rows.jsonl", log=lambda m: print(m, flush=True))
    out = [f"Learning curve of B0 (self-reenactment, {len(own)} test clips, {args.self_frames} frames each; model "
           "minus copy-source with 95 % pair-bootstrap intervals). Steps count from scratch"
           + (f" ({offset} before this run, in {lineage.get('init')})" if offset else "") + ".", "",
           "| B0 checkpoint | total steps | PSNR | SSIM | ΔPSNR vs copy-source | ΔSSIM vs copy-source |",
           "|---|---|---|---|---|---|"]
    points, table_rows = {"psnr": [], "ssim": []}, []
    for name in models:
        steps = offset + int(name.split("-")[1])
        d = {m: _delta(name, "copy-source", rows, m, 1) for m in ("psnr", "ssim")}
        cells = [_cell(_values(rows, name, m), len(own)) for m in ("psnr", "ssim")]
        out.append(f"| {name} | {steps} | {cells[0]} | {cells[1]} | {_delta_cell(d['psnr'], len(own))} | "
                   f"{_delta_cell(d['ssim'], len(own))} |")
        for m in points:
            points[m].append((steps, d[m]["estimate"]))
        table_rows.append({"checkpoint": name, "steps": steps, "delta": d})
    fits = {m: curve_fit(p) for m, p in points.items()}
    out.append("")
    for m, f in fits.items():
        where = (f"crosses 0 near {f['zero_at_steps']:.3g} steps (an extrapolation of a log-linear fit)"
                 if f["zero_at_steps"] is not None else "does not rise, so it gives no budget estimate")
        out.append(f"Δ{m.upper()} ≈ {f['intercept']:+.3f} {f['slope_per_decade']:+.3f}·log10(steps): {where}.")
    text = "\n".join(out) + "\n"
    print(text)
    (root / "curve.md").write_text(text)
    write_json(root / "curve.json", {"rows": table_rows, "fits": fits, "lineage": lineage})


# -- probe and export ------------------------------------------------------------------------------------
def probe(args) -> None:
    """``plugtalk probe`` on B0: over the training identities (this chose EMI/EDI's identity level, see
    emi.yaml) and, for the report only, over the held-out ones."""
    lines = []
    for split in ("train", "test"):
        out = args.runs / f"probe-{split}"
        if not (out / "report.json").exists():
            plugtalk("probe", "--backbone", "lia", "--checkpoint", args.runs / "b0" / "model.safetensors",
                     "--pairs", shared_data() / "faces" / split, "-n", str(args.pairs * (2 if split == "train" else 1)),
                     "--directions", "to-source", "--metrics", "csim", "--out", out)  # what the table reads
        report = json.loads((out / "report.json").read_text())
        lines.append(f"probe over faces/{split}: identity transfer (cross-reenactment, driving value into the source "
                     "branch; CSIM change toward the driver), mean ± std over pairs")
        rows = [v for v in report["variants"] if v["direction"] == "to_source"]
        for v in sorted(rows, key=lambda v: v["rank"]):
            st = v["summary"]["cross"]["identity_transfer"]
            lines.append(f"  {v['name'] + ('*' if v['group'] else ''):22s} {st['mean']:+.3f} ± {st['std']:.3f} "
                         f"(n={st['n']})")
    text = "\n".join(lines) + "\n(* a group of levels; identity* is the backbone's default identity level)\n"
    print(text)
    (args.runs / "eval").mkdir(parents=True, exist_ok=True)
    (args.runs / "eval" / "probe.txt").write_text(text)


def store_fp16(src: Path, dest: Path, variant: str) -> None:
    """One trained variant's weights, in float16, with the reference model's note in its metadata."""
    from plugtalk.weights.plugtalk_format import load_safetensors, save_safetensors

    tensors, meta = load_safetensors(src)
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    meta = {k: v for k, v in meta.items() if k != "format"}
    meta["reference_model"] = {"variant": variant, "protocol": "examples/reference_model.py",
                               "stored_dtype": "float16"}
    save_safetensors(half, dest, meta)
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB, {sum(t.numel() for t in half.values()) / 1e6:.2f} M "
          f"values, float16)")


def export(args) -> None:
    """Store one variant's weights in fp16 as the package's embedded default model, and the other side of the
    ablation beside it (the baseline, or +both when the baseline ships) for ``plugtalk demo``'s compare.mp4."""
    from plugtalk.default_model import COMPARE_MODEL_FILE, DEFAULT_MODEL_FILE

    assets = Path(__file__).resolve().parents[1] / "plugtalk" / "assets"
    store_fp16(args.runs / args.variant / "model.safetensors", assets / DEFAULT_MODEL_FILE, args.variant)
    other = "both" if args.variant == "baseline" else "baseline"
    if (args.runs / other / "model.safetensors").is_file():
        store_fp16(args.runs / other / "model.safetensors", assets / COMPARE_MODEL_FILE, other)


#: The model card's generated blocks: ``<!-- generated:NAME -->`` ... ``<!-- /generated:NAME -->`` in the card is
#: replaced by eval/FILE (the prose around the blocks is written by people; the numbers never are).
CARD = Path(__file__).resolve().parents[1] / "docs" / "model_card.md"
CARD_BLOCKS = {"probe": "probe.txt", "results": "results.md", "curve": "curve.md"}


def card(args) -> None:
    """Put the latest probe, results and learning-curve outputs into docs/model_card.md's generated blocks."""
    from plugtalk.io.atomic import atomic_path

    text = CARD.read_text()
    for name, file in CARD_BLOCKS.items():
        begin, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
        if begin not in text or end not in text:
            continue
        source = args.runs / "eval" / file
        if not source.is_file():
            sys.exit(f"card: {source} is missing (run the step that writes it first)")
        body = source.read_text().rstrip("\n") + "\n"
        if file.endswith(".txt"):
            body = "```\n" + body + "```\n"
        text = text[: text.index(begin) + len(begin)] + "\n" + body + text[text.index(end):]
        print(f"model card: {name} <- {source}")
    with atomic_path(CARD) as tmp:
        Path(tmp).write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("train", "evaluate", "probe", "table", "export", "curve", "card"))
    ap.add_argument("--runs", type=Path, default=Path("runs/reference"), help="where runs and results go")
    ap.add_argument("--b0-steps", type=int, default=15000, help="steps of the from-scratch baseline B0")
    ap.add_argument("--b0-init", type=Path, default=None,
                    help="train: start B0 from these weights instead of from scratch (only weights trained on "
                         "training identities; their EMI/EDI, if any, are not loaded by the baseline stage)")
    ap.add_argument("--b0-init-steps", type=int, default=0,
                    help="train: optimizer steps already behind --b0-init (the learning curve's x axis)")
    ap.add_argument("--steps", type=int, default=2000, help="steps of each variant after B0 (the shared budget)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--frames", type=int, default=10,
                    help="evaluate: scored frames per cross-reenactment pair (evenly spaced over the driver's "
                         "first 100)")
    ap.add_argument("--self-frames", type=int, default=40,
                    help="evaluate: scored frames per self-reenactment clip (evenly spaced after the source frame)")
    ap.add_argument("--max-pairs", type=int, default=None, help="evaluate: at most N cross pairs (spread evenly)")
    ap.add_argument("--max-self", type=int, default=None, help="evaluate: at most N self-reenactment clips")
    ap.add_argument("--jobs", type=int, default=None, help="evaluate: worker processes (default: min(2, CPUs))")
    ap.add_argument("--pairs", type=int, default=8, help="probe pairs")
    ap.add_argument("--variant", default="both", choices=VARIANTS, help="export: which variant ships")
    args = ap.parse_args()
    if args.jobs is None:
        import reference_protocol

        args.jobs = reference_protocol.default_jobs()
    if not shutil.which("plugtalk") and not Path(sys.executable).with_name("plugtalk").exists():
        sys.exit("the plugtalk command is not installed (pip install -e .)")
    {"train": train, "evaluate": evaluate, "probe": probe, "table": table, "export": export,
     "curve": curve, "card": card}[args.command](args)


if __name__ == "__main__":
    main()
