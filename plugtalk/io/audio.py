"""Audio files and EDTalk's audio features (log-mel spectrogram windows, one per video frame).

Feature parameters follow EDTalk (Tan et al., ECCV 2024, suppl. 1.2 "Data Processing"), which adopts
Wav2Lip's front end: 16 kHz mono, pre-emphasis 0.97, STFT with an 800-sample Hann window and hop 200
(80 mel frames per second), 80 mel bands over 55-7600 Hz (Slaney scale and area normalisation),
amplitude in dB floored at -100 dB, minus a 20 dB reference level, then mapped linearly from
[-100, 0] dB to [-4, 4] and clipped.  EDTalk's reference code computed the STFT with librosa 0.8,
whose centred frames pad the signal by reflection; that padding is kept here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._optional import require
from ..errors import InputError

__all__ = ["MelConfig", "EDTALK_MEL", "read_audio", "load_audio", "resample", "audio_duration", "save_wav",
           "mel_spectrogram", "mel_windows", "audio_mel_windows", "AUDIO_SUFFIXES"]

#: Suffixes soundfile (libsndfile) reads directly; anything else is decoded with PyAV (FFmpeg).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".caf")


@dataclass(frozen=True)
class MelConfig:
    """Log-mel front end.  Defaults are EDTalk's (= Wav2Lip's ``hparams``)."""

    sample_rate: int = 16000
    n_fft: int = 800
    hop_length: int = 200
    win_length: int = 800
    n_mels: int = 80
    fmin: float = 55.0
    fmax: float = 7600.0
    preemphasis: float = 0.97
    min_level_db: float = -100.0
    ref_level_db: float = 20.0
    max_abs_value: float = 4.0

    @property
    def frames_per_second(self) -> float:
        """Mel frames per second (80 for 16 kHz / hop 200)."""
        return self.sample_rate / self.hop_length


EDTALK_MEL = MelConfig()


def _check_file(path: str | os.PathLike, what: str = "audio") -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} file {str(p)!r} does not exist")
    if p.is_dir():
        raise InputError(f"{what} path {str(p)!r} is a folder, expected a file")
    if p.stat().st_size == 0:
        raise InputError(f"{what} file {p.name!r} is empty (0 bytes)")
    return p


def _read_soundfile(p: Path) -> tuple[np.ndarray, int]:
    require("soundfile", "audio", "reading and writing sound files")
    import soundfile as sf

    data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    return data.mean(axis=1), int(sr)


def _read_pyav(p: Path) -> tuple[np.ndarray, int]:
    require("av", "audio", "reading sound from media files")
    import av

    try:
        with av.open(str(p)) as c:
            if not c.streams.audio:
                raise InputError(f"{p.name!r} has no audio stream")
            s = c.streams.audio[0]
            sr = s.codec_context.sample_rate or s.rate
            # keep channels and rate; only convert to planar float so channels can be averaged here
            resampler = av.AudioResampler(format="fltp", rate=sr)
            chunks = []
            for frame in c.decode(s):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except InputError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"audio in {p.name!r} cannot be decoded: corrupt or not a media file ({e})") from None
    if not chunks:
        raise InputError(f"the audio stream of {p.name!r} has no samples")
    return np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32), int(sr)


#: The sample rates (Hz) :func:`read_audio` takes: telephone audio up to studio rates.
SAMPLE_RATES = (1000, 768000)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a sound file or the first audio stream of a media file, at its own sample rate.

    Returns:
        ``(samples, sample_rate)``: float32 mono ``(N,)`` in [-1, 1] (channels averaged), rate in Hz.

    Raises:
        InputError: missing/empty/corrupt file, no audio stream, no samples, or a sample rate outside
            :data:`SAMPLE_RATES` (audio at 8 Hz once reached FFmpeg's encoder as a traceback).
    """
    p = _check_file(path)
    samples = sr = None
    if p.suffix.lower() in AUDIO_SUFFIXES:
        try:
            samples, sr = _read_soundfile(p)
        except Exception:  # libsndfile refuses some codecs inside .wav/.ogg: let FFmpeg try
            samples = None
    if samples is None:
        samples, sr = _read_pyav(p)
    if samples.size == 0:
        raise InputError(f"audio file {p.name!r} has no samples")
    if not SAMPLE_RATES[0] <= sr <= SAMPLE_RATES[1]:
        raise InputError(f"audio file {p.name!r} has a sample rate of {sr} Hz; plugtalk reads "
                         f"{SAMPLE_RATES[0]} Hz to {SAMPLE_RATES[1]} Hz")
    if not np.isfinite(samples).all():
        raise InputError(f"audio file {p.name!r} contains NaN or infinite samples")
    return np.ascontiguousarray(samples, dtype=np.float32), sr


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with soxr (through librosa, ``res_type='soxr_hq'``)."""
    if orig_rate == target_rate:
        return samples
    require("librosa", "audio", "resampling and mel features")
    import librosa

    return librosa.resample(samples, orig_sr=orig_rate, target_sr=target_rate, res_type="soxr_hq").astype(np.float32)


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Read audio as float32 mono at ``sample_rate`` Hz.

    wav/flac/ogg/aiff are read with soundfile; audio inside mp4/m4a/mov/mp3/... with PyAV.  Other
    rates are resampled with soxr (high quality); channels are averaged.

    Returns:
        ``(N,)`` float32 in [-1, 1], ``N = duration * sample_rate``.

    Raises:
        InputError: missing/empty/corrupt file, or a media file with no audio stream.
    """
    if sample_rate <= 0:
        raise InputError(f"load_audio: sample_rate must be positive, got {sample_rate}")
    samples, sr = read_audio(path)
    return resample(samples, sr, int(sample_rate))


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds of a sound file or of a media file's first audio stream (from the header
    when it says, else by decoding).

    Raises:
        InputError: as :func:`read_audio`.
    """
    p = _check_file(path)
    if p.suffix.lower() in AUDIO_SUFFIXES:
        try:
            require("soundfile", "audio", "reading and writing sound files")
            import soundfile as sf

            info = sf.info(str(p))
            if info.frames > 0:
                return info.frames / float(info.samplerate)
        except Exception:
            pass
    require("av", "audio", "reading sound from media files")
    import av

    try:
        with av.open(str(p)) as c:
            if not c.streams.audio:
                raise InputError(f"{p.name!r} has no audio stream")
            s = c.streams.audio[0]
            if s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
    except InputError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"audio in {p.name!r} cannot be read ({e})") from None
    samples, sr = read_audio(p)
    return len(samples) / float(sr)


def save_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono float samples in [-1, 1] as a 16-bit PCM wav, atomically.

    Raises:
        InputError: missing output folder, non-mono array, or NaN samples.
    """
    require("soundfile", "audio", "reading and writing sound files")
    import soundfile as sf

    from .atomic import atomic_path

    a = np.asarray(samples, dtype=np.float32)
    if a.ndim != 1:
        raise InputError(f"save_wav: expected mono samples (N,), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError("save_wav: samples contain NaN or infinite values")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(a, -1.0, 1.0), int(sample_rate), subtype="PCM_16", format="WAV")
    return Path(path)


def mel_spectrogram(samples: np.ndarray, sample_rate: int = 16000, config: MelConfig = EDTALK_MEL) -> np.ndarray:
    """EDTalk / Wav2Lip normalised log-mel spectrogram.

    Args:
        samples: ``(N,)`` float mono audio in [-1, 1] at ``config.sample_rate`` (16 kHz).
        sample_rate: the rate of ``samples``; must equal ``config.sample_rate`` (resample with
            :func:`load_audio` first).

    Returns:
        ``(n_mels, M)`` float32 in ``[-max_abs_value, max_abs_value]`` = [-4, 4], with
        ``M = 1 + N // hop_length`` frames (80 per second); frame ``m`` is centred on sample ``m * hop``.

    Raises:
        InputError: wrong rate, not mono, empty, or NaN / infinite samples.
    """
    require("librosa", "audio", "resampling and mel features")
    import librosa
    import scipy.signal

    if sample_rate != config.sample_rate:
        raise InputError(f"mel_spectrogram: audio must be {config.sample_rate} Hz, got {sample_rate} Hz "
                         "(use load_audio(path, sample_rate=16000))")
    y = np.asarray(samples, dtype=np.float64)
    if y.ndim != 1 or y.size == 0:
        raise InputError(f"mel_spectrogram: expected mono samples (N,) with N > 0, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise InputError("mel_spectrogram: samples contain NaN or infinite values")
    y = scipy.signal.lfilter([1.0, -config.preemphasis], [1.0], y)
    stft = librosa.stft(y, n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length,
                        window="hann", center=True, pad_mode="reflect")
    basis = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                                fmin=config.fmin, fmax=config.fmax)
    mel = basis @ np.abs(stft)
    floor = 10.0 ** (config.min_level_db / 20.0)
    db = 20.0 * np.log10(np.maximum(floor, mel)) - config.ref_level_db
    m = config.max_abs_value
    out = np.clip(2 * m * (db - config.min_level_db) / (-config.min_level_db) - m, -m, m)
    return out.astype(np.float32)


def mel_windows(mel: np.ndarray, num_frames: int, fps: float = 25.0, window: int = 16, *,
                context: int = 2, config: MelConfig = EDTALK_MEL) -> np.ndarray:
    """Cut one mel window per video frame, as EDTalk's audio-to-lip model consumes them.

    Video frame ``t`` gets mel frames ``s .. s + window - 1`` with
    ``s = trunc(mel_fps * (t - context) / fps)`` (``mel_fps`` = 80), indices clamped to the valid range
    (edge frames repeat).  With ``context=2`` the window starts two video frames early, so it spans
    the frame's own time (EDTalk ``demo_EDTalk_A.py``); ``context=0`` starts it at ``80 * t / fps``.

    Args:
        mel: ``(n_mels, M)`` from :func:`mel_spectrogram`.
        num_frames: number of video frames ``T``.
        fps: video frame rate (frames/s).
        window: mel frames per window (16 = 0.2 s).

    Returns:
        ``(T, 1, n_mels, window)`` float32, same value range as ``mel``.

    Raises:
        InputError: ``mel`` not 2-D or empty, or ``num_frames``/``fps``/``window`` not positive.
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2 or mel.shape[1] == 0:
        raise InputError(f"mel_windows: expected an (n_mels, M) spectrogram, got shape {mel.shape}")
    if num_frames < 0 or fps <= 0 or window < 1:
        raise InputError(f"mel_windows: need num_frames >= 0, fps > 0, window >= 1 (got {num_frames}, {fps}, {window})")
    t = np.arange(num_frames, dtype=np.float64)
    start = np.trunc(config.frames_per_second * (t - context) / fps).astype(np.int64)
    idx = np.clip(start[:, None] + np.arange(window)[None, :], 0, mel.shape[1] - 1)  # (T, window)
    out = mel[:, idx]  # (n_mels, T, window)
    return np.ascontiguousarray(out.transpose(1, 0, 2)[:, None])


def audio_mel_windows(samples: np.ndarray, sample_rate: int = 16000, fps: float = 25.0,
                      num_frames: int | None = None, window: int = 16,
                      config: MelConfig = EDTALK_MEL) -> np.ndarray:
    """Audio -> per-video-frame mel windows, EDTalk's whole audio front end.

    The audio is first cut (or zero-padded) to a whole number of video frames:
    ``T = num_frames`` or ``floor(N * fps / sample_rate)``, keeping ``int(T * sample_rate / fps)`` samples.

    Returns:
        ``(T, 1, 80, window)`` float32 in [-4, 4].

    Raises:
        InputError: as :func:`mel_spectrogram`, or audio shorter than one video frame.
    """
    y = np.asarray(samples, dtype=np.float32)
    per_frame = sample_rate / float(fps)
    if num_frames is None:
        num_frames = int(len(y) / per_frame)
    if num_frames < 1:
        raise InputError(f"audio of {len(y)} samples is shorter than one video frame ({per_frame:g} samples)")
    n = int(num_frames * per_frame)
    y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
    return mel_windows(mel_spectrogram(y, sample_rate, config), num_frames, fps, window, config=config)
