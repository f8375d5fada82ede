"""``plugtalk train``: FixTalk's training recipe from a YAML config (one process, or many under torchrun)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from . import app
from ._common import console, console_warnings, user_errors


@app.command()
def train(
    config: str = typer.Option(None, "--config", "-c",
                               help="YAML config file, or a packaged one: fixtalk-edtalk256 (recommended), "
                                    "fixtalk-edtalk-paper (the paper's, exactly), small-cpu (with --recipe: "
                                    "the base config of every step; default the recipe's)"),
    recipe: str = typer.Option(None, "--recipe", "-r", help="run a registered sequence of stages, each from the "
                               "previous one's model: fixtalk-edtalk"),
    until: str = typer.Option(None, "--until", help="with --recipe: stop after this step (e.g. mouth-pose, when "
                              "the clips carry no emotion labels for the expression step)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint in output_dir (with "
                                "--recipe: skip finished steps and resume the unfinished one)"),
    overrides: list[str] = typer.Option([], "--set", help="override a setting, e.g. --set optim.steps=1000 "
                                        "(repeatable; values are YAML; with --recipe STEP.KEY=VALUE sets one step)"),
    data: Path = typer.Option(None, "--data", help="shorthand for --set data.folder=..."),
    output: Path = typer.Option(None, "--output", "-o", help="shorthand for --set output_dir=... (with --recipe: "
                                "the run's folder, one sub-folder per step)"),
    show: bool = typer.Option(False, "--show-config", help="print the effective config (with --recipe: every "
                              "step's) and exit"),
) -> None:
    """Train EMI/EDI (or a plain backbone) on self-reenactment pairs of a folder of face clips.

    Stages (the config's `stage`, registered in plugtalk.train.stages): stage1 = backbone + EMI (LIA-style pre-training); stage2 = EDI only, from the stage-1 model; retrofit = EMI/EDI on a frozen pretrained backbone; baseline = no EMI/EDI; edtalk-mouth-pose, edtalk-expression = EDTalk's decoupling stages; edtalk-audio-lip, edtalk-audio-pose = EDTalk's audio models, trained beside the frozen animator.

    Recipes (--recipe): fixtalk-edtalk = pretrain, stage1, stage2, edtalk-mouth-pose, edtalk-expression, edtalk-audio-lip, edtalk-audio-pose.

    Several GPUs: torchrun --nproc_per_node N -m plugtalk.train --config FILE (or --recipe NAME -o DIR).
    """
    from .._optional import require
    require("yaml", "train", "plugtalk train")
    import yaml

    from ..train import Trainer, load_config

    sets = list(overrides)
    if data is not None:
        sets.append(f"data.folder={json.dumps(str(data))}")  # a JSON string is YAML: no reinterpretation
    with user_errors(), console_warnings():
        if recipe is not None:
            from ..train.recipes import resolve_recipe, run_recipe, show_recipe

            out = output if output is not None else Path("runs") / recipe
            planned = resolve_recipe(recipe, out, sets, base=config, until=until)
            if show:
                typer.echo(show_recipe(planned), nl=False)  # plain: long paths must not be wrapped
                return
            run_recipe(planned, out, resume=resume, log=console.print)
            return
        from ..errors import InputError

        if until is not None:
            raise InputError("--until needs --recipe")
        if config is None:
            raise InputError("give --config FILE (or a packaged config name) or --recipe NAME")
        if output is not None:
            sets.append(f"output_dir={json.dumps(str(output))}")
        cfg = load_config(config, sets)
        if show:
            console.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), highlight=False, markup=False)
            return
        trainer = Trainer(cfg, resume=resume)
        try:
            trainer.fit()
        finally:
            trainer.dist.close()
