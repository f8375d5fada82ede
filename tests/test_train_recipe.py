"""``plugtalk train --recipe fixtalk-edtalk`` at tiny sizes: every step from the previous one's model,
resumable at a step, ``--show-config`` of every step, and a result ``plugtalk animate`` drives with separate
mouth / pose / expression videos and with audio (the recipe's own Audio-to-Lip model)."""

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from decoupling_support import face, write_clips
from plugtalk import load_retrofitted
from plugtalk.cli import app
from plugtalk.errors import InputError
from plugtalk.train.recipes import resolve_recipe
from train_support import tiny_mapping

pytestmark = pytest.mark.filterwarnings("ignore:no VGG19 weights given", "ignore:stage 'edtalk-mouth-pose'")
STEPS = ["1-pretrain", "2-stage1", "3-stage2", "4-mouth-pose", "5-expression", "6-audio-lip", "7-audio-pose"]
#: a tiny pose flow on 4-frame windows (the planted clips have 6 frames)
TINY_POSE = ["--set", "audio-pose.audio.companion={audio_dim: 8, steps: 2, hidden: 16, heads: 2, layers: 1, "
             "encoder_width: 4}", "--set", "audio-pose.audio.window=4", "--set", "audio-pose.data.batch_size=2",
             "--set", "audio-pose.audio.init_windows=8"]


@pytest.fixture
def base(tmp_path):
    """A tiny EDTalk base config, a folder of planted clips with emotion labels and sound, and the settings of
    the audio steps: a random SyncNet in its official format for audio-lip, a tiny flow for audio-pose."""
    from test_edtalk_audio_lip import official_syncnet_file

    clips = write_clips(tmp_path / "clips", identities=2, clips_per_identity=2, frames=6, emotions=True, audio=True)
    official_syncnet_file(tmp_path / "lipsync_expert.pth")
    AUDIO_SETS[:] = ["--set", f"audio-lip.loss.syncnet_weights={tmp_path / 'lipsync_expert.pth'}", *TINY_POSE]
    m = tiny_mapping("unused", steps=2)
    m["model"].update(backbone="edtalk", init="passthrough")
    m["data"].update(repeats=2, batch_size=2)
    m["loss"] = {"adv": 0.1}
    m.pop("output_dir")
    f = tmp_path / "base.yaml"
    f.write_text(yaml.safe_dump(m))
    return f, clips


AUDIO_SETS: list[str] = []


def run(*args):
    """``plugtalk train ARGS`` (a recipe gets the audio steps' settings of the ``base`` fixture)."""
    audio = AUDIO_SETS if "--recipe" in args else []
    return CliRunner().invoke(app, ["train", *map(str, args), *audio])


def test_show_config_resolves_every_step_and_step_overrides(tmp_path, base):
    f, clips = base
    r = run("--recipe", "fixtalk-edtalk", "--config", f, "--data", clips, "-o", tmp_path / "x", "--show-config",
            "--set", "mouth-pose.optim.steps=7")
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(r.output)
    assert [d["step"] for d in doc] == STEPS
    assert [d["config"]["stage"] for d in doc] == ["baseline", "stage1", "stage2", "edtalk-mouth-pose",
                                                   "edtalk-expression", "edtalk-audio-lip", "edtalk-audio-pose"]
    for prev, d in zip(doc, doc[1:]):
        assert d["config"]["model"]["checkpoint"] == str(tmp_path / "x" / prev["step"] / "model.safetensors")
    assert [d["config"]["optim"]["steps"] for d in doc] == [2, 2, 2, 7, 2, 30_000, 2]  # audio-lip: EDTalk's 30 k
    assert doc[3]["config"]["optim"]["lr"] == 2e-3 and doc[4]["config"]["data"]["batch_size"] == 10  # EDTalk's
    assert "fea" in doc[3]["stage"]["losses"] and doc[4]["stage"]["labels"] == ["emotion"]
    assert doc[5]["stage"]["writes"] == "audio_lip.safetensors" and doc[6]["stage"]["trains"] == "edtalk-pose-flow"
    assert doc[5]["config"]["data"]["batch_size"] == 4 and doc[5]["config"]["optim"]["lr"] == pytest.approx(1.6e-3)
    # a pretrained start (e.g. EDTalk.pt) leaves the pre-training out
    planned = resolve_recipe("fixtalk-edtalk", tmp_path / "y", [f"model.checkpoint={tmp_path / 'EDTalk.pt'}",
                                                               *AUDIO_SETS[1::2]], base=f)
    assert [p.step.name for p in planned][0] == "stage1"
    with pytest.raises(InputError, match="unknown recipe"):
        resolve_recipe("fixtalk-nope", tmp_path / "z")
    # without SyncNet the audio-lip step is refused at planning, naming the file and the way to go without
    with pytest.raises(InputError, match=r"step 'audio-lip'.*lipsync_expert\.pth.*stage_weights\.sync=0"):
        resolve_recipe("fixtalk-edtalk", tmp_path / "z", base=f)


def test_missing_labels_stop_the_recipe_before_its_first_step_and_until_runs_the_steps_before(tmp_path, base):
    f, clips = base
    (clips / "labels.json").unlink()
    out = tmp_path / "x"
    r = run("--recipe", "fixtalk-edtalk", "--config", f, "--data", clips, "-o", out)
    assert r.exit_code == 2, r.output
    assert "5-expression" in r.output and "emotion labels" in r.output and "--until mouth-pose" in r.output
    assert not out.exists() or not any(out.iterdir())            # nothing trained before the refusal
    r = run("--recipe", "fixtalk-edtalk", "--config", f, "--data", clips, "-o", out, "--until", "stage1")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["1-pretrain", "2-stage1", "model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == (out / "2-stage1" / "model.safetensors").read_bytes()
    r = run("--recipe", "fixtalk-edtalk", "--config", f, "--data", clips, "-o", tmp_path / "y", "--until", "nope")
    assert r.exit_code == 2 and "no step 'nope'" in r.output and "mouth-pose" in r.output
    r = run("--config", f, "--data", clips, "-o", tmp_path / "z", "--until", "stage1")
    assert r.exit_code == 2 and "--until needs --recipe" in r.output


def _video(path, frames):
    from plugtalk.io.video import VideoWriter

    with VideoWriter(path, fps=25, lossless=True) as w:
        for f in frames:
            w.write(f)
    return path


def test_whole_recipe_runs_resumes_and_leaves_an_animatable_model(tmp_path, base):
    f, clips = base
    out = tmp_path / "run"
    sets = ["--set", "data.batch_size=2", "--set", "optim.steps=2"]
    # stop after stage 2 (its data folder is missing from the mouth-pose step), then resume the rest
    r = run("--recipe", "fixtalk-edtalk", "--config", f, "--data", clips, "-o", out, *sets,
            "--set", f"mouth-pose.data.folder={tmp_path / 'missing'}")
    assert r.exit_code == 2 and "error:" in r.output and "missing" in r.output
    assert [(out / s / "model.safetensors").is_file() for s in STEPS] == [True] * 3 + [False] * 4
    r = run("--recipe", "fixtalk-edtalk", "--config", f, "--data", clips, "-o", out, *sets)
    assert r.exit_code == 2 and "--resume" in r.output  # never silently retrains over a run
    stage2 = (out / "3-stage2" / "model.safetensors").stat().st_mtime_ns
    r = run("--recipe", "fixtalk-edtalk", "--config", f, "--data", clips, "-o", out, *sets, "--resume")
    assert r.exit_code == 0, r.output
    assert (out / "3-stage2" / "model.safetensors").stat().st_mtime_ns == stage2  # finished steps are kept
    model = load_retrofitted(out / "model.safetensors")
    assert model.emi is not None and model.edi is not None and model.emi.bridge_gate == 0.0
    meta = [json.loads(line)["step"] for line in (out / "5-expression" / "metrics.jsonl").read_text().splitlines()]
    assert meta == [1, 2]
    lip = json.loads((out / "6-audio-lip" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss/coef", "loss/sync", "loss/mouth", "loss/rec"} <= set(lip)
    import plugtalk.backbones as B

    assert B.load(out / "audio_lip.safetensors").name == "edtalk-audio"
    assert B.load(out / "audio_pose.safetensors").name == "edtalk-pose-flow"
    # the companion steps pass the animator on unchanged
    from plugtalk.weights.plugtalk_format import load_safetensors

    animator, passed = (load_safetensors(out / s / "model.safetensors")[0] for s in ("5-expression", "7-audio-pose"))
    assert animator.keys() == passed.keys() and all(torch.equal(animator[k], passed[k]) for k in animator)

    src = tmp_path / "source.png"
    from PIL import Image

    Image.fromarray(face(0.0, 0.3)).save(src)
    rng = np.random.default_rng(1)
    vids = {k: _video(tmp_path / f"{k}.mp4", [face(rng.uniform(-1, 1), rng.uniform(0, 1)) for _ in range(3)])
            for k in ("mouth", "pose", "expression")}
    r = CliRunner().invoke(app, ["animate", "-s", str(src), "-c", str(out / "model.safetensors"), "-o",
                                 str(tmp_path / "out.mp4"), "--mouth", str(vids["mouth"]), "--pose", str(vids["pose"]),
                                 "--expression", str(vids["expression"]), "--no-crop", "--driving-cropped",
                                 "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    from plugtalk.io.video import read_frames

    assert read_frames(tmp_path / "out.mp4").shape == (3, 32, 32, 3)
    # with audio: the recipe's Audio-to-Lip model drives the mouth, a video the head pose
    r = CliRunner().invoke(app, ["animate", "-s", str(src), "-c", str(out / "model.safetensors"), "-o",
                                 str(tmp_path / "talk.mp4"), "--audio", str(clips / "id0__c0.wav"),
                                 "--audio-checkpoint", str(out / "audio_lip.safetensors"), "--pose", str(vids["pose"]),
                                 "--no-crop", "--driving-cropped", "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert read_frames(tmp_path / "talk.mp4").shape[1:] == (32, 32, 3)
    # audio alone: the mouth from the Audio-to-Lip model, the head pose sampled from the recipe's pose flow
    wav = str(clips / "id0__c0.wav")
    r = CliRunner().invoke(app, ["animate", "-s", str(src), "-c", str(out / "model.safetensors"), "-o",
                                 str(tmp_path / "talk2.mp4"), "--audio", wav, "--audio-checkpoint",
                                 str(out / "audio_lip.safetensors"), "--control", f"audio-pose={wav}", "--companion",
                                 f"edtalk-pose-flow={out / 'audio_pose.safetensors'}", "--no-crop", "--no-progress",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "pose sampled from audio" in r.output and read_frames(tmp_path / "talk2.mp4").shape == (6, 32, 32, 3)


@pytest.mark.slow
def test_recipe_under_torchrun_with_two_processes(tmp_path, base):
    import os
    import subprocess
    import sys
    from pathlib import Path

    f, clips = base
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("WORLD_SIZE", None), env.pop("RANK", None)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           "-m", "plugtalk.train", "--recipe", "fixtalk-edtalk", "--config", str(f), "--data", str(clips),
           "-o", str(out),
           "--set", "optim.steps=1", "--set", "data.batch_size=2", *AUDIO_SETS]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for step in STEPS:
        state = json.loads((out / step / "metrics.jsonl").read_text().splitlines()[-1])
        assert state["step"] == 1
    assert load_retrofitted(out / "model.safetensors").edi is not None
    import plugtalk.backbones as B

    assert B.load(out / "audio_lip.safetensors").name == "edtalk-audio"
