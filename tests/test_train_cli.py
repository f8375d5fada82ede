"""``plugtalk train`` end to end on a folder of real face frames, and the real-data smoke run."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from plugtalk import load_retrofitted
from plugtalk.cli import app
from plugtalk.train import Trainer, config_from_mapping
from train_support import tiny_mapping

pytestmark = pytest.mark.filterwarnings("ignore:no VGG19 weights given")


def _frame_folders(root, shared_clips, frames=3, size=32):
    """Clips as folders of frames (``<identity>__<clip>/NNN.png``) decoded from real shared clips."""
    from plugtalk.io.video import read_frames

    for path in shared_clips:
        d = root / path.stem
        d.mkdir(parents=True)
        for i, f in enumerate(read_frames(path)[:frames]):
            Image.fromarray(f).resize((size, size), Image.Resampling.LANCZOS).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def clip_folder(tmp_path, shared_data):
    clips = sorted((shared_data / "faces" / "train").glob("*.mp4"))[:2]
    return _frame_folders(tmp_path / "clips", clips)


@pytest.mark.slow
def test_cli_trains_from_a_config_file_and_resumes(tmp_path, clip_folder):
    cfg = tiny_mapping(tmp_path / "run", steps=2)
    cfg["data"].update(folder=str(clip_folder), repeats=4, hflip=True)
    cfg["log"].update(image_every=2)
    f = tmp_path / "train.yaml"
    f.write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["train", "--config", str(f)])
    assert r.exit_code == 0, r.output
    assert load_retrofitted(tmp_path / "run" / "model.safetensors").emi is not None
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    r = CliRunner().invoke(app, ["train", "--config", str(f), "--resume", "--set", "optim.steps=3"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "checkpoints" / "step-00000003").is_dir()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload().Tags()
    assert {"loss/rec", "loss/per", "loss/adv", "loss/dis", "loss/discriminator", "lr/generator",
            "speed/images_per_s"} <= set(events["scalars"])
    assert events["images"] == ["samples/source|driving|output"]


def test_cli_reports_config_errors(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  lr: 1.0e-4\n  stepz: 3\n")
    r = CliRunner().invoke(app, ["train", "--config", str(f)])
    assert r.exit_code == 2 and "optim.stepz" in r.output
    r = CliRunner().invoke(app, ["train", "--config", "small-cpu", "--show-config", "--set", "optim.steps=9"])
    assert r.exit_code == 0 and yaml.safe_load(r.output)["optim"]["steps"] == 9
    r = CliRunner().invoke(app, ["train", "--config", "small-cpu", "--output", str(tmp_path / "o")])
    assert r.exit_code == 2 and "data.folder" in r.output


@pytest.mark.slow
def test_smoke_losses_fall_on_a_fixed_batch_of_real_faces(tmp_path, shared_data):
    """20 steps on one fixed batch of real self-reenactment pairs: every loss finite, L_rec falls."""
    from plugtalk.data.datasets import SelfReenactmentDataset

    data = SelfReenactmentDataset(sorted((shared_data / "faces" / "train").glob("*.mp4"))[:4], size=32, seed=0,
                                  frame_access="seek")
    fixed = [data[i] for i in range(4)]
    cfg = config_from_mapping(tiny_mapping(tmp_path, steps=20, optim={"lr": 2e-3}))
    t = Trainer(cfg, [{"source": x["source"], "driving": x["driving"]} for x in fixed])
    t.fit()
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 20 and all(np.isfinite(v) for row in log for v in row.values())
    rec = [row["loss/rec"] for row in log]
    assert np.mean(rec[-5:]) < np.mean(rec[:5]) and np.polyfit(np.arange(20), rec, 1)[0] < 0, rec
    assert torch.isfinite(t.last_batch[2]).all()
