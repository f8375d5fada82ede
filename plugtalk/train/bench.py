"""Training throughput benchmark: ``python -m plugtalk.train.bench [--config small-cpu] [--steps 20]
[--stage NAME ... | --all-stages]``.

Times full training steps (generator + discriminator updates, every loss of the stage) on a fixed
synthetic batch of the stage's data kind already on the device, so the number measures the model, not
the data pipeline.  Prints training images (batch items) per second, per stage; a stage that starts from
a checkpoint starts from a freshly built one (EMI bridge closed, EDI added), and a stage for another
backbone than the config's is reported as not applicable.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
from .data import _RandomItems

__all__ = ["SyntheticPairs", "benchmark", "main"]


class SyntheticPairs(_RandomItems):
    """``n`` random (source, driving) pairs, ``(3, size, size)`` in [-1, 1], fixed by ``seed``:
    the item format of :class:`plugtalk.data.SelfReenactmentDataset`, for benchmarks and tests."""

    def __init__(self, n: int, size: int, seed: int = 0):
        super().__init__(n, size, seed, ("source", "driving"))


def _needs_start(stage: str) -> bool:
    from .stages import get_stage

    return get_stage(stage).needs_checkpoint is not None


def _start_file(cfg, path: Path) -> Path:
    """A retrofitted start model for ``cfg``'s backbone: stage 1's model with its EMI bridge closed, plus EDI."""
    from ..edi import EDI
    from ..retrofitting import Retrofitted, _build_module
    from .stages import build_model

    model = build_model(dataclasses.replace(cfg, stage="stage1"))
    if model.emi is not None:
        model.emi.set_bridge_gate(0.0)
    edi = _build_module(EDI, cfg.model.edi if cfg.model.edi is not False else True, model.spec, False)
    return Retrofitted(model.adapter, model.emi, edi).save_pretrained(path)


def benchmark(config: str = "small-cpu", steps: int = 20, warmup: int = 3, overrides: list[str] | None = None,
              stage: str | None = None) -> dict[str, float]:
    """Images/s of ``steps`` timed training steps of ``stage`` (default: the config's) after ``warmup`` untimed ones.

    Raises:
        InputError: bad config / overrides, or a stage that does not apply to the config's backbone.
    """
    from .config import load_config
    from .data import synthetic_dataset
    from .stages import get_stage
    from .trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        sets = [*(overrides or []), f"output_dir={out}", "log.progress=false"]
        cfg = load_config(config, sets + ([f"stage={stage}"] if stage and not _needs_start(stage) else []))
        if stage and _needs_start(stage):
            start = _start_file(load_config(config, sets), Path(out) / "start.safetensors")
            cfg = load_config(config, [*sets, f"stage={stage}", f"model.checkpoint={start}"])
        size = cfg.data.size or int(cfg.model.overrides.get("size", 256))
        data = synthetic_dataset(get_stage(cfg.stage).data, cfg.data.batch_size, size)
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
        result = {"stage": cfg.stage, "images_per_s": n / seconds, "seconds_per_step": seconds / steps,
                  "batch_size": cfg.data.batch_size, "size": size, "device": str(trainer.device),
                  "precision": "bf16" if trainer.amp_dtype else "fp32", "processes": trainer.dist.world_size}
        if trainer.device.type == "cuda":
            result["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        trainer.dist.close()
    return result


def main(argv: list[str] | None = None) -> None:
    from ..errors import InputError
    from .stages import get_stage, stage_names

    p = argparse.ArgumentParser(prog="python -m plugtalk.train.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None, help="config file or packaged name (default: small-cpu on CPU, "
                   "fixtalk-edtalk256 on CUDA)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE override")
    p.add_argument("--stage", dest="stages", action="append", default=[], help="a registered stage (repeatable; "
                   "default: the config's)")
    p.add_argument("--all-stages", action="store_true", help="every registered stage that applies to the backbone")
    a = p.parse_args(argv)
    if not 1 <= a.steps <= 100_000 or not 0 <= a.warmup <= 1000:
        p.error("--steps must be in 1..100000 and --warmup in 0..1000")
    config = a.config or ("fixtalk-edtalk256" if torch.cuda.is_available() else "small-cpu")
    stages = stage_names() if a.all_stages else (a.stages or [None])
    for stage in stages:
        try:
            if stage is not None:
                get_stage(stage)
            r = benchmark(config, a.steps, a.warmup, a.overrides, stage)
        except InputError as e:
            if not a.all_stages:
                raise SystemExit(f"error: {e}") from None
            print(f"{config} [{stage}]: not applicable ({e})")
            continue
        extra = f", peak memory {r['max_memory_gib']:.2f} GiB" if "max_memory_gib" in r else ""
        print(f"{config} [{r['stage']}]: {r['images_per_s']:.2f} training images/s "
              f"({r['seconds_per_step']:.3f} s/step, "
              f"batch {r['batch_size']} at {r['size']} px, {r['precision']}, {r['device']}, {r['processes']} "
              f"process(es){extra})")


if __name__ == "__main__":
    main()
