"""``plugtalk bench``: model-only and end-to-end speed and memory per backbone and retrofit variant."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from . import app
from ..checks import bounded_threads
from ._common import console, console_warnings, parse_device, print_table, say, user_errors

_DTYPES = {"float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}


def _run_into_table(table: Table, message: str, run) -> list[dict]:
    """Call ``run(on_result)``, adding each timing to ``table`` as it arrives (with a status line); print the
    table and return the results as dicts for the JSON report."""
    import dataclasses

    results = []
    with console.status(message) as status:
        def show(r):
            results.append(r)
            table.add_row(*r.row())
            status.update(f"timed {r.backbone}/{r.variant}/b{r.batch}")
        run(show)
    print_table(table)
    return [dataclasses.asdict(r) for r in results]


@app.command()
def bench(
    backbone: Optional[List[str]] = typer.Option(None, "--backbone", "-b",
                                                 help="backbones to time (default: every registered animator)"),
    variant: List[str] = typer.Option(["base", "emi", "edi", "both"], "--variant", "-v",
                                      help="base | emi | edi | both (retrofitted with FixTalk's modules)"),
    batch: Optional[List[int]] = typer.Option(None, "--batch", help="batch sizes (default: 1 and 4 on CPU, 1 and 8 "
                                                                    "on CUDA)"),
    device: str = typer.Option("cuda" if __import__("torch").cuda.is_available() else "cpu", help="cpu | cuda"),
    dtype: Optional[List[str]] = typer.Option(None, "--dtype", help="float32 | bf16 (autocast); default float32, "
                                                                    "and bf16 too on CUDA"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="channels-last memory format (default: CUDA times both)"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                           help="torch.compile the model (default: CUDA times both)"),
    model_only: bool = typer.Option(True, "--model/--no-model", help="time model forward passes"),
    end_to_end: bool = typer.Option(True, "--e2e/--no-e2e", help="time whole animate runs (decode, crop, encode, "
                                                                 "render, write)"),
    frames: int = typer.Option(16, "--frames", min=1, help="end to end: driving frames per run"),
    source: Optional[Path] = typer.Option(None, "--source", help="end to end: source image (default: the demo's)"),
    video: Optional[Path] = typer.Option(None, "--video", help="end to end: driving video (default: the demo's)"),
    warmup: int = typer.Option(2, min=0, help="model-only warm-up passes"),
    iters: int = typer.Option(5, min=1, help="model-only timed passes"),
    e2e_warmup: int = typer.Option(1, "--e2e-warmup", min=0, help="end-to-end warm-up runs"),
    e2e_iters: int = typer.Option(3, "--e2e-iters", min=1, help="end-to-end timed runs"),
    size: int = typer.Option(256, "--size", help="image size in px (256: the official models)"),
    threads: int = typer.Option(0, help="torch CPU threads (0: leave torch's default)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the figures to this JSON file"),
    runtime: str = typer.Option("torch", "--runtime", help="torch | onnx: per-frame time of torch eager vs "
                                                            "onnxruntime side by side (exports each model first)"),
    rounds: int = typer.Option(3, "--rounds", min=1, help="onnx: alternating torch / onnxruntime rounds"),
) -> None:
    """Time the animators (LIA / EDTalk / DPE / ...) at 256 px, plain and with EMI / EDI: model-only forward passes and whole animate runs.

    Timings are taken after warm-up (synchronised on CUDA); end-to-end runs also report seconds per stage. Weights are random (speed does not depend on them).
    """
    import torch

    from .. import speed as B
    from ..io.atomic import check_output_path
    from ..io.jsonfile import write_json

    from ..io.paths import check_outputs, require_suffix

    with user_errors(), console_warnings():
        if not backbone:
            from ..backbones import animator_backbones

            backbone = list(animator_backbones())
        if json_out is not None:
            check_outputs({"--json": json_out}, {"--source": source, "--video": video})
            require_suffix(json_out, (".json",), "--json")
            check_output_path(json_out)
        parse_device(device)
        _check_bounds(size, batch, model_only, end_to_end, runtime)
        threads = bounded_threads(threads, "--threads") or 0
        if threads:
            torch.set_num_threads(threads)
        unknown = [v for v in variant if v not in B.VARIANTS]
        if unknown:
            raise typer.BadParameter(f"unknown variant(s) {unknown}; choose from {B.VARIANTS}")
        cuda = torch.device(device).type == "cuda"
        dtypes = []
        for d in dtype or (["float32", "bf16"] if cuda else ["float32"]):
            if d not in _DTYPES:
                raise typer.BadParameter(f"unknown dtype {d!r}; choose from {sorted(_DTYPES)}")
            dtypes.append(getattr(torch, _DTYPES[d]))
        batches = batch or ([1, 8] if cuda else [1, 4])
        layouts = B.layouts_for(device, channels_last, compile)
        if runtime not in ("torch", "onnx"):
            raise typer.BadParameter(f"unknown runtime {runtime!r}; choose torch or onnx")
        if runtime == "onnx":
            torch.set_num_threads(threads or 2)
        env = B.environment(torch.device(device))
        say("  ".join(f"{k}={v}" for k, v in env.items()))
        out: dict = {"environment": env}
        if runtime == "onnx":
            _bench_onnx(out, backbone, variant if variant != ["base", "emi", "edi", "both"] else ["base", "both"],
                        size, threads or 2, rounds, iters, warmup, device)
            model_only = end_to_end = False
        if model_only:
            table = Table("backbone", "variant", "batch", "dtype", "options", "ms/batch", "fps", "peak MB",
                          "params M", "added M", title=f"model only: source + driving -> image ({size} px)")
            out["model_only"] = _run_into_table(table, "timing the models...", lambda show: B.run(
                backbone, variant, batches, device, dtypes, warmup=warmup, iters=iters, size=size, on_result=show,
                layouts=layouts))
        if end_to_end:
            table = Table("backbone", "variant", "batch", "dtype", "options", "frames", "s/run", "fps", "model fps",
                          "/".join(B.STAGES) + " s", "non-model s", "peak MB",
                          title="end to end: decode + detect/crop + encode + render + write (plugtalk animate)")
            out["end_to_end"] = _run_into_table(table, "timing end to end...", lambda show: B.run_end_to_end(
                backbone, variant, batches, device, dtypes, layouts, e2e_warmup, e2e_iters, size=size, frames=frames,
                source=source, video=video, on_result=show))
        if json_out:
            write_json(json_out, out)
            say(f"wrote {json_out}")


#: The largest image size and batch ``bench`` takes (beyond them a run only exhausts memory).
MAX_SIZE, MAX_BATCH = 1024, 256


def _check_bounds(size: int, batches: Optional[List[int]], model_only: bool, end_to_end: bool, runtime: str) -> None:
    """Refuse sizes the backbones cannot build, batch sizes out of range and a run that would time nothing.

    Raises:
        InputError: naming the option.
    """
    from ..errors import InputError

    if not 8 <= size <= MAX_SIZE or size & (size - 1):
        raise InputError(f"--size {size}: the image size must be a power of two from 8 to {MAX_SIZE} px "
                         "(256: the official models)")
    bad = [b for b in batches or [] if not 1 <= b <= MAX_BATCH]
    if bad:
        raise InputError(f"--batch {bad[0]}: batch sizes must be from 1 to {MAX_BATCH}")
    if not model_only and not end_to_end and runtime == "torch":
        raise InputError("--no-model and --no-e2e leave nothing to time; keep one of them (or --runtime onnx)")


def _bench_onnx(out: dict, backbones: List[str], variants: List[str], size: int, threads: int, rounds: int,
                iters: int, warmup: int, device: str) -> None:
    """Per-frame torch eager vs onnxruntime table (``out["onnx"]``)."""
    import os

    from ..deploy.onnx_speed import run_onnx

    provider = "CUDAExecutionProvider" if device.startswith("cuda") else "CPUExecutionProvider"
    if provider != "CPUExecutionProvider":
        raise typer.BadParameter("--runtime onnx times torch on the CPU; for CUDA time the graphs with onnxruntime "
                                 "directly")
    table = Table("backbone", "variant", "threads", "torch ms/frame", "onnxruntime ms/frame", "speedup",
                  "max |diff|", "torch: top ops (self time)", "onnxruntime: top ops",
                  title=f"per frame (encode driving frame + render), {size} px, batch 1, interleaved rounds")

    def each(show):
        def on_result(r):  # one line per model as soon as it is timed (a long run keeps what it measured)
            console.print(f"{r.backbone} {r.variant}: torch {r.torch_ms:.1f} ms/frame, onnxruntime {r.onnx_ms:.1f} "
                          f"ms/frame ({r.speedup:.2f}x), max |diff| {r.max_abs_error:.1e}, export {r.export_s:.0f} s, "
                          f"load {os.getloadavg()[0]:.1f}", highlight=False, soft_wrap=True)
            show(r)
        return run_onnx(backbones, variants, on_result=on_result, size=size, threads=threads, rounds=rounds,
                        iters=iters, warmup=warmup, provider=provider)

    out["onnx"] = _run_into_table(table, "exporting and timing...", each)
