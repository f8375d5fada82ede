"""The small reference model: FixTalk's ablation (baseline, +EMI, +EDI, +both) on real faces, end to end.

Everything runs through the project's own commands (``plugtalk train``, ``plugtalk animate``,
``plugtalk eval``, ``plugtalk probe``), so the table is produced by this script, not typed:

    python examples/reference_model.py train      # B0 from scratch, then the four variants from B0
    python examples/reference_model.py evaluate   # animate the test identities, score with plugtalk eval
    python examples/reference_model.py probe      # plugtalk probe on the trained baseline B0
    python examples/reference_model.py table      # print / write results.md and results.json
    python examples/reference_model.py export     # fp16 weights of one variant -> the package's default model

Data: ``faces/train`` of the shared folder (8 identities) for training, ``faces/test`` (3 held-out
identities) for evaluation; nothing is tuned on the test identities.  Every step is resumable: a
finished run is skipped, an interrupted one continues from its last checkpoint.

Protocol (configs in examples/reference_model/):
* B0: a 64 px LIA-family backbone trained from scratch (``b0.yaml``);
* then, from B0 and with the same number of optimizer steps each: ``baseline`` (B0 trained on),
  ``emi`` (FixTalk stage 1: backbone + EMI), ``edi`` (FixTalk stage 2: EDI only, backbone frozen),
  ``both`` (stage 1 with EMI for half the steps, then stage 2 with EDI for the other half);
* evaluation at 256 px (``plugtalk eval --resize 256``; the model renders 64 px): self-reenactment
  (source = first frame of a test clip, driving = that clip; frame 0 itself left out) -> PSNR, SSIM,
  F-LMD; cross-reenactment
  (source = first frame of one test identity, driving = another's clip) -> CSIM to the source
  (dlib's ResNet embedding, a substitute for the paper's ArcFace), NIQE, CPBD.  Absolute motion
  throughout (identity leakage shows there; relative motion cancels part of it by construction).
  Reference rows: ``copy-source`` (the source frame repeated) and, for self-reenactment,
  ``64px-ceiling`` (the true frames down-sampled to 64 px and back: the best any 64 px model can do).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "reference_model"
VARIANTS = ("baseline", "emi", "edi", "both")
SELF_METRICS = ("psnr", "ssim", "f_lmd", "csim")    # csim here: output vs the true frame (is it the person?)
CROSS_METRICS = ("csim", "niqe", "cpbd")            # csim here: output vs the source (identity kept?)
#: Table columns besides the metrics: the share of output frames in which dlib finds a face (cross-reenactment;
#: CSIM is averaged over those frames only, so a model whose faces fall apart must not look better for it).
FACE_RATE = "faces_found"
EVAL_SIZE = 256


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


def train(args) -> None:
    runs, data = args.runs, shared_data() / "faces" / "train"
    b0 = train_run("b0.yaml", runs / "b0", data, args.b0_steps)
    b0_disc = last_checkpoint(runs / "b0") / "discriminator.safetensors"
    plan = {"baseline": [("baseline.yaml", "baseline", args.steps)],
            "emi": [("emi.yaml", "emi", args.steps)],
            "edi": [("edi.yaml", "edi", args.steps)],
            "both": [("emi.yaml", "both-stage1", args.steps // 2), ("both_stage2.yaml", "both", args.steps // 2)]}
    for variant in args.variants:
        checkpoint, disc = b0, b0_disc
        for config, name, steps in plan[variant]:
            checkpoint = train_run(config, runs / name, data, steps, checkpoint, disc)
            disc = last_checkpoint(runs / name) / "discriminator.safetensors"


# -- evaluation ------------------------------------------------------------------------------------------
def test_clips() -> list[Path]:
    return sorted((shared_data() / "faces" / "test").glob("*.mp4"))


def identity(clip: Path) -> str:
    return clip.stem.split("__")[0]


def write_references(root: Path, clips: list[Path], frames: int, model_size: int) -> dict[str, Path]:
    """Source stills (first frame of each test clip) and the reference-row videos."""
    import numpy as np
    from PIL import Image

    from plugtalk.io.images import save_image
    from plugtalk.io.video import VideoWriter, read_frames

    out: dict[str, Path] = {}
    root.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        video = read_frames(clip, max_frames=frames)
        still = root / f"source_{identity(clip)}.png"
        if not still.exists():
            save_image(still, video[0])
        out[identity(clip)] = still
        copy = root / f"copy-source_{identity(clip)}.mp4"
        if not copy.exists():
            with VideoWriter(copy, fps=25, lossless=True) as w:
                w.write(np.broadcast_to(video[0], video.shape))
        ceiling = root / f"64px-ceiling_{identity(clip)}.mp4"
        if not ceiling.exists():
            small = [Image.fromarray(f).resize((model_size, model_size), Image.LANCZOS) for f in video]
            with VideoWriter(ceiling, fps=25, lossless=True) as w:
                w.write(np.stack([np.asarray(s.resize(video.shape[2:0:-1], Image.LANCZOS)) for s in small]))
    return out


def _row(source: str, driving: str, report: dict) -> dict:
    row = {"source": source, "driving": driving, **report["metrics"]}
    if "csim" in report["metrics"]:
        row[FACE_RATE] = 1.0 - report.get("skipped_frames", {}).get("csim", 0) / max(report["frames"], 1)
    return row


def score(pred: Path, report: Path, metrics: tuple[str, ...], ref: Path | None = None,
          source: Path | None = None, frames: int | None = None) -> dict:
    """``plugtalk eval`` of one video (cached in ``report``).  Self-reenactment (``ref`` given) leaves out
    frame 0: it is the source frame itself."""
    if not report.exists():
        args = ["eval", "--pred", pred, "--metrics", ",".join(metrics), "--resize", str(EVAL_SIZE),
                "--json", report, "--no-progress"]
        if ref is not None:
            args += ["--skip", "1"]
        if ref is not None:
            args += ["--ref", ref]
        if source is not None:
            args += ["--source", source]
        if frames is not None:
            args += ["--frames", str(frames)]
        plugtalk(*args)
    return json.loads(report.read_text())


def evaluate(args) -> None:
    runs, root = args.runs, args.runs / "eval"
    clips = test_clips()[:args.max_clips]
    stills = write_references(root / "inputs", clips, args.frames, args.model_size)
    rows = {v: {"self": [], "cross": []} for v in (*args.variants, "copy-source", "64px-ceiling")}
    for variant in args.variants:
        model = runs / variant / "model.safetensors"
        if not model.is_file():
            print(f"skipping {variant}: {model} not trained yet", flush=True)
            continue
        out = root / variant
        out.mkdir(parents=True, exist_ok=True)
        for src in clips:
            for drv in clips:
                kind = "self" if src == drv else "cross"
                video = out / f"{kind}_{identity(src)}__{identity(drv)}.mp4"
                if not video.exists():
                    plugtalk("animate", "--source", stills[identity(src)], "--driving", drv, "--checkpoint", model,
                             "--out", video, "--no-crop", "--driving-cropped", "--absolute", "--frames",
                             str(args.frames), "--lossless", "--no-audio", "--no-progress")
                if kind == "self":
                    r = score(video, video.with_suffix(".json"), SELF_METRICS, ref=drv, frames=args.frames)
                else:
                    r = score(video, video.with_suffix(".json"), CROSS_METRICS, source=stills[identity(src)],
                              frames=args.frames)
                rows[variant][kind].append(_row(identity(src), identity(drv), r))
    for clip in clips:
        ident = identity(clip)
        for ref_row in ("copy-source", "64px-ceiling"):
            video = root / "inputs" / f"{ref_row}_{ident}.mp4"
            r = score(video, root / "inputs" / f"{ref_row}_{ident}_self.json", SELF_METRICS, ref=clip,
                      frames=args.frames)
            rows[ref_row]["self"].append(_row(ident, ident, r))
        video = root / "inputs" / f"copy-source_{ident}.mp4"
        r = score(video, root / "inputs" / f"copy-source_{ident}_cross.json", CROSS_METRICS,
                  source=stills[ident], frames=args.frames)
        rows["copy-source"]["cross"].append(_row(ident, ident, r))
    (root / "pairs.json").write_text(json.dumps(rows, indent=1))
    table(args)


def _stat(values: list) -> tuple[float, float, int] | None:
    v = [float(x) for x in values if x is not None and str(x) not in ("nan", "inf", "-inf")]
    if not v:
        return None
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0), len(v)


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


def table(args) -> None:
    root = args.runs / "eval"
    rows = json.loads((root / "pairs.json").read_text())
    cols = [("cross", m) for m in (*CROSS_METRICS, FACE_RATE)] + [("self", m) for m in SELF_METRICS]
    arrows = {"csim": "↑", "niqe": "↓", "cpbd": "↑", "psnr": "↑", "ssim": "↑", "f_lmd": "↓", FACE_RATE: "↑"}
    head = "| model | " + " | ".join(f"{m.upper().replace('_', '-')} {arrows[m]} ({k})" for k, m in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    summary = {}
    for name, kinds in rows.items():
        cells, summary[name] = [], {}
        for kind, metric in cols:
            st = _stat([p.get(metric) for p in kinds.get(kind, [])])
            summary[name][f"{kind}.{metric}"] = st
            short = st is not None and st[2] < len(kinds.get(kind, []))  # some pairs had no value (no face)
            cells.append("-" if st is None else f"{st[0]:.3f} ± {st[1]:.3f}" + (f" (n={st[2]})" if short else ""))
        if any(c != "-" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    n_self = max((len(k.get("self", [])) for k in rows.values()), default=0)
    n_cross = max((len(k.get("cross", [])) for k in rows.values()), default=0)
    note = (f"\nMean ± std over pairs ({n_self} self-reenactment, {n_cross} cross-reenactment pairs of the held-out "
            f"identities; {args.frames} frames each; self-reenactment without frame 0, the source), scored at "
            f"{EVAL_SIZE} px by `plugtalk eval --resize {EVAL_SIZE}`. CSIM (dlib's ResNet, a substitute for ArcFace): "
            "cross = output vs the source image, self = output vs the true frame, over the frames in which a face is "
            f"found; {FACE_RATE.upper().replace('_', '-')} = the share of cross-reenactment output frames with a face; "
            "(n=k): pairs with no face found in any frame are left out of that cell.\n")
    paired = ["", "Paired differences to `baseline` over the same pairs (variant minus baseline, mean ± std):", "",
              "| model | " + " | ".join(f"Δ{m.upper().replace('_', '-')} ({k})" for k, m in cols) + " |",
              "|" + "---|" * (len(cols) + 1)]
    base = rows.get("baseline", {})
    for name in VARIANTS[1:]:
        if name not in rows or not base:
            continue
        cells = []
        for kind, metric in cols:
            ref = {(p["source"], p["driving"]): p.get(metric) for p in base.get(kind, [])}
            diffs = [float(p[metric]) - float(ref[(p["source"], p["driving"])]) for p in rows[name].get(kind, [])
                     if _stat([p.get(metric)]) and _stat([ref.get((p["source"], p["driving"]))])]
            st = _stat(diffs)
            summary[name][f"{kind}.{metric}.minus_baseline"] = st
            cells.append("-" if st is None else f"{st[0]:+.3f} ± {st[1]:.3f}")
        paired.append(f"| {name} | " + " | ".join(cells) + " |")
    budget = ["", "| run | steps | images seen | training time (sum over logged steps) |", "|---|---|---|---|"]
    for run in ("b0", "baseline", "emi", "edi", "both-stage1", "both"):
        b = train_budget(args.runs / run)
        if b is not None:
            budget.append(f"| {run} | {b['steps']} | {b['images']} | {b['seconds'] / 3600:.2f} h |")
    text = "\n".join(lines) + "\n" + note + "\n".join(paired) + "\n" + "\n".join(budget) + "\n"
    print(text)
    (root / "results.md").write_text(text)
    (root / "results.json").write_text(json.dumps(summary, indent=1))


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
                     "--out", out)
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


def export(args) -> None:
    """Store one variant's weights in fp16 as the package's embedded default model."""
    from plugtalk.checkpoint import load_safetensors, save_safetensors
    from plugtalk.pretrained import DEFAULT_MODEL_FILE

    tensors, meta = load_safetensors(args.runs / args.variant / "model.safetensors")
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    meta = {k: v for k, v in meta.items() if k != "format"}
    meta["reference_model"] = {"variant": args.variant, "protocol": "examples/reference_model.py",
                               "stored_dtype": "float16"}
    dest = Path(__file__).resolve().parents[1] / "plugtalk" / "assets" / DEFAULT_MODEL_FILE
    save_safetensors(half, dest, meta)
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB, {sum(t.numel() for t in half.values()) / 1e6:.2f} M "
          f"values, float16)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("train", "evaluate", "probe", "table", "export"))
    ap.add_argument("--runs", type=Path, default=Path("runs/reference"), help="where runs and results go")
    ap.add_argument("--b0-steps", type=int, default=15000, help="steps of the from-scratch baseline B0")
    ap.add_argument("--steps", type=int, default=2000, help="steps of each variant after B0 (the shared budget)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--frames", type=int, default=100, help="frames per evaluation video (25 fps)")
    ap.add_argument("--max-clips", type=int, default=None,
                    help="evaluate: only the first N test clips by name (N self + N(N-1) cross pairs; quick checks)")
    ap.add_argument("--model-size", type=int, default=64, help="model resolution (for the 64px-ceiling row)")
    ap.add_argument("--pairs", type=int, default=8, help="probe pairs")
    ap.add_argument("--variant", default="both", choices=VARIANTS, help="export: which variant ships")
    args = ap.parse_args()
    if not shutil.which("plugtalk") and not Path(sys.executable).with_name("plugtalk").exists():
        sys.exit("the plugtalk command is not installed (pip install -e .)")
    {"train": train, "evaluate": evaluate, "probe": probe, "table": table, "export": export}[args.command](args)


if __name__ == "__main__":
    main()
