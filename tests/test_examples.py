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


def _row(kind, key, style, scores, pose=10.0, expr=0.1):
    return {"kind": kind, "key": key, "source": key.split("__")[0], "style": style, "source_face": True,
            "pose_diff": pose, "expression_dist": expr, "scores": scores}


def test_reference_model_table_cis_subsets_selection_and_budget(tmp_path):
    """The model card's tables: mean ± sd per cell, paired Δ to baseline with a bootstrap CI and ✓ only when it
    excludes 0, photo / stylised and top-third subsets, the comparison with copy-source, the fixed selection
    rule, and a resumed run's budget counted once."""
    import json
    import types

    rm = _reference_model_module()
    rng = __import__("numpy").random.default_rng(0)
    rows = []
    for i in range(30):
        base_shift = float(rng.normal(0.05, 0.02))
        rows.append(_row("cross", f"s{i}__d", "photo" if i % 3 else "stylised", {
            "baseline": {"identity_shift": base_shift, "csim": 0.9},
            "emi": {"identity_shift": base_shift - 0.01, "csim": 0.9 + float(rng.normal(0, 0.01))},   # resolved
            "copy-source": {"identity_shift": 0.0, "csim": 1.0}}, pose=float(i)))
    for i in range(4):
        rows.append(_row("self", f"c{i}__c{i}", "photo", {
            "baseline": {"psnr": 20.0 + i, "ssim": 0.7}, "emi": {"psnr": 20.3 + i, "ssim": 0.71},
            "copy-source": {"psnr": 22.0 + i, "ssim": 0.8}}))
    (tmp_path / "eval").mkdir()
    config = {"variants": ["baseline", "emi"], "frames": 10, "self_frames": 40, "driver_frames": 100,
              "score_size": 256, "jobs": 1, "seconds": 60.0}
    (tmp_path / "eval" / "pairs.json").write_text(json.dumps({"config": config, "rows": rows}))
    run = tmp_path / "emi"
    run.mkdir()
    (run / "config.yaml").write_text("data: {batch_size: 8}\nlog: {every: 50}\n")
    logged = [{"step": 50, "speed/images_per_s": 10.0}, {"step": 100, "speed/images_per_s": 20.0},
              {"step": 100, "speed/images_per_s": 40.0}]  # step 100 logged again after a resume
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in logged))
    rm.table(types.SimpleNamespace(runs=tmp_path))
    text = (tmp_path / "eval" / "results.md").read_text()
    summary = json.loads((tmp_path / "eval" / "results.json").read_text())
    allp = summary["cross"]["all cross-reenactment pairs"]
    d = allp["emi"]["minus_baseline"]["identity_shift"]
    assert d["estimate"] == pytest.approx(-0.01) and d["resolved"] and d["high"] < 0
    top = [k for k in summary["cross"] if k.startswith("top third by head-pose")][0]
    assert allp["baseline"]["identity_shift"]["n"] == 30 and summary["cross"][top]["baseline"]["identity_shift"]["n"] == 10
    assert summary["cross"]["photo sources"]["baseline"]["csim"]["n"] == 20
    terciles = summary["terciles"]["pose_diff"]["emi"]["identity_shift"]
    assert [t["n"] for t in terciles] == [10, 10, 10] and all(t["estimate"] == pytest.approx(-0.01) for t in terciles)
    assert summary["self"]["emi"]["minus_copy-source"]["psnr"]["estimate"] == pytest.approx(-1.7)
    assert summary["selection"]["chosen"] == "emi"  # PSNR within 0.5 dB of the best and the lower shift
    assert "| emi | 100 | 800 | 0.01 h |" in text  # 50*8/10 + 50*8/40 = 50 s
    assert "| emi |" in text and "no |" in text   # does not beat copy-source


def test_reference_protocol_pairs_come_from_the_folder(shared_data):
    """Cross pairs: every source x every test clip of another identity (never the same person on both sides);
    self pairs: each test clip from its own first frame; counts derived from the folder."""
    rm = _reference_model_module()  # puts reference_protocol on the path
    import reference_protocol as P

    data = shared_data
    clips, srcs = P.test_clips(data), P.sources(data)
    stills = sorted((data / "stills").glob("*.png"))
    assert len(srcs) == len(stills) + len(clips)
    cross = P.cross_pairs(data)
    assert all(p.source.identity != p.driving_identity for p in cross)
    expected = sum(sum(P.clip_identity(c, P.manifest(data)) != s.identity for c in clips) for s in srcs)
    assert len(cross) == expected and len({p.key for p in cross}) == len(cross)
    assert len(cross) >= 100  # several hundred with the v2 set
    own = P.self_pairs(data)
    assert len(own) == len(clips) and all(p.source.path == p.driving for p in own)
    styles = {s.style for s in srcs}
    assert styles == {"photo", "stylised"}
    assert all(s.style == "photo" for s in srcs if s.is_clip)
    assert P.style_of("marble bust") == "stylised" and P.style_of("black-and-white photo") == "photo"
    assert rm is not None


def test_reference_protocol_frame_choice_and_spread():
    rm = _reference_model_module()
    import reference_protocol as P

    assert P.frame_indices(100, 10) == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]
    assert P.frame_indices(5, 10, start=1) == [1, 2, 3, 4]      # frame 0 (the source) never scored in self
    assert P.frame_indices(1, 3, start=1) == []
    items = list(range(50))
    assert P.spread(items, 3) == [0, 24, 49] and P.spread(items, None) == items
    assert rm is not None


@pytest.mark.slow
def test_reference_model_evaluate_end_to_end_on_three_pairs(tmp_path, shared_data):
    """`evaluate` on stand-ins for two trained variants (the shipped default model), 2 cross + 1 self pair,
    2 frames each, in-process."""
    import json
    import shutil

    from plugtalk.default_model import default_model_path

    for v in ("baseline", "both"):
        (tmp_path / v).mkdir()
        shutil.copy(default_model_path(), tmp_path / v / "model.safetensors")
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "reference_model.py"), "evaluate", "--runs",
                          str(tmp_path), "--max-pairs", "2", "--max-self", "1", "--frames", "2", "--self-frames", "2",
                          "--jobs", "1"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads((tmp_path / "eval" / "pairs.json").read_text())["rows"]
    assert [r["kind"] for r in rows] == ["cross", "cross", "self"]
    for r in rows:
        assert {"baseline", "both", "copy-source"} <= set(r["scores"]) and len(r["frames"]) == 2
        assert r["scores"]["baseline"] == r["scores"]["both"]  # the same weights score the same
    cross = rows[0]["scores"]
    assert 0 <= cross["baseline"]["faces_found"] <= 1 and cross["copy-source"]["faces_found"] == 1
    assert cross["copy-source"]["identity_shift"] == 0.0 and cross["copy-source"]["csim"] == pytest.approx(1.0)
    assert 10 < rows[2]["scores"]["both"]["psnr"] < 40 and rows[2]["frames"][0] >= 1  # frame 0 is the source
    text = (tmp_path / "eval" / "results.md").read_text()
    assert "Shipped-default rule" in text and "| both |" in text and "evaluation:" in res.stdout


@pytest.mark.slow
def test_reference_protocol_copy_source_shortcut_equals_scoring_every_frame(shared_data):
    """The copy-source row is scored from the one source image; scoring the repeated frames gives the same."""
    import numpy as np

    rm = _reference_model_module()
    import reference_protocol as P

    from plugtalk.io.images import resize_square

    pair = P.cross_pairs(shared_data)[0]
    idx = P.pair_indices(pair, 3, 3)
    scorer = P.Scorer()
    src = resize_square(P.source_image(pair.source)[None], 256)[0]
    drv = resize_square(P.clip_frames(pair.driving, idx), 256)
    src_face = scorer.faces("s", src[None])[0]
    drv_faces = scorer.faces("d", drv)
    full = P.score_cross(scorer, np.repeat(src[None], len(drv), 0), src_face, drv_faces)
    quick = P.score_copy_source_cross(scorer, "s", src, src_face, drv_faces)
    qf, ff = quick.pop("per_frame"), full.pop("per_frame")
    assert quick == pytest.approx(full, abs=1e-9)
    assert qf["identity_shift"] == pytest.approx(ff["identity_shift"], abs=1e-9)
    assert quick["identity_shift"] == 0.0 and rm is not None


def test_reference_model_curve_fit_reads_a_budget_only_from_a_rising_curve():
    rm = _reference_model_module()
    fit = rm.curve_fit([(1000, -2.0), (10000, -1.0), (100000, 0.0)])
    assert fit["slope_per_decade"] == pytest.approx(1.0) and fit["zero_at_steps"] == pytest.approx(1e5)
    assert rm.curve_fit([(1000, -1.0), (4000, -1.2)])["zero_at_steps"] is None   # falling: no estimate
    with pytest.raises(ValueError):
        rm.curve_fit([(1000, -1.0)])


@pytest.mark.slow
def test_reference_model_curve_scores_every_kept_checkpoint(tmp_path, shared_data):
    """`curve` on two stand-in B0 checkpoints (the shipped model twice), 1 self pair, 2 frames: a row per
    checkpoint at lineage + step, model minus copy-source with an interval, and the fit."""
    import json
    import shutil

    from plugtalk.default_model import default_model_path

    b0 = tmp_path / "b0"
    for step in (500, 1000):
        (b0 / "checkpoints" / f"step-{step:08d}").mkdir(parents=True)
        shutil.copy(default_model_path(), b0 / "checkpoints" / f"step-{step:08d}" / "model.safetensors")
    (b0 / "lineage.json").write_text(json.dumps({"init": "earlier.safetensors", "init_steps": 16000}))
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "reference_model.py"), "curve", "--runs",
                          str(tmp_path), "--max-self", "1", "--self-frames", "2", "--jobs", "1"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads((tmp_path / "eval" / "curve.json").read_text())
    assert [r["steps"] for r in out["rows"]] == [16500, 17000]
    d0, d1 = (r["delta"]["psnr"] for r in out["rows"])
    assert d0["n"] == 1 and d0["estimate"] == pytest.approx(d1["estimate"])  # the same weights score the same
    assert out["fits"]["psnr"]["slope_per_decade"] == pytest.approx(0.0, abs=1e-9)
    assert "| step-00001000 | 17000 |" in (tmp_path / "eval" / "curve.md").read_text()


def test_reference_model_card_replaces_only_the_generated_blocks(tmp_path, monkeypatch):
    import types

    rm = _reference_model_module()
    card = tmp_path / "card.md"
    card.write_text("# Card\nprose stays\n<!-- generated:results -->\nold numbers\n<!-- /generated:results -->\n"
                    "more prose\n<!-- generated:probe -->\n<!-- /generated:probe -->\n")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.md").write_text("| a | b |\n")
    (tmp_path / "eval" / "probe.txt").write_text("pyramid.2 +0.1\n")
    monkeypatch.setattr(rm, "CARD", card)
    rm.card(types.SimpleNamespace(runs=tmp_path))
    assert card.read_text() == ("# Card\nprose stays\n<!-- generated:results -->\n| a | b |\n<!-- /generated:results -->\n"
                                "more prose\n<!-- generated:probe -->\n```\npyramid.2 +0.1\n```\n<!-- /generated:probe -->\n")
    (tmp_path / "eval" / "results.md").unlink()
    with pytest.raises(SystemExit, match="results.md is missing"):
        rm.card(types.SimpleNamespace(runs=tmp_path))
    assert "| a | b |" in card.read_text()  # a failed run leaves the card as it was


def test_reference_model_edi_reuses_baselines_first_half(tmp_path):
    """+EDI's first half is baseline's checkpoint at half the budget (copied, with the log up to that step);
    without that checkpoint nothing is made, so the run is trained instead."""
    import json

    rm = _reference_model_module()
    base = tmp_path / "baseline"
    for step in (500, 1000, 1500):
        ck = base / "checkpoints" / f"step-{step:08d}"
        ck.mkdir(parents=True)
        (ck / "model.safetensors").write_bytes(f"weights {step}".encode())
        (ck / "discriminator.safetensors").write_bytes(f"disc {step}".encode())
    (base / "config.yaml").write_text("data: {batch_size: 8}\nlog: {every: 50}\n")
    (base / "metrics.jsonl").write_text("\n".join(json.dumps({"step": s, "speed/images_per_s": 8.0})
                                                  for s in range(50, 1501, 50)) + "\n")
    assert not rm.reuse_first_half(base, 2000, tmp_path / "other")
    assert not (tmp_path / "other").exists()
    run = tmp_path / "edi-stage1"
    assert rm.reuse_first_half(base, 1000, run)
    assert (run / "model.safetensors").read_bytes() == b"weights 1000"
    assert rm.last_checkpoint(run).name == "step-00001000"
    assert (rm.last_checkpoint(run) / "discriminator.safetensors").read_bytes() == b"disc 1000"
    assert rm.train_budget(run)["steps"] == 1000
    assert "| edi-stage1 | 1000 | 8000 | (baseline's first 1000 steps, reused) |" in rm.budget_lines(tmp_path)
