"""plugtalk bench: model-only and end-to-end timings are produced for every backbone and variant (mechanics
only, at a small size; no speed is asserted - figures belong in benchmarks, not in tests)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from plugtalk.speed import STAGES, bench_end_to_end, layouts_for
from plugtalk.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_bench_cli_times_model_only_and_end_to_end(tmp_path):
    report = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", "--size", "32", "-b", "edtalk", "-b", "dpe", "-v", "base", "-v", "both",
                              "--batch", "2", "--frames", "3",
                              "--warmup", "0", "--iters", "1", "--e2e-warmup", "0", "--e2e-iters", "1",
                              "--device", "cpu", "--json", str(report)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "model only" in text and "end to end" in text and "torch=" in text and "device=cpu" in text
    r = json.loads(report.read_text())
    assert {"torch", "numpy", "av", "python", "device", "threads"} <= set(r["environment"])
    combos = {(b, v, n) for b in ("edtalk", "dpe") for v in ("base", "both") for n in (2,)}
    assert {(x["backbone"], x["variant"], x["batch"]) for x in r["model_only"]} == combos
    assert {(x["backbone"], x["variant"], x["batch"]) for x in r["end_to_end"]} == combos
    for x in r["model_only"]:
        assert x["fps"] > 0 and (x["added_parameters_m"] > 0) == (x["variant"] != "base")
    for x in r["end_to_end"]:
        assert x["frames"] == 3 and x["fps"] > 0 and x["model_fps"] >= x["fps"]
        assert set(STAGES) <= set(x["stages"]) and x["stages"]["total"] >= x["stages"]["model"]


def test_end_to_end_covers_every_stage_and_honours_the_batch():
    r = bench_end_to_end("lia", "both", batch=2, size=32, frames=3, warmup=0, iters=1)
    assert r.frames == 3 and r.batch == 2 and r.dtype == "float32" and r.options == ""
    assert all(r.stages[k] > 0 for k in ("source", "detect", "decode", "model", "write"))
    assert r.fps == pytest.approx(3 / (r.ms_per_clip / 1000))


def test_cuda_defaults_time_channels_last_and_compile():
    assert layouts_for("cpu") == [(False, False)]
    assert layouts_for("cuda") == [(False, False), (True, False), (False, True)]
    assert layouts_for("cuda", channels_last=True) == [(True, False)]


def test_bench_cli_rejects_unknown_variant_and_dtype():
    for args, expected in ((["-v", "fast"], "unknown variant"), (["--dtype", "int8"], "unknown dtype")):
        res = runner.invoke(app, ["bench", "--size", "32", "--no-e2e", *args])
        assert res.exit_code == 2 and expected in res.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_end_to_end_on_cuda_with_bf16_and_channels_last():
    r = bench_end_to_end("edtalk", "both", batch=2, device="cuda", dtype=torch.bfloat16, channels_last=True,
                         size=64, frames=3, warmup=0, iters=1)
    assert r.frames == 3 and r.dtype == "bfloat16" and r.options == "channels_last"
