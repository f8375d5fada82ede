"""Speed and memory benchmarks (figures printed, never asserted in unit tests).

``plugtalk bench`` times each backbone at 256 px, plain and retrofitted (base, +EMI, +EDI, +both),
after warm-up, with CUDA synchronisation, and reports frames per second, milliseconds per batch,
peak memory and parameter counts, together with the device and library versions.
"""

from __future__ import annotations

import dataclasses
import gc
import platform
import resource
import statistics
import time
from typing import Callable, Iterable

import torch
from torch import nn

__all__ = ["BenchResult", "VARIANTS", "environment", "time_callable", "bench_model", "build_variant", "run"]

VARIANTS = ("base", "emi", "edi", "both")


@dataclasses.dataclass
class BenchResult:
    backbone: str
    variant: str
    batch: int
    device: str
    dtype: str
    options: str
    ms_per_batch: float        #: median over iterations
    ms_spread: float           #: (max - min) / 2 over iterations
    fps: float                 #: frames per second = batch / median seconds
    peak_memory_mb: float      #: CUDA: max allocated; CPU: process peak RSS (upper bound, includes Python)
    parameters_m: float        #: parameters of the whole model, millions
    added_parameters_m: float  #: parameters of EMI/EDI, millions

    def row(self) -> list[str]:
        return [self.backbone, self.variant, str(self.batch), self.dtype, self.options or "-",
                f"{self.ms_per_batch:.1f} ± {self.ms_spread:.1f}", f"{self.fps:.2f}",
                f"{self.peak_memory_mb:.0f}", f"{self.parameters_m:.2f}", f"{self.added_parameters_m:.2f}"]


def environment(device: torch.device) -> dict[str, str]:
    """Device, versions and thread count to print beside the figures."""
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "threads": str(torch.get_num_threads()), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = str(torch.version.cuda)
    return env


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_callable(fn: Callable[[], object], device: torch.device, warmup: int = 2, iters: int = 5
                  ) -> tuple[float, float]:
    """Median and half-range of ``fn``'s wall time in ms, after ``warmup`` calls, synchronised on CUDA."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), (max(times) - min(times)) / 2


def build_variant(backbone: nn.Module, variant: str) -> nn.Module:
    """The backbone wrapped by :func:`plugtalk.retrofit` with the modules of ``variant`` (paper-size defaults)."""
    from .retrofitting import retrofit

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return retrofit(backbone, emi=variant in ("emi", "both"), edi=variant in ("edi", "both"))


def bench_model(name: str, variant: str = "base", batch: int = 1, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, channels_last: bool = False, compile: bool = False,
                warmup: int = 2, iters: int = 5, size: int | None = None) -> BenchResult:
    """Time one forward pass (source + one driving frame -> image) of backbone ``name`` + ``variant``."""
    from . import backbones

    dev = torch.device(device)
    overrides = {"size": size} if size else {}
    backbone = backbones.create(name, **overrides)
    model = build_variant(backbone, variant).eval().to(dev)
    added = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("adapter.backbone."))
    total = sum(p.numel() for p in model.parameters())
    s = backbone.config.size
    g = torch.Generator().manual_seed(0)
    source = (torch.rand(batch, 3, s, s, generator=g) * 2 - 1).to(dev)
    driving = (torch.rand(batch, 3, s, s, generator=g) * 2 - 1).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        source, driving = (x.contiguous(memory_format=torch.channels_last) for x in (source, driving))
    run_model = torch.compile(model) if compile else model
    autocast = torch.autocast(dev.type, dtype=dtype) if dtype != torch.float32 else None

    def step():
        with torch.inference_mode():
            if autocast is None:
                return run_model(source, driving)
            with autocast:
                return run_model(source, driving)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    ms, spread = time_callable(step, dev, warmup, iters)
    result = BenchResult(name, variant, batch, str(dev), str(dtype).replace("torch.", ""),
                         ",".join(o for o, on in (("channels_last", channels_last), ("compile", compile)) if on),
                         ms, spread, batch / (ms / 1000), _peak_memory_mb(dev), total / 1e6, added / 1e6)
    gc.collect()
    return result


def run(backbones: Iterable[str], variants: Iterable[str], batches: Iterable[int], device: str = "cpu",
        dtypes: Iterable[torch.dtype] = (torch.float32,), channels_last: bool = False, compile: bool = False,
        warmup: int = 2, iters: int = 5, size: int | None = None,
        on_result: Callable[[BenchResult], None] | None = None) -> list[BenchResult]:
    results = []
    for name in backbones:
        for variant in variants:
            for batch in batches:
                for dtype in dtypes:
                    r = bench_model(name, variant, batch, device, dtype, channels_last, compile, warmup, iters, size)
                    results.append(r)
                    if on_result:
                        on_result(r)
    return results
