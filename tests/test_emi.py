"""EMI (FixTalk Sec. 4.1, Eq. 4): shapes, gradients, weighted sum (paper wiring and the leaky ablation), the
latent bridge (exact pass-through when open, no bypass when closed), L_dis, save/load, old files, input errors."""

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
from plugtalk.emi import INPUTS, disentangle_loss, distill_loss
from plugtalk.hooks import HookSite, patch
from plugtalk.errors import CheckpointError, InputError
from plugtalk.features import FeatureSpec, LevelInfo

torch.set_num_threads(1)


def leaky_config(**overrides) -> EMIConfig:
    """The ablation: every level pooled (identity level included) + a latent of width 5."""
    return tiny_config(**{"inputs": "leaky", "latent_dim": 5, **overrides})


def tiny_config(**overrides) -> EMIConfig:
    """Paper wiring (levels 0 and 2 + the extractor on level 1), bridge latent of width dim = 7."""
    values = dict(pyramid_channels=(8, 6, 4), pyramid_sizes=((4, 4), (8, 8), (16, 16)), identity_level=1,
                  latent_dim=7, dim=7, width=8, num_layers=2, num_heads=2, num_queries=3)
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
    inputs = draw(st.sampled_from(INPUTS))
    dim = draw(st.integers(1, 9))
    latent = st.integers(1, 6) if inputs == "leaky" else st.just(dim)
    latent_dim = draw(st.one_of(st.none(), latent))
    gate = draw(st.sampled_from([0.0, 0.5, 1.0])) if inputs == "paper" and latent_dim else 0.0
    config = EMIConfig(
        pyramid_channels=channels, pyramid_sizes=sizes if fixed else None, inputs=inputs, bridge_gate=gate,
        identity_level=draw(st.integers(0, n - 1)), latent_dim=latent_dim,
        dim=dim, width=4 * heads * draw(st.integers(1, 2)), num_heads=heads,
        num_layers=draw(st.integers(1, 2)), num_queries=draw(st.integers(1, 3)),
        mlp_ratio=draw(st.sampled_from([0.5, 2.0])), extractor_grid=draw(st.sampled_from([None, 1, 3])))
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
    n = len(sizes)
    expected = n + 1 + (latent is not None) if config.inputs == "leaky" else n  # paper: identity level -> P only
    assert len(emi.layer_names()) == emi.layer_weights().numel() == expected


def test_any_spatial_size_when_sizes_not_fixed():
    emi = EMI(tiny_config(pyramid_sizes=None))
    for hw in [(1, 1), (3, 7), (10, 4)]:
        pyramid = [torch.randn(2, c, *hw) for c in (8, 6, 4)]
        assert emi(pyramid, torch.randn(2, 7)).shape == (2, 7)


# -- training signal -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [tiny_config(), tiny_config(bridge_gate=0.5), tiny_config(latent_dim=None),
                                    leaky_config(), leaky_config(latent_dim=None)],
                         ids=["paper", "paper-bridge-half-open", "paper-no-latent", "leaky", "leaky-no-latent"])
def test_gradients_reach_every_parameter(config):
    torch.manual_seed(0)
    emi = EMI(config).train()
    z_s = emi(make_pyramid(config, seed=0), make_latent(config, seed=1))
    z_d = emi(make_pyramid(config, seed=2), make_latent(config, seed=3))
    loss = z_d.sum() + emi.disentangle_loss(z_s, z_d)
    loss.backward()
    for name, p in emi.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize("config,names", [
    (tiny_config(), ["level_0", "level_2", "extractor"]),
    (leaky_config(), ["level_0", "level_1", "level_2", "extractor", "latent"])], ids=["paper", "leaky"])
def test_layer_weights_are_a_distribution_and_follow_the_logits(config, names):
    emi = EMI(config)
    assert emi.layer_names() == names  # paper: the identity level (1) only through P, no latent
    w = emi.layer_weights()
    assert w.shape == (len(names),)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    raw = [0.3, -1.0, 2.0, 0.0, 0.7][:len(names)]
    with torch.no_grad():
        emi.weighted_sum.logits.copy_(torch.tensor(raw))
    expected = [math.exp(a) / sum(math.exp(b) for b in raw) for a in raw]
    torch.testing.assert_close(emi.layer_weights(), torch.tensor(expected))
    torch.testing.assert_close(emi.layer_weights().sum(), torch.tensor(1.0))
    assert not torch.allclose(emi.layer_weights(), w)


@pytest.mark.parametrize("inputs,name", [("paper", "level_0"), ("paper", "level_2"), ("paper", "extractor"),
                                         ("leaky", "level_0"), ("leaky", "level_1"), ("leaky", "extractor"),
                                         ("leaky", "latent")])
def test_one_hot_weights_select_one_projected_input(inputs, name):
    """With all weight on one input, z is that input's pooled-and-projected value (Fig. 4b's wiring)."""
    config = tiny_config() if inputs == "paper" else leaky_config()
    emi = EMI(config).eval()
    pyramid, latent = make_pyramid(config), make_latent(config)
    logits = torch.full((config.num_inputs,), -float("inf"))
    logits[emi.layer_names().index(name)] = 0.0
    with torch.no_grad():
        emi.weighted_sum.logits.copy_(logits)
        z = emi(pyramid, latent)
        if name.startswith("level_"):
            i = int(name[-1])
            expected = emi.level_proj[str(i)](pyramid[i].mean(dim=(2, 3)))
        elif name == "extractor":
            expected = emi.extractor_proj(emi.extract(pyramid[config.identity_level]).mean(dim=1))
        else:
            expected = emi.latent_proj(latent)
    torch.testing.assert_close(z, expected)


# -- the latent bridge: pass-through at the start, no bypass at the end ---------------------------------------
@pytest.mark.parametrize("config", [tiny_config(), leaky_config(latent_dim=7)], ids=["paper", "leaky"])
def test_passthrough_start_returns_the_latent_exactly(config):
    torch.manual_seed(0)
    emi = EMI(config).init_passthrough().eval()
    for seed in range(3):
        pyramid, latent = make_pyramid(config, seed=seed), make_latent(config, seed=seed + 10)
        with torch.no_grad():
            z = emi(pyramid, latent)
        if config.inputs == "paper":
            assert torch.equal(z, latent)  # the gate selects the latent: exact
        else:
            torch.testing.assert_close(z, latent)  # (n * I) * (1 / n) rounds
    if config.inputs == "paper":
        assert emi.bridge_gate == 1.0
        with pytest.raises(InputError, match="bridge_gate=1"):
            emi(make_pyramid(config))  # an open bridge needs the latent


def _pin_extractor_input(emi, identity_map):
    """Patch P's token projection to see ``identity_map``'s tokens whatever the pyramid holds: then the
    only way a change of the identity level can reach z is a path *around* P."""
    g = emi.config.extractor_grid
    m = identity_map if g is None else torch.nn.functional.adaptive_avg_pool2d(
        identity_map, tuple(min(s, g) for s in identity_map.shape[-2:]))
    pinned = m.flatten(2).transpose(1, 2)
    return patch(emi, {"t": HookSite("token_proj", kind="input", call=None)}, {"t": pinned})


@pytest.mark.parametrize("inputs", INPUTS)
def test_closed_bridge_leaves_no_path_from_the_latent_or_the_raw_identity_level(inputs):
    """FixTalk's EMI reads the identity level only through P and never the latent.  After the bridge closes
    (gate 0, as training leaves it) perturbing the latent, or the identity level with P's input held fixed,
    does not move z by one bit; the leaky ablation moves under both (so the test can fail)."""
    torch.manual_seed(0)
    config = tiny_config(inputs=inputs) if inputs == "paper" else leaky_config(latent_dim=7)
    emi = EMI(config).init_passthrough().train()
    opt = torch.optim.Adam(emi.parameters(), lr=1e-2)
    for step, gate in enumerate([1.0, 0.5, 0.0]):  # a short schedule: open, half, closed
        if inputs == "paper":
            emi.set_bridge_gate(gate)
        pyramid, latent = make_pyramid(config, seed=step), make_latent(config, seed=step)
        codes = emi.codes(pyramid, latent)
        (distill_loss(codes.free, latent) + codes.code.square().mean()).backward()
        opt.step()
        opt.zero_grad()
    emi.eval()
    k = config.identity_level
    pyramid, latent = make_pyramid(config, seed=7), make_latent(config, seed=8)
    with torch.no_grad():
        z = emi(pyramid, latent)
        z_latent = emi(pyramid, latent + 3.0 * torch.randn_like(latent))
        moved = list(pyramid)
        moved[k] = pyramid[k] + 3.0 + torch.randn_like(pyramid[k])
        with _pin_extractor_input(emi, pyramid[k]):
            z_identity = emi(moved, latent)
        z_identity_through_p = emi(moved, latent)
        other = list(pyramid)
        other[0] = pyramid[0] + 1.0
        z_other = emi(other, latent)
    assert not torch.equal(z_identity_through_p, z), "the identity level must still reach z through P"
    assert not torch.equal(z_other, z), "the other levels must reach z"
    if inputs == "paper":
        assert emi.bridge_gate == 0.0
        assert torch.equal(z_latent, z) and torch.equal(z_identity, z)
        assert torch.equal(emi(pyramid), z)  # the latent is not needed at all
    else:
        assert not torch.equal(z_latent, z) and not torch.equal(z_identity, z)


def test_bridge_blends_linearly_and_rejects_bad_gates():
    config = tiny_config()
    emi = EMI(config).eval()
    pyramid, latent = make_pyramid(config), make_latent(config)
    with torch.no_grad():
        free = emi(pyramid)
        emi.set_bridge_gate(0.25)
        codes = emi.codes(pyramid, latent)
    torch.testing.assert_close(codes.free, free, rtol=0, atol=0)
    torch.testing.assert_close(codes.code, 0.25 * latent + 0.75 * free)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        emi.set_bridge_gate(1.5)
    with pytest.raises(ValueError, match="no latent bridge"):
        EMI(leaky_config()).set_bridge_gate(0.5)
    with pytest.raises(ValueError, match="latent_dim must equal dim"):
        tiny_config(latent_dim=5)
    with pytest.raises(ValueError, match="inputs must be one of"):
        tiny_config(inputs="both")


def test_distill_loss_is_the_relative_squared_error():
    t = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert distill_loss(torch.zeros(2, 2), t).item() == pytest.approx(1.0)
    assert distill_loss(t, t).item() == 0.0
    z = torch.tensor([[3.0, 2.0], [1.0, 0.0]], requires_grad=True)
    assert distill_loss(z, t).item() == pytest.approx((4 + 1) / 25)
    distill_loss(z, t.requires_grad_()).backward()
    assert t.grad is None  # the target is not a path


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
    emi = EMI(tiny_config(dim=6, latent_dim=None, xi=xi))
    assert emi.disentangle_loss(torch.from_numpy(zs).float(), torch.from_numpy(zd).float()).item() == \
        pytest.approx(expected, abs=1e-5)


# -- construction from a FeatureSpec ---------------------------------------------------------------------------
def test_from_spec_takes_shapes_from_the_spec():
    spec = FeatureSpec(levels=(LevelInfo("a", 8, 4, 4), LevelInfo("b", 6, 8, 6), LevelInfo("c", 4, 16, 12)),
                       latent_dim=5, motion_dim=7, identity_level=1)
    emi = EMI.from_spec(spec, width=8, num_heads=2, num_queries=2)
    c = emi.config
    assert c.pyramid_channels == (8, 6, 4) and c.pyramid_sizes == ((4, 4), (8, 6), (16, 12))
    # paper wiring: a latent of another width than the motion code cannot bridge, so there is none
    assert (c.identity_level, c.inputs, c.latent_dim, c.dim, c.num_queries) == (1, "paper", None, 7, 2)
    emi.check_spec(spec)
    pyramid = [torch.randn(1, lv.channels, lv.height, lv.width) for lv in spec.levels]
    assert emi(pyramid).shape == (1, 7)
    leaky = EMI.from_spec(spec, inputs="leaky", width=8, num_heads=2)
    assert leaky.config.latent_dim == 5 and leaky(pyramid, torch.randn(1, 5)).shape == (1, 7)
    assert EMI.from_spec(spec, inputs="leaky", latent_dim=None, width=8, num_heads=2).latent_proj is None
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
    assert emi.config.inputs == "paper" and len(emi.layer_names()) == 6  # 5 levels + P (f_4 only through P)


# -- save / load -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [tiny_config(xi=0.25, bridge_gate=0.5), leaky_config(xi=0.25)],
                         ids=["paper", "leaky"])
def test_save_pretrained_round_trip(tmp_path, config):
    torch.manual_seed(0)
    emi = EMI(config).eval()
    with torch.no_grad():
        emi.weighted_sum.logits.normal_()
    path = emi.save_pretrained(tmp_path / "emi.safetensors")
    loaded = EMI.from_pretrained(path).eval()
    assert loaded.config == emi.config and loaded.bridge_gate == emi.bridge_gate
    pyramid, latent = make_pyramid(config), make_latent(config)
    with torch.no_grad():
        assert torch.equal(loaded(pyramid, latent), emi(pyramid, latent))
    torch.testing.assert_close(loaded.layer_weights(), emi.layer_weights(), rtol=0, atol=0)


def test_a_config_without_inputs_is_an_old_file_and_loads_as_the_leaky_ablation(tmp_path):
    """Files written before the paper wiring have no ``inputs`` in their config; they keep working."""
    old = leaky_config().to_dict()
    for key in ("inputs", "bridge_gate", "extractor_grid"):
        del old[key]
    config = EMI.config_from(old)
    assert config.inputs == "leaky" and config.extractor_grid is None
    assert EMI.config_from(tiny_config().to_dict()) == tiny_config()  # new files say what they are


def test_loading_an_edi_file_as_emi_fails(tmp_path):
    edi = EDI(EDIConfig(channels=4, height=4, width=4, motion_dim=3, num_slots=2, pool_grid=2,
                        decoder_channels=4, fusion_heads=2))
    path = edi.save_pretrained(tmp_path / "edi.safetensors")
    with pytest.raises(CheckpointError, match="edi"):
        EMI.from_pretrained(path)


# -- bad input -------------------------------------------------------------------------------------------------
def _bad_cases():
    c = leaky_config()
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
    emi = EMI(leaky_config())
    with pytest.raises(InputError, match="EMI") as info:
        emi(pyramid, latent)
    assert re.search(expected, str(info.value)), str(info.value)


def test_latent_given_to_an_emi_without_latent_input():
    config = tiny_config(latent_dim=None)
    with pytest.raises(InputError, match="EMI.*latent_dim=None"):
        EMI(config)(make_pyramid(config), torch.randn(2, 7))
    with pytest.raises(InputError, match=r"EMI: latent should be \(2, 7\)"):
        EMI(tiny_config())(make_pyramid(config), torch.randn(2, 5))  # checked when given, even if unused


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


# -- level set: which pyramid levels EMI reads ------------------------------------------------------------------
def _levels_read(emi: EMI, spec: FeatureSpec) -> list[int]:
    """Resolutions (px) of the levels whose values reach the motion code (non-zero gradient)."""
    pyramid = [torch.randn(1, lv.channels, lv.height, lv.width, requires_grad=True) for lv in spec.levels]
    emi.codes(pyramid).free.square().sum().backward()
    return sorted((lv.height for lv, f in zip(spec.levels, pyramid) if f.grad is not None and f.grad.abs().sum() > 0),
                  reverse=True)


@pytest.mark.parametrize("size, identity_level, level_set, read", [
    (256, None, "all", [256, 128, 64, 32, 16, 8]),
    (256, None, "f1:5", [256, 128, 64, 32, 16]),        # FixTalk's f_1:5: the 8 x 8 level is not read
    (512, None, "all", [512, 256, 128, 64, 32, 16, 8]),
    (512, None, "f1:5", [512, 256, 128, 64, 32]),       # identity level scaled with the size: 64 x 64
    (512, 2, "f1:5", [256, 128, 64, 32, 16]),           # f_4 = 512 x 32 x 32 as the paper states it
])
def test_level_set_decides_which_levels_emi_reads(size, identity_level, level_set, read):
    from plugtalk import backbones
    from plugtalk.adapters import adapter_for

    torch.manual_seed(0)
    backbone = backbones.create("edtalk", size=size, channel_base=1024, channel_max=16, style_dim=64)
    spec = adapter_for(backbone, identity_level=identity_level).feature_spec
    emi = EMI.from_spec(spec, level_set=level_set, width=16, num_heads=2, num_queries=2)
    assert _levels_read(emi, spec) == read
    assert sorted((spec.levels[i].height for i in emi.config.read_levels), reverse=True) == read
    assert spec.levels[emi.config.identity_level].height in read
    assert len(emi.layer_names()) == len(read)  # the pooled levels + P


def test_level_set_f15_needs_the_five_levels_and_the_paper_wiring():
    with pytest.raises(ValueError, match="3 finer levels"):  # 64 px: identity level 8 x 8 is the coarsest
        EMIConfig(pyramid_channels=(8, 8, 8, 8), identity_level=0, level_set="f1:5", dim=8, latent_dim=None,
                  width=8, num_heads=2)
    with pytest.raises(ValueError, match="inputs='paper'"):
        EMIConfig(inputs="leaky", level_set="f1:5")
    with pytest.raises(ValueError, match="level_set must be one of"):
        EMIConfig(level_set="f1:6")
    assert EMIConfig().level_set == "all" and EMIConfig().read_levels == tuple(range(6))
