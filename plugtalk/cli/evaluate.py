"""``plugtalk eval``: PSNR, SSIM, CSIM, F-LMD, M-LMD, AKD, NIQE, CPBD (and FID) of generated frames."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from . import app
from ._common import parse_device, print_table, say, tell, user_errors
from .animate import progress_bar, warnings_to_console


def _fmt(value: float) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.2f}"


def result_table(result: dict) -> Table:
    """The metrics of :func:`plugtalk.evaluate.evaluate_frames` as a rich table."""
    from ..evaluate import METRIC_INFO

    from rich.markup import escape

    table = Table("metric", "value", "better", "frames used", "notes",
                  title=escape(f"{result['pred']}  vs  {result['ref'] or result.get('source') or '-'}  "
                               f"({result['frames']} frames)"))
    skipped = result.get("skipped_frames", {})
    for m, v in result["metrics"].items():
        name, unit, better = METRIC_INFO[m]
        used = result["frames"]
        note = ""
        if m == "csim":
            used -= skipped.get("csim", 0)
            note = f"{result.get('csim_encoder', '').split(' (')[0]} vs {result.get('csim_reference', '')}"
        elif m in ("f_lmd", "m_lmd", "akd"):
            used -= skipped.get("landmarks", 0)
            note = result.get("landmark_detector", "")
        elif m == "fid":
            note = result.get("fid_features", "")
        table.add_row(f"{name}" + (f" ({unit})" if unit else ""), _fmt(v), "↑" if better == "higher" else "↓",
                      str(used), escape(note))
    for m, why in result.get("not_computed", {}).items():
        table.add_row(METRIC_INFO.get(m, (m,))[0], "-", "", "0", escape(f"not computed: {why}"))
    return table


def _metric_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = []
    for v in values:
        out += [x.strip().lower().replace("-", "_") for x in v.split(",") if x.strip()]
    return out


@app.command(name="eval")
def evaluate(
    pred: Path = typer.Option(..., "--pred", "-p", help="generated frames: a video, or a folder of images"),
    ref: Optional[Path] = typer.Option(None, "--ref", "-r", help="reference frames (ground truth / driving): a "
                                                                 "video or a folder of images, paired by position"),
    source: Optional[Path] = typer.Option(None, "--source", "-s",
                                          help="source image: CSIM against it (cross-reenactment); else against --ref"),
    driving: Optional[Path] = typer.Option(None, "--driving", "-d",
                                           help="the driving video / frames folder that produced --pred (needs "
                                                "--source): adds the identity shift toward the driver, "
                                                "CSIM(pred, driving) - CSIM(source, driving) per frame, to the "
                                                "metrics, the JSON and a plot next to it"),
    metrics: Optional[List[str]] = typer.Option(
        None, "--metrics", "-m", help="comma-separated or repeated: psnr, ssim, csim, f_lmd, m_lmd, akd, niqe, cpbd, "
                                      "fid (default: all but fid; fid is added with --inception-weights)"),
    identity_model: str = typer.Option("dlib", "--identity-model", help="CSIM encoder: dlib (built in, a substitute "
                                                                        "for ArcFace) | arcface (needs weights)"),
    arcface_weights: Optional[Path] = typer.Option(None, "--arcface-weights",
                                                   help="arcface_torch IResNet backbone.pth or .safetensors"),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights",
                                                     help="torchvision inception_v3 state dict: enables FID"),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="evaluate at most this many frames"),
    skip: int = typer.Option(0, "--skip", min=0, help="leave out the first N frames of pred and ref (e.g. 1: the "
                                                      "source frame itself in self-reenactment)"),
    resize: Optional[int] = typer.Option(None, "--resize", min=16,
                                         help="score all frames resized to N x N px (Lanczos), e.g. a 64 px model vs 256 px refs"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the results to this JSON file"),
    device: str = typer.Option("cpu", "--device", help="device of the ArcFace / Inception networks"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Evaluate generated talking-head frames: fidelity, identity (CSIM), motion (LMD, AKD) and quality (NIQE, CPBD).

    With --driving (and --source): the identity shift toward the driver, CSIM(pred, driving) - CSIM(source, driving) per frame (identity leakage; > 0: the output took on the driver's identity), in the JSON per frame and plotted next to it (X_identity_shift.png).

    Face models are loaded once; frames without a detectable face are left out of the face metrics and counted. PSNR is inf for identical frames (the string "inf" in the strict-JSON report).
    """
    import contextlib

    from ..errors import InputError
    from ..evaluate import EvalSettings, build_suite, evaluate_frames, write_identity_shift_plot
    from ..io.atomic import check_output_path
    from ..io.jsonfile import write_json
    from ..io.paths import check_outputs, check_outside_input_folders, require_suffix

    with user_errors(), warnings_to_console():
        if json_out is not None:
            outputs = {"--json": json_out}
            if driving is not None:
                outputs["identity-shift plot"] = identity_shift_plot_path(json_out)
            inputs = {"--pred": pred, "--ref": ref, "--source": source, "--driving": driving,
                      "--arcface-weights": arcface_weights, "--inception-weights": inception_weights}
            check_outputs(outputs, inputs)
            check_outside_input_folders(outputs, inputs)
            require_suffix(json_out, (".json",), "--json")
            check_output_path(json_out)
        if driving is not None and source is None:
            raise InputError("--driving needs --source: the identity shift is CSIM(pred, driving) - "
                             "CSIM(source, driving)")
        parse_device(device)
        settings = EvalSettings(metrics=_metric_list(metrics), identity_model=identity_model,
                                arcface_weights=arcface_weights, inception_weights=inception_weights, device=device,
                                identity_shift=driving is not None)
        suite = build_suite(settings)
        bar, update = progress_bar("evaluating")
        with bar if progress else contextlib.nullcontext():
            result = evaluate_frames(pred, ref, source=source, driving=driving, suite=suite, max_frames=frames,
                                     resize=resize, skip=skip, on_progress=update if progress else None)
        plot = None
        if json_out is not None:
            write_json(json_out, result)
            if "identity_shift" in result["per_frame"]:
                plot = write_identity_shift_plot(result, identity_shift_plot_path(json_out))
    print_table(result_table(result))
    for w in result["warnings"]:
        tell("warning", w)
    if "csim" in result["metrics"]:
        say(f"CSIM encoder: {result.get('csim_encoder')}")
    if json_out is not None:
        say(f"wrote {json_out}")
    if plot is not None:
        say(f"wrote {plot} (identity shift per frame)")


def identity_shift_plot_path(json_out: Path) -> Path:
    """Where ``plugtalk eval --driving ... --json X.json`` puts its plot: ``X_identity_shift.png``."""
    return json_out.with_name(json_out.stem + "_identity_shift.png")
