"""The embedded default model (plugtalk/assets, docs/model_card.md): it ships, loads, and animates real faces.

The quality test compares against the same architecture with fresh random weights on a held-out identity,
so it fails if the shipped weights are corrupt, mis-mapped or silently replaced.
"""

from __future__ import annotations

import json

import pytest
import torch

from plugtalk.weights.plugtalk_format import load_safetensors
from plugtalk.default_model import DEFAULT_MODEL_FILE, default_model_path, load_default_model
from plugtalk.retrofitting import Retrofitted


def test_default_model_ships_in_fp16_with_its_provenance():
    path = default_model_path()
    assert path is not None, f"plugtalk/assets/{DEFAULT_MODEL_FILE} is missing (examples/reference_model.py export)"
    tensors, meta = load_safetensors(path)
    assert meta["kind"] == "retrofit" and meta["backbone"] == "lia"
    floats = [t for t in tensors.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    ref = meta["reference_model"]
    ref = json.loads(ref) if isinstance(ref, str) else ref
    assert ref["variant"] in ("baseline", "emi", "edi", "both") and ref["stored_dtype"] == "float16"
    assert path.stat().st_size < 4e6  # small enough to ship in the wheel


def test_load_default_model_is_an_eval_mode_float32_retrofit():
    model = load_default_model()
    assert isinstance(model, Retrofitted) and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.adapter.image_size == 64
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        y = model(x, x)
    # LIA's decoder output is not clamped: "roughly in [-1, 1]" (on this noise input, not a face, a few
    # values overshoot: 2 of 24 576 beyond 1, the largest 1.62, for the v2 default)
    assert y.shape == (2, 3, 64, 64) and torch.isfinite(y).all() and y.abs().max() < 3
    assert (y.abs() > 1.05).float().mean() < 1e-3


@pytest.mark.slow
def test_default_model_reenacts_a_held_out_identity(shared_data):
    """Self-reenactment on faces/test (never trained on): much closer to the true frames than random weights."""
    import torch.nn.functional as F

    from plugtalk.io.images import to_tensor
    from plugtalk.io.video import read_frames
    from plugtalk import backbones, retrofit

    clip = sorted((shared_data / "faces" / "test").glob("*.mp4"))[0]
    frames = to_tensor(read_frames(clip, max_frames=40)[::4])  # (10, 3, H, W) in [-1, 1]
    frames = F.interpolate(frames, size=(64, 64), mode="area")
    source, driving = frames[:1], frames[1:]

    trained = load_default_model()
    _, meta = load_safetensors(default_model_path())
    cls = backbones.get_backbone_class(meta["backbone"])
    torch.manual_seed(0)
    random = retrofit(cls(cls.config_from(meta["backbone_config"])), emi=None, edi=None).eval()
    with torch.no_grad():
        err_trained = (trained(source, driving) - driving).abs().mean().item()
        err_random = (random(source, driving) - driving).abs().mean().item()
    # the docs' held-out self-reenactment L1 is ~0.1 (in [-1, 1] units); random weights are far off
    print(f"held-out L1: trained {err_trained:.3f}, random {err_random:.3f}")
    assert err_trained < 0.2, err_trained
    assert err_trained < 0.5 * err_random, (err_trained, err_random)


def _variant(path) -> str:
    _, meta = load_safetensors(path)
    ref = meta["reference_model"]
    return (json.loads(ref) if isinstance(ref, str) else ref)["variant"]


def test_default_model_has_the_modules_its_variant_names_in_the_paper_wiring():
    """The shipped default (protocol v2's pick) carries exactly the modules of its variant, trained with the
    paper-faithful wiring: EMI reads no latent once trained (its bridge is closed: perturbing the latent
    leaves the motion code unchanged) and EDI addresses with its learned temperatures."""
    variant = _variant(default_model_path())
    model = load_default_model()
    assert (model.emi is not None) == (variant in ("emi", "both"))
    assert (model.edi is not None) == (variant in ("edi", "both"))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    if model.emi is not None:
        emi = model.emi
        assert emi.config.inputs == "paper" and emi.bridge_gate == 0.0
        with torch.no_grad():
            enc = model.adapter.encode(x)
            z = emi(enc.pyramid, enc.latent)
            assert torch.equal(emi(enc.pyramid, enc.latent + 1.0), z)   # no path from the latent
            moved = [f.clone() for f in enc.pyramid]
            moved[emi.config.identity_level] = moved[emi.config.identity_level] + 1.0
            assert not torch.equal(emi(moved, enc.latent), z)          # the identity level is read (extractor)
    if model.edi is not None:
        assert model.edi.config.addressing == "learned"


def test_shipped_comparison_model_is_the_other_side_of_the_ablation():
    """plugtalk-small-compare.safetensors (compare.mp4's other model) is +both when the baseline ships as the
    default and the baseline otherwise: the same backbone geometry as the default."""
    from plugtalk.weights.load import load_animator
    from plugtalk.default_model import compare_model_path

    path = compare_model_path()
    assert path is not None, "plugtalk/assets/plugtalk-small-compare.safetensors is missing (reference_model export)"
    default = _variant(default_model_path())
    assert _variant(path) == ("both" if default == "baseline" else "baseline")
    other = load_animator(path).model
    assert (other.emi is None and other.edi is None) == (default != "baseline")
    _, meta_o = load_safetensors(path)
    _, meta_d = load_safetensors(default_model_path())
    assert meta_o["backbone"] == meta_d["backbone"] and meta_o["backbone_config"] == meta_d["backbone_config"]
