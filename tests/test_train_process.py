"""Training processes killed hard (SIGKILL) mid-run and mid-checkpoint-write, then resumed; and two
processes under torchrun (gloo, loopback) that must hold identical weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from plugtalk import load_retrofitted
from plugtalk.train import Trainer
from plugtalk.train.bench import SyntheticPairs
from plugtalk.train.distributed import ResumableSampler
from plugtalk.train.checkpointing import latest_checkpoint, list_checkpoints, load_state
from train_support import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:no VGG19 weights given")

WORKER = Path(__file__).with_name("train_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("WORLD_SIZE", None), env.pop("RANK", None)
    return env


def _start(out, steps, every, *extra):
    return subprocess.Popen([sys.executable, str(WORKER), str(out), str(steps), str(every), *extra], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(condition, proc, timeout=240):
    t0 = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{proc.stdout.read().decode()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the worker")
        time.sleep(0.2)


def _kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _resume_and_check(out, expected_step, steps):
    """Resume in-process: step counter and optimizer state continue from checkpoint ``expected_step``."""
    t = Trainer(tiny_config(out, steps=steps, log={"checkpoint_every": 3, "keep_last": 100}), SyntheticPairs(32, 32),
                resume=True)
    assert t.step == expected_step and t.resumed_from.name == f"step-{expected_step:08d}"
    saved = load_state(t.resumed_from)
    ours = t.g_opt.state_dict()
    assert ours["state"].keys() == saved["g_optimizer"]["state"].keys()
    for k, v in saved["g_optimizer"]["state"].items():
        assert torch.equal(ours["state"][k]["exp_avg_sq"], v["exp_avg_sq"])
        assert int(ours["state"][k]["step"]) == int(v["step"]) == expected_step
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")], "staging folders removed"
    t.fit()
    assert t.step == steps
    for step, folder in list_checkpoints(out / "checkpoints"):
        load_retrofitted(folder / "model.safetensors")
        assert load_state(folder)["step"] == step


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    proc = _start(tmp_path, 100_000, 3)
    _wait_for(lambda: any(s >= 6 for s, _ in list_checkpoints(tmp_path / "checkpoints")), proc)
    time.sleep(0.3)  # somewhere in the middle of the next steps
    _kill(proc)
    last = list_checkpoints(tmp_path / "checkpoints")[-1][0]
    _resume_and_check(tmp_path, last, last + 2)


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_leaves_previous_checkpoint_intact(tmp_path):
    proc = _start(tmp_path, 100_000, 3, "--pause-at", "6")
    _wait_for(lambda: (tmp_path / "paused").exists(), proc)
    _kill(proc)
    root = tmp_path / "checkpoints"
    partial = [p for p in root.iterdir() if p.name.startswith(".step-00000006.partial-")]
    assert len(partial) == 1 and (partial[0] / "state.pt").is_file(), "killed inside the staging folder"
    assert [s for s, _ in list_checkpoints(root)] == [3] and latest_checkpoint(root).name == "step-00000003"
    _resume_and_check(tmp_path, 3, 5)


@pytest.mark.slow
def test_two_process_ddp_on_cpu_keeps_ranks_identical(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           str(WORKER), str(tmp_path), "3", "100", "--dump"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    w0, w1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    state = load_state(tmp_path / "checkpoints" / "step-00000003")
    assert state["world_size"] == 2 and state["local_batch"] == 2 and len(state["rng"]) == 2
    # the two ranks draw disjoint samples, so equal weights mean synchronised gradients
    data = SyntheticPairs(32, 32)
    ranks = [set(ResumableSampler(data, 2, r, seed=0)) for r in (0, 1)]
    assert not ranks[0] & ranks[1] and len(ranks[0]) == 16
    torch.manual_seed(0)
    single = Trainer(tiny_config(tmp_path / "single", steps=1), SyntheticPairs(32, 32))
    start = {k: v for k, v in single.model.state_dict().items()}
    assert any(not torch.equal(start[k], w0[k]) for k in w0), "the DDP run trained"
