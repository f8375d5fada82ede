"""Real media from the shared folder for the io / crop / prepare / dataset tests (skip when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugtalk.shared_data import SharedDataMissing, shared_path


def shared_file(*parts: str) -> Path:
    """Path of a shared file, or skip the test with the reason."""
    try:
        return shared_path(*parts)
    except SharedDataMissing as e:
        pytest.skip(f"real data not available: {e}")


def train_clip(name: str = "obama__obama_00") -> Path:
    return shared_file("data", "faces", "train", f"{name}.mp4")


def faces_dir(split: str = "train") -> Path:
    return shared_file("data", "faces", split)
