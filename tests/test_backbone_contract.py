"""The same contract for every registered backbone, driven by the registry as timm's tests are by
``list_models()`` (issue 22.3): a backbone added to the registry is checked without editing this file.

Every backbone: create (tiny geometry), save / load the plugtalk file (same weights, same output).  Every
animator besides: a forward through its adapter's example inputs, retrofit with EDI (and EMI where the
adapter accepts it) and save / load the retrofit file, the probe's taps, and ONNX export (slow; not yet for
GoHD, marked as an expected failure).
"""

from __future__ import annotations

import pytest
import torch

import plugtalk.backbones as B
from conftest import TINY
from plugtalk import load_retrofitted, retrofit

NAMES = B.list_backbones()
ANIMATORS = list(B.animator_backbones())


def make(name: str):
    torch.manual_seed(0)
    entry = B.backbone_entry(name)
    return (B.create(name, **TINY) if entry.animator else B.create(name)).eval()


def example(model, batch: int = 2):
    g = torch.Generator().manual_seed(1)
    s = model.adapter.image_size
    source = torch.rand(batch, 3, s, s, generator=g) * 2 - 1
    return source, model.adapter.example_inputs(batch, g)


def test_every_registered_backbone_is_covered():
    assert {"lia", "edtalk", "dpe", "gohd", "edtalk-audio"} <= set(NAMES)
    assert set(ANIMATORS) <= set(NAMES) and "edtalk-audio" not in ANIMATORS
    for name in ANIMATORS:  # an animator's registry entry names a loadable adapter
        assert B.backbone_entry(name).adapter_class().__name__.endswith("Adapter")


@pytest.mark.parametrize("name", NAMES)
def test_create_save_load(name, tmp_path):
    model = make(name)
    assert model.name == name and isinstance(model, B.get_backbone_class(name))
    path = model.save_pretrained(tmp_path / f"{name}.safetensors")
    again = B.load(path)
    assert type(again) is type(model) and again.config == model.config
    ours, theirs = model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("name", ANIMATORS)
def test_forward_retrofit_and_retrofit_file(name, tmp_path):
    backbone = make(name)
    plain = retrofit(backbone, emi=None, edi=None).eval()
    source, inputs = example(plain)
    with torch.inference_mode():
        out = plain(source, **inputs)
    s = plain.adapter.image_size
    assert out.shape == (2, 3, s, s) and torch.isfinite(out).all()
    emi = True if plain.adapter.accepts_emi else None
    model = retrofit(backbone, emi=emi, edi=True).eval()
    with torch.inference_mode():
        fixed = model(source, **inputs)
    # a fresh retrofit is a pass-through: the backbone's own output until EMI/EDI are trained
    assert torch.allclose(fixed, out, atol=1e-5, rtol=0)
    path = model.save_pretrained(tmp_path / f"{name}-rf.safetensors")
    again = load_retrofitted(path).eval()
    with torch.inference_mode():
        assert torch.equal(again(source, **inputs), fixed)
    assert (again.emi is None) == (emi is None) and again.edi is not None


@pytest.mark.parametrize("name", ANIMATORS)
def test_probe_taps(name):
    from plugtalk.probe import describe_taps

    described = describe_taps(make(name))
    taps = described["taps"]
    assert taps and described["identity_level"].startswith("pyramid.")
    assert all(len(info.shape) >= 1 for info in taps.values())


def _export_case(name: str):
    if not B.backbone_entry(name).adapter_class().driving_fills:
        # found by this test: export_onnx feeds no coefficient window, so GoHD stops with its adapter's
        # "a coefficient window is required"; strict, so the test says when the exporter learns controls
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason="ONNX export of a control-driven "
                                                          "animator (GoHD) is not supported yet"))
    return name


@pytest.mark.slow
@pytest.mark.parametrize("name", [_export_case(n) for n in ANIMATORS])
def test_onnx_export(name, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from plugtalk.deploy.onnx_export import export_onnx

    result = export_onnx(retrofit(make(name), emi=None, edi=None).eval(), tmp_path / name)
    assert (tmp_path / name / "plugtalk-onnx.json").is_file() and result is not None
