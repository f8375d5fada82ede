"""Video files with PyAV: a streaming reader and an atomic H.264 writer (optionally with AAC audio).

Frames are ``(H, W, 3)`` uint8 RGB arrays throughout; use :func:`plugtalk.io.images.to_tensor` for
network input.  The reader never holds more than one batch of frames, so clips of any length stream
through in constant memory.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

from .._optional import require
require("av", "video", "reading and writing video")
import av
import numpy as np

from ..errors import InputError
from .atomic import atomic_path
from .oserrors import as_os_error
from .paths import VIDEO_SUFFIXES

__all__ = ["VideoInfo", "VideoReader", "VideoWriter", "read_frames", "read_frames_at", "probe_video",
           "VIDEO_SUFFIXES"]

#: File suffixes treated as videos when a folder is scanned.

#: The highest frame rate read or written (frames/s); 100000 fps once wrote a file that decoded to 0 frames.
MAX_FPS = 240


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream.

    Attributes:
        path: the file.
        fps: native frame rate (frames/s) as declared by the stream (average rate, else guessed rate).
        frame_count: declared number of frames, or ``None`` when the container does not say.
        duration: seconds, or ``None`` when unknown.
        height, width: frame size in pixels after applying the display rotation.
        has_audio: whether the file has an audio stream.
        rotation: display rotation applied to every frame, degrees counter-clockwise (0, 90, 180, 270).
        start_time: presentation time of the first frame, seconds (frames are timed from it).
        audio_start: start of the first audio stream in seconds on the same clock, or ``None``;
            ``audio_start - start_time`` is where the sound starts relative to the first frame.
    """

    path: Path
    fps: float
    frame_count: int | None
    duration: float | None
    height: int
    width: int
    has_audio: bool
    rotation: int = 0
    start_time: float = 0.0
    audio_start: float | None = None


def _open_error(path: Path, e: Exception) -> InputError:
    return InputError(f"video {path.name!r} cannot be opened: it is corrupt, truncated or not a video ({e})")


def _check_exists(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"video {str(p)!r} does not exist")
    if p.is_dir():
        raise InputError(f"video path {str(p)!r} is a folder, expected a video file")
    if p.stat().st_size == 0:
        raise InputError(f"video {p.name!r} is an empty file (0 bytes)")
    return p


def _rotation_steps(frame: av.VideoFrame) -> int:
    """Number of 90-degree counter-clockwise turns that make the frame upright (display matrix)."""
    try:
        r = frame.rotation
    except Exception:  # pragma: no cover - older PyAV
        return 0
    return int(round((r or 0) / 90.0)) % 4


def _rgb(frame: av.VideoFrame, turns: int) -> np.ndarray:
    a = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(a, turns)) if turns else a


def _check_index(p: Path, container) -> None:
    """Refuse a file whose sample index (mp4/mov) points past its end: it was cut short.

    FFmpeg decodes such files up to the cut without an error, so without this check a truncated
    clip would silently read as a shorter one.  Containers without an index are not checked.
    """
    size = p.stat().st_size
    end = 0
    for st in container.streams:
        try:
            entries = st.index_entries
            end = max(end, max((e.pos + e.size for e in entries), default=0))
        except Exception:  # pragma: no cover - stream kinds without an index
            continue
    if end > size:
        raise InputError(f"video {p.name!r} is truncated: its index refers to {end} bytes but the file has "
                         f"{size} bytes")


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's metadata and decode its first frame (so corrupt and zero-frame files fail here).

    Raises:
        InputError: missing, empty, corrupt or truncated file, no video stream, or no decodable frame.
    """
    p = _check_exists(path)
    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise InputError(f"{p.name!r} has no video stream (not a video, or a video with zero frames)")
            s = c.streams.video[0]
            _check_index(p, c)
            rate = s.average_rate or s.guessed_rate or s.base_rate
            if not rate or float(rate) <= 0:
                raise InputError(f"video {p.name!r} declares no frame rate")
            duration = None
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            elif c.duration is not None:
                duration = c.duration / 1e6
            first = next(c.decode(s), None)
            if first is None:
                raise InputError(f"video {p.name!r} has no frames")
            turns = _rotation_steps(first)
            audio_start = None
            if c.streams.audio:
                a = c.streams.audio[0]
                audio_start = float(a.start_time * a.time_base) if a.start_time is not None else 0.0
            h, w = (first.height, first.width) if turns % 2 == 0 else (first.width, first.height)
            return VideoInfo(path=p, fps=float(rate), frame_count=int(s.frames) if s.frames else None,
                             duration=duration, height=h, width=w, has_audio=bool(c.streams.audio),
                             rotation=90 * turns, start_time=float(first.time or 0.0), audio_start=audio_start)
    except InputError:
        raise
    except (av.FFmpegError, OSError, ValueError, StopIteration) as e:
        raise _open_error(p, e) from None


class VideoReader:
    """Stream a video's frames as ``(H, W, 3)`` uint8 RGB, optionally resampled to another frame rate.

    Opening the reader probes the file and decodes its first frame, so a corrupt, empty or zero-frame
    video fails at once.  Each iteration opens the file afresh (iterating twice reads it twice) and
    holds at most one decoded frame (``__iter__``) or one batch (:meth:`batches`).

    Resampling (``fps=...``) picks, for output frame ``k`` at time ``k / fps`` from the first frame,
    the source frame whose timestamp is nearest (ties go to the earlier frame); frames are repeated
    or dropped, never blended.  Output stops at the end of the source (the last frame's time plus
    one source frame period).

    Args:
        path: video file (anything FFmpeg reads: mp4, mov, mkv, avi, webm, ...).
        fps: output frame rate (frames/s); ``None`` keeps the native rate.
        max_frames: stop after this many output frames.

    Raises:
        InputError: see :func:`probe_video`; decoding errors while iterating are also InputError.
    """

    def __init__(self, path: str | os.PathLike, *, fps: float | None = None, max_frames: int | None = None):
        if fps is not None and not (fps > 0 and math.isfinite(fps) and fps <= MAX_FPS):
            raise InputError(f"VideoReader: fps must be a positive number up to {MAX_FPS}, got {fps!r}")
        if max_frames is not None and max_frames < 0:
            raise InputError(f"VideoReader: max_frames must be >= 0, got {max_frames}")
        self.info = probe_video(path)
        self.path = self.info.path
        self.target_fps = None if fps is None else float(fps)
        self.max_frames = max_frames

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        """Frame rate of the frames this reader yields (target rate if resampling, else native)."""
        return self.target_fps if self.target_fps is not None else self.info.fps

    @property
    def native_fps(self) -> float:
        return self.info.fps

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the yielded frames in pixels (numpy order)."""
        return (self.info.height, self.info.width)

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def duration(self) -> float | None:
        """Declared duration of the video stream in seconds (``None`` if unknown)."""
        return self.info.duration

    @property
    def has_audio(self) -> bool:
        return self.info.has_audio

    @property
    def frame_count(self) -> int | None:
        """Number of frames iteration will yield, if it can be known without decoding.

        Native rate: the container's declared count.  Resampled: ``ceil(n_src * fps / native_fps)``
        from the declared count (exact for constant-frame-rate sources).  ``None`` when the container
        declares no count.  ``max_frames`` caps it.
        """
        n = self.info.frame_count
        if n is None:
            return None
        if self.target_fps is not None:
            n = math.ceil(n * self.target_fps / self.info.fps - 1e-6)
        return n if self.max_frames is None else min(n, self.max_frames)

    def __len__(self) -> int:
        n = self.frame_count
        if n is None:
            raise TypeError(f"{self.path.name}: frame count unknown until decoded")
        return n

    def __repr__(self) -> str:
        return (f"VideoReader({self.path.name!r}, {self.width}x{self.height}, fps={self.fps:g}, "
                f"frames={self.frame_count}, duration={self.duration})")

    # -- decoding ---------------------------------------------------------------------------------
    def _native(self) -> Iterator[tuple[float, np.ndarray]]:
        """Yield ``(time from first frame in s, frame)`` at the native rate."""
        i = 0
        try:
            with av.open(str(self.path)) as c:
                s = c.streams.video[0]
                t0 = None
                for frame in c.decode(s):
                    t = frame.time
                    if t is None:
                        t = i / self.info.fps
                    if t0 is None:
                        t0 = t
                    yield t - t0, _rgb(frame, self.info.rotation // 90)
                    i += 1
        except InputError:
            raise
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InputError(f"video {self.path.name!r}: decoding failed after {i} frames ({e})") from None
        if i == 0:
            raise InputError(f"video {self.path.name!r} has no frames")

    def _resampled(self) -> Iterator[np.ndarray]:
        step = 1.0 / self.target_fps
        period = 1.0 / self.info.fps
        k = 0
        prev: tuple[float, np.ndarray] | None = None
        eps = 1e-6
        for t, frame in self._native():
            if prev is not None:
                boundary = (prev[0] + t) / 2  # outputs before the midpoint are nearer to prev
                while k * step <= boundary + eps:
                    yield prev[1]
                    k += 1
            prev = (t, frame)
        if prev is not None:
            end = prev[0] + period
            while k * step < end - eps:
                yield prev[1]
                k += 1

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield ``(H, W, 3)`` uint8 RGB frames in order."""
        it = self._resampled() if self.target_fps is not None else (f for _, f in self._native())
        if self.max_frames is None:
            yield from it
            return
        if self.max_frames == 0:
            return
        for n, f in enumerate(it, 1):
            yield f
            if n >= self.max_frames:
                break

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield ``(n, H, W, 3)`` uint8 arrays of ``batch_size`` frames (the last one may be shorter)."""
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        buf: list[np.ndarray] = []
        for f in self:
            buf.append(f)
            if len(buf) == batch_size:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)


def read_frames(path: str | os.PathLike, max_frames: int | None = None, fps: float | None = None) -> np.ndarray:
    """Decode a whole (short) video into memory.

    Returns:
        ``(T, H, W, 3)`` uint8 RGB.

    Raises:
        InputError: see :class:`VideoReader`.
    """
    r = VideoReader(path, fps=fps, max_frames=max_frames)
    frames = list(r)
    if not frames:
        return np.zeros((0, r.height, r.width, 3), np.uint8)
    return np.stack(frames)


def read_frames_at(path: str | os.PathLike, indices, *, info: VideoInfo | None = None) -> np.ndarray:
    """Random access: decode only the frames at ``indices`` (native-rate frame numbers, any order,
    repeats allowed) by seeking to the keyframe before each and decoding forward.

    Frame ``i`` is the one whose timestamp is ``i / fps`` after the first frame's (constant-frame-rate
    videos; for variable rates use :class:`VideoReader`).  Targets close after the current position
    are reached by decoding forward without a new seek.

    Args:
        indices: frame numbers ``0 <= i < frame_count``.
        info: the video's :func:`probe_video` result, to skip probing again.

    Returns:
        ``(len(indices), H, W, 3)`` uint8 RGB.

    Raises:
        InputError: unreadable video, or an index past the last frame.
    """
    info = info or probe_video(path)
    p = info.path
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not idx:
        return np.zeros((0, info.height, info.width, 3), np.uint8)
    if min(idx) < 0:
        raise InputError(f"read_frames_at: negative frame index {min(idx)} for {p.name!r}")
    turns = info.rotation // 90
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            tb = float(s.time_base)
            start_pts = int(round(info.start_time / tb))
            pos = None  # index of the next frame the decoder will return, when known
            gen = None
            for target in sorted(set(idx)):
                if pos is None or target < pos or target - pos > 48:
                    c.seek(start_pts + int(round(target / info.fps / tb)), stream=s, backward=True, any_frame=False)
                    gen = c.decode(s)
                for frame in gen:
                    t = frame.time if frame.time is not None else 0.0
                    k = int(round((t - info.start_time) * info.fps))
                    pos = k + 1
                    if k >= target:
                        found[target] = _rgb(frame, turns)
                        break
                if target not in found:
                    raise InputError(f"frame {target} is past the end of {p.name!r} "
                                     f"({info.frame_count} frames declared)")
    except InputError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"video {p.name!r}: seeking/decoding failed ({e})") from None
    return np.stack([found[i] for i in idx])


def _as_fraction(fps: float | Fraction) -> Fraction:
    """Frame rate as a rational time base (29.97 -> 2997/100; NTSC 30000/1001 stays exact as a Fraction)."""
    return fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(1001)


class VideoWriter:
    """Write ``(H, W, 3)`` uint8 RGB frames to a video file atomically (H.264 / yuv420p by default).

    Use as a context manager: the file appears at ``path`` only when the block ends without an
    exception and at least one frame was written; otherwise no file is left (a previous file at
    ``path`` stays untouched).  Odd frame sizes are padded by one edge-replicated row/column, since
    yuv420p needs even sizes.

    Audio (optional) is encoded as AAC at its own sample rate and trimmed to the video's duration
    (``frames / fps``); a shorter track simply ends early.

    Args:
        path: output file (``.mp4``, ``.mov``, ``.mkv``); its folder must exist.
        fps: frame rate (frames/s).
        codec, pix_fmt, crf, preset: encoder settings (``crf``/``preset`` apply to libx264/libx265).
        lossless: store the RGB frames exactly (H.264 in RGB, ``libx264rgb`` at QP 0; overrides
            ``codec``/``pix_fmt``/``crf``): for outputs that are evaluated with metrics.  Files are
            several times larger and some players cannot show them.
        audio: a sound file (anything :func:`plugtalk.io.audio.load_audio` reads) or a float array
            ``(N,)`` in [-1, 1] (or int16) of mono samples.
        sample_rate: the rate of ``audio`` in Hz; required for an array, optional for a file (the
            file's own rate when omitted).

    Raises:
        InputError: missing output folder, bad fps, frames of the wrong shape/dtype or changing
            size, unreadable audio, or closing with no frames written.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 25.0, *, codec: str = "libx264",
                 pix_fmt: str = "yuv420p", crf: int | None = 18, preset: str | None = "medium", lossless: bool = False,
                 audio: str | os.PathLike | np.ndarray | None = None, sample_rate: int | None = None):
        if not (isinstance(fps, numbers.Real) and fps > 0 and math.isfinite(float(fps)) and fps <= MAX_FPS):
            raise InputError(f"VideoWriter: fps must be a positive number up to {MAX_FPS}, got {fps!r} (a faster "
                             "rate writes a file players decode to no frames)")
        self.path = Path(path)
        self.fps = _as_fraction(fps)
        if lossless:
            codec, pix_fmt, crf = "libx264rgb", "rgb24", None
        self.codec, self.pix_fmt, self.crf, self.preset = codec, pix_fmt, crf, preset
        self.lossless = lossless
        self._audio, self._sr = self._prepare_audio(audio, sample_rate)
        self._is_open = False
        self._atomic = None
        self._container = None
        self._vstream = None
        self._astream = None
        self._shape: tuple[int, int] | None = None
        self.frames_written = 0
        self._audio_pos = 0

    @staticmethod
    def _prepare_audio(audio, sample_rate):
        if audio is None:
            return None, None
        if isinstance(audio, (str, os.PathLike)):
            from .audio import read_audio, load_audio

            if sample_rate is None:
                samples, sr = read_audio(audio)
            else:
                samples, sr = load_audio(audio, sample_rate=sample_rate), int(sample_rate)
            return samples.astype(np.float32), sr
        a = np.asarray(audio)
        if sample_rate is None or sample_rate <= 0:
            raise InputError("VideoWriter: an audio array needs its sample_rate (Hz)")
        if a.ndim == 2 and 1 in a.shape:
            a = a.reshape(-1)
        if a.ndim != 1:
            raise InputError(f"VideoWriter: audio array must be mono (N,), got shape {a.shape}")
        if a.dtype == np.int16:
            a = a.astype(np.float32) / 32768.0
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise InputError("VideoWriter: audio contains NaN or infinite samples")
        return np.clip(a, -1.0, 1.0), int(sample_rate)

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> "VideoWriter":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> "VideoWriter":
        if self._is_open:
            raise RuntimeError("VideoWriter is already open")
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._container = av.open(str(tmp), mode="w")
            vs = self._container.add_stream(self.codec, rate=self.fps)
            vs.pix_fmt = self.pix_fmt
            opts = {}
            if self.codec in ("libx264", "libx265", "libx264rgb"):
                if self.crf is not None:
                    opts["crf"] = str(self.crf)
                if self.preset is not None:
                    opts["preset"] = self.preset
            if self.lossless:
                opts["qp"] = "0"
            vs.options = opts
            self._vstream = vs
            if self._audio is not None:
                self._astream = self._container.add_stream("aac", rate=self._sr, layout="mono")
        except BaseException as e:
            self._discard(e)
            if isinstance(e, av.FFmpegError):
                raise InputError(f"cannot create video {self.path.name!r} ({e})") from None
            raise
        self._is_open = True
        return self

    def _discard(self, exc: BaseException | None = None) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        self._container = None
        err = exc if exc is not None else RuntimeError("aborted")
        with contextlib.suppress(BaseException):
            self._atomic.__exit__(type(err), err, None)  # removes the temporary file
        self._is_open = False

    def abort(self) -> None:
        """Stop writing and delete the partial output (nothing appears at ``path``)."""
        if self._is_open:
            self._discard()

    def close(self) -> Path:
        """Flush the encoders and move the finished file onto ``path``.

        Raises:
            InputError: no frame was written (no output is left).
        """
        if not self._is_open:
            raise RuntimeError("VideoWriter is not open")
        if self.frames_written == 0:
            self._discard()
            raise InputError(f"no frames were written to {self.path.name!r}; no file created")
        try:
            self._container.mux(self._vstream.encode(None))
            if self._astream is not None:
                self._write_audio_until(self._audio_end())
                self._container.mux(self._astream.encode(None))
            self._container.close()
            self._container = None
        except BaseException as e:
            self._discard(e)
            self._raise_about_path(e)
            raise
        self._atomic.__exit__(None, None, None)  # os.replace onto the destination
        self._is_open = False
        return self.path

    # -- writing ----------------------------------------------------------------------------------
    def _audio_end(self) -> int:
        """Audio samples covering the frames written so far."""
        return min(len(self._audio), int(round(self.frames_written / float(self.fps) * self._sr)))

    def _write_audio_until(self, end: int) -> None:
        if end <= self._audio_pos:
            return
        chunk = self._audio[self._audio_pos:end]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
        frame.sample_rate = self._sr
        frame.pts = self._audio_pos
        frame.time_base = Fraction(1, self._sr)
        self._container.mux(self._astream.encode(frame))
        self._audio_pos = end

    def write(self, frames: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` frame or a batch ``(N, H, W, 3)`` (uint8 RGB; a ``(N, 3, H, W)``
        or ``(3, H, W)`` tensor in [-1, 1] is converted with :func:`~plugtalk.io.images.to_uint8`).

        Raises:
            InputError: wrong dtype/shape, or a size different from the first frame's.
        """
        if not self._is_open:
            raise RuntimeError("VideoWriter is not open (use it as a context manager)")
        if not isinstance(frames, np.ndarray) and hasattr(frames, "detach"):  # a torch tensor in [-1, 1]
            from .images import to_uint8

            frames = to_uint8(frames)
        a = np.asarray(frames)
        if a.ndim == 3:
            a = a[None]
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
            raise InputError(f"VideoWriter.write: expected (H, W, 3) or (N, H, W, 3) uint8 RGB, got {a.dtype} {a.shape}")
        h, w = a.shape[1:3]
        if self._shape is None:
            self._shape = (h, w)
            self._vstream.height = h + (h % 2)
            self._vstream.width = w + (w % 2)
        elif self._shape != (h, w):
            raise InputError(f"VideoWriter.write: frame size {w}x{h} differs from the first frame's "
                             f"{self._shape[1]}x{self._shape[0]}")
        if h % 2 or w % 2:
            a = np.pad(a, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        try:
            for img in a:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                vf.pts = self.frames_written
                self._container.mux(self._vstream.encode(vf))
                self.frames_written += 1
                if self._astream is not None:
                    self._write_audio_until(self._audio_end())
        except OSError as e:
            self._raise_about_path(e)
            raise

    def _raise_about_path(self, e: BaseException) -> None:
        """Re-raise PyAV's OS error about the hidden temporary file (disk full, ...) as one about ``path``."""
        if isinstance(e, OSError):
            raise as_os_error(e, self.path) from e
