"""Support for the official-code parity tests (see ../shared/fixtures/README.md).

The machinery (weight rule, recorders, sensitivity rule, :class:`ParityReport`) lives in
:mod:`plugtalk.parity`, shared with ``benchmarks/gpu_report.py``'s CUDA parity step; this module adds the
pytest side: a test whose fixtures are absent is skipped with a reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from plugtalk import parity
from plugtalk.parity import (ROUNDING_NOISE, SAFETY32, SUMMARY_PARTS, UNIT_ROUNDOFF32, ParityReport,  # noqa: F401
                             assert_dtype_kept, deviations, first_item, float32_run, float64_run, record_dtypes,
                             rounding_noise, rule_state_dict, summarize, write_official_checkpoint)
from plugtalk.shared_data import find_shared

FIXTURES = (find_shared() / "fixtures") if find_shared() else None


def require_fixtures(backbone: str) -> Path:
    try:
        return parity.fixture_paths(backbone, FIXTURES)[0].parent
    except parity.FixturesMissing:
        pytest.skip("parity fixtures not found: set PLUGTALK_SHARED or put shared/ beside the checkout")


def load_manifest(backbone: str) -> dict:
    return parity.load_manifest(backbone, require_fixtures(backbone))


def load_reference(backbone: str) -> dict[str, torch.Tensor]:
    return parity.load_reference(backbone, require_fixtures(backbone))


def official_generator(backbone: str, directory: Path, filename: str, container: str = "gen"
                       ) -> tuple[dict[str, torch.Tensor], Path]:
    """The backbone's recorded reference outputs and its generator fixture written as an official checkpoint."""
    return parity.official_generator(backbone, directory, filename, container, require_fixtures(backbone))
