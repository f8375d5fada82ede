"""LIA parity with the official code (float64 reference from ../shared/fixtures).

The float64 model is run once (module fixture) and shared by the float64 check and, through its response
to float32-sized rounding noise, the float32 tolerance (see parity_support.ParityReport)."""

import pytest
import torch

import plugtalk.backbones as B
from parity_support import ParityReport, float32_run, float64_run, official_generator
from plugtalk.parity import run_lia

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def lia_setup(tmp_path_factory):
    return official_generator("lia", tmp_path_factory.mktemp("lia"), "vox.pt")


@pytest.fixture(scope="module")
def lia64(lia_setup):
    """Float64 outputs and the sensitivity of every recorded tensor to float32-sized rounding noise."""
    ref, path = lia_setup
    model = B.load_official("lia", path, dtype=torch.float64)
    return float64_run(lambda m, x: run_lia(m[0], x, torch.float64), [model], ref)


def compare(ref, outputs, dtype, sensitivity=None) -> ParityReport:
    assert set(outputs) >= {k for k in ref if not k.startswith("inputs.")}, "a recorded LIA tensor was not compared"
    report = ParityReport(ref, dtype, sensitivity)
    report.check_all(outputs)
    return report


def test_lia_float64_matches_official(lia_setup, lia64):
    ref, _ = lia_setup
    compare(ref, lia64[0], torch.float64).assert_ok()


def test_lia_float32_matches_official(lia_setup, lia64):
    ref, path = lia_setup
    model = B.load_official("lia", path, dtype=torch.float32)
    compare(ref, float32_run(lambda m, x: run_lia(m[0], x, torch.float32), [model], ref), torch.float32, lia64[1]).assert_ok()


def test_lia_float32_check_catches_a_silent_downcast(lia_setup, lia64):
    """The float32 tolerance is not so loose that it passes a float32 model with one layer rounded to
    float16 (a silent downcast that keeps the float32 dtype, so only the numbers can show it)."""
    ref, path = lia_setup
    model = B.load_official("lia", path, dtype=torch.float32)
    model.generator.levels[0].conv.register_forward_hook(lambda m, args, out: out.half().float())
    with torch.no_grad():
        image = model(ref["inputs.source"], ref["inputs.driving"])
    report = ParityReport(ref, torch.float32, lia64[1])
    report.check("outputs.image", image)
    assert [k for k, *_ in report.failures()] == ["outputs.image"]


def test_float32_dtype_check_catches_half_buffers_and_stray_float64():
    """The dtype checks of every float32 parity run fail for a buffer left in half precision and for a
    submodule that returns float64 (tiny LIA, no fixtures needed)."""
    from conftest import tiny_backbone

    def check(model):
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        float32_run(lambda m, r: {"outputs.image": m[0](r["inputs.source"], r["inputs.source"])}, [model],
                    {"inputs.source": x})

    check(tiny_backbone("lia"))  # the clean model passes
    model = tiny_backbone("lia")
    blur = next(m for m in model.modules() if hasattr(m, "kernel"))
    blur.kernel = blur.kernel.half()
    with pytest.raises(AssertionError, match="kernel: torch.float16"):
        check(model)
    model = tiny_backbone("lia")
    model.generator.levels[0].rgb.register_forward_hook(lambda m, args, out: out.double())
    with pytest.raises(AssertionError, match="returned torch.float64"):
        check(model)
