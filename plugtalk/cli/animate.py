"""``plugtalk animate``: a source portrait + driving video(s) and/or audio -> talking-head video."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from . import app
from ._common import err_console, parse_device, say, tell, user_errors


@contextlib.contextmanager
def warnings_to_console() -> Iterator[None]:
    """Show Python warnings raised inside the block as yellow ``warning:`` lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
                    continue
                text = str(w.message)
                if text not in seen:
                    seen.add(text)
                    tell("warning", text)


def progress_bar(description: str):
    """A rich progress bar and its ``(done, total)`` callback."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=err_console, transient=False)
    task = bar.add_task(description, total=None)

    def update(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(runtime: str, checkpoint, backbone, mode, device, threads: int):
    """The model for ``--runtime``: torch (any weights file) or onnx (an export folder, on onnxruntime)."""
    from ..checks import bounded_threads
    from ..errors import InputError
    from ..weights.load import load_animator

    if runtime == "torch":
        return load_animator(checkpoint, backbone, mode=mode, device=device)
    if runtime != "onnx":
        raise InputError(f"unknown runtime {runtime!r}; choose torch or onnx")
    from ..deploy.onnx_runtime import load_onnx_animator

    if checkpoint is None:
        raise InputError("--runtime onnx needs --checkpoint FOLDER (made by plugtalk export --format onnx)")
    loaded = load_onnx_animator(checkpoint, threads=bounded_threads(threads, "--threads") or None)
    if backbone is not None and backbone != loaded.backbone:
        raise InputError(f"{str(checkpoint)!r} holds a {loaded.backbone} model, not {backbone}")
    if mode is not None:
        raise InputError("--mode is fixed when a DPE model is exported (plugtalk export --mode)")
    return loaded


@app.command()
def animate(
    source: Path = typer.Option(..., "--source", "-s", help="source portrait (any image: 8/16-bit, gray, RGBA)"),
    out: Path = typer.Option(..., "--out", "-o", help="output video (.mp4, .mov, .mkv); its folder must exist"),
    driving: Optional[Path] = typer.Option(None, "--driving", "-d", help="driving video"),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b",
                                           help="lia | edtalk | dpe | gohd (required for official .pt checkpoints)"),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", "-c",
        help="weights: a plugtalk retrofit file (EMI/EDI), a plugtalk backbone file (plugtalk convert), or an "
             "official LIA/EDTalk/DPE/GoHD .pt with --backbone; default: the embedded model"),
    mode: Optional[str] = typer.Option(None, "--mode", help="DPE: expression (default) | pose"),
    mouth: Optional[Path] = typer.Option(None, "--mouth", help="EDTalk: video driving the mouth"),
    pose: Optional[Path] = typer.Option(None, "--pose", help="EDTalk: video driving the head pose"),
    expression: Optional[Path] = typer.Option(None, "--expression", help="EDTalk: video driving the expression"),
    audio: Optional[Path] = typer.Option(
        None, "--audio", "-a", help="sound for the output; with EDTalk it drives the mouth (any rate, resampled "
                                    "to 16 kHz)"),
    audio_checkpoint: Optional[Path] = typer.Option(
        None, "--audio-checkpoint", help="EDTalk audio-to-mouth weights: official Audio2Lip.pt or a plugtalk file "
                                         "(= --companion edtalk-audio=FILE)"),
    expression_weights: Optional[str] = typer.Option(
        None, "--expression-weights", help="EDTalk: expression weights, a .npy of shape (10,) or (1, 10), or "
                                           "comma-separated numbers (= --control expression-weights=VALUE)"),
    coefficients: Optional[Path] = typer.Option(
        None, "--coefficients", help="GoHD: per-frame Deep3DFaceRecon coefficients (.npy / .npz / .mat; one output "
                                     "frame per row) (= --control coefficients=FILE)"),
    gaze: Optional[str] = typer.Option(None, "--gaze", help="GoHD: fixed gaze YAW,PITCH in radians (default 0,0: "
                                                            "straight ahead), independent of expression and pose"),
    gaze_from: Optional[Path] = typer.Option(None, "--gaze-from", help="GoHD: per-frame gaze file, (T, 2) yaw, "
                                                                       "pitch in radians (.npy or text)"),
    control: Optional[List[str]] = typer.Option(
        None, "--control", help="NAME=VALUE: a driving control of the model's adapter (a file or a value; "
                                "repeatable), e.g. expression-weights=w.npy"),
    companion: Optional[List[str]] = typer.Option(
        None, "--companion", help="NAME=FILE: weights of a model a control needs (repeatable), e.g. "
                                  "edtalk-audio=Audio2Lip.pt"),
    no_crop: bool = typer.Option(False, "--no-crop", help="the source already is a face crop: do not detect"),
    driving_cropped: bool = typer.Option(False, "--driving-cropped",
                                         help="driving videos already are face crops: do not detect"),
    relative: Optional[bool] = typer.Option(
        None, "--relative/--absolute", help="relative motion from the first driving frame (default for LIA, as "
                                            "its demo) or absolute (default for EDTalk and DPE)"),
    paste: bool = typer.Option(False, "--paste-back", help="paste the animated face back into the full source image"),
    smooth: int = typer.Option(0, "--smooth", min=0, help="temporal Gaussian on the motion codes: odd number of "
                                                          "frames (0: off)"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="driving frames per model call"),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="stop after this many frames"),
    fps: Optional[float] = typer.Option(None, "--fps", help="output frame rate (default: the driving video's; 25 "
                                                            "when audio drives the mouth)"),
    side_by_side: Optional[Path] = typer.Option(None, "--side-by-side",
                                                help="also write source | driving | output to this video"),
    no_audio: bool = typer.Option(False, "--no-audio", help="write a silent video"),
    lossless: bool = typer.Option(False, "--lossless", help="exact RGB frames (larger files), e.g. for plugtalk eval"),
    detect_every: int = typer.Option(5, "--detect-every", min=1, help="face-detection stride for the driving crop"),
    device: str = typer.Option(default_device(), "--device", help="cpu | cuda | cuda:N"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    runtime: str = typer.Option("torch", "--runtime", help="torch | onnx (onnxruntime; --checkpoint is a folder "
                                                            "from plugtalk export --format onnx)"),
    threads: int = typer.Option(0, "--threads", min=0, help="onnx runtime: intra-op threads (0: all cores)"),
) -> None:
    """Animate a source portrait with a driving video (LIA, EDTalk, DPE; plain or retrofitted with EMI/EDI).

    GoHD: --coefficients drives expression and head pose; --gaze / --gaze-from set the gaze independently.

    EDTalk: --mouth / --pose / --expression videos drive its banks separately (--driving fills the rest); --audio drives the mouth through EDTalk's audio model, optionally with a --pose video and --expression-weights.

    Long videos stream through in constant memory (--batch-size frames at a time); the output is written atomically, with the driving video's sound or --audio.
    """
    from ..adapters.controls import parse_assignments
    from ..animate import AnimateOptions
    from ..animate import animate as run_animate
    from ..io.paths import check_outputs
    from ..weights.load import CompanionLoader, companion_weights

    with user_errors(), warnings_to_console():
        check_outputs({"--out": out, "--side-by-side": side_by_side},
                      {"--source": source, "--driving": driving, "--mouth": mouth, "--pose": pose,
                       "--expression": expression, "--audio": audio, "--checkpoint": checkpoint,
                       "--audio-checkpoint": audio_checkpoint, "--expression-weights": expression_weights,
                       "--coefficients": coefficients, "--gaze-from": gaze_from,
                       **{f"--control {v}": v.partition("=")[2] for v in control or []},
                       **{f"--companion {v}": v.partition("=")[2] for v in companion or []}})
        dev = parse_device(device)
        if gaze is not None and gaze_from is not None:
            raise typer.BadParameter("give --gaze or --gaze-from, not both")
        controls = {"expression-weights": expression_weights, "coefficients": coefficients,
                    "gaze": gaze_from if gaze_from is not None else gaze, **parse_assignments(control, "--control")}
        weights = companion_weights(companion, audio_checkpoint)
        loaded = _load(runtime, checkpoint, backbone, mode, dev, threads)
        companions = CompanionLoader(weights, dev, hint="--audio-checkpoint needs --audio and an EDTalk model")
        bar, update = progress_bar(f"animating ({loaded.backbone}{'' if loaded.variant == 'base' else loaded.variant})")
        with bar if progress else contextlib.nullcontext():
            result = run_animate(
                loaded.model, source, out, companions=companions,
                drivers={"driving": driving, "mouth": mouth, "pose": pose, "expression": expression},
                controls={k: v for k, v in controls.items() if v is not None},
                options=AnimateOptions(crop_source=not no_crop, crop_driving=not driving_cropped, relative=relative,
                                       paste=paste, smooth=smooth, batch_size=batch_size, max_frames=frames, fps=fps,
                                       side_by_side=side_by_side, sound=audio, mux_sound=not no_audio,
                                       detect_every=detect_every, lossless=lossless),
                on_progress=update if progress else None)
        audio_desc = "; ".join(f"{k} model from {v}" for k, v in companions.described.items())
    _report(result, loaded, audio_desc)


def _report(result, loaded, audio_desc: str) -> None:
    """The command's summary: notes, the file written, model, drivers, side by side, time."""
    for note in result.warnings:
        tell("note", note)
    h, w = result.size
    t = result.timings
    say(f"wrote {result.path} ({result.frames} frames, {w}x{h}, {result.fps:g} fps, "
        f"{'sound: ' + result.audio if result.audio else 'silent'})")
    say(f"model: {loaded.backbone} {loaded.variant} from {loaded.source}" + (f"; {audio_desc}" if audio_desc else ""))
    say("drivers: " + ", ".join(f"{d} <- {v}" for d, v in result.drivers.items())
        + f"; {'relative' if result.relative else 'absolute'} motion"
        + (f"; motion codes smoothed over {result.smooth} frames" if result.smooth else ""))
    if result.side_by_side:
        say(f"side by side: {result.side_by_side}")
    say(f"time: {t.get('total', 0):.1f} s ({result.frames / max(t.get('total', 1e-9), 1e-9):.1f} frames/s "
        f"end to end; model {t.get('model', 0):.1f} s)")
