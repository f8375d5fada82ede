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


def _reference_model_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reference_model", ROOT / "examples" / "reference_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_model_table_means_paired_differences_and_budget(tmp_path):
    """The model card's table: mean ± std per cell, (n=k) where pairs had no face, paired Δ to baseline,
    and a resumed run's budget counted once."""
    import json
    import types

    rm = _reference_model_module()
    pairs = {
        "baseline": {"cross": [{"source": "a", "driving": "b", "csim": 0.8, "niqe": 10.0},
                               {"source": "b", "driving": "a", "csim": "nan", "niqe": 12.0}],
                     "self": [{"source": "a", "driving": "a", "psnr": 20.0}]},
        "emi": {"cross": [{"source": "a", "driving": "b", "csim": 0.9, "niqe": 9.0},
                          {"source": "b", "driving": "a", "csim": 0.7, "niqe": 13.0}],
                "self": [{"source": "a", "driving": "a", "psnr": 21.5}]},
    }
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "pairs.json").write_text(json.dumps(pairs))
    run = tmp_path / "emi"
    run.mkdir()
    (run / "config.yaml").write_text("data: {batch_size: 8}\nlog: {every: 50}\n")
    logged = [{"step": 50, "speed/images_per_s": 10.0}, {"step": 100, "speed/images_per_s": 20.0},
              {"step": 100, "speed/images_per_s": 40.0}]  # step 100 logged again after a resume
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in logged))
    rm.table(types.SimpleNamespace(runs=tmp_path, frames=100))
    text = (tmp_path / "eval" / "results.md").read_text()
    summary = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert "| baseline | 0.800 ± 0.000 (n=1) | 11.000 ± 1.414 |" in text
    assert summary["emi"]["cross.csim"][:2] == pytest.approx([0.8, 0.1414], abs=1e-4)
    assert summary["emi"]["cross.csim.minus_baseline"] == pytest.approx([0.1, 0.0, 1])  # only the pair both scored
    assert summary["emi"]["self.psnr.minus_baseline"][0] == pytest.approx(1.5)
    assert "| emi | 100 | 800 | 0.01 h |" in text  # 50*8/10 + 50*8/40 = 50 s


@pytest.mark.slow
def test_reference_model_evaluate_runs_plugtalk_animate_and_eval(tmp_path, shared_data):
    """`evaluate` on a stand-in for a trained variant (the shipped default model), on a fixed small sample
    (the first 2 test clips by name, 2 frames per video) so the test's cost does not grow with the data."""
    import json
    import shutil

    from plugtalk.pretrained import default_model_path

    clips = sorted((shared_data / "faces" / "test").glob("*.mp4"))[:2]
    if len({c.stem.split("__")[0] for c in clips}) < 2:
        pytest.skip("the shared test split needs two identities")
    names = [c.stem.split("__")[0] for c in clips]
    (tmp_path / "both").mkdir()
    shutil.copy(default_model_path(), tmp_path / "both" / "model.safetensors")
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "reference_model.py"), "evaluate", "--runs",
                          str(tmp_path), "--variants", "both", "--frames", "2", "--max-clips", "2"],
                         capture_output=True, text=True, timeout=3600)  # a guard against hangs, not a speed target
    assert res.returncode == 0, res.stderr[-3000:]
    pairs = json.loads((tmp_path / "eval" / "pairs.json").read_text())
    assert sorted((p["source"], p["driving"]) for p in pairs["both"]["self"]) == [(n, n) for n in names]
    assert sorted((p["source"], p["driving"]) for p in pairs["both"]["cross"]) == sorted(
        [(names[0], names[1]), (names[1], names[0])])
    assert all(10 < float(p["psnr"]) < 40 for p in pairs["both"]["self"])
    assert all(float(p["psnr"]) != float("inf") for p in pairs["copy-source"]["self"])  # frame 0 left out
    assert len(pairs["copy-source"]["self"]) == 2 and len(pairs["64px-ceiling"]["self"]) == 2
    assert "| both |" in (tmp_path / "eval" / "results.md").read_text()
