"""Shared test fixtures: tiny backbones, real-data location."""

from __future__ import annotations

import os

import pytest
import torch

import plugtalk.backbones as B
from plugtalk.shared_data import find_shared

# Keep CI (2 cores) and parallel developers responsive; tests are written for few threads.
torch.set_num_threads(int(os.environ.get("PLUGTALK_TEST_THREADS", "2")))

TINY = dict(size=32, channel_base=512, channel_max=32, style_dim=64)


def tiny_backbone(name: str, dtype=torch.float32, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return B.create(name, **{**TINY, **overrides}).to(dtype).eval()


@pytest.fixture
def shared_data():
    root = find_shared()
    if root is None or not (root / "data").is_dir():
        pytest.skip("real face data not found: set PLUGTALK_SHARED or put shared/ beside the checkout")
    return root / "data"
