"""DPE parity with the official code: expression, pose and both stages, and the one-shot chain."""

import pytest
import torch

import plugtalk.backbones as B
from parity_support import ParityReport, float32_run, float64_run, official_generator, summarize

pytestmark = pytest.mark.parity

# official stage name -> (our mode, official head/decoder names in the order they run)
STAGES = {"exp": ("expression", [("mlp_pose", "dec_pose", "expression")]),
          "pose": ("pose", [("mlp_exp", "dec_exp", "pose")]),
          "both": ("both", [("mlp_pose", "dec_pose", "expression"), ("mlp_exp", "dec_exp", "pose")])}


@pytest.fixture(scope="module")
def dpe_setup(tmp_path_factory):
    return official_generator("dpe", tmp_path_factory.mktemp("dpe"), "dpe.pt")


@pytest.fixture(scope="module")
def dpe64(dpe_setup):
    """Float64 outputs and the sensitivity of every recorded tensor to float32-sized rounding noise."""
    ref, path = dpe_setup
    model = B.load_official("dpe", path, dtype=torch.float64)
    return float64_run(lambda m, x: run_dpe(m[0], x, torch.float64), [model], ref)


def run_dpe(model, ref, dtype):
    src, drv, drv3 = (ref[f"inputs.{k}"].to(dtype) for k in ("source", "driving", "driving_s3"))
    out = {}
    with torch.no_grad():
        for official, (mode, chain) in STAGES.items():
            r = model(src, drv, mode=mode, return_intermediates=True)
            out[f"outputs.image_{official}"] = r.image
            p = f"stage_{official}"
            out[f"{p}.enc.latent_source"] = r["source.latent"]
            out[f"{p}.enc.latent_driving"] = r["driving.latent"]
            out[f"{p}.alpha_driving"] = r["driving.alpha"]
            out[f"{p}.direction_driving"] = r["driving.direction"]
            for head, dec, ours in chain:
                out[f"{p}.{head}.out"] = r[f"{ours}.edit"]
            if official == "both":
                out[f"{p}.dec_pose.latent"] = r["expression.latent"]
                summarize(f"{p}.dec_pose.flows", [r[f"expression.flow.{i}"] for i in range(6)], out)
                out[f"{p}.enc2.latent"] = r["reencoded.latent"]
                summarize(f"{p}.feats2", [r[f"pyramid.{i}"] for i in range(6)], out)
                out[f"{p}.dec_exp.latent"] = r["latent"]
                summarize(f"{p}.dec_exp.flows", [r[f"flow.{i}"] for i in range(6)], out)
            else:
                dec = chain[0][1]
                out[f"{p}.{dec}.latent"] = r["latent"]
                summarize(f"{p}.{dec}.flows", [r[f"flow.{i}"] for i in range(6)], out)
                summarize("feats", [r[f"pyramid.{i}"] for i in range(6)], out)
        # run_demo_single.py's one-shot chain: expression from `driving`, then pose from `driving_s3`
        # on the unclamped intermediate (hence reenact(), which skips the [-1, 1] input check).
        first = model.reenact(src, drv, "expression")
        r = model.reenact(first, drv3, "pose", return_intermediates=True)
        out["outputs.image_single"] = r.image
        out["single.enc.latent_source"] = r["source.latent"]
        out["single.enc.latent_driving"] = r["driving.latent"]
        out["single.alpha_driving"] = r["driving.alpha"]
        out["single.direction_driving"] = r["driving.direction"]
        out["single.mlp_exp.out"] = r["pose.edit"]
        out["single.dec_exp.latent"] = r["latent"]
        out["dir.Q"] = model.dictionary.basis()
    return out


def compare(ref, out, dtype, sensitivity=None) -> None:
    recorded = {k for k in ref if not k.startswith("inputs.")}
    assert recorded <= set(out), f"recorded DPE tensors not compared: {sorted(recorded - set(out))}"
    report = ParityReport(ref, dtype, sensitivity)
    report.check_all({k: v for k, v in out.items() if k in recorded})
    report.assert_ok()


def test_dpe_float64_matches_official(dpe_setup, dpe64):
    compare(dpe_setup[0], dpe64[0], torch.float64)


def test_dpe_float32_matches_official(dpe_setup, dpe64):
    ref, path = dpe_setup
    model = B.load_official("dpe", path, dtype=torch.float32)
    compare(ref, float32_run(lambda m, x: run_dpe(m[0], x, torch.float32), [model], ref), torch.float32, dpe64[1])
