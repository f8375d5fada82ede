"""LIA parity with the official code (float64 reference from ../shared/fixtures)."""

import pytest
import torch

import plugtalk.backbones as B
from parity_support import ParityReport, load_manifest, load_reference, summarize, write_official_checkpoint

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def lia_setup(tmp_path_factory):
    manifest, ref = load_manifest("lia"), load_reference("lia")
    path = write_official_checkpoint(manifest, "generator", tmp_path_factory.mktemp("lia") / "vox.pt", "gen")
    return manifest, ref, path


def run_lia(model, ref, dtype):
    src, drv, start = (ref[f"inputs.{k}"].to(dtype) for k in ("source", "driving", "driving_s3"))
    out = {}
    with torch.no_grad():
        r = model(src, drv, return_intermediates=True)
        out["outputs.image"] = r.image
        out["enc.latent_source"] = r["source.latent"]
        out["enc.alpha_driving"] = r["driving.alpha"]
        out["dec.direction_driving"] = r["driving.direction"]
        out["dec.latent"] = r["latent"]
        out["dec.Q"] = model.dictionary.basis()
        summarize("feats", [r[f"pyramid.{i}"] for i in range(6)], out)
        summarize("flows", [r[f"flow.{i}"] for i in range(6)], out)
        out["rel.h_start"] = model.motion_coefficients(model.encode(start).latent)
        rr = model(src, drv, driving_start=start, return_intermediates=True)
        out["outputs.image_relative"] = rr.image
        out["rel.alpha_driving"] = rr["driving.alpha"]
        out["rel.alpha_source"] = rr["source.alpha"]
        out["rel.direction_driving"] = rr["driving.direction"]
        out["rel.direction_source"] = rr["source.direction"]
        out["rel.direction_start"] = rr["start.direction"]
        out["rel.latent"] = rr["latent"]
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_lia_matches_official(lia_setup, dtype):
    manifest, ref, path = lia_setup
    model = B.load_official("lia", path, dtype=dtype)
    report = ParityReport(manifest, ref, dtype)
    outputs = run_lia(model, ref, dtype)
    assert set(outputs) >= {k for k in ref if not k.startswith("inputs.")}, "a recorded LIA tensor was not compared"
    report.check_all(outputs)
    report.assert_ok()
