"""EDTalk parity with the official code: video, expression-weight and audio-driven entry points and
the Audio2Lip audio model (float64 reference from ../shared/fixtures)."""

import pytest
import torch

import plugtalk.backbones as B
from plugtalk.layers import gaussian_smooth
from parity_support import (ParityReport, float32_run, float64_run, load_manifest, load_reference, summarize,
                            write_official_checkpoint)

pytestmark = pytest.mark.parity

OFFICIAL_BANK = {"mouth": "lip", "pose": "pose", "expression": "exp"}


@pytest.fixture(scope="module")
def edtalk_setup(tmp_path_factory):
    manifest, ref = load_manifest("edtalk"), load_reference("edtalk")
    d = tmp_path_factory.mktemp("edtalk")
    gen = write_official_checkpoint(manifest, "generator", d / "EDTalk.pt", "gen")
    audio = write_official_checkpoint(manifest, "audio2lip", d / "Audio2Lip.pt", "audio2lip")
    return ref, gen, audio


def load_models(setup, dtype):
    _, gen_path, audio_path = setup
    return [B.load_official("edtalk", gen_path, dtype=dtype), B.load_official("edtalk-audio", audio_path, dtype=dtype)]


@pytest.fixture(scope="module")
def edtalk64(edtalk_setup):
    """Float64 outputs and the sensitivity of every recorded tensor to float32-sized rounding noise."""
    ref = edtalk_setup[0]
    return float64_run(lambda m, x: run_edtalk(*m, x, torch.float64), load_models(edtalk_setup, torch.float64), ref)


def record_call(prefix, r, out, banks_from_frames):
    out[f"{prefix}.enc.latent_source"] = r["source.latent"]
    for bank in banks_from_frames:
        o = OFFICIAL_BANK[bank]
        out[f"{prefix}.enc.latent_{o}"] = r[f"{bank}.latent"]
        out[f"{prefix}.{o}_fc.input"] = r[f"{bank}.trunk"]
        out[f"{prefix}.{o}_fc.alpha"] = r[f"{bank}.alpha"]
    out[f"{prefix}.alpha_all"] = r["alpha"]
    out[f"{prefix}.directions"] = r["direction"]
    out[f"{prefix}.dec.latent"] = r["latent"]
    out[f"{prefix}.dec.exp_feature"] = r["expression_direction"]
    summarize(f"{prefix}.eem", [r[f"feature.{i}"] for i in range(6)], out)
    summarize(f"{prefix}.flows", [r[f"flow.{i}"] for i in range(6)], out)


def run_edtalk(model, audio, ref, dtype):
    x = {k: ref[f"inputs.{k}"].to(dtype) for k in ("source", "driving", "driving_s3", "driving_s4",
                                                     "exp_weights", "lip_alpha", "mel")}
    out = {}
    with torch.no_grad():
        r = model(x["source"], mouth=x["driving"], pose=x["driving_s3"], expression=x["driving_s4"],
                  return_intermediates=True)
        out["outputs.image_video"] = r.image
        record_call("video", r, out, ("mouth", "pose", "expression"))
        summarize("feats", [r[f"pyramid.{i}"] for i in range(6)], out)

        r = model(x["source"], mouth=x["driving"], pose=x["driving_s3"], expression_weights=x["exp_weights"],
                  return_intermediates=True)
        out["outputs.image_video_expw"] = r.image
        record_call("video_expw", r, out, ("mouth", "pose"))

        r = model(x["source"], mouth_coefficients=x["lip_alpha"], pose=x["driving_s3"], expression=x["driving_s4"],
                  return_intermediates=True)
        out["outputs.image_audio"] = r.image
        record_call("audio_drive", r, out, ("pose", "expression"))

        r = model(x["source"], mouth_coefficients=x["lip_alpha"], pose=x["driving_s3"],
                  expression_weights=x["exp_weights"], return_intermediates=True)
        out["outputs.image_audio_expw"] = r.image
        record_call("audio_drive_expw", r, out, ("pose",))

        q = model.banks.basis()
        out["dir.Q_all"] = q
        out["dir.Q_lipnonlip"] = B.edtalk.orthonormal_basis(torch.cat([model.banks.mouth, model.banks.pose], 1))
        out["dir.Q_exp_only"] = B.edtalk.orthonormal_basis(model.banks.expression)

        out["audio.embedding"] = audio.embed(x["mel"])
        lip = audio(x["mel"].unsqueeze(0))
        out["audio.lip_raw"] = lip
        out["audio.lip_smoothed"] = gaussian_smooth(lip[0].float())
    return out


def compare(ref, out, dtype, sensitivity=None) -> None:
    recorded = {k for k in ref if not k.startswith("inputs.")}
    assert recorded <= set(out), f"recorded EDTalk tensors not compared: {sorted(recorded - set(out))}"
    report = ParityReport(ref, dtype, sensitivity)
    report.check_all({k: v for k, v in out.items() if k in recorded})
    report.assert_ok()


def test_edtalk_float64_matches_official(edtalk_setup, edtalk64):
    compare(edtalk_setup[0], edtalk64[0], torch.float64)


def test_edtalk_float32_matches_official(edtalk_setup, edtalk64):
    ref = edtalk_setup[0]
    out = float32_run(lambda m, x: run_edtalk(*m, x, torch.float32), load_models(edtalk_setup, torch.float32), ref)
    compare(ref, out, torch.float32, edtalk64[1])
