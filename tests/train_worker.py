"""A training process for the tests that kill training or run it under torchrun.

    python tests/train_worker.py OUT STEPS CHECKPOINT_EVERY [--pause-at STEP] [--dump]

Trains the tiny config on synthetic pairs (resuming when OUT has checkpoints).  ``--pause-at S``
makes the checkpoint write of step ``S`` stop after writing its files (inside the staging folder,
before the commit), touch ``OUT/paused`` and sleep, so a test can kill it there.  ``--dump`` writes
each rank's final model weights to ``OUT/rank<R>.safetensors``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(1)

from safetensors.torch import save_file  # noqa: E402

import plugtalk.train.checkpointing as C  # noqa: E402
from plugtalk.train import Trainer  # noqa: E402
from plugtalk.train.bench import SyntheticPairs  # noqa: E402
from train_support import tiny_config  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("steps", type=int)
    p.add_argument("checkpoint_every", type=int)
    p.add_argument("--pause-at", type=int, default=None)
    p.add_argument("--dump", action="store_true")
    a = p.parse_args()
    out = Path(a.out)
    if a.pause_at is not None:
        write = C._write_state

        def pausing_write(state, path):
            write(state, path)
            if state["step"] == a.pause_at:
                (out / "paused").write_text(str(path))
                time.sleep(600)

        C._write_state = pausing_write
    cfg = tiny_config(out, steps=a.steps, log={"checkpoint_every": a.checkpoint_every, "keep_last": 100})
    trainer = Trainer(cfg, SyntheticPairs(32, 32), resume=True)
    trainer.fit()
    if a.dump:
        rank = int(os.environ.get("RANK", "0"))
        tensors = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
        save_file(tensors, str(out / f"rank{rank}.safetensors"))
    trainer.dist.close()


if __name__ == "__main__":
    main()
