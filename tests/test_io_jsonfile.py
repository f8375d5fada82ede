"""Strict JSON: one converter, two policies for non-finite numbers (metric reports vs probe scores)."""

import json
from pathlib import Path

import numpy as np
import pytest

from plugtalk.io.jsonfile import to_jsonable, write_json


def test_to_jsonable_converts_numpy_paths_and_nonfinite_values():
    obj = {1: np.array([1.5, np.nan]), "p": Path("/a/b"), "x": (np.float32(np.inf), np.int64(3), np.bool_(True)),
           "neg": -float("inf")}
    assert to_jsonable(obj) == {"1": [1.5, "nan"], "p": "/a/b", "x": ["inf", 3, True], "neg": "-inf"}
    assert to_jsonable(obj, nonfinite="null") == {"1": [1.5, None], "p": "/a/b", "x": [None, 3, True], "neg": None}
    with pytest.raises(ValueError, match="nonfinite"):
        to_jsonable(obj, nonfinite="drop")


def test_write_json_is_strict_and_atomic(tmp_path):
    out = write_json(tmp_path / "r.json", {"psnr": float("inf")})
    assert json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict token {c}")) == {"psnr": "inf"}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
