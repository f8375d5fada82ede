"""Animate a source portrait with driving videos and/or audio, streaming, in constant memory.

The pipeline (``plugtalk animate``; one code path for every backbone, retrofitted or not) is a
validated :class:`AnimatePlan` (:func:`plan_animation`: every option checked against the model's
registry entry and adapter before any heavy work) and a typed stream of :class:`FrameBatch` es
(:func:`stream_batches`), rendered and written batch by batch:

1. **source**: read any image mode (:func:`~plugtalk.io.images.load_image`), detect the face and crop it
   FOMM-style at the model's size (:func:`~plugtalk.face.crop.crop_portrait`), encode it ONCE
   (:meth:`Retrofitted.encode_source`: latent, feature pyramid, motion code ``z_s``);
2. **drivers**: each driving video gets one crop box for the whole clip from face detections on
   every ``detect_every``-th frame (:func:`~plugtalk.face.crop.video_crop_box`; a first decoding
   pass), then its frames stream through in batches of ``batch_size``, cropped and resized to the
   model's size; a model with several drivers (EDTalk's mouth / pose / expression banks) takes a video
   each; **controls** - inputs that are not driving videos - are read by the adapter that declares them
   (:mod:`plugtalk.adapters.controls`: EDTalk's audio through its audio-to-mouth model and its expression
   weights, GoHD's coefficient file and gaze), each yielding the adapter's per-frame inputs;
3. **motion**: per batch, encode the drivers (:meth:`Retrofitted.encode_drivers`); optionally
   smooth their motion codes over time (:class:`~plugtalk.layers.temporal.StreamingSmoother`, a
   lookahead of ``smooth // 2`` frames); *relative* motion (LIA's demo) uses
   ``z = z_s + z_d - z_start`` with ``z_start`` the code of each driving video's first frame;
4. **render** (:meth:`Retrofitted.render`), optionally paste the animated crop back into the full
   source image, and write H.264 atomically (:class:`~plugtalk.io.video.VideoWriter`) with the
   driving video's sound or the given audio.

Only one batch of frames (plus the smoothing lookahead) is held at any time: the source is encoded
once, driving frames are pulled from the readers batch by batch, and outputs are written as they
are rendered.  The output lasts as long as the shortest input (video or control), capped by
``max_frames``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .backbones import backbone_entry
from .errors import InputError
from .face.crop import CropBox, crop_and_resize, crop_portrait, paste_back, video_crop_box
from .io.atomic import check_output_path
from .io.images import load_image, to_tensor, to_uint8
from .io.video import MAX_FPS, VideoInfo, VideoReader, VideoWriter, probe_video
from .adapters.controls import ControlContext
from .retrofitting import DriverState, Retrofitted

__all__ = ["SourceImage", "DrivingClip", "AnimateResult", "AnimateOptions", "AnimatePlan", "FrameBatch", "Runtime",
           "prepare_source", "center_box", "relative_codes", "assign_drivers", "plan_animation", "stream_batches",
           "animate", "optimize_for_inference", "VIDEO_OUTPUT_SUFFIXES", "DEFAULT_FPS", "Companions"]

#: Output containers the writer produces.
VIDEO_OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv")
#: Output frame rate when no input sets one (no driving video, no control read at its own rate, no ``fps``).
DEFAULT_FPS = 25.0


# -- inputs -----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SourceImage:
    """A source portrait ready for the model.

    Attributes:
        original: ``(H, W, 3)`` uint8 RGB as read (any file mode converted to 8-bit RGB).
        crop: ``(S, S, 3)`` uint8 RGB at the model's size.
        box: the crop box in ``original``'s pixels (for paste-back).
    """

    original: np.ndarray
    crop: np.ndarray
    box: CropBox


def center_box(height: int, width: int) -> CropBox:
    """The largest centred square of a ``height x width`` frame (for frames that are already face crops)."""
    side = min(height, width)
    return CropBox((width - side) // 2, (height - side) // 2, side)


def prepare_source(image: np.ndarray | str | os.PathLike, size: int, *, crop: bool = True,
                   name: str | None = None) -> SourceImage:
    """Read and crop a source portrait at the model's ``size``.

    Args:
        image: an image file (PNG, JPEG, ...: 8/16-bit, grayscale, RGBA, palette all work) or an
            ``(H, W, 3)`` uint8 RGB array.
        size: the model's image size in px.
        crop: detect the face and crop FOMM-style (:func:`~plugtalk.face.crop.crop_portrait`);
            ``False``: the image already is a face crop, its centred square is resized.
        name: used in error messages (default: the file name).

    Raises:
        InputError: unreadable or too small image.  NoFaceError: no face found (with ``crop``).
    """
    if isinstance(image, (str, os.PathLike)):
        name = name or Path(image).name
        image = load_image(image)
    name = name or "source image"
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    if crop:
        cropped, box = crop_portrait(img, size, name=name)
    else:
        box = center_box(*img.shape[:2])
        cropped = crop_and_resize(img, box, size)
    return SourceImage(img, cropped, box)


class DrivingClip:
    """A driving video as the model sees it: frames streamed in batches, all cut with ONE crop box
    and resized to the model's size.

    Creating it probes the file (corrupt / empty / zero-frame videos fail here) and, with
    ``crop=True``, decodes it once to find the crop box (:func:`~plugtalk.face.crop.video_crop_box`);
    :meth:`batches` decodes it again, batch by batch.

    Args:
        path: the video file.
        size: the model's image size in px.
        crop: find the face box; ``False``: the frames already are face crops (centred square).
        fps: read at this frame rate (nearest-frame resampling); ``None``: native rate.
        max_frames: read at most this many frames.
        detect_every: run the face detector on every N-th frame for the crop box.
        name: used in messages (default: the file name).

    Raises:
        InputError: missing, empty, corrupt or truncated video.  NoFaceError: no face (with ``crop``).
    """

    def __init__(self, path: str | os.PathLike, size: int, *, crop: bool = True, fps: float | None = None,
                 max_frames: int | None = None, detect_every: int = 5, name: str | None = None):
        self.path = Path(path)
        self.name = name or self.path.name
        self.size = size
        if fps is not None and abs(fps - probe_video(path).fps) < 1e-6:
            fps = None  # already at that rate: no resampling
        self.reader = VideoReader(path, fps=fps, max_frames=max_frames)
        if crop:
            try:
                self.box = video_crop_box(iter(self.reader), detect_every=detect_every, name=repr(self.name))
            except InputError as e:
                if "no face" in str(e):
                    raise type(e)(f"{e}; if the video already shows a cropped face, pass --driving-cropped") from None
                raise
        else:
            self.box = center_box(*self.reader.size)

    @property
    def info(self) -> VideoInfo:
        return self.reader.info

    @property
    def fps(self) -> float:
        return self.reader.fps

    @property
    def frame_count(self) -> int | None:
        return self.reader.frame_count

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(crops (n, S, S, 3), originals (n, H, W, 3))`` uint8 batches in order."""
        for frames in self.reader.batches(batch_size):
            yield np.stack([crop_and_resize(f, self.box, self.size) for f in frames]), frames


def relative_codes(source_code: Tensor, codes: Mapping[str, Tensor], starts: Mapping[str, Tensor]
                   ) -> dict[str, Tensor]:
    """Relative motion (LIA's demo): ``z = z_s + z_d - z_start`` per driver with a start code.

    The LIA family's motion heads are affine and its dictionaries linear, so shifting the codes is
    exactly LIA's relative mode (``D(z_d) - D(z_start) + D(z_s)``); see :meth:`Retrofitted.forward`.
    """
    return {d: (source_code + z - starts[d]) if d in starts else z for d, z in codes.items()}


def assign_drivers(adapter, driving, named: Mapping[str, Any], replaced: set[str], notes: list[str]
                   ) -> tuple[dict[str, Any], dict[str, str]]:
    """Which video drives which of the adapter's drivers.

    ``named`` videos drive their own bank; ``driving`` fills every other driver the adapter lets a single
    driving video fill (``Adapter.driving_fills``) unless ``replaced`` (by audio or weights).  The
    ``driving`` video comes first: it sets the output's frame rate and sound.

    Returns:
        ``(videos: key -> path, assignment: driver -> video key)``.
    """
    videos: dict[str, Any] = {}
    assignment: dict[str, str] = {}
    if driving is not None:
        fills = [d for d in adapter.driving_fills if d not in replaced]
        if fills:
            videos["driving"] = driving
            assignment.update({d: "driving" for d in fills})
        else:
            notes.append("--driving was not used: every driver has its own input")
    for d, v in named.items():
        videos[d] = v
        assignment[d] = d
    return videos, assignment


# -- runtime ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Runtime:
    """How the model runs: ``device``, input ``dtype``, ``autocast`` dtype (e.g. ``torch.bfloat16``;
    ``None``: no autocast) and channels-last inputs."""

    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    autocast: torch.dtype | None = None
    channels_last: bool = False

    @classmethod
    def of(cls, model: torch.nn.Module, **kwargs) -> "Runtime":
        """The model's own device and dtype (a model without torch parameters, e.g. an ONNX one: CPU float32)."""
        p = next(model.parameters(), None)
        if p is None:
            return cls(**kwargs)
        return cls(device=p.device, dtype=p.dtype, **kwargs)

    def context(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def tensor(self, images: np.ndarray) -> Tensor:
        """uint8 ``(n, H, W, 3)`` -> ``(n, 3, H, W)`` in [-1, 1] on the device."""
        x = to_tensor(images, device=self.device, dtype=self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def optimize_for_inference(model: Retrofitted, *, channels_last: bool = False, compile: bool = False) -> Retrofitted:
    """Channels-last weights and/or ``torch.compile`` of the parts the staged API calls (the backbone's
    sub-networks and EMI/EDI; ``Retrofitted.forward`` itself is not used by :func:`animate`)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        for part in [*model.backbone.children(), model.emi, model.edi]:
            if part is not None:
                part.compile()
    return model


# -- the pipeline -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class AnimateResult:
    """What :func:`animate` did.

    Attributes:
        path: the written video; ``side_by_side``: the source | driving | output video, if asked for.
        frames, fps, size: frames written, frame rate, ``(height, width)`` of the output.
        drivers: which input drove which part of the model, e.g. ``{"driving": "clip.mp4"}`` or
            ``{"mouth": "audio speech.wav", "pose": "head.mp4"}``.
        relative: whether relative motion was used; ``smooth``: the motion-code smoothing taps (0: none).
        audio: where the output's sound came from (``None``: silent).
        source_box, driving_boxes: crop boxes (source pixels) of the source and each driving video.
        timings: seconds spent per stage (``source``, ``detect``, ``audio``, ``decode``, ``crop``,
            ``model``, ``write``) and ``total``.
        warnings: notes for the user (e.g. inputs of different lengths).
    """

    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    drivers: dict[str, str]
    relative: bool
    smooth: int
    audio: str | None
    source_box: CropBox
    driving_boxes: dict[str, CropBox]
    timings: dict[str, float]
    side_by_side: Path | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)


class _Timer:
    def __init__(self, device: torch.device):
        self.seconds: dict[str, float] = defaultdict(float)
        self.device = device

    @contextlib.contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if stage == "model" and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[stage] += time.perf_counter() - t0


def _check_video_out(path: str | os.PathLike, what: str) -> Path:
    p = check_output_path(path)
    if p.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
        raise InputError(f"{what} {p.name!r}: use a video file name ending in {', '.join(VIDEO_OUTPUT_SUFFIXES)}")
    return p


def _video_soundtrack(info: VideoInfo) -> tuple[np.ndarray, int] | None:
    """The first audio stream of a video at its own rate, with sample 0 at the first frame's time."""
    from .io.audio import read_audio

    if not info.has_audio:
        return None
    try:
        samples, sr = read_audio(info.path)
    except InputError:
        return None
    shift = int(round(((info.audio_start or 0.0) - info.start_time) * sr))
    samples = np.pad(samples, (shift, 0)) if shift > 0 else samples[-shift:]
    return (samples, sr) if samples.size else None


def _side_by_side(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Frames ``(n, S, S, 3)`` placed left to right."""
    return np.concatenate(parts, axis=2)


# -- the request: one options dataclass, the drivers and the controls -----------------------------------------
#: Companion models of controls (``Control.companion`` registry name -> model), or a callable that loads one.
Companions = Mapping[str, torch.nn.Module] | Callable[[str], torch.nn.Module]


@dataclasses.dataclass
class AnimateOptions:
    """How :func:`animate` renders, whatever drives it.

    Attributes:
        crop_source, crop_driving: detect and crop faces (``False``: inputs already are face crops).
        relative: relative motion from each driving video's first frame (LIA's demo) or absolute; ``None``: the
            backbone's default (its registry entry's ``motion_mode``).
        smooth: odd number of taps of a temporal Gaussian on the motion codes (0: off; at most 101).
        paste: paste the animated crop back into the full source image (output at the source's size).
        batch_size: driving frames per model call, 1 to 1024 (memory grows with it, not with the video length).
        max_frames: stop after this many output frames (``None``: the shortest input).
        fps: output frame rate in frames/s, (0, 240] (videos are resampled by nearest frame); default: the first
            driving video's rate, else a control's own rate (EDTalk's audio: 25), else 25.
        side_by_side: also write ``source | driving | output`` here (no video: ``source | output``).
        sound: a sound file (or media file with sound) for the output; a control that reads sound
            (``Control.from_sound``: EDTalk's audio) is fed from it when not given separately.
        mux_sound: put sound in the output (``sound``, else the first driving video's own track).
        detect_every: face-detection stride (frames, 1 to 1000) for the driving crop boxes.
        lossless: write exact RGB frames (:class:`~plugtalk.io.video.VideoWriter`'s ``lossless``).
    """

    crop_source: bool = True
    crop_driving: bool = True
    relative: bool | None = None
    smooth: int = 0
    paste: bool = False
    batch_size: int = 8
    max_frames: int | None = None
    fps: float | None = None
    side_by_side: str | os.PathLike | None = None
    sound: str | os.PathLike | None = None
    mux_sound: bool = True
    detect_every: int = 5
    lossless: bool = False

    def check(self) -> None:
        """Raises: InputError: a number out of its range."""
        if not 1 <= self.batch_size <= 1024:
            raise InputError(f"batch size must be in [1, 1024], got {self.batch_size}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"the number of frames must be >= 1, got {self.max_frames}")
        if self.smooth < 0 or self.smooth > 101 or (self.smooth and self.smooth % 2 == 0):
            raise InputError(f"--smooth must be an odd number of frames (3, 5, ..., 101) or 0, got {self.smooth}")
        if self.fps is not None and not (0 < self.fps <= MAX_FPS and math.isfinite(self.fps)):
            raise InputError(f"fps must be a positive number up to {MAX_FPS} frames/s, got {self.fps}")
        if not 1 <= self.detect_every <= 1000:
            raise InputError(f"the face-detection stride must be in [1, 1000], got {self.detect_every}")


# -- the plan: a validated request, before any heavy work --------------------------------------------------
@dataclasses.dataclass
class AnimatePlan:
    """A validated :func:`animate` request.  Building it (:func:`plan_animation`) checks the drivers against the
    model's adapter and reads every control through the adapter's declaration (small inputs: weights, a
    coefficient file, audio features); no video is decoded and no face detected yet.

    Attributes:
        out, side_by_side: output paths (checked: existing folder, video suffix).
        videos: video key -> driving video path; ``assignment``: model driver -> video key.
        streams: control name -> :class:`~plugtalk.adapters.controls.ControlStream` (per-frame model inputs).
        sound: the output's sound file, or ``None``.
        relative: relative motion (from each driving video's first frame).
        options: the request's :class:`AnimateOptions`; ``notes``: remarks for the user collected so far.
    """

    out: Path
    side_by_side: Path | None
    videos: dict[str, Any]
    assignment: dict[str, str]
    streams: dict[str, Any]
    sound: Path | None
    relative: bool
    options: AnimateOptions
    notes: list[str]

    @property
    def fps(self) -> float | None:
        """The requested rate, else the first control's own rate (``None``: take the first video's)."""
        return self.options.fps or next((s.fps for s in self.streams.values() if s.fps), None)

    def controls(self, frames: Tensor) -> dict[str, Any]:
        """The adapter's keyword inputs for the output frames ``frames (n,)``, from every control."""
        out: dict[str, Any] = {}
        for stream in self.streams.values():
            out.update(stream.batch(frames))
        return out

    def describe_drivers(self) -> dict[str, str]:
        """Which input drives which part of the model (for :class:`AnimateResult`)."""
        out = {d: Path(self.videos[k]).name for d, k in self.assignment.items()}
        for name, stream in self.streams.items():
            out[self.replaced_by.get(name) or name] = stream.description
        return out

    replaced_by: dict[str, str | None] = dataclasses.field(default_factory=dict)


def _companion(control, companions: Companions | None):
    if control.companion is None:
        return None
    if callable(companions):
        return companions(control.companion)
    return (companions or {}).get(control.companion)


def _read_controls(adapter, controls: Mapping[str, Any], options: AnimateOptions, companions, runtime: Runtime):
    """Read each given control through its adapter's declaration -> ``({name: stream}, {name: replaced driver})``."""
    declared = {c.name: c for c in adapter.controls}
    values = {k: v for k, v in controls.items() if v is not None}
    for name in values:
        adapter.control(name)  # unknown control: InputError naming the adapter's
    if options.sound is not None:
        if not Path(options.sound).exists():
            raise InputError(f"audio file {str(options.sound)!r} does not exist")
        for c in adapter.controls:
            if c.from_sound and c.name not in values:
                values[c.name] = options.sound
    streams, replaced = {}, {}
    for name, value in values.items():
        control = declared[name]
        if control.with_control is not None:
            if control.with_control not in values:
                raise InputError(f"the {name} control goes with the {control.with_control} control")
            continue
        ctx = ControlContext(adapter, runtime.device, runtime.dtype, options.fps, options.max_frames,
                             _companion(control, companions), values)
        streams[name] = control.read(value, ctx)
        replaced[name] = control.replaces
    return streams, replaced


def plan_animation(model: Retrofitted, out: str | os.PathLike, *, drivers: Mapping[str, Any] | None = None,
                   controls: Mapping[str, Any] | None = None, options: AnimateOptions | None = None,
                   companions: Companions | None = None, runtime: Runtime | None = None) -> AnimatePlan:
    """Check an :func:`animate` request against the model's adapter (its drivers and declared controls) and its
    registry entry's default motion mode, read the controls, and return the :class:`AnimatePlan`.

    Raises:
        InputError: a driver or control the model does not have, conflicting inputs, nothing driving the
            animation, bad numbers, or an output path that cannot be written.
    """
    adapter = model.adapter
    options = options or AnimateOptions()
    options.check()
    runtime = runtime or Runtime.of(model)
    notes: list[str] = []
    out_path = _check_video_out(out, "output")
    sbs_path = _check_video_out(options.side_by_side, "side-by-side output") if options.side_by_side else None
    drivers = {k: v for k, v in (drivers or {}).items() if v is not None}
    driving = drivers.pop("driving", None)
    model_name = type(adapter.backbone).__name__
    if driving is not None and not adapter.driving_fills:
        have = ", ".join(c.name for c in adapter.controls)
        raise InputError(f"{model_name} takes no driving video (it is driven by its controls: {have})")
    for d in drivers:
        if d not in adapter.drivers:
            raise InputError(f"--{d} needs a model with a {d} driver; {model_name} has "
                             f"{', '.join(adapter.drivers) or 'none'}")
    streams, replaced = _read_controls(adapter, controls or {}, options, companions, runtime)
    for name, d in replaced.items():
        if d is not None and d in drivers:
            raise InputError(f"the {d} is driven by the {name} control or by --{d}, not both")
    videos, assignment = assign_drivers(adapter, driving, drivers, set(drivers) | set(replaced.values()), notes)
    if not assignment and not streams:
        need = ["--driving"] if adapter.driving_fills else []
        need += [f"--{d}" for d in adapter.drivers if d != "driving"]
        need += [c.name for c in adapter.controls if c.with_control is None]
        raise InputError(f"nothing drives the animation: give {' / '.join(need)}")
    relative = options.relative
    if relative is None:
        relative = backbone_entry(adapter.backbone.name).motion_mode == "relative"
    sound = Path(options.sound) if options.sound is not None else None
    return AnimatePlan(out_path, sbs_path, videos, assignment, streams, sound, bool(relative), options, notes,
                       replaced)


# -- the stream: typed batches of output frames -------------------------------------------------------------
@dataclasses.dataclass
class FrameBatch:
    """One batch of output frames as it streams through :func:`animate`.

    Attributes:
        frames: ``(n,)`` int64 output frame indices (where per-frame controls are read).
        crops: video key -> ``(n, S, S, 3)`` uint8 driving crops.
        images: driver -> ``(n, 3, S, S)`` model inputs, for adapters that want them (``wants_images``).
    """

    frames: Tensor
    crops: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    images: dict[str, Tensor] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.frames.shape[0])

    def split(self, k: int) -> tuple["FrameBatch", "FrameBatch"]:
        """The first ``k`` frames and the rest."""
        cut = lambda d: ({a: b[:k] for a, b in d.items()}, {a: b[k:] for a, b in d.items()})  # noqa: E731
        (c0, c1), (i0, i1) = cut(self.crops), cut(self.images)
        return FrameBatch(self.frames[:k], c0, i0), FrameBatch(self.frames[k:], c1, i1)


def stream_batches(clips: Mapping[str, "DrivingClip"], batch_size: int, total: int | None,
                   timer=None) -> Iterator[FrameBatch]:
    """:class:`FrameBatch` es of every driving video in step, stopping at the shortest input (``total`` frames
    at most); with no video, batches count frames up to ``total`` (control-driven runs)."""
    timer = timer or (lambda stage: contextlib.nullcontext())
    done = 0
    if not clips:
        n_all = total or 0
        while done < n_all:
            n = min(batch_size, n_all - done)
            yield FrameBatch(torch.arange(done, done + n))
            done += n
        return
    gens = {k: c.batches(batch_size) for k, c in clips.items()}
    while True:
        crops = {}
        with timer("decode"):
            for k, g in gens.items():
                nxt = next(g, None)
                if nxt is None:
                    return
                crops[k] = nxt[0]
        n = min(len(v) for v in crops.values())
        if total is not None:
            n = min(n, total - done)
        if n <= 0:
            return
        yield FrameBatch(torch.arange(done, done + n), {k: v[:n] for k, v in crops.items()})
        done += n


class _Renderer:
    """Renders :class:`FrameBatch` es with their motion codes and writes them (main and side-by-side)."""

    def __init__(self, model: Retrofitted, plan: AnimatePlan, runtime: Runtime, timer, src: SourceImage, src_state,
                 paste: bool, sbs_key: str | None, writers):
        self.model, self.plan, self.runtime, self.timer = model, plan, runtime, timer
        self.src, self.src_state, self.paste, self.sbs_key, self.writers = src, src_state, paste, sbs_key, writers
        self.starts: dict[str, Tensor] = {}

    def __call__(self, batch: FrameBatch, codes: dict[str, Tensor]) -> int:
        n = batch.n
        with torch.inference_mode(), self.runtime.context(), self.timer("model"):
            if self.plan.relative and codes:
                if not self.starts:  # the first frame of each driving video
                    self.starts.update({d: z[:1] for d, z in codes.items()})
                codes = relative_codes(self.src_state.code, codes, self.starts)
            state = self.src_state if codes else self.src_state.expand(n)
            images = self.model.render(state, DriverState({}, codes, batch.images), self.plan.controls(batch.frames))
            frames = to_uint8(images)
        with self.timer("write"):
            main = frames
            if self.paste:
                main = np.stack([paste_back(self.src.original, f, self.src.box) for f in frames])
            self.writers[0].write(main)
            if self.writers[1] is not None:
                parts = [np.broadcast_to(self.src.crop, frames.shape)]
                if self.sbs_key is not None:
                    parts.append(batch.crops[self.sbs_key])
                parts.append(frames)
                self.writers[1].write(_side_by_side(parts))
        return n


def _open_driving_clips(plan: AnimatePlan, size: int) -> tuple[dict[str, DrivingClip], float]:
    """The plan's driving videos, probed and with their crop boxes, and the output frame rate (the plan's,
    else the first video's, else :data:`DEFAULT_FPS`)."""
    opts, out_fps = plan.options, plan.fps
    clips: dict[str, DrivingClip] = {}
    for key, path in plan.videos.items():
        clips[key] = DrivingClip(path, size, crop=opts.crop_driving, fps=out_fps, max_frames=opts.max_frames,
                                 detect_every=opts.detect_every, name=f"{key} video {Path(path).name!r}")
        out_fps = out_fps or clips[key].fps
    return clips, out_fps or DEFAULT_FPS


def _encode_drivers(model: Retrofitted, plan: AnimatePlan, runtime: Runtime, batch: FrameBatch,
                    driver_names: list[str]) -> dict[str, Tensor]:
    """Motion codes of one batch of driving crops, per driver (and its images, when the adapter reads them)."""
    tensors = {k: runtime.tensor(v) for k, v in batch.crops.items()}
    ds = model.encode_drivers({d: tensors[plan.assignment[d]] for d in driver_names})
    if model.adapter.wants_images:
        batch.images = ds.images
    return ds.codes


def animate(model: Retrofitted, source: SourceImage | np.ndarray | str | os.PathLike, out: str | os.PathLike, *,
            drivers: Mapping[str, str | os.PathLike] | None = None, controls: Mapping[str, Any] | None = None,
            options: AnimateOptions | None = None, companions: Companions | None = None,
            runtime: Runtime | None = None, on_progress: Callable[[int, int | None], None] | None = None
            ) -> AnimateResult:
    """Animate ``source`` and write the video to ``out`` (see the module docstring for the stages).

    Args:
        model: a :class:`~plugtalk.retrofitting.Retrofitted` (any backbone, retrofitted or not: a plain
            backbone is ``retrofit(b, emi=None, edi=None)``), in eval mode.
        source: image file, ``(H, W, 3)`` uint8 RGB array, or a prepared :class:`SourceImage`.
        out: output video (``.mp4``/``.mov``/``.mkv``) in an existing folder; written atomically.
        drivers: driver name -> video: ``"driving"`` drives every driver of the model not given separately;
            a model with several drivers takes one video each (EDTalk: ``mouth``, ``pose``, ``expression``).
        controls: control name -> value (a path, or text / numbers), read by the adapter's declaration
            (``model.adapter.controls``; EDTalk: ``audio``, ``expression-weights``; GoHD: ``coefficients``,
            ``gaze``).
        options: :class:`AnimateOptions` (crop, motion mode, smoothing, paste-back, batch size, frame cap, fps,
            side-by-side, sound, lossless).
        companions: the models controls need (``Control.companion`` registry name -> model, e.g.
            ``{"edtalk-audio": EDTalkAudio}``), or a callable that loads one by name
            (:class:`~plugtalk.weights.load.CompanionLoader`, whose ``check_used`` runs once the controls are read).
        runtime: device / autocast / channels-last (default: the model's device, its own dtype).
        on_progress: ``callback(frames_done, frames_total_or_None)``.

    Returns:
        :class:`AnimateResult`.

    Raises:
        InputError: bad or missing inputs (corrupt/empty video, unreadable image or audio, a driver or control
            the model does not have, an output folder that does not exist, ...); NoFaceError: no face in
            the source or a driving video.  No output file is left behind on any error.
    """
    t_start = time.perf_counter()
    if model.training:
        raise InputError("animate needs the model in eval mode (call model.eval())")
    runtime = runtime or Runtime.of(model)
    timer = _Timer(runtime.device)
    size = model.adapter.image_size
    with timer("controls"):
        plan = plan_animation(model, out, drivers=drivers, controls=controls, options=options, companions=companions,
                              runtime=runtime)
    check = getattr(companions, "check_used", None)   # a loader (CompanionLoader) refuses weights no control used
    if callable(check):
        check()
    opts, notes = plan.options, plan.notes

    with timer("source"):
        src = source if isinstance(source, SourceImage) else prepare_source(source, size, crop=opts.crop_source)
        if src.crop.shape[:2] != (size, size):
            raise InputError(f"source crop is {src.crop.shape[1]}x{src.crop.shape[0]}, the model needs {size}x{size}")
    if opts.paste and not opts.crop_source and not isinstance(source, SourceImage):
        notes.append("paste-back without a source crop replaces the centred square of the source")

    with timer("detect"):   # probe + crop boxes (a first decoding pass)
        clips, out_fps = _open_driving_clips(plan, size)
    total = _total_frames(clips, plan, notes)
    sound, sound_desc = _sound(plan, clips) if opts.mux_sound else (None, None)

    with torch.inference_mode(), runtime.context(), timer("model"):
        src_state = model.encode_source(runtime.tensor(src.crop))
    driver_names = list(plan.assignment)
    sbs_key = "driving" if "driving" in clips else next(iter(clips), None)
    done = 0
    with contextlib.ExitStack() as stack:
        audio_kw = {}
        if sound is not None:
            audio_kw = {"audio": sound[0], "sample_rate": sound[1]} if isinstance(sound, tuple) else {"audio": sound}
        writer = stack.enter_context(VideoWriter(plan.out, fps=out_fps, lossless=opts.lossless, **audio_kw))
        sbs_writer = stack.enter_context(VideoWriter(plan.side_by_side, fps=out_fps, lossless=opts.lossless,
                                                     **audio_kw)) if plan.side_by_side else None
        render = _Renderer(model, plan, runtime, timer, src, src_state, opts.paste, sbs_key, (writer, sbs_writer))
        smoother = None
        if opts.smooth > 1 and driver_names:
            from .layers.temporal import StreamingSmoother

            smoother = StreamingSmoother(opts.smooth)
        pending: list[FrameBatch] = []   # batches waiting for the smoothing lookahead
        for batch in stream_batches(clips, opts.batch_size, total, timer):
            codes: dict[str, Tensor] = {}
            if batch.crops and driver_names:
                with torch.inference_mode(), runtime.context(), timer("model"):
                    codes = _encode_drivers(model, plan, runtime, batch, driver_names)
            if smoother is None:
                done += render(batch, codes)
            else:
                pending.append(batch)
                ready = smoother.push(torch.stack([codes[d] for d in driver_names], 1))
                done += _emit(ready, driver_names, pending, render)
            if on_progress:
                on_progress(done, total)
        if smoother is not None:
            rest = smoother.flush()
            if rest is not None:
                done += _emit(rest, driver_names, pending, render)
                if on_progress:
                    on_progress(done, total)
    timer.seconds["total"] = time.perf_counter() - t_start
    h, w = src.original.shape[:2] if opts.paste else (size, size)
    return AnimateResult(plan.out, done, float(out_fps), (h, w), plan.describe_drivers(),
                         bool(plan.relative and clips), opts.smooth if smoother else 0, sound_desc, src.box,
                         {k: c.box for k, c in clips.items()}, dict(timer.seconds), plan.side_by_side, notes)


def _total_frames(clips: Mapping[str, DrivingClip], plan: AnimatePlan, notes: list[str]) -> int | None:
    """Output length: the shortest input (videos, controls with a length), capped by ``max_frames``."""
    counts = {k: c.frame_count for k, c in clips.items()}
    counts.update({k: s.length for k, s in plan.streams.items() if s.length is not None})
    known = [n for n in counts.values() if n is not None]
    total = min(known) if known else None
    cap = plan.options.max_frames
    if cap is not None:
        total = cap if total is None else min(total, cap)
    if len(set(known)) > 1:
        notes.append("inputs differ in length (" + ", ".join(f"{k}: {n} frames" for k, n in counts.items())
                     + f"); the output stops at the shortest ({total} frames)")
    return total


def _sound(plan: AnimatePlan, clips: Mapping[str, DrivingClip]):
    """The output's sound (``plan.sound``, else the first driving video's own track) and its description."""
    if plan.sound is not None:
        return str(plan.sound), f"audio {plan.sound.name}"
    first = next(iter(clips.values()), None)
    if first is not None:
        track = _video_soundtrack(first.info)
        if track is not None:
            return track, f"sound of {first.path.name}"
    return None, None


def _emit(ready: Tensor, names: list[str], pending: list[FrameBatch], render) -> int:
    """Render the smoothed frames ``ready (m, drivers, D)`` with the batches waiting for them."""
    done, offset = 0, 0
    m = ready.shape[0]
    while offset < m:
        take = min(pending[0].n, m - offset)
        part, rest = pending[0].split(take)
        done += render(part, {d: ready[offset:offset + take, i] for i, d in enumerate(names)})
        offset += take
        if rest.n:
            pending[0] = rest
        else:
            pending.pop(0)
    return done
