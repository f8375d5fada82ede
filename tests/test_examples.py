"""The examples run end to end on real data."""

import subprocess
import sys
from pathlib import Path

import pytest

from plugtalk.io.video import probe_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_retrofit_lia_example_animates_a_real_face(tmp_path, shared_data):
    out = tmp_path / "retrofit.mp4"
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "retrofit_lia.py"), "--frames", "3", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    info = probe_video(out)
    assert info.frame_count == 3 and (info.height, info.width) == (256, 768)
    assert "EMI/EDI" in res.stdout
