"""EDTalk's Audio-to-Pose normalizing flow: exact inverse, exact log-det, training and sampling."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import plugtalk.backbones as B
from plugtalk.data.audio_windows import AudioClip, AudioWindows
from plugtalk.errors import InputError
from plugtalk.data.audio_windows import WindowDataset
from plugtalk.train import stages as S
from plugtalk.train.stages.edtalk_audio_pose import pose_log_likelihood
from plugtalk.train.trainer import Trainer

from train_support import companion_config

TINY_FLOW = dict(audio_dim=8, steps=3, hidden=16, heads=2, layers=1, encoder_width=4)


def random_flow(seed: int, dtype=torch.float64, pose_dim: int = 6) -> B.EDTalkPoseFlow:
    """A tiny flow whose every layer is far from the identity (couplings start at zero otherwise)."""
    torch.manual_seed(seed)
    flow = B.create("edtalk-pose-flow", pose_dim=pose_dim, **TINY_FLOW).to(dtype)
    for step in flow.flow_steps:
        torch.nn.init.normal_(step.coupling.out.weight, std=0.5)
        torch.nn.init.normal_(step.coupling.out.bias, std=0.5)
    x = torch.randn(4, 7, pose_dim, dtype=dtype) * 0.3 + 0.2
    flow.initialize(x, torch.randn(4, 7, TINY_FLOW["audio_dim"], dtype=dtype))
    return flow.eval()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), b=st.integers(1, 3), t=st.integers(1, 12), d=st.integers(2, 7))
def test_inverse_of_forward_is_identity_float64(seed, b, t, d):
    flow = random_flow(seed, pose_dim=d)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    audio = torch.randn(b, t, TINY_FLOW["audio_dim"], generator=g, dtype=torch.float64)
    z, logdet = flow(x, audio)
    assert logdet.shape == (b,)
    assert (z - x).abs().max() > 1e-3  # the flow really transforms
    assert torch.allclose(flow.inverse(z, audio), x, atol=1e-5, rtol=0)
    z2 = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    assert torch.allclose(flow(flow.inverse(z2, audio), audio)[0], z2, atol=1e-5, rtol=0)


def test_log_det_matches_autograd_jacobian():
    flow = random_flow(3, pose_dim=4)
    t = 3
    x = torch.randn(1, t, 4, dtype=torch.float64)
    audio = torch.randn(1, t, TINY_FLOW["audio_dim"], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v.reshape(1, t, 4), audio)[0].reshape(-1), x.reshape(-1))
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0
    assert abs(float(logabs) - float(flow(x, audio)[1][0].detach())) < 1e-8
    assert abs(float(logabs)) > 0.1  # not a volume-preserving accident


def test_mel_windows_condition_and_bad_input():
    flow = B.create("edtalk-pose-flow", **TINY_FLOW).eval()
    mel = torch.rand(2, 5, 1, 80, 16) * 8 - 4
    z, logdet = flow(torch.randn(2, 5, 6), mel)
    assert z.shape == (2, 5, 6) and torch.isfinite(logdet).all()
    with pytest.raises(InputError, match="mel windows"):
        flow(torch.randn(2, 5, 6), torch.randn(2, 5, 80, 15))
    with pytest.raises(InputError, match="batch and length"):
        flow(torch.randn(2, 5, 6), torch.randn(2, 4, TINY_FLOW["audio_dim"]))
    with pytest.raises(InputError, match="NaN"):
        flow(torch.full((1, 5, 6), float("nan")), mel[:1])
    with pytest.raises(InputError, match="temperature"):
        flow.sample(mel, temperature=-1)
    with pytest.raises(ValueError, match="steps"):
        B.create("edtalk-pose-flow", steps=0)
    with pytest.raises(InputError, match="no official checkpoint"):
        B.EDTalkPoseFlow.official_key_map(flow.config)


def test_save_and_load_keeps_actnorm_statistics(tmp_path):
    flow = random_flow(1, dtype=torch.float32)
    path = flow.save_pretrained(tmp_path / "flow.safetensors")
    back = B.load(path)
    assert isinstance(back, B.EDTalkPoseFlow) and bool(back.flow_steps[0].actnorm.initialized)
    x, a = torch.randn(2, 4, 6), torch.randn(2, 4, TINY_FLOW["audio_dim"])
    assert torch.allclose(back(x, a)[0], flow(x, a)[0], atol=1e-6)


def synthetic_pose_windows(seed: int = 0, clips: int = 4, frames: int = 120, window: int = 16) -> AudioWindows:
    """Pose sequences driven by a loudness signal that the mel windows carry (a planted audio -> pose link)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.8, 0.3, 0.05, 0.5, 0.2, 0.1])
    offset = torch.tensor([0.5, -0.2, 0.0, 0.1, 0.3, -0.4])
    out = []
    for c in range(clips):
        loud = torch.cumsum(torch.randn(frames, generator=g) * 0.3, 0)
        loud = (loud - loud.mean()) / (loud.std() + 1e-6)
        mel = (loud[:, None, None, None] + 0.1 * torch.randn(frames, 1, 80, 16, generator=g)).clamp(-4, 4)
        pose = offset + scale * (loud[:, None] * torch.tensor([1, -1, 1, 0.5, -0.5, 1.0])
                                 + 0.3 * torch.randn(frames, 6, generator=g))
        out.append(AudioClip(f"c{c}", f"id{c}", mel, {"pose": pose}))
    return AudioWindows(out, window, holdout=0.25)


def pose_config(tmp_path, steps: int = 40, window: int = 8, **sections):
    """``edtalk-audio-pose`` on a tiny flow: batch 4, Adam (0.9, 0.999) lr 3e-3, ``window``-frame windows."""
    return companion_config(tmp_path, "edtalk-audio-pose", steps=steps,
                            optim={"lr": 3e-3, "betas": (0.9, 0.999), **sections.pop("optim", {})},
                            data={"batch_size": 4, **sections.pop("data", {})},
                            audio={"companion": {**TINY_FLOW, "hidden": 32}, "window": window, "init_windows": 64,
                                   **sections.pop("audio", {})}, **sections)


def test_training_raises_heldout_likelihood_and_samples_have_data_scale(tmp_path):
    data = synthetic_pose_windows(window=8)
    t = Trainer(pose_config(tmp_path), WindowDataset(data))
    flow = t.model.companion
    assert bool(flow.flow_steps[0].actnorm.initialized)  # Glow's data-dependent start, before the first step
    assert S.trainable_names(t.model) == {f"companion.{n}" for n, _ in flow.named_parameters()}
    before = pose_log_likelihood(flow, data)
    logged = t.fit()
    after = pose_log_likelihood(flow, data)
    assert math.isfinite(logged["loss/nll"]) and set(k for k in logged if k.startswith("loss/")) == {"loss/nll",
                                                                                                  "loss/total"}
    assert after > before + 0.3, (before, after)
    back = B.load(tmp_path / "run" / "audio_pose.safetensors")
    assert isinstance(back, B.EDTalkPoseFlow) and torch.equal(back.flow_steps[0].actnorm.log_scale, flow.flow_steps[0].actnorm.log_scale)

    heldout = data.batch(data.starts("heldout", stride=8))
    with torch.no_grad():
        sampled = flow.sample(heldout["mel"], generator=torch.Generator().manual_seed(0))
    real = torch.cat([c.coefficients["pose"] for c in data.clips])
    ratio = sampled.reshape(-1, 6).std(0) / real.std(0)
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio
    assert ((sampled.reshape(-1, 6).mean(0) - real.mean(0)).abs() < 0.5 * real.std(0) + 0.05).all()


def test_pose_training_refuses_bad_settings(tmp_path):
    data = WindowDataset(synthetic_pose_windows(clips=1, frames=40, window=16))
    with pytest.raises(InputError, match="steps"):
        pose_config(tmp_path, steps=0)
    with pytest.raises(InputError, match="init_windows"):
        pose_config(tmp_path, audio={"init_windows": 0})
    with pytest.raises(InputError, match="audio.companion"):
        S.build_model(pose_config(tmp_path, audio={"companion": {"hidden": -3}}))
    with pytest.raises(InputError, match="too few for one batch"):
        Trainer(pose_config(tmp_path, window=16, data={"batch_size": 64}), data)
