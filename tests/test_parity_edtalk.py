"""EDTalk parity with the official code: video, expression-weight and audio-driven entry points and
the Audio2Lip audio model (float64 reference from ../shared/fixtures)."""

import pytest
import torch

import plugtalk.backbones as B
from parity_support import ParityReport, float32_run, float64_run, load_manifest, load_reference, write_official_checkpoint
from plugtalk.parity import run_edtalk

pytestmark = pytest.mark.parity

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
