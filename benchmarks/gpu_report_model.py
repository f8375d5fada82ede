"""gpu_report.py's model steps: CUDA parity + bf16 error (step 2) and inference speed (step 3)."""

from __future__ import annotations

import contextlib
import copy
import gc
import time

import torch

from plugtalk import parity

#: Tiny geometry (tests/conftest.py's TINY): every backbone at 32 px.
TINY = dict(size=32, channel_base=512, channel_max=32, style_dim=64)
#: Official file name and container of each backbone's generator fixture (fixtures README).
OFFICIAL = {"lia": ("vox.pt", "gen"), "edtalk": ("EDTalk.pt", "gen"), "dpe": ("dpe.pt", "gen"),
            "gohd": ("FaceAnimator_GoHD.pt", "gen_pose")}
#: Issue 23's goals for LIA+EMI+EDI in bf16 (printed beside the figures, never asserted).
GOALS = {"fps_batch1": 300.0, "fps_batched": 2000.0, "peak_gib_batch1": 2.0, "overhead_pct": 5.0}


@contextlib.contextmanager
def strict_float32():
    """TF32 off for cuBLAS and cuDNN (PyTorch's default lets cuDNN convolutions use TF32: 10 mantissa bits)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# -- step 2: parity --------------------------------------------------------------------------------------
def _tiny_reference(name: str, seed: int = 0):
    """A tiny float64 backbone and a reference in the fixture's format recorded from it (inputs + outputs),
    so ``--tiny`` runs the whole parity path without the 256 px fixtures."""
    import plugtalk.backbones as B

    torch.manual_seed(seed)
    model = B.create(name, **TINY).double().eval()
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.rand(2, 3, TINY["size"], TINY["size"], generator=g, dtype=torch.float64) * 2 - 1  # noqa: E731
    if name == "gohd":
        window = torch.randn(2, 72, 27, generator=g, dtype=torch.float64) * 0.3
        gaze = window.clone()
        gaze[:, 70:72] += 0.2
        ref = {"inputs.source": img(), "inputs.semantics": window, "inputs.semantics_t25": window[..., 1:26],
               "inputs.semantics_gaze": gaze}
    else:
        ref = {f"inputs.{k}": img() for k in ("source", "driving", "driving_s3")}
        if name == "edtalk":
            ref.update({"inputs.driving_s4": img(), "inputs.exp_weights": torch.rand(2, 10, generator=g).double(),
                        "inputs.lip_alpha": torch.randn(2, 20, generator=g).double() * 0.5})
    ref.update(parity.RECORDERS[name]([model], ref, torch.float64))
    return model, {k: v.detach() for k, v in ref.items()}


def _models(ctx, name: str):
    """``(reference, load(dtype) -> [models] on the device, source)``: the fixture (official-style checkpoint
    rebuilt from the weight rule, loaded through ``load_official``) or, with --tiny, a tiny self-recording."""
    import plugtalk.backbones as B

    if ctx.tiny:
        model, ref = _tiny_reference(name)
        return ref, lambda dt: [copy.deepcopy(model).to(ctx.device, dt)], "tiny self-recorded float64 reference"
    fixtures = ctx.shared("fixtures")
    filename, container = OFFICIAL[name]
    ref, path = parity.official_generator(name, ctx.scratch, filename, container, folder=fixtures)
    ctx.cache[f"official:{name}"] = path
    extra = []
    if name == "edtalk":
        manifest = parity.load_manifest("edtalk", fixtures)
        extra = [("edtalk-audio", parity.write_official_checkpoint(manifest, "audio2lip", ctx.scratch / "Audio2Lip.pt",
                                                                   "audio2lip"))]

    def load(dt):
        return [B.load_official(n, p, dtype=dt).to(ctx.device).eval() for n, p in [(name, path), *extra]]

    return ref, load, f"fixtures in {fixtures}"


def _bf16_rows(out32: dict, outbf: dict, ref: dict) -> list[dict]:
    rows = []
    for k, v in out32.items():
        if not v.is_floating_point() or k not in ref:
            continue
        scale = max(ref[k].double().abs().max().item(), 1e-12)
        err = (outbf[k].detach().cpu().double() - v.detach().cpu().double()).abs().max().item()
        rows.append({"key": k, "max_abs": err, "scale": scale, "relative": err / scale})
    return sorted(rows, key=lambda r: -r["relative"])


def parity_one(ctx, name: str) -> dict:
    """float64 check, sensitivity, float32 check (TF32 off) and bf16 autocast error of one backbone."""
    ref, load, origin = _models(ctx, name)
    record = parity.RECORDERS[name]
    recorded = {k for k in ref if not k.startswith("inputs.")}
    t0 = time.perf_counter()
    with strict_float32():
        m64 = load(torch.float64)
        out64, sensitivity = parity.float64_run(lambda m, x: record(m, x, torch.float64), m64, ref)
        del m64
        r64 = parity.ParityReport(ref, torch.float64)
        r64.check_all({k: v for k, v in out64.items() if k in recorded})
        m32 = load(torch.float32)
        out32 = parity.float32_run(lambda m, x: record(m, x, torch.float32), m32, ref)
        r32 = parity.ParityReport(ref, torch.float32, sensitivity)
        r32.check_all({k: v for k, v in out32.items() if k in recorded})
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16):
        outbf = record(m32, ref, torch.float32)
    images = [k for k in recorded if k.startswith("outputs.image")]
    tf32 = {}
    if ctx.cuda:   # PyTorch's default: cuDNN convolutions in TF32; how far that moves the images (information)
        out_tf = record(m32, ref, torch.float32)
        tf32 = {k: (out_tf[k].cpu().double() - out32[k].cpu().double()).abs().max().item() for k in images}
    del m32
    bf = _bf16_rows(out32, outbf, ref)
    fails = lambda r: [(k, e, t) for k, e, t, ok in r.rows if not ok]  # noqa: E731
    return {"origin": origin, "seconds": round(time.perf_counter() - t0, 1), "tensors": len(r32.rows),
            "float64_failures": fails(r64), "float32_failures": fails(r32),
            "float32_worst": max(((k, e / t if t else 0.0) for k, e, t, _ in r32.rows), key=lambda x: x[1]),
            "bf16_worst": bf[:8], "bf16_per_tensor": bf, "bf16_images": [r for r in bf if r["key"] in images], "tf32_image_max_abs": tf32}


def step_parity(ctx, sec) -> None:
    from gpu_report import StepSkipped

    if not ctx.tiny:
        try:
            ctx.shared("fixtures")
        except FileNotFoundError as e:
            raise StepSkipped(str(e)) from None
    sec.note("float32 within 4 x the float64 model's sensitivity to float32-sized rounding noise (2^-20 relative "
             "at every submodule output), floor 64 float32 ulps of the tensor's scale: plugtalk.parity, the rule "
             "of tests/test_parity_*.py; the float64 run and its sensitivity are computed on the same device; "
             "TF32 off. bf16: autocast on the float32 model, error against float32, relative to the tensor's scale.")
    if ctx.tiny:
        sec.note("--tiny: tiny 32 px backbones against their own float64 recording (the 256 px fixtures are not "
                 "used), so this checks the path, not the official numbers")
    rows = []
    for name in parity.BACKBONES:
        if ctx.left() < (2 if ctx.tiny else 20):
            sec.status = "partial"
            sec.note(f"budget ran out before {name}")
            break
        ctx.log(f"parity {name}")
        try:
            r = parity_one(ctx, name)
        except Exception as e:  # noqa: BLE001 - the other backbones still run
            r = {"error": f"{type(e).__name__}: {e}"}
        sec.data[name] = r
        rows.append(_parity_row(name, r))
        sec.lines = _parity_lines(rows, sec.data)
        ctx.save()
        gc.collect()
    if any(r[1] != "pass" for r in rows):
        sec.status = "failed"
        sec.error = "parity failures: " + "; ".join(f"{r[0]}: {r[1]}" for r in rows if r[1] != "pass")


def _parity_row(name: str, r: dict) -> list:
    if "error" in r:
        return [name, "error", "-", "-", "-", "-", r["error"][:200]]
    ok = not r["float64_failures"] and not r["float32_failures"]
    img = max((x["relative"] for x in r["bf16_images"]), default=float("nan"))
    worst = r["bf16_worst"][0] if r["bf16_worst"] else {"key": "-", "relative": float("nan")}
    return [name, "pass" if ok else f"{len(r['float64_failures'])} float64 / {len(r['float32_failures'])} float32 "
            "failures", r["tensors"], f"{r['float32_worst'][1]:.3f} ({r['float32_worst'][0]})", img,
            f"{worst['relative']:.3g} ({worst['key']})", r["seconds"]]


def _parity_lines(rows: list, data: dict) -> list[str]:
    from gpu_report import table

    lines = table(["backbone", "float64 + float32 parity", "tensors", "worst float32 err / tolerance",
                   "bf16 image err (rel.)", "worst bf16 tensor (rel.)", "s"], rows)
    for name, r in data.items():
        for kind in ("float64_failures", "float32_failures"):
            for k, e, t in r.get(kind, [])[:10]:
                lines.append(f"- {name} {kind[:7]} `{k}`: {e:.3e} > {t:.3e}")
        if r.get("tf32_image_max_abs"):
            lines.append(f"- {name}: with PyTorch's default TF32 convolutions the images move by up to "
                         f"{max(r['tf32_image_max_abs'].values()):.3g} (information, not a parity check)")
    return lines


# -- step 3: speed ---------------------------------------------------------------------------------------
def _inputs(model, batch: int, size: int, device):
    g = torch.Generator().manual_seed(0)
    source = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
    return source, {k: v.to(device) for k, v in model.adapter.example_inputs(batch, g).items()}


def _forward(model, source, inputs, dtype, device):
    ac = torch.autocast(device.type, dtype=dtype, cache_enabled=False) if dtype != torch.float32 else None

    def fwd():
        with torch.inference_mode(), (ac or contextlib.nullcontext()):
            return model(source, **inputs)
    return fwd


@contextlib.contextmanager
def inputs_checked_once():
    """The backbones' input check (``check_image``: shape, dtype and the [-1, 1] range, which reads the values
    back to the host) replaced by a pass-through, for a CUDA graph capture only: a graph cannot hold a
    host sync, and its replays run on the inputs the eager warm-up calls have already checked."""
    import sys

    modules = [m for n, m in list(sys.modules.items())
               if n.startswith("plugtalk.") and m is not None and hasattr(m, "check_image")]
    saved = {m: m.check_image for m in modules}
    for m in modules:
        m.check_image = lambda x, *args, **kwargs: x
    try:
        yield
    finally:
        for m, f in saved.items():
            m.check_image = f


def _graph(fwd, device):
    """``fwd`` captured once as a CUDA graph after eager warm-up calls (inputs checked there); returns its
    replay."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            fwd()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with inputs_checked_once(), torch.cuda.graph(graph):
        fwd()
    return graph.replay


def time_case(model, batch: int, dtype, mode: str, ctx, size: int) -> dict:
    """One speed case: ``mode`` eager | channels_last | cuda_graph | compile.  Model on the device, eval."""
    from plugtalk.speed import time_callable

    dev = ctx.device
    source, inputs = _inputs(model, batch, size, dev)
    run = model
    if mode == "channels_last":
        run = model.to(memory_format=torch.channels_last)
        source = source.contiguous(memory_format=torch.channels_last)
        inputs = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in inputs.items()}
    if mode == "compile":
        run = torch.compile(model)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    fwd = _forward(run, source, inputs, dtype, dev)
    t0 = time.perf_counter()
    if mode == "cuda_graph":
        fwd = _graph(fwd, dev)
    warm, iters = (1, 2) if ctx.tiny else (3, 10 if batch < 64 else 5)
    if mode == "compile":
        fwd()
    setup_s = time.perf_counter() - t0
    ms, spread = time_callable(fwd, dev, warm, iters)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    if mode == "channels_last":
        model.to(memory_format=torch.contiguous_format)
    return {"ms_per_batch": ms, "ms_spread": spread, "ms_per_frame": ms / batch, "fps": batch / (ms / 1000),
            "peak_gib": peak, "setup_s": round(setup_s, 2)}


#: Seconds of the speed step kept for the last phase (torch.compile of LIA+EMI+EDI) while the others run.
COMPILE_RESERVE_S = 45


def speed_plan(ctx) -> list[tuple[str, bool, list[tuple[int, str, str]]]]:
    """``[(backbone, modified variant only, [(batch, dtype, mode), ...])]`` in order of value; the costly
    ``torch.compile`` cases come last; unrunnable modes come with a reason."""
    if ctx.tiny:
        first = [(1, "bf16", "eager"), (2, "fp32", "eager"), (2, "fp32", "channels_last"), (1, "bf16", "cuda_graph")]
        return [(n, False, first) for n in parity.BACKBONES] + [("lia", True, [(1, "bf16", "compile")])]
    lia = [(1, "bf16", "eager"), (64, "bf16", "eager"), (1, "bf16", "cuda_graph"), (64, "bf16", "cuda_graph"),
           (1, "fp32", "eager"), (64, "fp32", "eager"), (16, "bf16", "eager"), (256, "bf16", "eager"),
           (64, "bf16", "channels_last"), (256, "bf16", "cuda_graph")]
    other = [(1, "bf16", "eager"), (64, "bf16", "eager"), (1, "fp32", "eager"), (64, "fp32", "eager"),
             (1, "bf16", "cuda_graph"), (16, "bf16", "eager"), (256, "bf16", "eager"), (64, "bf16", "channels_last")]
    return ([("lia", False, lia)] + [(n, False, other) for n in parity.BACKBONES if n != "lia"]
            + [("lia", True, [(1, "bf16", "compile"), (64, "bf16", "compile")])])


def unrunnable(ctx, mode: str) -> str | None:
    if mode == "cuda_graph" and not ctx.cuda:
        return "not run: CUDA graphs need a CUDA device"
    if mode == "compile" and ctx.tiny and not ctx.cuda:
        return "not run: --tiny on the CPU (torch.compile's C++ build alone takes minutes on CI's 2 cores)"
    return None


def _variants(name: str) -> list[tuple[str, str]]:
    """The modified model first (the goals are about it), then the base it is compared with."""
    from plugtalk.speed import _supported

    return [("both", "+EMI+EDI") if _supported(name, "both") else ("edi", "+EDI (refuses EMI)"), ("base", "base")]


def step_speed(ctx, sec) -> None:
    import plugtalk.backbones as B
    from plugtalk.speed import build_variant

    size = TINY["size"] if ctx.tiny else 256
    sec.note(f"{size} px, random weights, source + driving -> image (GoHD: a 27-frame coefficient window), EMI's "
             "bridge closed as trained; median of timed calls after warm-up, synchronised; fp32 with PyTorch's "
             "defaults (TF32 convolutions on); bf16 = autocast; peak = torch.cuda.max_memory_allocated (weights "
             "included); compile = torch.compile default mode (compile time in setup_s); cuda_graph = one "
             "torch.cuda.CUDAGraph capture replayed (inputs checked by the eager warm-up calls, the host-side "
             "[-1, 1] check left out of the capture); compile only for LIA+EMI+EDI, last; cudnn.benchmark on")
    torch.backends.cudnn.benchmark = True   # fixed shapes, as in a deployment; autotuning happens in the warm-up
    cases = sec.data.setdefault("cases", [])
    for name, modified_only, plan in speed_plan(ctx):
        compiling = all(mode == "compile" for _, _, mode in plan)
        reserve = 0 if compiling or ctx.tiny else COMPILE_RESERVE_S
        for variant, label in _variants(name)[:1] if modified_only else _variants(name):
            if ctx.left() - reserve < (1 if ctx.tiny else 15):
                sec.status = "partial"
                sec.note(f"budget ran out at {name} {label} {'(compile)' if compiling else ''}: not timed")
                continue
            ctx.log(f"speed {name} {label}")
            torch.manual_seed(0)
            model = build_variant(B.create(name, **(TINY if ctx.tiny else {})), variant).eval().to(ctx.device)
            for batch, dt, mode in plan:
                cases.append(_speed_case(ctx, model, name, variant, label, batch, dt, mode, size, reserve))
                sec.lines = _speed_lines(cases, ctx)
                ctx.save()
            del model
            gc.collect()
            if ctx.cuda:
                torch.cuda.empty_cache()
    sec.data["goals"] = goals(cases)
    sec.lines = _speed_lines(cases, ctx)


def _speed_case(ctx, model, name, variant, label, batch, dt, mode, size, reserve) -> dict:
    case = {"backbone": name, "variant": variant, "label": label, "batch": batch, "dtype": dt, "mode": mode}
    reason = unrunnable(ctx, mode)
    if reason is None and ctx.left() - reserve < (0.5 if ctx.tiny else (40 if mode == "compile" else 8)):
        reason = "not run: step budget spent"
    if reason:
        case["skipped"] = reason
        return case
    try:
        case.update(time_case(model, batch, {"fp32": torch.float32, "bf16": torch.bfloat16}[dt], mode, ctx, size))
    except Exception as e:  # noqa: BLE001 - e.g. a graph capture that fails: reported per case
        case["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    return case


def goals(cases: list[dict]) -> list[dict]:
    """Issue 23's goals for LIA+EMI+EDI in bf16 beside the best measured figures (not asserted)."""
    done = [c for c in cases if "fps" in c and c["dtype"] == "bf16"]
    lia = [c for c in done if c["backbone"] == "lia" and c["variant"] == "both"]
    b1 = [c for c in lia if c["batch"] == 1]
    best1 = max(b1, key=lambda c: c["fps"], default=None)
    bestn = max((c for c in lia if c["batch"] >= 16), key=lambda c: c["fps"], default=None)
    eager1 = next((c for c in b1 if c["mode"] == "eager"), None)
    out = [{"goal": f">= {GOALS['fps_batch1']:.0f} frames/s at batch 1", "measured": best1 and best1["fps"],
            "how": best1 and best1["mode"]},
           {"goal": f">= {GOALS['fps_batched']:.0f} frames/s batched", "measured": bestn and bestn["fps"],
            "how": bestn and f"batch {bestn['batch']}, {bestn['mode']}"},
           {"goal": f"<= {GOALS['peak_gib_batch1']:.0f} GiB peak at batch 1", "measured": eager1 and eager1["peak_gib"],
            "how": "eager"}]
    for name in parity.BACKBONES:
        for batch in (1, 64):
            same = [c for c in done if (c["backbone"], c["batch"], c["mode"]) == (name, batch, "eager")]
            base = next((c for c in same if c["variant"] == "base"), None)
            mod = next((c for c in same if c["variant"] in ("both", "edi")), None)
            if base and mod:
                pct = 100 * (mod["ms_per_frame"] / base["ms_per_frame"] - 1)
                out.append({"goal": f"{name} {mod['label']}: <= {GOALS['overhead_pct']:.0f} % over the base model",
                            "measured": pct, "how": f"bf16 eager, batch {batch} (% more time per frame)"})
    return out


def _speed_lines(cases: list[dict], ctx) -> list[str]:
    from gpu_report import table

    rows = []
    for c in cases:
        res = c.get("skipped") or c.get("error")
        rows.append([c["backbone"], c["label"], c["batch"], c["dtype"], c["mode"],
                     *(["-"] * 4 + [res] if res else
                       [c["fps"], c["ms_per_frame"], c["peak_gib"], c["setup_s"], ""])])
    lines = table(["backbone", "variant", "batch", "dtype", "mode", "frames/s", "ms/frame", "peak GiB", "setup s",
                   "note"], rows)
    g = goals(cases)
    if g:
        lines += ["", "Goals (issue 23; printed, not asserted):", ""]
        lines += table(["goal", "measured", "how"], [[x["goal"], x["measured"], x["how"]] for x in g])
    return lines
