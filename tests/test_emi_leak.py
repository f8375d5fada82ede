"""Evidence that EMI (paper wiring) removes a planted identity leak (issue 11).

A tiny trainable animator on synthetic faces whose identity is a tint (one of six colours, as the probe
tests' mean-colour identity) and whose motion is a mix of four smooth luminance patterns.  Its encoder
gives a pyramid - the mean colour (1 x 1), the identity level (the 2x-pooled frame, 8 x 8, its tint
amplified: the planted identity signal) and a 4 x 4 map of motion responses and tint - and a latent that
carries the tint amplified 5x beside the motion responses.  The decoder renders
``dec(M(motion code)) + skip(source colour)``, LIA-like: the motion code is the driving latent (baseline)
or EMI's code from the driving pyramid.

Both are trained the same way on self-reenactment pairs (same tint, other motion; L1, plus EMI's L_dis).
In self-reenactment the tint can come from either path, and the baseline takes it from the driver's
latent, where it is strongest: driven by another identity, its output takes the driver's tint.  EMI's
L_dis makes the driving code carry no identity, so the tint must come from the source.  Frames carry
pixel noise (sigma 0.05), so self-reenactment L1 has a floor the models share.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plugtalk.adapters.base import Adapter, Motion
from plugtalk.backbones.base import Encoding
from plugtalk.features import FeatureSpec, LevelInfo
from plugtalk.retrofitting import retrofit

SIZE, MOTIONS, GAIN, NOISE = 16, 4, 5.0, 0.05
TINTS = torch.tensor([[0.5, -0.3, -0.3], [-0.3, 0.5, -0.3], [-0.3, -0.3, 0.5],
                      [0.4, 0.4, -0.4], [-0.4, 0.4, 0.4], [0.4, -0.4, 0.4]])


def motion_basis() -> torch.Tensor:
    """Four smooth luminance patterns ``(4, S, S)`` of unit standard deviation."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    b = torch.stack([torch.cos(math.pi * x), torch.cos(math.pi * y), torch.sin(math.pi * (x + y) / 2), x * y])
    return b / b.flatten(1).std(1).view(-1, 1, 1)


BASIS = motion_basis()


def faces(identity: torch.Tensor, motion: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``(N, 3, S, S)`` in [-1, 1]: tint of ``identity`` + the motion patterns mixed by ``motion (N, 4)`` + noise."""
    lum = 0.3 / math.sqrt(MOTIONS) * torch.einsum("nk,khw->nhw", motion, BASIS).unsqueeze(1)
    noise = NOISE * torch.randn(len(motion), 3, SIZE, SIZE, generator=g)
    return (TINTS[identity].view(-1, 3, 1, 1) + lum + noise).clamp(-1, 1)


def pairs(n: int, g: torch.Generator, cross: bool = False):
    """Source, driving, and the ideal output (source identity, driving motion), with both identities."""
    i = torch.randint(0, len(TINTS), (n,), generator=g)
    j = (i + torch.randint(1, len(TINTS), (n,), generator=g)) % len(TINTS) if cross else i
    a_s, a_d = torch.rand(n, MOTIONS, generator=g) * 2 - 1, torch.rand(n, MOTIONS, generator=g) * 2 - 1
    return faces(i, a_s, g), faces(j, a_d, g), faces(i, a_d, g), i, j


class LeakyToy(nn.Module):
    """Fixed encoder (no weights), trainable motion MLP, decoder and source-colour skip (zero at the start)."""

    latent_dim = 3 + MOTIONS + 3

    def __init__(self):
        super().__init__()
        self.motion = nn.Sequential(nn.Linear(self.latent_dim, 64), nn.ReLU(), nn.Linear(64, 64))
        self.decoder = nn.Linear(64, 3 * SIZE * SIZE)
        self.skip = nn.Linear(3, 3)
        nn.init.zeros_(self.skip.weight)
        nn.init.zeros_(self.skip.bias)

    def encode(self, x: torch.Tensor) -> Encoding:
        colour = x.mean((2, 3), keepdim=True)
        lum = x.mean(1, keepdim=True) - colour.mean(1, keepdim=True)
        identity_level = F.avg_pool2d(x, 2) + (GAIN - 1) * colour  # the planted identity signal
        responses = F.avg_pool2d(torch.cat([lum * BASIS, colour.expand(-1, -1, SIZE, SIZE)], 1), 4)
        latent = torch.cat([GAIN * colour.flatten(1), responses.mean((2, 3))], 1)
        return Encoding(latent, (colour, identity_level, responses))


class LeakyToyAdapter(Adapter):
    """The adapter protocol for :class:`LeakyToy` (identity level: index 1, the 8 x 8 map)."""

    def __init__(self, model: LeakyToy):
        super().__init__(model)

    @property
    def feature_spec(self) -> FeatureSpec:
        levels = (LevelInfo("colour", 3, 1, 1), LevelInfo("identity", 3, 8, 8),
                  LevelInfo("responses", MOTIONS + 3, 4, 4))
        return FeatureSpec(levels, LeakyToy.latent_dim, LeakyToy.latent_dim, identity_level=1)

    @property
    def image_size(self) -> int:
        return SIZE

    def motion(self, source, source_code, codes, tap=None, **controls):
        self.check_controls(controls)
        return Motion(self.backbone.motion(codes["driving"]))

    def decode(self, motion, pyramid):
        m = self.backbone
        return m.decoder(motion.latent).view(-1, 3, SIZE, SIZE) + m.skip(pyramid[0].flatten(1)).view(-1, 3, 1, 1)


def train_and_measure(with_emi: bool, steps: int = 800, seed: int = 1) -> dict[str, float]:
    """Train on self-reenactment pairs; returns held-out self-reenactment L1 and the identity shift of
    cross-reenactment outputs toward the driver (0: the source's tint, 1: the driver's)."""
    torch.manual_seed(seed)
    emi = dict(width=16, num_heads=2, num_queries=4, num_layers=1) if with_emi else None  # paper wiring
    model = retrofit(LeakyToyAdapter(LeakyToy()), emi=emi, edi=None, freeze_backbone=False, init="random")
    assert with_emi == (model.emi is not None) and (not with_emi or model.emi.config.inputs == "paper")
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed + 1)
    model.train()
    for _ in range(steps):
        s, d, _, _, _ = pairs(32, g)
        out = model(s, d)
        loss = F.l1_loss(out.image, d) + sum(out.losses.values())  # L_dis with EMI (weight 1, as the paper)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    g = torch.Generator().manual_seed(1234)  # the same held-out pairs for both models
    with torch.no_grad():
        s, d, _, _, _ = pairs(256, g)
        self_l1 = F.l1_loss(model(s, d), d).item()
        s, d, _, i, j = pairs(256, g, cross=True)
        colour, c_s, c_d = model(s, d).mean((2, 3)), TINTS[i], TINTS[j]
        shift = (((colour - c_s) * (c_d - c_s)).sum(1) / (c_d - c_s).square().sum(1)).mean().item()
    return {"self_l1": self_l1, "identity_shift": shift}


@pytest.mark.slow
def test_emi_removes_a_planted_identity_leak_and_keeps_self_reenactment():
    torch.set_num_threads(1)
    baseline = train_and_measure(with_emi=False)
    fixed = train_and_measure(with_emi=True)
    print(f"baseline: {baseline}; EMI (paper wiring): {fixed}")
    assert baseline["identity_shift"] > 0.5, baseline  # the baseline takes the driver's tint
    assert abs(fixed["identity_shift"]) < 0.1, fixed  # EMI: the source's tint
    assert fixed["self_l1"] <= 1.1 * baseline["self_l1"], (baseline, fixed)
