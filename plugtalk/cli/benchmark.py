"""``plugtalk benchmark``: identity leakage (protocol v2) and FixTalk's Tab. 1 / Tab. 3 for any model animate takes."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import console_warnings, say, user_errors


def parse_models(specs: List[str], backbone: Optional[str]):
    """``-c`` values -> :class:`~plugtalk.benchmark.ModelSpec` list: ``PATH``, ``LABEL=PATH`` or ``default``
    (the embedded model); the label defaults to the file stem.

    Raises:
        InputError: an empty label or path, or a label used twice.
    """
    from ..benchmark import ModelSpec
    from ..errors import InputError

    out = []
    for spec in specs:
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        if not path:
            raise InputError(f"-c {spec!r}: give PATH, LABEL=PATH or 'default'")
        checkpoint = None if path == "default" else path
        label = label or (Path(path).stem if checkpoint else "default")
        if not label.strip() or any(ord(ch) < 32 for ch in label) or len(label) > 64:
            raise InputError(f"-c {spec!r}: the label must be 1-64 printable characters")
        out.append(ModelSpec(label, checkpoint, backbone))
    labels = [m.label for m in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InputError(f"two models are labelled {dup[0]!r}: name them with -c LABEL=PATH")
    return out


@app.command()
def benchmark(
    checkpoint: List[str] = typer.Option(..., "--checkpoint", "-c", help="a model: PATH, LABEL=PATH or 'default' "
                                         "(the embedded model); repeat for more (the first is the baseline of the "
                                         "paired differences)"),
    data: Path = typer.Option(..., "--data", help="clip folder: a plugtalk prepare output (manifest.jsonl), the "
                              "shared layout (faces/test) or <identity>__<clip>.mp4 files"),
    out: Path = typer.Option(..., "--out", "-o", help="report folder (report.md, report.json, plots, rows.jsonl)"),
    protocol: str = typer.Option("leakage", "--protocol", help="leakage | fixtalk-hdtf | fixtalk-mead-audio"),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="for official .pt checkpoints"),
    frames: int = typer.Option(10, help="scored frames per cross-reenactment pair (over the driver's first 100)"),
    self_frames: int = typer.Option(40, help="scored frames per self-reenactment clip"),
    max_pairs: Optional[int] = typer.Option(None, help="at most N cross pairs (spread evenly)"),
    max_self: Optional[int] = typer.Option(None, help="at most N self-reenactment clips"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="worker processes (default: min(2, CPUs); <= 64)"),
    resume: bool = typer.Option(False, "--resume", help="keep the pairs an interrupted run already scored"),
    split: str = typer.Option("test", help="the manifest split to score"),
    stills: Optional[Path] = typer.Option(None, help="folder of portrait stills as extra sources "
                                          "(default: DATA/stills when present)"),
    arcface_weights: Optional[Path] = typer.Option(None, help="ArcFace backbone.pth for CSIM (default: dlib)"),
    inception_weights: Optional[Path] = typer.Option(None, help="Inception-v3 weights for FID (fixtalk-hdtf)"),
    syncnet_weights: Optional[Path] = typer.Option(None, help="SyncNet weights (fixtalk-mead-audio)"),
    emotion_weights: Optional[Path] = typer.Option(
        None, help="an emotion classifier as ONNX (+ optional FILE.json: classes, size, mean, std) for Acc_emo "
                   "(fixtalk-mead-audio; needs plugtalk[onnx])"),
    audio_checkpoint: Optional[Path] = typer.Option(None, help="EDTalk's audio-to-mouth weights (Audio2Lip.pt or a "
                                                    "plugtalk file) for fixtalk-mead-audio"),
    seed: int = typer.Option(0, help="seed of the bootstrap"),
) -> None:
    """Run a benchmark protocol over every pair of the data folder with every model; write report.md, report.json (per pair, per frame) and plots.

    Under torchrun each rank scores its shard of the pairs and rank 0 merges and writes the report.
    """
    from ..benchmark import BenchmarkSettings, run_benchmark
    from ..benchmark.runner import check_jobs
    from ..io.paths import check_outputs, removing_new_folders

    with user_errors(), console_warnings(), removing_new_folders(out):
        models = parse_models(checkpoint, backbone)
        check_outputs({"--out": [out / "report.md", out / "report.json"]},
                      {"--checkpoint": [m.checkpoint for m in models], "--data": data})
        settings = BenchmarkSettings(data=data, out=out, protocol=protocol, frames=frames, self_frames=self_frames,
                                     max_pairs=max_pairs, max_self=max_self, jobs=check_jobs(jobs), resume=resume,
                                     split=split, stills=stills, arcface_weights=arcface_weights,
                                     inception_weights=inception_weights, syncnet_weights=syncnet_weights,
                                     emotion_weights=emotion_weights, audio_checkpoint=audio_checkpoint, seed=seed)
        report = run_benchmark(settings, models, log=say)
    if report is not None:
        say(f"wrote {out / 'report.md'} and report.json")
