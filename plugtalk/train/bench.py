"""Training throughput benchmark: ``python -m plugtalk.train.bench [--config small-cpu] [--steps 20]``.

Times full training steps (generator + discriminator updates, every loss of the config) on a fixed
synthetic batch already on the device, so the number measures the model, not the data pipeline.
Prints training images per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.utils.data import Dataset

__all__ = ["SyntheticPairs", "benchmark", "main"]


class SyntheticPairs(Dataset):
    """``n`` random (source, driving) pairs, ``(3, size, size)`` in [-1, 1], fixed by ``seed``:
    the item format of :class:`plugtalk.data.SelfReenactmentDataset`, for benchmarks and tests."""

    def __init__(self, n: int, size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.pairs = torch.rand(n, 2, 3, size, size, generator=g) * 2 - 1

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        return {"source": self.pairs[i, 0], "driving": self.pairs[i, 1]}


def benchmark(config: str = "small-cpu", steps: int = 20, warmup: int = 3, overrides: list[str] | None = None
              ) -> dict[str, float]:
    """Images/s of ``steps`` timed training steps after ``warmup`` untimed ones."""
    from .config import load_config
    from .trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(config, [*(overrides or []), f"output_dir={out}", "log.progress=false"])
        size = cfg.data.size or int(cfg.model.overrides.get("size", 256))
        data = SyntheticPairs(cfg.data.batch_size, size)
        trainer = Trainer(cfg, data)
        batch = next(iter(trainer._loader()))
        batch = {k: v.to(trainer.device) for k, v in batch.items()}
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        for _ in range(warmup):
            trainer.train_step(batch)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batch)
        sync()
        seconds = time.perf_counter() - t0
        n = steps * cfg.data.batch_size
        result = {"images_per_s": n / seconds, "seconds_per_step": seconds / steps,
                  "batch_size": cfg.data.batch_size, "size": size, "device": str(trainer.device),
                  "precision": "bf16" if trainer.amp_dtype else "fp32", "processes": trainer.dist.world_size}
        if trainer.device.type == "cuda":
            result["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        trainer.dist.close()
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m plugtalk.train.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None, help="config file or packaged name (default: small-cpu on CPU, "
                   "fixtalk-edtalk256 on CUDA)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE override")
    a = p.parse_args(argv)
    config = a.config or ("fixtalk-edtalk256" if torch.cuda.is_available() else "small-cpu")
    r = benchmark(config, a.steps, a.warmup, a.overrides)
    extra = f", peak memory {r['max_memory_gib']:.2f} GiB" if "max_memory_gib" in r else ""
    print(f"{config}: {r['images_per_s']:.2f} training images/s ({r['seconds_per_step']:.3f} s/step, batch "
          f"{r['batch_size']} at {r['size']} px, {r['precision']}, {r['device']}, {r['processes']} process(es){extra})")


if __name__ == "__main__":
    main()
