"""``plugtalk bench --runtime onnx``: per-frame time of torch eager vs onnxruntime, side by side in one run.

Per frame = encode one driving frame (motion code) + render it from the source encoded once: the work
:func:`plugtalk.animate.animate` does per frame, on random tensors at batch 1.  Both runtimes run with the
same number of CPU threads; their timings alternate in rounds (torch, onnx, torch, onnx, ...) so a load
change on a shared machine hits both alike.  A short profile of each says where the time goes (the
operators with the largest share of self time).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

__all__ = ["OnnxBenchResult", "bench_onnx", "run_onnx"]


@dataclasses.dataclass
class OnnxBenchResult:
    backbone: str
    variant: str
    size: int
    threads: int
    provider: str
    torch_ms: float            #: median ms per frame, torch eager
    torch_spread: float        #: (max - min) / 2 over all timed frames
    onnx_ms: float             #: median ms per frame, onnxruntime
    onnx_spread: float
    speedup: float             #: torch_ms / onnx_ms
    max_abs_error: float       #: |onnx - torch| on the timed inputs, [-1, 1] units
    export_s: float
    torch_top: list            #: [(operator, share of self time)] top 4
    onnx_top: list

    @property
    def batch(self) -> int:
        return 1

    def row(self) -> list[str]:
        top = lambda ops: ", ".join(f"{n} {p:.0%}" for n, p in ops)  # noqa: E731
        return [self.backbone, self.variant, str(self.threads), f"{self.torch_ms:.1f} ± {self.torch_spread:.1f}",
                f"{self.onnx_ms:.1f} ± {self.onnx_spread:.1f}", f"{self.speedup:.2f}x", f"{self.max_abs_error:.1e}",
                top(self.torch_top), top(self.onnx_top)]


def _torch_top(step: Callable[[], object], n: int = 4) -> list:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key.replace("aten::", ""), e.self_cpu_time_total / total) for e in events[:n]]


def _onnx_top(folder: Path, feeds: Callable[[], dict], threads: int, provider: str, n: int = 4) -> list:
    """Run each graph once with onnxruntime's profiler on; share of node time per operator type."""
    import onnxruntime as ort

    per_op: dict[str, float] = collections.defaultdict(float)
    for graph, inputs in feeds().items():
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.enable_profiling = True
        options.profile_file_prefix = str(folder / f"profile-{graph}")
        session = ort.InferenceSession(str(folder / f"{graph}.onnx"), options, providers=[provider])
        session.run(None, inputs)  # warm-up
        session.run(None, inputs)
        trace = json.loads(Path(session.end_profiling()).read_text())
        runs = [e for e in trace if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
        for e in runs[len(runs) // 2:]:  # the second run
            per_op[e.get("args", {}).get("op_name", "?")] += float(e.get("dur", 0))
    total = sum(per_op.values()) or 1
    return sorted(((k, v / total) for k, v in per_op.items()), key=lambda kv: kv[1], reverse=True)[:n]


def bench_onnx(name: str, variant: str = "base", *, size: int = 256, threads: int = 2, rounds: int = 3,
               iters: int = 5, warmup: int = 2, provider: str = "CPUExecutionProvider", profile: bool = True
               ) -> OnnxBenchResult:
    """Export backbone ``name`` + ``variant`` (random weights, official geometry at ``size``) and time one frame
    (encode the driving frame + render) on torch eager and on onnxruntime, alternating in ``rounds``."""
    from .. import backbones
    from ..speed import build_variant
    from .onnx_export import export_onnx
    from .onnx_runtime import OnnxAnimator

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_variant(backbones.create(name, size=size), variant).eval()
    g = torch.Generator().manual_seed(0)
    source = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    driving = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    fills = model.adapter.driving_fills
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        t0 = time.perf_counter()
        export_onnx(model, folder, check=False)
        export_s = time.perf_counter() - t0
        runtime = OnnxAnimator(folder, providers=[provider], threads=threads)
        with torch.inference_mode():
            t_state = model.encode_source(source)
        o_state = runtime.encode_source(source)

        def torch_frame():
            with torch.inference_mode():
                return model.render(t_state, model.encode_drivers({d: driving for d in fills}))

        def onnx_frame():
            return runtime.render(o_state, runtime.encode_drivers({d: driving for d in fills}))

        err = float((torch_frame() - onnx_frame()).abs().max())
        times: dict[str, list[float]] = {"torch": [], "onnx": []}
        for fn in (torch_frame, onnx_frame):
            for _ in range(warmup):
                fn()
        for _ in range(rounds):
            for key, fn in (("torch", torch_frame), ("onnx", onnx_frame)):
                for _ in range(iters):
                    t = time.perf_counter()
                    fn()
                    times[key].append((time.perf_counter() - t) * 1000)
        torch_top = onnx_top = []
        if profile:
            torch_top = _torch_top(torch_frame)
            enc = {"image": driving.numpy()}

            def feeds():
                drivers = runtime.encode_drivers({d: driving for d in fills})
                return {"encode": enc, "render": runtime.render_feeds(o_state, drivers)}

            onnx_top = _onnx_top(folder, feeds, threads, provider)
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: (max(v) - min(v)) / 2 for k, v in times.items()}
    return OnnxBenchResult(name, variant, size, threads, provider, med["torch"], spread["torch"], med["onnx"],
                           spread["onnx"], med["torch"] / med["onnx"], err, round(export_s, 1), torch_top, onnx_top)


def run_onnx(backbones: Iterable[str], variants: Iterable[str], *, on_result=None, **kwargs) -> list[OnnxBenchResult]:
    """:func:`bench_onnx` for every backbone and variant."""
    results = []
    for name in backbones:
        for variant in variants:
            r = bench_onnx(name, variant, **kwargs)
            results.append(r)
            if on_result:
                on_result(r)
    return results
