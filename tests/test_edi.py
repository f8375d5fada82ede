"""EDI (FixTalk Sec. 4.2, Eq. 5-9): shapes, both paths, memory, losses, save/load, input errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from plugtalk import EDI, EMI, EDIConfig
from plugtalk.edi import (LEGACY_OPTIONS, Compressor, Decompressor, address_entropy, alignment_loss, memory_logits,
                          memory_recall, recall_gap, slot_usage)
from plugtalk.emi import EMIConfig
from plugtalk.errors import CheckpointError, InputError
from plugtalk.features import FeatureSpec, LevelInfo

torch.set_num_threads(1)


def tiny_config(**overrides) -> EDIConfig:
    values = dict(channels=8, height=8, width=6, motion_dim=5, num_slots=4, pool_grid=2, decoder_base=2,
                  decoder_channels=6, mapping_layers=1, fusion_heads=2)
    values.update(overrides)
    return EDIConfig(**values)


def make_inputs(config: EDIConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, config.channels, config.height, config.width)
    return (torch.randn(*shape, generator=g), torch.randn(*shape, generator=g),
            torch.randn(batch, config.motion_dim, generator=g), torch.randn(batch, config.motion_dim, generator=g))


# -- shapes --------------------------------------------------------------------------------------------------
@st.composite
def edi_setups(draw):
    heads = draw(st.sampled_from([1, 2]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    config = EDIConfig(
        channels=heads * draw(st.integers(1, 4)), height=h, width=w, motion_dim=draw(st.integers(1, 5)),
        num_slots=draw(st.integers(1, 5)), temperature=draw(st.sampled_from([1.0, 0.1])),
        pool_grid=draw(st.integers(1, min(h, w, 3))), decoder_base=draw(st.integers(1, 4)),
        decoder_channels=draw(st.integers(1, 6)), mapping_layers=draw(st.integers(0, 2)), fusion_heads=heads,
        train_recall=draw(st.sampled_from(["driving", "motion_source", "scheduled"])),
        addressing=draw(st.sampled_from(["fixed", "learned"])), fusion_grid=draw(st.integers(0, 4)),
        fusion_dim=heads * draw(st.integers(0, 3)))
    return config, draw(st.integers(1, 3))


@settings(max_examples=20, deadline=None)
@given(edi_setups())
def test_output_shapes_over_configs(setup):
    config, batch = setup
    torch.manual_seed(0)
    edi = EDI(config)
    src, drv, z_s, z_d = make_inputs(config, batch)
    map_shape = (batch, config.channels, config.height, config.width)
    g = config.fusion_grid
    restored_shape = (batch, config.channels, *((min(g, config.height), min(g, config.width)) if g else map_shape[2:]))
    for out, train in ((edi.forward_train(src, drv, z_s, z_d), True), (edi.forward_inference(src, z_s, z_d), False)):
        assert out.fused.shape == map_shape and out.restored.shape == restored_shape
        assert out.token.shape == (batch, config.channels)
        assert set(out.addresses) == ({"driving", "motion_source"} if train else {"motion_source"})
        for a in out.addresses.values():
            assert a.shape == (batch, config.num_slots)
            torch.testing.assert_close(a.sum(-1), torch.ones(batch))
        assert set(out.losses) == ({"dmem", "align"} if train else set())
        assert all(v.ndim == 0 and torch.isfinite(v) for v in out.losses.values())
        assert torch.isfinite(out.fused).all()


@pytest.mark.parametrize("size, base, ups", [((32, 32), 4, 3), ((6, 10), 4, 0), ((12, 8), 2, 2), ((1, 1), 4, 0)])
def test_decompressor_upsamples_to_the_map_size(size, base, ups):
    dec = Decompressor(token_dim=6, out_channels=5, size=size, base=base, channels=4, mapping_layers=1)
    assert dec.num_upsamples == ups
    assert dec.constant.shape[-2:] == (size[0] >> ups, size[1] >> ups)
    assert dec(torch.randn(3, 6)).shape == (3, 5, *size)


def test_decompressor_output_depends_on_the_token():
    dec = Decompressor(token_dim=6, out_channels=5, size=(8, 8), base=2, channels=4)
    a, b = torch.randn(1, 6), torch.randn(1, 6)
    assert not torch.allclose(dec(a), dec(b))


# -- compressor ----------------------------------------------------------------------------------------------
def test_compressor_starts_as_global_average_pooling():
    x = torch.randn(2, 3, 8, 12)
    torch.testing.assert_close(Compressor(4)(x), x.mean(dim=(2, 3)))


def test_compressor_weighted_sum_over_cells():
    comp = Compressor(2)
    with torch.no_grad():
        comp.cell_weights.logits.copy_(torch.tensor([-float("inf"), 0.0, -float("inf"), -float("inf")]))
    x = torch.randn(2, 3, 4, 6)
    torch.testing.assert_close(comp(x), x[:, :, :2, 3:].mean(dim=(2, 3)))  # cell (0, 1): top-right block


# -- leakage memory (Eq. 5-9) --------------------------------------------------------------------------------
def test_memory_logits_are_cosines_over_temperature():
    rng = np.random.default_rng(0)
    q, m = rng.normal(size=(3, 7)), rng.normal(size=(5, 7))
    cos = (q @ m.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(m, axis=1)[None, :]
    for tau in (1.0, 0.25):
        got = memory_logits(torch.from_numpy(q), torch.from_numpy(m), tau).numpy()
        np.testing.assert_allclose(got, cos / tau, rtol=1e-10, atol=1e-12)


def test_recall_with_one_hot_address_is_the_slot():
    memory = torch.randn(6, 9)
    for i in range(6):
        address = torch.nn.functional.one_hot(torch.tensor([i]), 6).float()
        assert torch.equal(memory_recall(address, memory), memory[i:i + 1])


def test_sharp_address_recalls_the_matching_slot():
    torch.manual_seed(0)
    memory = torch.randn(5, 16)
    query = 3.0 * memory[[2, 4]]          # cosine 1 with slots 2 and 4
    address = memory_logits(query, memory, temperature=1e-3).softmax(-1)
    torch.testing.assert_close(memory_recall(address, memory), memory[[2, 4]])


def test_alignment_loss_zero_iff_addresses_equal():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(3, 5)))
    log_p = logits.log_softmax(-1)
    assert alignment_loss(log_p, log_p).item() == pytest.approx(0.0, abs=1e-12)
    log_q = torch.from_numpy(rng.normal(size=(3, 5))).log_softmax(-1)
    got = alignment_loss(log_p, log_q).item()
    p, q = log_p.exp().numpy(), log_q.exp().numpy()
    expected = (p * (np.log(p) - np.log(q))).sum(1).mean()  # KL(p || q), batch mean
    assert got > 0 and got == pytest.approx(expected, rel=1e-10)
    assert got != pytest.approx(alignment_loss(log_q, log_p).item(), rel=1e-6)  # the direction matters


@pytest.mark.parametrize("dmem_scale, divisor", [("paper", 1.0), ("rms", 8 ** 0.5)])
def test_training_losses_follow_eq_6_and_8(dmem_scale, divisor):
    torch.manual_seed(0)
    config = tiny_config(dmem_scale=dmem_scale)
    edi = EDI(config)
    src, drv, z_s, z_d = make_inputs(config)
    out = edi.forward_train(src, drv, z_s, z_d)
    with torch.no_grad():
        f_d = edi.compressor(drv).numpy()
        m_d = edi.memory_d.numpy()
        a_d = out.addresses["driving"].numpy()
        a_ms = out.addresses["motion_source"].numpy()
    dmem = np.linalg.norm(f_d - a_d @ m_d, axis=1).mean() / divisor
    align = (a_ms * (np.log(a_ms) - np.log(a_d))).sum(1).mean()
    assert out.losses["dmem"].item() == pytest.approx(dmem, rel=1e-5)
    assert out.losses["align"].item() == pytest.approx(align, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("train_recall, address", [("driving", "driving"), ("motion_source", "motion_source")])
def test_decoded_token_in_training(train_recall, address):
    config = tiny_config(train_recall=train_recall)
    edi = EDI(config)
    out = edi.forward_train(*make_inputs(config))
    torch.testing.assert_close(out.token, out.addresses[address] @ edi.memory_d)


@pytest.mark.parametrize("progress, mix", [(0.0, 0.0), (0.2, 0.0), (0.4, 0.5), (0.6, 1.0), (1.0, 1.0)])
def test_scheduled_schedule_ramps_from_the_driving_to_the_motion_source_recall(progress, mix):
    """train_recall="scheduled": token = (1 - a) Ω_d M_d + a Ω_ms M_d, a linear over schedule_ramp."""
    config = tiny_config(train_recall="scheduled", schedule_ramp=(0.2, 0.6))
    edi = EDI(config)
    edi.set_progress(progress)
    assert edi.recall_mix() == pytest.approx(mix)
    out = edi.forward_train(*make_inputs(config))
    a_d, a_ms = out.addresses["driving"], out.addresses["motion_source"]
    torch.testing.assert_close(out.token, ((1 - mix) * a_d + mix * a_ms) @ edi.memory_d)
    assert edi.diagnostics["recall_mix"].item() == pytest.approx(mix)


def test_learned_addressing_starts_at_the_temperature_learns_and_is_clamped():
    config = tiny_config(addressing="learned", temperature=0.2, min_temperature=0.05)
    edi = EDI(config)
    src, drv, z_s, z_d = make_inputs(config)
    with torch.no_grad():
        f_d = edi.compressor(drv)
    torch.testing.assert_close(edi.driving_logits(f_d), memory_logits(f_d, edi.memory_d, 0.2))
    out = edi.forward_train(src, drv, z_s, z_d)
    (out.losses["dmem"] + out.losses["align"] + out.fused.sum()).backward()
    assert edi.scale_d.log_scale.grad.abs() > 0 and edi.scale_ms.log_scale.grad.abs() > 0
    with torch.no_grad():
        edi.scale_d.log_scale.fill_(10.0)   # far beyond 1 / min_temperature
    torch.testing.assert_close(edi.driving_logits(f_d), memory_logits(f_d, edi.memory_d, 0.05))
    assert edi.scale_d.current_temperature() == pytest.approx(0.05)
    fixed = EDI(tiny_config(addressing="fixed", temperature=0.2))
    assert not any("scale" in name for name, _ in fixed.named_parameters())


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_align_stop_gradient_keeps_the_driving_side_out_of_l_align(stop_gradient):
    config = tiny_config(addressing="learned", align_stop_gradient=stop_gradient)
    edi = EDI(config)
    out = edi.forward_train(*make_inputs(config))
    out.losses["align"].backward()
    driving_side = [edi.memory_d.grad, edi.scale_d.log_scale.grad]
    if stop_gradient:
        assert all(g is None or not g.any() for g in driving_side)
    else:
        assert all(g is not None and g.abs().sum() > 0 for g in driving_side)
    assert edi.memory_ms.grad.abs().sum() > 0 and edi.scale_ms.log_scale.grad.abs() > 0


def test_diagnostics_entropy_usage_and_recall_gap():
    uniform = torch.full((3, 8), 1 / 8)
    one_hot = torch.nn.functional.one_hot(torch.tensor([1, 1, 5]), 8).float()
    assert address_entropy(uniform).item() == pytest.approx(1.0)
    assert address_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert slot_usage(uniform).item() == 8 and slot_usage(uniform, threshold=0.2).item() == 0
    assert slot_usage(one_hot).item() == 2
    target = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    assert recall_gap(target + torch.tensor([[0.0, 5.0], [1.0, 0.0]]), target).item() == pytest.approx((1 + 0.5) / 2)
    config = tiny_config()
    edi = EDI(config)
    src, drv, z_s, z_d = make_inputs(config)
    out = edi.forward_train(src, drv, z_s, z_d)
    d = edi.diagnostics
    assert {"entropy_d", "entropy_ms", "slot_usage_d", "slot_usage_ms", "recall_gap_ms", "recall_gap_d"} <= set(d)
    with torch.no_grad():
        f_d = edi.compressor(drv)
    assert d["recall_gap_ms"].item() == pytest.approx(
        recall_gap(out.addresses["motion_source"] @ edi.memory_d, f_d).item(), rel=1e-5)
    assert d["entropy_d"].item() == pytest.approx(address_entropy(out.addresses["driving"]).item(), rel=1e-5)
    assert not any(v.requires_grad for v in d.values())


def test_files_without_the_new_options_load_with_the_old_behaviour(tmp_path):
    """A config saved before `addressing` existed: fixed temperature, full-size restore and fusion."""
    old = {k: v for k, v in tiny_config().to_dict().items() if k not in LEGACY_OPTIONS
           and k not in ("min_temperature", "schedule_ramp")}
    old["temperature"] = 0.1
    config = EDI.config_from(old)
    assert (config.addressing, config.train_recall, config.align_stop_gradient, config.dmem_scale,
            config.fusion_grid, config.fusion_dim, config.memory_init) == ("fixed", "driving", False, "paper", 0, 0,
                                                                          "random")
    edi = EDI(config)
    assert {"fusion.attn.in_proj_weight", "fusion.attn.out_proj.weight"} <= set(edi.state_dict())
    assert not any("scale" in k for k in edi.state_dict())
    assert EDI.config_from({**old, "train_recall": "motion_source"}).train_recall == "motion_source"
    assert EDI.config_from(EDIConfig(channels=8, fusion_heads=2, fusion_dim=4).to_dict()).addressing == "learned"


@pytest.mark.parametrize("options", [{}, {"fusion_grid": 0, "fusion_dim": 0}])
def test_passthrough_fused_map_equals_the_source_map(options):
    config = tiny_config(**options)
    edi = EDI(config).init_passthrough()
    src, drv, z_s, z_d = make_inputs(config)
    with torch.no_grad():
        assert torch.equal(edi.eval()(src, z_s, z_d).fused, src)
        assert torch.equal(edi.train().forward_train(src, drv, z_s, z_d).fused, src)


def test_inference_recalls_driven_identity_memory_with_motion_source_address():
    """Eq. 7 + 9: address from f_s ⊕ (z_d - z_s) against M_ms, recall from M_d."""
    config = tiny_config(temperature=0.5)
    edi = EDI(config).eval()
    src, _, z_s, z_d = make_inputs(config)
    out = edi(src, z_s, z_d)
    with torch.no_grad():
        query = torch.cat([edi.compressor(src), z_d - z_s], dim=1)
    expected_address = memory_logits(query, edi.memory_ms, 0.5).softmax(-1)
    torch.testing.assert_close(out.addresses["motion_source"], expected_address)
    torch.testing.assert_close(out.token, expected_address @ edi.memory_d)
    assert out.losses == {}


# -- the two paths -------------------------------------------------------------------------------------------
def test_inference_does_not_depend_on_the_driving_map():
    torch.manual_seed(0)
    config = tiny_config()
    edi = EDI(config)
    src, drv, z_s, z_d = make_inputs(config)
    other = torch.randn_like(drv)
    edi.train()
    train_a, train_b = edi(src, z_s, z_d, driving_map=drv), edi(src, z_s, z_d, driving_map=other)
    assert not torch.allclose(train_a.fused, train_b.fused)   # training does use the driving map
    edi.eval()
    with torch.no_grad():
        a = edi(src, z_s, z_d, driving_map=drv)
        b = edi(src, z_s, z_d, driving_map=other)
        c = edi(src, z_s, z_d)
    assert torch.equal(a.fused, b.fused) and torch.equal(a.fused, c.fused)
    assert a.losses == {}


@pytest.mark.parametrize("train_recall", ["driving", "motion_source"])
def test_gradients_reach_every_parameter(train_recall):
    torch.manual_seed(0)
    config = tiny_config(train_recall=train_recall)
    edi = EDI(config).train()
    out = edi(*[make_inputs(config)[i] for i in (0, 2, 3)], driving_map=make_inputs(config)[1])
    assert set(out.losses) == {"dmem", "align"}
    (out.fused.sum() + sum(out.losses.values())).backward()
    for name, p in edi.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_fusion_uses_the_restored_map():
    """The fused map is the source map plus cross-attention over the restored map's tokens."""
    config = tiny_config()
    edi = EDI(config).eval()
    src, _, z_s, z_d = make_inputs(config)
    with torch.no_grad():
        fused_a, restored = edi.render(src, torch.randn(2, config.channels))
        fused_b, _ = edi.render(src, torch.randn(2, config.channels))
    assert restored.shape == src.shape
    assert not torch.allclose(fused_a, fused_b)
    assert not torch.allclose(fused_a, src)


# -- construction from a FeatureSpec ---------------------------------------------------------------------------
def lia_like_spec() -> FeatureSpec:
    res = [8, 16, 32, 64, 128, 256]
    levels = tuple(LevelInfo(f"f{i}", min(512, 16384 // r), r, r) for i, r in enumerate(res))
    return FeatureSpec(levels=levels, latent_dim=512, motion_dim=512, identity_level=2)


def test_from_spec_uses_the_identity_level():
    spec = FeatureSpec(levels=(LevelInfo("a", 4, 4, 4), LevelInfo("b", 6, 10, 8)), latent_dim=3, motion_dim=7,
                       identity_level=1)
    edi = EDI.from_spec(spec, num_slots=3, decoder_channels=4, fusion_heads=2, pool_grid=2)
    c = edi.config
    assert (c.channels, c.height, c.width, c.motion_dim, c.num_slots) == (6, 10, 8, 7, 3)
    edi.check_spec(spec)
    out = edi(torch.randn(1, 6, 10, 8), torch.randn(1, 7), torch.randn(1, 7))
    assert out.fused.shape == (1, 6, 10, 8)
    with pytest.raises(ValueError, match="unknown option"):
        EDI.from_spec(spec, slots=3)


def test_paper_scale_forward():
    """FixTalk scale: f_4 = 512 x 32 x 32, D = 512 (defaults), both paths."""
    torch.manual_seed(0)
    edi = EDI.from_spec(lia_like_spec())
    assert edi.config == EDIConfig()
    assert edi.decompressor.num_upsamples == 1   # 4 -> 8 = fusion_grid
    src, drv, z_s, z_d = make_inputs(edi.config, batch=1)
    with torch.no_grad():
        train = edi.train().forward_train(src, drv, z_s, z_d)
        infer = edi.eval()(src, z_s, z_d)
    assert train.fused.shape == infer.fused.shape == (1, 512, 32, 32)
    assert train.restored.shape == (1, 512, 8, 8)
    assert torch.isfinite(train.fused).all() and torch.isfinite(infer.fused).all()
    paper = EDI.from_spec(lia_like_spec(), fusion_grid=0, fusion_dim=0)
    assert paper.decompressor.num_upsamples == 3   # 4 -> 8 -> 16 -> 32: the full-size restore


# -- save / load -----------------------------------------------------------------------------------------------
def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(temperature=0.3, train_recall="motion_source")
    edi = EDI(config)
    path = edi.save_pretrained(tmp_path / "edi.safetensors")
    loaded = EDI.from_pretrained(path)
    assert loaded.config == edi.config
    inputs = make_inputs(config)
    with torch.no_grad():
        a, b = edi.forward_train(*inputs), loaded.forward_train(*inputs)
        assert torch.equal(a.fused, b.fused)
        assert all(torch.equal(a.losses[k], b.losses[k]) for k in a.losses)
        assert torch.equal(edi.eval()(inputs[0], *inputs[2:]).fused, loaded.eval()(inputs[0], *inputs[2:]).fused)


def test_loading_an_emi_file_as_edi_fails(tmp_path):
    emi = EMI(EMIConfig(pyramid_channels=(4,), identity_level=0, latent_dim=None, dim=3, width=4, num_heads=1))
    path = emi.save_pretrained(tmp_path / "emi.safetensors")
    with pytest.raises(CheckpointError, match="emi"):
        EDI.from_pretrained(path)


# -- bad input -------------------------------------------------------------------------------------------------
def _bad_cases():
    c = tiny_config()
    src, drv, z_s, z_d = make_inputs(c)
    return {
        "source wrong channels": ((torch.randn(2, 7, 8, 6), z_s, z_d, drv), r"source_map should be \(B, 8, 8, 6\)"),
        "source wrong size": ((torch.randn(2, 8, 6, 8), z_s, z_d, drv), r"\(B, 8, 8, 6\)"),
        "source not a tensor": ((src.numpy(), z_s, z_d, drv), r"\(B, 8, 8, 6\)"),
        "driving wrong size": ((src, z_s, z_d, torch.randn(2, 8, 8, 8)), r"driving_map should be \(2, 8, 8, 6\)"),
        "driving batch mismatch": ((src, z_s, z_d, drv[:1]), "driving_map has batch size 1"),
        "z_source wrong width": ((src, torch.randn(2, 4), z_d, drv), r"z_source should be \(2, 5\)"),
        "z_driving wrong rank": ((src, z_s, torch.randn(2, 5, 1), drv), r"z_driving should be \(2, 5\)"),
        "z batch mismatch": ((src, z_s, z_d[:1], drv), "z_driving has batch size 1"),
    }


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_input_raises_input_error_naming_edi(case, mode):
    args, expected = _bad_cases()[case]
    edi = EDI(tiny_config()).train(mode == "train")
    with pytest.raises(InputError, match="EDI") as info:
        edi(args[0], args[1], args[2], driving_map=args[3])
    assert re.search(expected, str(info.value)), str(info.value)


def test_bad_input_to_the_explicit_paths():
    c = tiny_config()
    src, drv, z_s, z_d = make_inputs(c)
    edi = EDI(c)
    with pytest.raises(InputError, match=r"EDI: driving_map should be \(2, 8, 8, 6\)"):
        edi.forward_train(src, drv[..., :5], z_s, z_d)
    with pytest.raises(InputError, match=r"EDI: z_source should be \(2, 5\)"):
        edi.forward_inference(src, z_s[:, :4], z_d)


def test_spec_mismatch_raises_input_error():
    spec = lia_like_spec()
    edi = EDI(tiny_config())
    with pytest.raises(InputError, match=r"EDI: built for another feature spec.*\(8, 8, 6\) vs \(512, 32, 32\)"):
        edi.check_spec(spec)
    EDI().check_spec(spec)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="pool_grid"):
        EDIConfig(height=2, width=2, pool_grid=4)
    with pytest.raises(ValueError, match="train_recall"):
        EDIConfig(train_recall="source")
    with pytest.raises(ValueError, match="fusion_heads"):
        EDIConfig(channels=6, fusion_heads=4, fusion_dim=0)
    with pytest.raises(ValueError, match="fusion_heads"):
        EDIConfig(fusion_heads=8, fusion_dim=12)
    with pytest.raises(ValueError, match="addressing"):
        EDIConfig(addressing="sharp")
    with pytest.raises(ValueError, match="min_temperature"):
        EDIConfig(temperature=0.05, min_temperature=0.1)
    with pytest.raises(ValueError, match="schedule_ramp"):
        EDIConfig(schedule_ramp=(0.6, 0.2))
    with pytest.raises(ValueError, match="dmem_scale"):
        EDIConfig(dmem_scale="log")
    with pytest.raises(ValueError, match="memory_init"):
        EDIConfig(memory_init="zeros")
    with pytest.raises(ValueError, match="temperature"):
        EDIConfig(temperature=0.0)


# -- devices ---------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    config = tiny_config()
    edi = EDI(config)
    inputs = make_inputs(config)
    with torch.no_grad():
        ref = edi.forward_train(*inputs)
        got = edi.to("cuda").forward_train(*[t.cuda() for t in inputs])
    assert got.fused.device.type == "cuda"
    torch.testing.assert_close(got.fused.cpu(), ref.fused, rtol=1e-4, atol=1e-4)
    for k in ref.losses:
        torch.testing.assert_close(got.losses[k].cpu(), ref.losses[k], rtol=1e-4, atol=1e-5)


def test_a_file_written_before_the_addressing_options_keeps_its_old_edi_behaviour():
    """A saved config without ``addressing`` (files of v1, e.g. the default model shipped before protocol v2)
    loads with LEGACY_OPTIONS: fixed tau, Eq. 6's recall while training, full-size restore."""
    from plugtalk.edi import LEGACY_OPTIONS
    from plugtalk.layers import CrossAttentionBlock

    new_keys = {"addressing", "train_recall", "align_stop_gradient", "dmem_scale", "memory_init", "fusion_grid",
                "fusion_dim", "min_temperature"}
    old_values = {k: v for k, v in tiny_config(temperature=0.1).to_dict().items() if k not in new_keys}
    c = EDI.config_from(old_values)
    assert (c.addressing, c.train_recall, c.align_stop_gradient, c.dmem_scale, c.fusion_grid) == (
        "fixed", "driving", False, "paper", 0)
    assert all(getattr(c, k) == v for k, v in LEGACY_OPTIONS.items())
    edi = EDI(c).eval()
    assert isinstance(edi.fusion, CrossAttentionBlock)
    src, _, z_s, z_d = make_inputs(c, batch=2)
    with torch.no_grad():
        out = edi(src, z_s, z_d)
        query = torch.cat([edi.compressor(src), z_d - z_s], dim=1)
        address = memory_logits(query, edi.memory_ms, c.temperature).softmax(-1)
    torch.testing.assert_close(out.token, address @ edi.memory_d)
    assert out.restored.shape == src.shape
    assert EDI.config_from(tiny_config().to_dict()).addressing == "learned"   # new files keep their options


def test_data_memory_init_puts_the_first_batch_tokens_in_the_slots_once():
    config = tiny_config(memory_init="data", num_slots=5)
    edi = EDI(config)
    assert edi.memory_ready.item() == 0
    src, drv, z_s, z_d = make_inputs(config, batch=2)
    edi.forward_train(src, drv, z_s, z_d)
    assert edi.memory_ready.item() == 1
    with torch.no_grad():
        f_d = edi.compressor(drv)
        keys = torch.cat([edi.compressor(src), z_d - z_s], dim=1)
    idx = torch.arange(5) % 2   # slot i = token i mod B + a jitter of 10 % of the tokens' RMS
    for memory, tokens in ((edi.memory_d, f_d), (edi.memory_ms, keys)):
        jitter = (memory.detach() - tokens[idx]).pow(2).mean().sqrt()
        assert jitter.item() == pytest.approx(0.1 * tokens.pow(2).mean().sqrt().item(), rel=1e-4)
    before = edi.memory_d.detach().clone()
    edi.forward_train(*make_inputs(config, batch=2, seed=1))
    assert torch.equal(edi.memory_d, before)   # only once
    assert "memory_ready" in edi.state_dict()
    assert "memory_ready" not in EDI(tiny_config(memory_init="random")).state_dict()
