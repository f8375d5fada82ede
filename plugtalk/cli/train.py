"""``plugtalk train``: FixTalk's training recipe from a YAML config (one process, or many under torchrun)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from . import app
from ._common import console, console_warnings, user_errors


@app.command()
def train(
    config: str = typer.Option(..., "--config", "-c",
                               help="YAML config file, or a packaged one: fixtalk-edtalk256, small-cpu"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint in output_dir"),
    overrides: list[str] = typer.Option([], "--set", help="override a setting, e.g. --set optim.steps=1000 "
                                        "(repeatable; values are YAML)"),
    data: Path = typer.Option(None, "--data", help="shorthand for --set data.folder=..."),
    output: Path = typer.Option(None, "--output", "-o", help="shorthand for --set output_dir=..."),
    show: bool = typer.Option(False, "--show-config", help="print the effective config and exit"),
) -> None:
    """Train EMI/EDI (or a plain backbone) on self-reenactment pairs of a folder of face clips.

    Stages (the config's `stage`): stage1 = backbone + EMI (LIA-style pre-training); stage2 = EDI only, from the stage-1 model; retrofit = EMI/EDI on a frozen pretrained backbone; baseline = no EMI/EDI.

    Several GPUs: torchrun --nproc_per_node N -m plugtalk.train --config FILE.
    """
    from .._optional import require
    require("yaml", "train", "plugtalk train")
    import yaml

    from ..train import Trainer, load_config

    sets = list(overrides)
    if data is not None:
        sets.append(f"data.folder={json.dumps(str(data))}")  # a JSON string is YAML: no reinterpretation
    if output is not None:
        sets.append(f"output_dir={json.dumps(str(output))}")
    with user_errors(), console_warnings():
        cfg = load_config(config, sets)
        if show:
            console.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), highlight=False, markup=False)
            return
        trainer = Trainer(cfg, resume=resume)
        try:
            trainer.fit()
        finally:
            trainer.dist.close()
