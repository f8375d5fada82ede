"""plugtalk benchmark: pairing, a planted leak, resume, torchrun shards, reported (not skipped) metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

import benchmark_support as S
from plugtalk.benchmark import run_benchmark
from plugtalk.benchmark.pairs import cross_pairs, load_data, self_pairs
from plugtalk.cli import app
from plugtalk.data.manifest import ClipRecord, write_manifest

TESTS = Path(__file__).resolve().parent


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from("ABCD"), min_size=2, max_size=7), st.lists(st.sampled_from("ABCDE"), max_size=3),
       st.lists(st.sampled_from(["train", "test"]), min_size=7, max_size=7))
def test_pairing_never_puts_one_identity_on_both_sides(tmp_path_factory, clip_ids, still_ids, splits):
    root = tmp_path_factory.mktemp("data")
    recs = [ClipRecord(f"c{i}.mp4", ident, splits[i], {}, 50, 25.0, None, None, "src", (0, 50))
            for i, ident in enumerate(clip_ids)]
    write_manifest(root, recs)
    (root / "stills").mkdir()
    (root / "MANIFEST.json").write_text(json.dumps({"files": [{"path": f"stills/s{i}.png", "identity": ident}
                                                              for i, ident in enumerate(still_ids)]}))
    for i in range(len(still_ids)):
        (root / "stills" / f"s{i}.png").write_bytes(b"")
    test = [r for r in recs if r.split == "test"]
    if not test:
        with pytest.raises(Exception, match="no clip of the 'test' split"):
            load_data(root)
        return
    data = load_data(root)
    assert [c.name for c, _ in data.clips] == [r.clip for r in test]  # only the test split
    pairs = cross_pairs(data)
    assert all(p.source.identity != p.driving_identity for p in pairs)
    # and nothing else is left out: every source meets every clip of another identity exactly once
    sources = [*still_ids, *(r.identity for r in test)]
    assert len(pairs) == sum(1 for s in sources for r in test if r.identity != s)
    assert [(p.source.identity, p.driving_identity) for p in self_pairs(data)] == [(r.identity, r.identity)
                                                                                   for r in test]


@pytest.mark.slow
def test_a_leaky_model_shows_a_resolved_positive_identity_shift(shared_data, tmp_path):
    report = run_benchmark(S.small_settings(shared_data, tmp_path / "r", max_pairs=8), S.planted_models(),
                           log=lambda m: None)
    table = report["summary"]["cross"]["all cross-reenactment pairs"]
    shift = table["leaky"]["minus_copy"]["identity_shift"]
    assert shift["estimate"] > 0.03 and shift["low"] > 0 and shift["resolved"] and shift["n"] >= 5
    assert table["copy"]["identity_shift"]["mean"] == 0.0             # a copy of the source never moves
    assert table["leaky"]["csim"]["mean"] < table["copy"]["csim"]["mean"]
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| leaky |" in text and "✓" in text
    assert (tmp_path / "r" / "identity_shift_per_pair.png").stat().st_size > 1000
    per_frame = [r["scores"]["leaky"]["per_frame"]["identity_shift"] for r in report["rows"] if r["kind"] == "cross"]
    assert all(len(f) == 2 for f in per_frame)


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_report(shared_data, tmp_path):
    whole = run_benchmark(S.small_settings(shared_data, tmp_path / "whole"), S.planted_models(), log=lambda m: None)
    S.CALLS.update(n=0, fail_after=2)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_benchmark(S.small_settings(shared_data, tmp_path / "cut"), S.planted_models(), log=lambda m: None)
        assert len((tmp_path / "cut" / "rows.jsonl").read_text().splitlines()) == 2
        assert not (tmp_path / "cut" / "report.json").exists()
        S.CALLS.update(n=0, fail_after=None)
        resumed = run_benchmark(S.small_settings(shared_data, tmp_path / "cut", resume=True), S.planted_models(),
                                log=lambda m: None)
        calls = S.CALLS["n"]
    finally:
        S.CALLS.update(n=0, fail_after=None)
    assert calls == 3                           # only the 3 pairs not cached were rendered again
    assert S.without_timing(resumed) == S.without_timing(whole)


SHARD_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import benchmark_support as S
from plugtalk.benchmark import run_benchmark
report = run_benchmark(S.small_settings({data!r}, {out!r}), S.planted_models(), log=lambda m: None)
if report is not None:
    print("RANK0", S.without_timing(report))
"""


@pytest.mark.slow
def test_two_gloo_ranks_merge_to_the_single_process_result(shared_data, tmp_path):
    single = run_benchmark(S.small_settings(shared_data, tmp_path / "one"), S.planted_models(), log=lambda m: None)
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT.format(tests=str(TESTS), data=str(shared_data), out=str(tmp_path / "two")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script)], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    merged = next(line for line in res.stdout.splitlines() if line.startswith("RANK0"))[6:]
    assert sorted(p.name for p in (tmp_path / "two").glob("rows*.jsonl")) == ["rows.rank0.jsonl", "rows.rank1.jsonl"]
    assert merged == S.without_timing(single) and '"leaky"' in merged


@pytest.mark.slow
def test_a_missing_weight_file_is_reported_not_skipped(shared_data, tmp_path):
    missing = tmp_path / "inception_v3.pth"
    report = run_benchmark(S.small_settings(shared_data, tmp_path / "t1", protocol="fixtalk-hdtf",
                                            inception_weights=missing), S.planted_models()[:1], log=lambda m: None)
    assert "does not exist" in report["not_run"]["fid"] and str(missing) in report["not_run"]["fid"]
    text = (tmp_path / "t1" / "report.md").read_text()
    assert "does not exist" in text and "FixTalk (paper)" in text and "27.164" in text
    assert "dlib ResNet" in report["networks"]["csim"] and "niqe" in report["summary"]["copy"]


@pytest.mark.slow
def test_fixtalk_mead_audio_renders_audio_driven_clips_and_reports_what_did_not_run(shared_data, tmp_path, monkeypatch):
    """Tab. 3 on a two-clip MEAD-like manifest: the wav drives EDTalk's mouth (tiny models, random weights: the
    machinery, not the values), the source is the speaker's neutral clip; a model without an audio-driven
    mouth (LIA), the missing SyncNet file and the missing emotion classifier are reported; with the files, sync
    and emotion accuracy are scored per clip."""
    import plugtalk.backbones as B
    from conftest import tiny_backbone
    from plugtalk.io.audio import load_audio, save_wav
    from plugtalk.io.video import VideoWriter, probe_video, read_frames

    data = tmp_path / "mead"
    data.mkdir()
    recs = []
    for name, emotion in (("retalking_face4__face4", "neutral"), ("retalking_face5__face5", "happy")):
        src = shared_data / "faces" / "test" / f"{name}.mp4"
        with VideoWriter(data / f"M003__{emotion}.mp4", fps=25) as w:   # 12 frames (0.48 s) of a test clip
            w.write(read_frames(src, max_frames=12))
        save_wav(data / f"M003__{emotion}.wav", load_audio(src.with_suffix(".wav"))[:12 * 640], 16000)
        n = probe_video(data / f"M003__{emotion}.mp4").frame_count
        recs.append(ClipRecord(f"M003__{emotion}.mp4", "M003", "test", {"emotion": emotion}, n, 25.0,
                               f"M003__{emotion}.wav", None, "src", (0, n), "mead"))
    write_manifest(data, recs)
    tiny_backbone("edtalk").save_pretrained(tmp_path / "edtalk.safetensors")
    tiny_backbone("lia").save_pretrained(tmp_path / "lia.safetensors")
    B.create("edtalk-audio").save_pretrained(tmp_path / "audio.safetensors")
    from plugtalk.benchmark import ModelSpec

    models = [ModelSpec("edtalk", str(tmp_path / "edtalk.safetensors")),
              ModelSpec("lia", str(tmp_path / "lia.safetensors"))]
    report = run_benchmark(S.small_settings(data, tmp_path / "t3", protocol="fixtalk-mead-audio", self_frames=2,
                                            audio_checkpoint=tmp_path / "audio.safetensors",
                                            syncnet_weights=tmp_path / "syncnet.pth"), models, log=lambda m: None)
    assert [r["source_note"] for r in report["rows"]] == ["first frame of the speaker's neutral clip"] * 2
    assert all(r["source"] == "M003__neutral.mp4" for r in report["rows"])
    scores = [r["scores"]["edtalk"] for r in report["rows"]]
    assert all(5 < s["psnr"] < 60 and s["frames"] == 2 for s in scores)
    assert "no control 'audio'" in report["not_run"]["model lia"]
    assert "does not exist" in report["not_run"]["sync_conf"] and "--emotion-weights" in report["not_run"]["acc_emo"]
    text = (tmp_path / "t3" / "report.md").read_text()
    assert "| edtalk |" in text and "FixTalk (paper)" in text and "22.382" in text
    # with a SyncNet file (official format, random weights here): sync confidence / distance per clip
    from test_edtalk_audio_lip import official_syncnet_file

    official_syncnet_file(tmp_path / "lipsync_expert.pth")
    synced = run_benchmark(S.small_settings(data, tmp_path / "t3s", protocol="fixtalk-mead-audio", self_frames=2,
                                            audio_checkpoint=tmp_path / "audio.safetensors",
                                            syncnet_weights=tmp_path / "lipsync_expert.pth"), models, log=lambda m: None)
    assert "sync_conf" not in synced["not_run"] and "not comparable" in synced["networks"]["sync_conf"]
    for r in synced["rows"]:
        s = r["scores"]["edtalk"]
        assert s["sync_conf"] >= 0 and s["sync_dist"] > 0 and -15 <= s["sync_offset"] <= 15
    assert "SYNC-CONF" in (tmp_path / "t3s" / "report.md").read_text()
    # with an emotion classifier (ONNX; planted: red-faced frames are happy): Acc_emo per clip and overall
    from test_metrics_emotion import planted_classifier

    planted_classifier(tmp_path / "emo.onnx")
    emo = run_benchmark(S.small_settings(data, tmp_path / "t3e", protocol="fixtalk-mead-audio", self_frames=2,
                                         audio_checkpoint=tmp_path / "audio.safetensors",
                                         emotion_weights=tmp_path / "emo.onnx"), models, log=lambda m: None)
    assert "acc_emo" not in emo["not_run"] and "not on the paper's scale" in emo["networks"]["acc_emo"]
    per_clip = []
    for r in emo["rows"]:
        s = r["scores"]["edtalk"]
        assert s["emotion"] in ("neutral", "happy") and s["acc_emo"] == 100.0 * (s["emotion"] == r["labels"]["emotion"])
        assert r["truth_scores"]["emotion"] in ("neutral", "happy")
        per_clip.append(s["acc_emo"])
    assert emo["summary"]["edtalk"]["acc_emo"]["mean"] == pytest.approx(sum(per_clip) / len(per_clip))
    text = (tmp_path / "t3e" / "report.md").read_text()
    assert "The emotion classifier on the real test clips" in text and "emo.onnx" in text

    # --resume: the clips scored before are read back, nothing is rendered again, the same rows and reasons
    import plugtalk.benchmark.audio as A

    def no_render(*args, **kwargs):
        raise AssertionError("a scored clip was rendered again")

    lines = (tmp_path / "t3" / A.AUDIO_ROWS).read_text().splitlines()
    assert len(lines) == 2
    monkeypatch.setattr(A, "render_audio", no_render)
    again = run_benchmark(S.small_settings(data, tmp_path / "t3", protocol="fixtalk-mead-audio", self_frames=2,
                                           audio_checkpoint=tmp_path / "audio.safetensors", resume=True,
                                           syncnet_weights=tmp_path / "syncnet.pth"), models, log=lambda m: None)
    scores_of = lambda rep: json.dumps([r["scores"] for r in rep["rows"]])  # noqa: E731 - NaN == NaN as text
    assert scores_of(again) == scores_of(report)
    assert again["not_run"]["model lia"] == report["not_run"]["model lia"]
    # other frames per clip: a new key, so the clips are rendered (and here refused by the stub)
    with pytest.raises(AssertionError, match="rendered again"):
        run_benchmark(S.small_settings(data, tmp_path / "t3", protocol="fixtalk-mead-audio", self_frames=3,
                                       audio_checkpoint=tmp_path / "audio.safetensors", resume=True),
                      models, log=lambda m: None)


class _TinyFeatures:
    """Stands in for Inception-v3 (tested in test_metrics_fid.py): a small fixed random conv net."""

    def __new__(cls, weights, device="cpu", batch_size=32):
        import torch
        from torch import nn

        from plugtalk.metrics.fid import TorchFeatures

        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.Tanh(), nn.Conv2d(8, 3, 3, stride=2),
                            nn.AdaptiveAvgPool2d(1))  # 3-d features: full-rank covariances from 8 frames
        return TorchFeatures(net, input_size=64, name=f"tiny:{Path(weights).name}")


@pytest.mark.slow
def test_fixtalk_hdtf_computes_fid_with_user_weights(shared_data, tmp_path, monkeypatch):
    """FID with the weights given: the features of every scored frame are kept per pair and one FID per model is
    reported with the network's name (a tiny stand-in network here: the benchmark's machinery, not the value)."""
    import importlib

    fid = importlib.import_module("plugtalk.metrics.fid")  # (plugtalk.metrics.fid is also the fid function's name)
    monkeypatch.setattr(fid, "InceptionFeatures", _TinyFeatures)
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"stand-in")
    report = run_benchmark(S.small_settings(shared_data, tmp_path / "t1", protocol="fixtalk-hdtf", max_self=2,
                                            self_frames=4, inception_weights=weights), S.planted_models(),
                           log=lambda m: None)
    assert "fid" not in report["not_run"] and "inception.pth" in report["networks"]["fid"]
    fid_copy, fid_leaky = report["summary"]["copy"]["fid"]["value"], report["summary"]["leaky"]["fid"]["value"]
    assert abs(fid_leaky) < 1e-3 * fid_copy and fid_copy > 0   # the driver copy *is* the true frames
    assert len(list((tmp_path / "t1" / "features").glob("*.npz"))) == 2
    assert "FID over every scored frame" in (tmp_path / "t1" / "report.md").read_text()


def test_cli_refuses_bad_models_and_options(tmp_path):
    runner = CliRunner()
    (tmp_path / "clips").mkdir()
    base = ["benchmark", "--data", str(tmp_path / "clips"), "--out", str(tmp_path / "rep")]
    for args, msg in ((["-c", "a=x.pt", "-c", "a=y.pt"], "labelled 'a'"),
                      (["-c", str(tmp_path / "missing.safetensors")], "does not exist"),
                      (["-c", "default", "--protocol", "fid-only"], "unknown --protocol"),
                      (["-c", "default", "--jobs", "0"], "--jobs must be between"),
                      (["-c", "default", "--frames", "0"], "--frames must be between"),
                      (["-c", "default"], "no clip of the 'test' split")):
        res = runner.invoke(app, base + args)
        assert res.exit_code == 2 and "error:" in res.output and msg in res.output, (args, res.output)
    assert not (tmp_path / "rep").exists() or not any((tmp_path / "rep").iterdir())
