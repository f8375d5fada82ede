"""DPE parity with the official code: expression, pose and both stages, and the one-shot chain."""

import pytest
import torch

import plugtalk.backbones as B
from parity_support import ParityReport, float32_run, float64_run, official_generator
from plugtalk.parity import run_dpe

pytestmark = pytest.mark.parity

@pytest.fixture(scope="module")
def dpe_setup(tmp_path_factory):
    return official_generator("dpe", tmp_path_factory.mktemp("dpe"), "dpe.pt")


@pytest.fixture(scope="module")
def dpe64(dpe_setup):
    """Float64 outputs and the sensitivity of every recorded tensor to float32-sized rounding noise."""
    ref, path = dpe_setup
    model = B.load_official("dpe", path, dtype=torch.float64)
    return float64_run(lambda m, x: run_dpe(m[0], x, torch.float64), [model], ref)


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
