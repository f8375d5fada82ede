"""``plugtalk bench``: forward-pass speed and memory per backbone and retrofit variant."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from . import app
from ._common import console, user_errors

_DTYPES = {"float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}


@app.command()
def bench(
    backbone: list[str] = typer.Option(["lia", "edtalk", "dpe"], "--backbone", "-b", help="backbones to time"),
    variant: list[str] = typer.Option(["base", "emi", "edi", "both"], "--variant", "-v",
                                      help="base | emi | edi | both (retrofitted with FixTalk's modules)"),
    batch: list[int] = typer.Option([1], "--batch", help="batch sizes"),
    device: str = typer.Option("cuda" if __import__("torch").cuda.is_available() else "cpu", help="cpu | cuda"),
    dtype: list[str] = typer.Option(["float32"], "--dtype", help="float32 | bf16 (autocast)"),
    channels_last: bool = typer.Option(False, help="channels-last memory format"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model"),
    warmup: int = typer.Option(2, min=0), iters: int = typer.Option(5, min=1),
    threads: int = typer.Option(0, help="torch CPU threads (0: leave torch's default)"),
    json_out: Path = typer.Option(None, "--json", help="also write the figures to this JSON file"),
) -> None:
    """Time model forward passes at 256 px (after warm-up; synchronised on CUDA)."""
    import dataclasses

    import torch

    from .. import bench as B
    from ..io.atomic import atomic_path

    with user_errors():
        if threads:
            torch.set_num_threads(threads)
        unknown = [v for v in variant if v not in B.VARIANTS]
        if unknown:
            raise typer.BadParameter(f"unknown variant(s) {unknown}; choose from {B.VARIANTS}")
        dtypes = []
        for d in dtype:
            if d not in _DTYPES:
                raise typer.BadParameter(f"unknown dtype {d!r}; choose from {sorted(_DTYPES)}")
            dtypes.append(getattr(torch, _DTYPES[d]))
        env = B.environment(torch.device(device))
        console.print("  ".join(f"{k}={v}" for k, v in env.items()))
        table = Table("backbone", "variant", "batch", "dtype", "options", "ms/batch", "fps", "peak MB",
                      "params M", "added M", title="model-only forward (source + driving -> image)")
        results = []
        with console.status("timing...") as status:
            def show(r):
                results.append(r)
                table.add_row(*r.row())
                status.update(f"timed {r.backbone}/{r.variant}/b{r.batch}")
            B.run(backbone, variant, batch, device, dtypes, channels_last, compile, warmup, iters, on_result=show)
        console.print(table)
        if json_out:
            with atomic_path(json_out) as tmp:
                tmp.write_text(json.dumps({"environment": env, "results": [dataclasses.asdict(r) for r in results]},
                                          indent=2))
