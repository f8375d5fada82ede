"""EMI (FixTalk Sec. 4.1, Eq. 4): shapes, gradients, weighted sum, L_dis, save/load, input errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from plugtalk import EDI, EMI, EMIConfig
from plugtalk.edi import EDIConfig
from plugtalk.emi import disentangle_loss
from plugtalk.errors import CheckpointError, InputError
from plugtalk.features import FeatureSpec, LevelInfo

torch.set_num_threads(1)


def tiny_config(**overrides) -> EMIConfig:
    values = dict(pyramid_channels=(8, 6, 4), pyramid_sizes=((4, 4), (8, 8), (16, 16)), identity_level=1,
                  latent_dim=5, dim=7, width=8, num_layers=2, num_heads=2, num_queries=3)
    values.update(overrides)
    return EMIConfig(**values)


def make_pyramid(config: EMIConfig, batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sizes = config.pyramid_sizes or [(3 + i, 5 - i % 2) for i in range(len(config.pyramid_channels))]
    return [torch.randn(batch, c, h, w, generator=g) for c, (h, w) in zip(config.pyramid_channels, sizes)]


def make_latent(config: EMIConfig, batch: int = 2, seed: int = 1) -> torch.Tensor | None:
    if config.latent_dim is None:
        return None
    return torch.randn(batch, config.latent_dim, generator=torch.Generator().manual_seed(seed))


def lia_like_spec(size: int = 256) -> FeatureSpec:
    res = [2**i for i in range(3, int(math.log2(size)) + 1)]
    levels = tuple(LevelInfo(f"f{i}", min(512, 16384 // r), r, r) for i, r in enumerate(res))
    return FeatureSpec(levels=levels, latent_dim=512, motion_dim=512, identity_level=res.index(32))


# -- shapes --------------------------------------------------------------------------------------------------
@st.composite
def emi_setups(draw):
    n = draw(st.integers(1, 3))
    channels = tuple(draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)))
    fixed = draw(st.booleans())
    sizes = tuple(draw(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=n, max_size=n)))
    heads = draw(st.sampled_from([1, 2, 4]))
    config = EMIConfig(
        pyramid_channels=channels, pyramid_sizes=sizes if fixed else None,
        identity_level=draw(st.integers(0, n - 1)), latent_dim=draw(st.one_of(st.none(), st.integers(1, 6))),
        dim=draw(st.integers(1, 9)), width=4 * heads * draw(st.integers(1, 2)), num_heads=heads,
        num_layers=draw(st.integers(1, 2)), num_queries=draw(st.integers(1, 3)),
        mlp_ratio=draw(st.sampled_from([0.5, 2.0])))
    batch = draw(st.integers(1, 3))
    return config, sizes, batch


@settings(max_examples=20, deadline=None)
@given(emi_setups())
def test_output_shape_over_configs(setup):
    config, sizes, batch = setup
    torch.manual_seed(0)
    emi = EMI(config)
    pyramid = [torch.randn(batch, c, h, w) for c, (h, w) in zip(config.pyramid_channels, sizes)]
    latent = None if config.latent_dim is None else torch.randn(batch, config.latent_dim)
    z = emi(pyramid, latent)
    assert z.shape == (batch, config.dim)
    assert torch.isfinite(z).all()
    assert emi.extract(pyramid[config.identity_level]).shape == (batch, config.num_queries, config.width)
    assert len(emi.layer_names()) == emi.layer_weights().numel() == len(sizes) + 1 + (latent is not None)


def test_any_spatial_size_when_sizes_not_fixed():
    emi = EMI(tiny_config(pyramid_sizes=None))
    for hw in [(1, 1), (3, 7), (10, 4)]:
        pyramid = [torch.randn(2, c, *hw) for c in (8, 6, 4)]
        assert emi(pyramid, torch.randn(2, 5)).shape == (2, 7)


# -- training signal -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("latent_dim", [5, None])
def test_gradients_reach_every_parameter(latent_dim):
    torch.manual_seed(0)
    config = tiny_config(latent_dim=latent_dim)
    emi = EMI(config).train()
    z_s = emi(make_pyramid(config, seed=0), make_latent(config, seed=1))
    z_d = emi(make_pyramid(config, seed=2), make_latent(config, seed=3))
    loss = z_d.sum() + emi.disentangle_loss(z_s, z_d)
    loss.backward()
    for name, p in emi.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_layer_weights_are_a_distribution_and_follow_the_logits():
    emi = EMI(tiny_config())
    w = emi.layer_weights()
    assert w.shape == (5,)  # 3 levels + extractor + latent
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    raw = [0.3, -1.0, 2.0, 0.0, 0.7]
    with torch.no_grad():
        emi.weighted_sum.logits.copy_(torch.tensor(raw))
    expected = [math.exp(a) / sum(math.exp(b) for b in raw) for a in raw]
    torch.testing.assert_close(emi.layer_weights(), torch.tensor(expected))
    torch.testing.assert_close(emi.layer_weights().sum(), torch.tensor(1.0))
    assert not torch.allclose(emi.layer_weights(), w)


@pytest.mark.parametrize("index", [0, 2, 3, 4])
def test_one_hot_weights_select_one_projected_input(index):
    """With all weight on one input, z is that input's pooled-and-projected value (Fig. 4b's wiring)."""
    config = tiny_config()
    emi = EMI(config).eval()
    pyramid, latent = make_pyramid(config), make_latent(config)
    logits = torch.full((5,), -float("inf"))
    logits[index] = 0.0
    with torch.no_grad():
        emi.weighted_sum.logits.copy_(logits)
        z = emi(pyramid, latent)
        if index < 3:
            expected = emi.level_proj[index](pyramid[index].mean(dim=(2, 3)))
        elif index == 3:
            expected = emi.extractor_proj(emi.extract(pyramid[config.identity_level]).mean(dim=1))
        else:
            expected = emi.latent_proj(latent)
    torch.testing.assert_close(z, expected)


def test_extractor_sees_positions():
    """Attention alone is blind to token order; the 2-D position code must make P see the layout."""
    config = tiny_config()
    emi = EMI(config).eval()
    identity = make_pyramid(config)[config.identity_level]
    flipped = identity.flip(-1)
    with torch.no_grad():
        assert not torch.allclose(emi.extract(identity), emi.extract(flipped), atol=1e-5)


# -- L_dis (Eq. 4) -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("xi", [0.0, 0.3, -0.2])
def test_disentangle_loss_matches_hand_computation(xi):
    rng = np.random.default_rng(0)
    zs, zd = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    zd[0] = 2.0 * zs[0]      # cos = 1
    zd[1] = -zs[1]           # cos = -1
    cos = (zs * zd).sum(1) / (np.sqrt((zs**2).sum(1)) * np.sqrt((zd**2).sum(1)))
    expected = np.maximum(0.0, cos - xi).mean()
    got = disentangle_loss(torch.from_numpy(zs), torch.from_numpy(zd), xi)
    assert got.item() == pytest.approx(expected, abs=1e-10)
    emi = EMI(tiny_config(dim=6, xi=xi))
    assert emi.disentangle_loss(torch.from_numpy(zs).float(), torch.from_numpy(zd).float()).item() == \
        pytest.approx(expected, abs=1e-5)


# -- construction from a FeatureSpec ---------------------------------------------------------------------------
def test_from_spec_takes_shapes_from_the_spec():
    spec = FeatureSpec(levels=(LevelInfo("a", 8, 4, 4), LevelInfo("b", 6, 8, 6), LevelInfo("c", 4, 16, 12)),
                       latent_dim=5, motion_dim=7, identity_level=1)
    emi = EMI.from_spec(spec, width=8, num_heads=2, num_queries=2)
    c = emi.config
    assert c.pyramid_channels == (8, 6, 4) and c.pyramid_sizes == ((4, 4), (8, 6), (16, 12))
    assert (c.identity_level, c.latent_dim, c.dim, c.num_queries) == (1, 5, 7, 2)
    emi.check_spec(spec)
    pyramid = [torch.randn(1, lv.channels, lv.height, lv.width) for lv in spec.levels]
    assert emi(pyramid, torch.randn(1, 5)).shape == (1, 7)
    assert EMI.from_spec(spec, latent_dim=None, width=8, num_heads=2).latent_proj is None
    with pytest.raises(ValueError, match="unknown option"):
        EMI.from_spec(spec, heads=3)


def test_defaults_fit_the_lia_family():
    spec = lia_like_spec()
    default = EMI()
    default.check_spec(spec)  # same channels, identity level, latent and motion widths
    assert EMI.from_spec(spec).config.pyramid_channels == default.config.pyramid_channels


def test_paper_scale_forward():
    """FixTalk scale: LIA pyramid at 256 px (f_4 = 512 x 32 x 32), D = 512."""
    torch.manual_seed(0)
    spec = lia_like_spec()
    emi = EMI.from_spec(spec).eval()
    assert sum(p.numel() for p in emi.parameters()) > 0
    pyramid = [torch.randn(1, lv.channels, lv.height, lv.width) for lv in spec.levels]
    with torch.no_grad():
        z = emi(pyramid, torch.randn(1, 512))
    assert z.shape == (1, 512) and torch.isfinite(z).all()


# -- save / load -----------------------------------------------------------------------------------------------
def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(xi=0.25)
    emi = EMI(config).eval()
    with torch.no_grad():
        emi.weighted_sum.logits.normal_()
    path = emi.save_pretrained(tmp_path / "emi.safetensors")
    loaded = EMI.from_pretrained(path).eval()
    assert loaded.config == emi.config
    pyramid, latent = make_pyramid(config), make_latent(config)
    with torch.no_grad():
        assert torch.equal(loaded(pyramid, latent), emi(pyramid, latent))
    torch.testing.assert_close(loaded.layer_weights(), emi.layer_weights(), rtol=0, atol=0)


def test_loading_an_edi_file_as_emi_fails(tmp_path):
    edi = EDI(EDIConfig(channels=4, height=4, width=4, motion_dim=3, num_slots=2, pool_grid=2,
                        decoder_channels=4, fusion_heads=2))
    path = edi.save_pretrained(tmp_path / "edi.safetensors")
    with pytest.raises(CheckpointError, match="edi"):
        EMI.from_pretrained(path)


# -- bad input -------------------------------------------------------------------------------------------------
def _bad_cases():
    c = tiny_config()
    pyr, lat = make_pyramid(c), make_latent(c)
    return {
        "too few levels": (pyr[:2], lat, r"3 maps"),
        "a tensor, not a sequence": (pyr[0], lat, r"sequence of 3 maps"),
        "wrong channels": ([pyr[0], torch.randn(2, 5, 8, 8), pyr[2]], lat, r"\(2, 6, 8, 8\)"),
        "fine-to-coarse order": (pyr[::-1], lat, r"\(B, 8, 4, 4\)"),
        "wrong spatial size": ([pyr[0], torch.randn(2, 6, 9, 8), pyr[2]], lat, r"\(2, 6, 8, 8\)"),
        "3-D map": ([pyr[0], torch.randn(6, 8, 8), pyr[2]], lat, r"\(2, 6, 8, 8\)"),
        "integer map": ([pyr[0], torch.ones(2, 6, 8, 8, dtype=torch.long), pyr[2]], lat, "float"),
        "batch mismatch between levels": ([pyr[0], pyr[1][:1], pyr[2]], lat, "batch size 1"),
        "missing latent": (pyr, None, r"latent \(2, 5\)"),
        "latent of wrong width": (pyr, torch.randn(2, 4), r"\(2, 5\)"),
        "latent batch mismatch": (pyr, torch.randn(3, 5), "batch size 3"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_input_raises_input_error_naming_emi(case):
    pyramid, latent, expected = _bad_cases()[case]
    emi = EMI(tiny_config())
    with pytest.raises(InputError, match="EMI") as info:
        emi(pyramid, latent)
    assert re.search(expected, str(info.value)), str(info.value)


def test_latent_given_to_an_emi_without_latent_input():
    config = tiny_config(latent_dim=None)
    with pytest.raises(InputError, match="EMI.*latent_dim=None"):
        EMI(config)(make_pyramid(config), torch.randn(2, 5))


def test_bad_motion_codes_for_the_loss():
    emi = EMI(tiny_config())
    with pytest.raises(InputError, match=r"EMI: z_driving should be \(2, 7\)"):
        emi.disentangle_loss(torch.randn(2, 7), torch.randn(2, 6))
    with pytest.raises(InputError, match="EMI: z_driving has batch size 3"):
        emi.disentangle_loss(torch.randn(2, 7), torch.randn(3, 7))


def test_spec_mismatch_raises_input_error():
    emi = EMI()
    with pytest.raises(InputError, match=r"EMI: built for another feature spec.*pyramid sizes"):
        EMI.from_spec(lia_like_spec(256)).check_spec(lia_like_spec(512))
    other = FeatureSpec(levels=lia_like_spec().levels, latent_dim=512, motion_dim=256, identity_level=2)
    with pytest.raises(InputError, match=r"EMI.*motion-code width 512 vs 256"):
        emi.check_spec(other)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="identity_level"):
        EMIConfig(pyramid_channels=(4, 4), identity_level=2)
    with pytest.raises(ValueError, match="divisible"):
        EMIConfig(width=10, num_heads=2)


# -- devices ---------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    config = tiny_config()
    emi = EMI(config).eval()
    pyramid, latent = make_pyramid(config), make_latent(config)
    with torch.no_grad():
        ref = emi(pyramid, latent)
        got = emi.to("cuda")([p.cuda() for p in pyramid], latent.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-4, atol=1e-4)
