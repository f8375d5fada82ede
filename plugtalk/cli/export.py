"""``plugtalk export --format onnx``: a model -> encode.onnx + render.onnx + manifest for onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app
from ._common import console, user_errors

FORMATS = ("onnx",)


@app.command()
def export(
    out: Path = typer.Option(..., "--out", "-o", help="output folder (new, empty, or a previous export: replaced)"),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx"),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", "-c", help="weights as for plugtalk animate (retrofit / backbone / official .pt with "
                                         "--backbone); default: the embedded model"),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="lia | edtalk | dpe"),
    mode: Optional[str] = typer.Option(None, "--mode", help="DPE: expression (default) | pose"),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (18 or newer)"),
    check: bool = typer.Option(True, "--check/--no-check", help="compare onnxruntime with torch on random inputs"),
) -> None:
    """Export a model (any backbone, plain or with EMI/EDI) to ONNX for stock onnxruntime.

    Writes encode.onnx (image -> latent, feature pyramid, motion code; run once on the source and on each driving batch), render.onnx (source encoding + motion codes [+ EDTalk controls] -> image) and plugtalk-onnx.json describing their inputs; the batch axis is dynamic. Run it with plugtalk animate --runtime onnx -c FOLDER.
    """
    from ..deploy.onnx_export import export_onnx
    from ..errors import InputError
    from ..weights.load import load_animator
    from .animate import warnings_to_console

    with user_errors(), warnings_to_console():
        if format not in FORMATS:
            raise InputError(f"unknown export format {format!r}; supported: {', '.join(FORMATS)}")
        loaded = load_animator(checkpoint, backbone, mode=mode, device="cpu")
        with console.status(f"exporting {loaded.backbone} {loaded.variant} to ONNX..."):
            result = export_onnx(loaded.model, out, opset=opset, description=loaded.source, check=check)
    m = result.manifest
    console.print(f"wrote {result.path}: encode.onnx + render.onnx ({m['backbone']} {loaded.variant}, "
                  f"{m['image_size']} px, opset {m['opset']}) in {result.seconds:.0f} s", highlight=False,
                  soft_wrap=True)
    console.print("render inputs: " + ", ".join(m["graphs"]["render"]["inputs"]), highlight=False, soft_wrap=True)
    if "check" in m:
        console.print(f"check: onnxruntime vs torch max abs error {m['check']['max_abs_error']:.2e} "
                      "([-1, 1] units, random inputs, batch 2)", highlight=False, soft_wrap=True)
