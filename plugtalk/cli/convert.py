"""``plugtalk convert``: official checkpoint -> plugtalk safetensors (weights + config)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from ._common import say, user_errors


@app.command()
def convert(
    official: Path = typer.Argument(..., help="official torch.save checkpoint (.pt/.pth)"),
    out: Path = typer.Argument(..., help="output .safetensors file (not the input)"),
    backbone: str = typer.Option(..., "--backbone", "-b", help="lia | edtalk | edtalk-audio | dpe | gohd"),
) -> None:
    """Convert an official LIA / EDTalk / DPE checkpoint to plugtalk's safetensors format.

    The file is read with torch.load(weights_only=True); every official key must map onto the backbone, and NaN or infinite weights are refused.
    """
    from .. import backbones
    from ..io.paths import check_outputs, require_suffix

    with user_errors():
        check_outputs({"output": out}, {"checkpoint": official})
        require_suffix(out, (".safetensors",), "output")
        model = backbones.load_official(backbone, official)
        model.save_pretrained(out, {"converted_from": official.name})
    n = sum(p.numel() for p in model.parameters())
    say(f"wrote {out} ({backbone}, {n / 1e6:.2f} M parameters)")
