"""Adapters and retrofit: data flow, passthrough start, losses, frozen backbone, persistence, errors."""

import pytest
import torch

from conftest import tiny_backbone
from plugtalk import EDI, EMI, load_retrofitted, retrofit
from plugtalk.adapters import DPEAdapter, HookAdapter, LIAAdapter, adapter_for
from plugtalk.errors import InputError
from plugtalk.hooks import HookSite, capture, patch, tap_sites

SMALL_EMI = dict(width=16, num_heads=2, num_queries=4)
SMALL_EDI = dict(num_slots=8, decoder_channels=16, fusion_heads=2)
CASES = [("lia", {}), ("edtalk", {}), ("dpe", {"mode": "expression"}), ("dpe", {"mode": "pose"})]


def images(n=2, b=2, size=32, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(b, 3, size, size, generator=g) * 2 - 1).to(dtype) for _ in range(n)]


def backbone_reference(model, name, options, s, d):
    if name == "edtalk":
        return model(s, driving=d)
    if name == "dpe":
        return model(s, d, mode=options["mode"])
    return model(s, d)


@pytest.mark.parametrize("name,options", CASES, ids=["lia", "edtalk", "dpe-expression", "dpe-pose"])
def test_feature_spec_matches_encoder_output(name, options):
    model = tiny_backbone(name)
    adapter = adapter_for(model, **options)
    enc = adapter.encode(images(1)[0])
    spec = adapter.feature_spec
    assert [tuple(f.shape[1:]) for f in enc.pyramid] == [lv.shape for lv in spec.levels]
    assert enc.latent.shape[1] == spec.latent_dim
    assert spec.identity.height == 8  # nearest to 32 * 32/256 = 4 px among 8, 16, 32


@pytest.mark.parametrize("name,options", CASES, ids=["lia", "edtalk", "dpe-expression", "dpe-pose"])
def test_passthrough_retrofit_reproduces_backbone(name, options):
    model = tiny_backbone(name, torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = retrofit(model, emi=SMALL_EMI, edi=SMALL_EDI, **options).double().eval()
    s, d = images(dtype=torch.float64)
    with torch.no_grad():
        ours, ref = r(s, d), backbone_reference(model, name, options, s, d)
    assert (ours - ref).abs().max() < 1e-9
    # ... and a randomly initialised one does not (the modules are really in the path)
    r2 = retrofit(model, emi=SMALL_EMI, edi=SMALL_EDI, init="random", **options).double().eval()
    with torch.no_grad():
        assert (r2(s, d) - ref).abs().max() > 1e-3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name,options", CASES[:3], ids=["lia", "edtalk", "dpe"])
def test_training_forward_losses_gradients_and_frozen_backbone(name, options):
    model = tiny_backbone(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = retrofit(model, emi=SMALL_EMI, edi=SMALL_EDI, init="random", **options).train()
    assert not model.training, "a frozen backbone stays in eval mode"
    s, d = images()
    out = r(s, d)
    assert set(out.losses) == {"dis", "dmem", "align"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in out.losses.values())
    (out.image.square().mean() + sum(out.losses.values())).backward()
    trainable = dict(r.named_parameters())
    assert all(p.grad is None for k, p in trainable.items() if k.startswith("adapter.backbone."))
    no_grad = [k for k, p in trainable.items() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    opt = torch.optim.Adam(r.trainable_parameters(), lr=1e-2)
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_unfrozen_backbone_trains():
    model = tiny_backbone("lia")
    r = retrofit(model, emi=SMALL_EMI, edi=None, freeze_backbone=False).train()
    s, d = images()
    r(s, d).image.mean().backward()
    assert model.encoder.stem.conv.weight.grad is not None


def test_inference_ignores_driving_identity_map_with_edi_only():
    model = tiny_backbone("lia")
    r = retrofit(model, emi=None, edi=SMALL_EDI, init="random").eval()
    s, d = images()
    k = r.spec.identity_level
    sites = tap_sites(r.taps, "taps.")
    with torch.no_grad():
        base = r(s, d)
        with patch(r, {"m": sites[f"driving.pyramid.{k}"]}, {"m": lambda x: torch.randn_like(x)}):
            patched = r(s, d)
        with patch(r, {"m": sites[f"source.pyramid.{k}"]}, {"m": lambda x: torch.randn_like(x)}):
            changed = r(s, d)
    assert torch.equal(base, patched)
    assert (changed - base).abs().max() > 1e-4


def test_edtalk_decoupled_control_survives_retrofit():
    r = retrofit(tiny_backbone("edtalk"), emi=SMALL_EMI, edi=SMALL_EDI, init="random").eval()
    s, a, b = images(3)
    sites = tap_sites(r.taps, "taps.")
    want = {k: sites[k] for k in ("mouth.alpha", "pose.alpha", "expression.alpha")}
    with torch.no_grad(), capture(r, want) as c1:
        r(s, mouth=a, pose=b, expression=b)
    with torch.no_grad(), capture(r, want) as c2:
        r(s, mouth=b, pose=b, expression=b)
    assert not torch.allclose(c1.one("mouth.alpha"), c2.one("mouth.alpha"))
    assert torch.equal(c1.one("pose.alpha"), c2.one("pose.alpha"))
    assert torch.equal(c1.one("expression.alpha"), c2.one("expression.alpha"))
    # coefficients from elsewhere (audio) replace a bank
    coeff = torch.randn(2, r.backbone.config.mouth_dim)
    with torch.no_grad(), capture(r, want) as c3:
        r(s, driving=b, mouth_coefficients=coeff)
    assert torch.equal(c3.one("mouth.alpha"), coeff)


def test_hook_adapter_matches_builtin_adapter():
    model = tiny_backbone("lia", torch.float64)
    hooked = HookAdapter(model, encoder="encoder", pyramid=[HookSite("encoder", output=(1, i)) for i in range(3)],
                         latent=HookSite("encoder", output=0), motion_input=HookSite("motion_mlp", kind="input"),
                         image_size=32)
    assert hooked.feature_spec == LIAAdapter(model).feature_spec
    r1 = retrofit(LIAAdapter(model), emi=SMALL_EMI, edi=SMALL_EDI, init="random").double().eval()
    r2 = retrofit(hooked, emi=r1.emi, edi=r1.edi).double().eval()
    s, d = images(dtype=torch.float64)
    with torch.no_grad():
        assert (r1(s, d) - r2(s, d)).abs().max() < 1e-12
    r1.train(), r2.train()
    o1, o2 = r1(s, d), r2(s, d)
    assert set(o1.losses) == set(o2.losses)
    assert all(torch.allclose(o1.losses[k], o2.losses[k]) for k in o1.losses)


def test_hook_adapter_unknown_layer_lists_names():
    with pytest.raises(KeyError, match="encoder"):
        HookAdapter(tiny_backbone("lia"), encoder="encodr", pyramid=["encoder.stem"], latent="encoder",
                    motion_input="motion_mlp", image_size=32)


@pytest.mark.parametrize("parts", [("emi", "edi"), ("emi",), ("edi",)])
def test_save_and_load_retrofitted(tmp_path, parts):
    r = retrofit(tiny_backbone("dpe"), emi=SMALL_EMI if "emi" in parts else None,
                 edi=SMALL_EDI if "edi" in parts else None, init="random", mode="pose").eval()
    path = r.save_pretrained(tmp_path / "r.safetensors")
    r2 = load_retrofitted(path)
    assert isinstance(r2.adapter, DPEAdapter) and r2.adapter.mode == "pose"
    s, d = images()
    with torch.no_grad():
        assert torch.equal(r(s, d), r2(s, d))


def test_bad_inputs_raise_clear_errors():
    model = tiny_backbone("lia")
    s, d = images()
    r = retrofit(model, emi=SMALL_EMI, edi=SMALL_EDI).eval()
    with pytest.raises(InputError, match="batch size"):
        r(s, d[:1])
    with pytest.raises(InputError, match="32x32"):
        r(s, torch.zeros(2, 3, 64, 64))
    with pytest.raises(InputError, match="driving"):
        r(s)
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        r(s * 255, d)
    other = tiny_backbone("lia", size=64)
    with pytest.raises(InputError, match="EMI"):
        retrofit(model, emi=EMI.from_spec(LIAAdapter(other).feature_spec, **SMALL_EMI))
    narrow = tiny_backbone("lia", channel_max=16)
    with pytest.raises(InputError, match="EDI"):
        retrofit(model, emi=None, edi=EDI.from_spec(LIAAdapter(narrow).feature_spec, **SMALL_EDI))
    with pytest.raises(InputError, match="both"):
        DPEAdapter(tiny_backbone("dpe"), mode="both")
    r = retrofit(tiny_backbone("edtalk"), emi=None, edi=None).eval()
    with pytest.raises(InputError, match="frames and coefficients"):
        r(s, mouth=d, mouth_coefficients=torch.zeros(2, 20))
    with pytest.raises(TypeError, match="LIA"):
        LIAAdapter(tiny_backbone("dpe"))


def test_relative_motion_equals_lia_relative_mode():
    model = tiny_backbone("lia", torch.float64)
    r = retrofit(model, emi=None, edi=None).double().eval()
    s, d, st = images(3, dtype=torch.float64)
    with torch.no_grad():
        assert (r(s, d, start=st) - model(s, d, driving_start=st)).abs().max() < 1e-9
        assert (r(s, d, start=st) - r(s, d)).abs().max() > 1e-3


def test_batch_one_source_broadcasts_over_driving_frames():
    r = retrofit(tiny_backbone("edtalk"), emi=SMALL_EMI, edi=SMALL_EDI, init="random").double().eval()
    s, d = images(2, b=3, dtype=torch.float64)
    with torch.no_grad():
        many = r(s[:1], d)
        one_by_one = torch.cat([r(s[:1], d[i:i + 1]) for i in range(3)])
    assert many.shape == (3, 3, 32, 32)
    assert (many - one_by_one).abs().max() < 1e-9
    with pytest.raises(InputError, match="batch"):
        r(s[:2], d)


@pytest.mark.parametrize("name,options", CASES, ids=["lia", "edtalk", "dpe-expression", "dpe-pose"])
def test_identity_level_option_moves_emi_and_edi_and_survives_saving(tmp_path, name, options):
    """The level ``plugtalk probe`` finds can be chosen: EMI reads it, EDI restores it, the file keeps it."""
    model = tiny_backbone(name)
    default = adapter_for(model, **options).feature_spec.identity_level
    level = (default + 1) % len(adapter_for(model, **options).feature_spec.levels)
    r = retrofit(model, emi=SMALL_EMI, edi=SMALL_EDI, identity_level=level, **options).eval()
    assert r.spec.identity_level == level != default
    assert r.emi.config.identity_level == level
    assert r.edi.config.channels == r.spec.levels[level].channels
    s, d = images()
    path = r.save_pretrained(tmp_path / "r.safetensors")
    back = load_retrofitted(path)
    assert back.spec.identity_level == level and back.adapter.options()["identity_level"] == level
    with torch.no_grad():
        torch.testing.assert_close(back(s, d), r(s, d))
    with pytest.raises(InputError, match="identity_level"):
        adapter_for(model, identity_level=7, **options)


def test_edtalk_pose_video_reaches_edi_and_l_dis():
    """EDI's query (and EMI's L_dis) use the combined code of every driving frame: changing only the pose
    video changes EDI's fused identity map (skip.<identity level>); one video driving every bank gives
    exactly that video's code."""
    r = retrofit(tiny_backbone("edtalk"), emi=SMALL_EMI, edi=SMALL_EDI, init="random").eval()
    s, a, b = images(3)
    k = r.spec.identity_level
    sites = tap_sites(r.taps, "taps.")
    want = {"skip": sites[f"skip.{k}"], "pose": sites["pose.motion_code"], "mouth": sites["mouth.motion_code"]}
    with torch.no_grad(), capture(r, want) as c1:
        r(s, mouth=a, pose=a, expression=a)
    with torch.no_grad(), capture(r, want) as c2:
        r(s, mouth=a, pose=b, expression=a)
    assert torch.equal(c1.one("mouth"), c2.one("mouth"))
    assert (c1.one("skip") - c2.one("skip")).abs().max() > 1e-4
    # the combined code: one frame -> its code; frames a (mouth, expression) and b (pose) -> their mean
    z_a, z_b = c1.one("mouth"), c2.one("pose")
    assert torch.equal(r.combined_code({"mouth": z_a, "pose": z_a, "expression": z_a}, z_b), z_a)
    torch.testing.assert_close(r.combined_code({"mouth": z_a, "pose": z_b, "expression": z_a}, z_a), (z_a + z_b) / 2)
    r.train()
    d1 = r(s, mouth=a, pose=a, expression=a).losses["dis"]
    d2 = r(s, mouth=a, pose=b, expression=a).losses["dis"]
    assert not torch.equal(d1, d2)


@pytest.mark.parametrize("name,options", CASES[:3], ids=["lia", "edtalk", "dpe"])
def test_emi_bridge_losses_follow_the_gate(name, options):
    """Open bridge: the model is the backbone and only the distillation trains EMI; closing: L_dis joins;
    closed: only L_dis, and no latent is read."""
    model = tiny_backbone(name)
    r = retrofit(model, emi=SMALL_EMI, edi=None, **options).train()
    s, d = images()
    assert set(r(s, d).losses) == {"distill"}
    r.emi.set_bridge_gate(0.5)
    out = r(s, d)
    assert set(out.losses) == {"distill", "dis"}
    out.losses["distill"].backward()
    assert r.emi.token_proj.weight.grad.abs().sum() > 0  # the leak-free path learns the backbone's code
    r.emi.set_bridge_gate(0.0)
    assert set(r(s, d).losses) == {"dis"}
