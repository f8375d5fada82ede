"""plugtalk.io.audio: loading/resampling, audio inside videos, EDTalk mel features."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from data_support import shared_file, train_clip
from plugtalk.errors import InputError
from plugtalk.io.audio import (EDTALK_MEL, audio_duration, audio_mel_windows, load_audio, mel_spectrogram,
                               mel_windows, read_audio, save_wav)
from plugtalk.io.video import VideoWriter


def _tone(freq: float, sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()]


def test_real_wav_loads_as_16k_mono_float():
    wav = shared_file("data", "audio", "edtalk_mouth_source.wav")
    y = load_audio(wav)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) / 16000 == pytest.approx(10.048, abs=1e-3)
    assert 0.01 < np.abs(y).max() <= 1.0
    assert audio_duration(wav) == pytest.approx(10.048, abs=1e-3)


def test_44k_stereo_is_resampled_and_downmixed(tmp_path):
    left, right = _tone(440, 44100, 1.0), _tone(440, 44100, 1.0)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 44100)
    y = load_audio(tmp_path / "s.wav", sample_rate=16000)
    assert len(y) == 16000
    assert _dominant_freq(y, 16000) == pytest.approx(440, abs=2)
    assert np.abs(y).max() == pytest.approx(0.5, abs=0.02)
    samples, sr = read_audio(tmp_path / "s.wav")
    assert sr == 44100 and len(samples) == 44100


def test_audio_from_an_mp4(tmp_path):
    """A 1 kHz tone at 44.1 kHz muxed into an mp4 (AAC) comes back at 16 kHz with the same pitch."""
    tone = _tone(1000, 44100, 2.0)
    out = tmp_path / "tone.mp4"
    with VideoWriter(out, fps=25, audio=tone, sample_rate=44100) as w:
        w.write(np.zeros((50, 32, 32, 3), np.uint8))
    y = load_audio(out, sample_rate=16000)
    assert len(y) / 16000 == pytest.approx(2.0, abs=0.1)  # AAC pads up to one 1024-sample frame
    assert _dominant_freq(y[2000:30000], 16000) == pytest.approx(1000, abs=3)
    assert audio_duration(out) == pytest.approx(2.0, abs=0.1)


def test_audio_of_a_real_clip_matches_its_wav():
    clip = train_clip("obama__obama_00")
    a = load_audio(clip)
    ref = load_audio(clip.with_suffix(".wav"))
    n = min(len(a), len(ref)) - 2048
    best = max(np.corrcoef(a[d:d + n], ref[:n])[0, 1] for d in range(0, 2048, 8))
    assert best > 0.95


def test_video_without_audio_stream_raises():
    clip = train_clip("vox_driving1__driving1_00")
    with pytest.raises(InputError, match="driving1_00.mp4.*no audio stream"):
        load_audio(clip)
    with pytest.raises(InputError, match="no audio stream"):
        audio_duration(clip)


def test_missing_empty_corrupt_audio(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "none.wav")
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(InputError, match="e.wav.*empty"):
        load_audio(tmp_path / "e.wav")
    (tmp_path / "c.mp3").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(InputError, match="c.mp3"):
        load_audio(tmp_path / "c.mp3")


def test_save_wav_round_trip_and_missing_folder(tmp_path):
    y = _tone(300, 16000, 0.5)
    save_wav(tmp_path / "t.wav", y, 16000)
    info = sf.info(tmp_path / "t.wav")
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    np.testing.assert_allclose(load_audio(tmp_path / "t.wav"), y, atol=1 / 32768 * 1.01)
    with pytest.raises(InputError, match="does not exist"):
        save_wav(tmp_path / "no" / "t.wav", y, 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.wav"]


def test_mel_spectrogram_shape_range_and_frequency_axis():
    y = _tone(1000, 16000, 1.0)
    mel = mel_spectrogram(y)
    assert mel.shape == (80, 16000 // 200 + 1) and mel.dtype == np.float32
    assert mel.min() >= -4 and mel.max() <= 4
    # the tone's band is the loudest one, and it sits where the Slaney mel scale puts 1 kHz
    import librosa

    centres = librosa.mel_frequencies(n_mels=82, fmin=EDTALK_MEL.fmin, fmax=EDTALK_MEL.fmax)[1:-1]
    band = int(mel[:, 10:-10].mean(1).argmax())
    assert abs(centres[band] - 1000) < 60
    # silence sits at the floor
    assert np.all(mel_spectrogram(np.zeros(1600, np.float32)) == -4)


def test_mel_spectrogram_rejects_bad_input():
    with pytest.raises(InputError, match="16000 Hz"):
        mel_spectrogram(np.zeros(100), sample_rate=44100)
    with pytest.raises(InputError, match="NaN"):
        mel_spectrogram(np.array([0.0, np.nan]))
    with pytest.raises(InputError, match="mono"):
        mel_spectrogram(np.zeros((2, 100)))


def test_mel_windows_shape_range_and_indexing():
    wav = load_audio(shared_file("data", "audio", "edtalk_mouth_source.wav"))
    w = audio_mel_windows(wav, fps=25)
    T = int(len(wav) / 640)
    assert w.shape == (T, 1, 80, 16) and w.dtype == np.float32
    assert w.min() >= -4 and w.max() <= 4 and w.std() > 0.5
    # indexing: window of frame t starts at mel frame trunc(80 * (t - 2) / 25), clamped
    mel = np.arange(200, dtype=np.float32)[None].repeat(80, 0)  # value = mel frame index
    win = mel_windows(mel, num_frames=60, fps=25)
    assert win.shape == (60, 1, 80, 16)
    np.testing.assert_array_equal(win[0, 0, 0], np.clip(np.arange(-6, 10), 0, None))
    np.testing.assert_array_equal(win[10, 0, 0], np.arange(25, 41))      # trunc(80 * 8 / 25) = 25
    np.testing.assert_array_equal(win[59, 0, 0], np.clip(np.arange(182, 198), None, 199))
    np.testing.assert_array_equal(mel_windows(mel, 60, 25, context=0)[10, 0, 0], np.arange(32, 48))
    last = mel_windows(mel[:, :20], 60, 25)[59, 0, 0]
    assert np.all(last == 19)  # past the end: the last mel frame repeats


def test_mel_windows_follow_the_audio_not_the_position():
    """A burst of noise at 2 s lights up the windows of the video frames around frame 50 only."""
    y = np.zeros(16000 * 4, np.float32)
    y[32000:32000 + 1600] = np.random.default_rng(0).standard_normal(1600).astype(np.float32) * 0.3
    w = audio_mel_windows(y, fps=25)
    energy = w.mean(axis=(1, 2, 3))
    loud = np.nonzero(energy > -3.9)[0]
    # the burst (2.0-2.1 s) reaches mel frames 158..170 (800-sample windows every 200 samples);
    # frame t's window covers mel frames 3.2 (t - 2) .. + 15, which meets them for t = 47..55
    np.testing.assert_array_equal(loud, np.arange(47, 56))


def test_audio_mel_windows_pads_to_num_frames():
    y = _tone(200, 16000, 0.5)  # 12.5 video frames
    assert audio_mel_windows(y, num_frames=20).shape == (20, 1, 80, 16)
    assert audio_mel_windows(y).shape == (12, 1, 80, 16)
    with pytest.raises(InputError, match="shorter than one video frame"):
        audio_mel_windows(y[:100])
