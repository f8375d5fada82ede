"""gpu_report.py's training steps: images/s, the torchrun process group, an EDTalk retrofit with EDI's
diagnostics, and the reference model trained and scored with the reference protocol (steps 4 and 5)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: The packaged GPU config and the overrides that make it tiny (tests/train_support.py's sizes, EDTalk).
GPU_CONFIG = "fixtalk-edtalk256"
TINY_OVERRIDES = ["model.overrides={size: 32, channel_base: 512, channel_max: 32, style_dim: 64}",
                  "model.emi={width: 16, num_heads: 2, num_queries: 4}",
                  "model.edi={num_slots: 8, decoder_channels: 16, fusion_heads: 2, fusion_dim: 16}",
                  "model.discriminator={channel_base: 512, channel_max: 32}"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Frames the reference step scores per protocol pair (``--tiny``: 2); gpu_pack.py packs exactly these.
REFERENCE_FRAMES = {True: 2, False: 6}


# -- clips: frame folders of a --pack (PIL) or videos (PyAV through plugtalk, else OpenCV) --------------------
def read_clip(path: Path, max_frames: int | None = None) -> tuple[np.ndarray, list[int]]:
    """``(T, H, W, 3)`` uint8 frames and their indices in the original clip.

    A folder (``--pack``) holds ``<index>.jpg`` files; a video is decoded with PyAV when installed, else
    with OpenCV (the GPU machine has ``opencv-python-headless``, not PyAV).

    Raises:
        FileNotFoundError: a folder without frames.  ImportError: a video and neither decoder installed.
    """
    from PIL import Image

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:max_frames]
        if not files:
            raise FileNotFoundError(f"no frames in {path}")
        return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]), [int(f.stem) for f in files]
    try:
        from plugtalk.io.video import read_frames
    except ImportError:
        frames = _read_cv2(path, max_frames)
    else:
        frames = read_frames(path, max_frames=max_frames)
    return frames, list(range(len(frames)))


def _read_cv2(path: Path, max_frames: int | None) -> np.ndarray:
    import cv2

    cap, frames = cv2.VideoCapture(str(path)), []
    while max_frames is None or len(frames) < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise FileNotFoundError(f"OpenCV decoded no frame of {path}")
    return np.stack(frames)


def frame_count(path: Path) -> int:
    """Frames of the original clip (a pack folder's ``clip.json``, else the decoded count)."""
    meta = path / "clip.json"
    if meta.is_file():
        return int(json.loads(meta.read_text())["frames"])
    return len(read_clip(path)[0])


def clips(ctx, split: str) -> list[Path]:
    """The split's clips in the shared folder: videos, or a pack's frame folders."""
    folder = ctx.shared("data", "faces", split)
    out = sorted(p for p in folder.iterdir() if p.suffix == ".mp4" or (p.is_dir() and any(p.glob("*.jpg"))))
    if not out:
        raise FileNotFoundError(f"no clips in {folder}")
    return out


def clip_folder_for_cli(ctx) -> Path:
    return ctx.shared("data", "faces", "train")


class FramePairs(Dataset):
    """Self-reenactment pairs (source, driving: two frames of one clip), ``(3, size, size)`` in [-1, 1],
    drawn from frames held in memory; item ``i`` depends only on ``(seed, i)``."""

    def __init__(self, frames: list[np.ndarray], size: int, length: int, seed: int = 0):
        from plugtalk.io.images import resize_square

        self.clips = [torch.from_numpy(resize_square(f, size)).permute(0, 3, 1, 2).contiguous() for f in frames]
        self.length, self.seed = length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng((self.seed, i))
        clip = self.clips[int(rng.integers(len(self.clips)))]
        a, b = (int(x) for x in rng.integers(len(clip), size=2))
        to = lambda t: t.float() / 127.5 - 1  # noqa: E731
        return {"source": to(clip[a]), "driving": to(clip[b])}


def train_pairs(ctx, size: int, length: int) -> FramePairs:
    """Pairs from the shared training clips (``--tiny``: 4 clips, 8 frames each; else up to 64 frames each)."""
    paths = clips(ctx, "train")
    paths = paths[:: max(1, len(paths) // 4)][:4] if ctx.tiny else paths
    frames = [read_clip(p, 8 if ctx.tiny else 64)[0] for p in paths]
    ctx.cache["train_clips"] = len(frames)
    return FramePairs(frames, size, length)


# -- configs ----------------------------------------------------------------------------------------------
def common_overrides(ctx, batch: int) -> list[str]:
    return [f"device={ctx.device.type}", "precision=bf16", f"data.batch_size={batch}", "data.workers=0",
            "log.progress=false", *(TINY_OVERRIDES if ctx.tiny else [])]


def _checkpoints(ctx, base: list[str]) -> dict[str, str]:
    """Start files for stage2 (a stage-1 model, EMI's bridge closed) and retrofit (a backbone file)."""
    import plugtalk.backbones as B
    from plugtalk.train import build_model, load_config

    if "stage1_model" not in ctx.cache:
        cfg = load_config(GPU_CONFIG, base + ["stage=stage1", f"output_dir={ctx.scratch / 'unused'}"])
        model = build_model(cfg)
        model.emi.set_bridge_gate(0.0)
        ctx.cache["stage1_model"] = str(model.save_pretrained(ctx.scratch / "stage1.safetensors"))
    if "edtalk_backbone" not in ctx.cache:
        official = ctx.cache.get("official:edtalk")
        if official is not None and not ctx.tiny:
            ctx.cache["edtalk_backbone"] = str(official)   # the fixture's rule weights as an official EDTalk.pt
        else:
            cfg = load_config(GPU_CONFIG, base + [f"output_dir={ctx.scratch / 'unused'}"])
            backbone = B.create("edtalk", **cfg.model.overrides)
            ctx.cache["edtalk_backbone"] = str(backbone.save_pretrained(ctx.scratch / "edtalk.safetensors"))
    return {"stage2": ctx.cache["stage1_model"], "retrofit": ctx.cache["edtalk_backbone"]}


def step_train_speed(ctx, sec) -> None:
    from gpu_report import table
    from plugtalk.train.bench import benchmark

    batch = 2 if ctx.tiny else 16
    base = common_overrides(ctx, batch)
    starts = _checkpoints(ctx, base)
    steps, warmup = (2, 1) if ctx.tiny else (10, 3)
    sec.note(f"plugtalk.train.bench.benchmark: {GPU_CONFIG}{' (tiny overrides)' if ctx.tiny else ''}, a fixed "
             f"synthetic batch on the device, {steps} timed steps after {warmup}: generator + discriminator "
             "updates with every loss of the config; stage2 starts from a stage-1 model (EMI's bridge closed), "
             "retrofit from an EDTalk backbone file")
    rows = []
    for stage in ("stage1", "stage2", "retrofit"):
        if ctx.left() < (1 if ctx.tiny else 20):
            sec.status = "partial"
            sec.note(f"budget ran out before {stage}")
            break
        ctx.log(f"train_speed {stage}")
        extra = [f"stage={stage}"] + ([f"model.checkpoint={starts[stage]}"] if stage in starts else [])
        try:
            r = benchmark(GPU_CONFIG, steps, warmup, base + extra)
        except Exception as e:  # noqa: BLE001 - reported per stage
            r = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
        sec.data[stage] = r
        ctx.cache[f"train_ips:{stage}"] = r.get("images_per_s")
        rows.append([stage, r.get("images_per_s"), r.get("seconds_per_step"), r.get("batch_size"), r.get("size"),
                     r.get("precision"), r.get("max_memory_gib"), r.get("error", "")])
        sec.lines = table(["stage", "images/s", "s/step", "batch", "px", "precision", "peak GiB", "error"], rows)
        ctx.save()
    if any(r[-1] for r in rows):
        sec.status = "failed"
        sec.error = "; ".join(f"{r[0]}: {r[-1]}" for r in rows if r[-1])


# -- the process group through torchrun -----------------------------------------------------------------------
def step_ddp(ctx, sec) -> None:
    """``torchrun --nproc_per_node 1`` running :func:`ddp_worker`: NCCL (gloo on CPU) at world size 1."""
    backend = "nccl" if ctx.cuda else "gloo"
    if not ctx.cuda:
        sec.note("NCCL not run: it needs CUDA; the same worker runs with gloo on the CPU")
    out = ctx.scratch / "ddp"
    out.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=1",
           str(HERE / "gpu_report.py"), "--worker", "ddp", "--out", str(out), "--device", ctx.device.type,
           *(["--tiny"] if ctx.tiny else [])]
    if ctx.args.shared:
        cmd += ["--shared", str(ctx.args.shared)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    sec.data["command"] = " ".join(cmd)
    ctx.log(f"ddp: {backend} via torchrun")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(5.0, ctx.left()), env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"torchrun did not finish within the step's {sec.budget_s:.0f} s") from None
    sec.data.update(returncode=r.returncode, output_tail=(r.stdout + r.stderr)[-2000:])
    result = out / "ddp.json"
    if r.returncode != 0 or not result.is_file():
        raise RuntimeError(f"torchrun exited with {r.returncode}:\n{(r.stdout + r.stderr)[-1500:]}")
    res = json.loads(result.read_text())
    sec.data.update(res)
    from gpu_report import table

    sec.lines = table(["what", "value"], [[k, v] for k, v in res.items()])
    if not (res["ddp_wrapped"] and res["parameters_moved"] > 0 and res["all_reduce_ok"]):
        raise RuntimeError("the process group ran but did not train through DistributedDataParallel")


def ddp_worker(a) -> int:
    """Inside torchrun: join the group explicitly (plugtalk's DistContext only forms one above world size 1),
    train ``stage1`` under DistributedDataParallel for a few real optimizer steps, write ``ddp.json``."""
    import tempfile

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from plugtalk.train import Trainer, load_config
    from plugtalk.train.bench import SyntheticPairs
    from plugtalk.train.distributed import DistContext

    class GroupOfOne(DistContext):
        """A DistContext that uses the process group whatever its size (here: 1)."""

        @property
        def distributed(self) -> bool:
            return dist.is_initialized()

    cuda = a.device == "cuda"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, device_id=dev if cuda else None)
    ctx = GroupOfOne(dist.get_rank(), dist.get_world_size(), local, dev, owns_group=True)
    batch, steps = (2, 2) if a.tiny else (16, 3)
    with tempfile.TemporaryDirectory() as tmp:
        over = [f"device={dev.type}", "precision=bf16", f"data.batch_size={batch}", "data.workers=0",
                "log.progress=false", "stage=stage1", f"output_dir={tmp}", *(TINY_OVERRIDES if a.tiny else [])]
        cfg = load_config(GPU_CONFIG, over)
        size = int(cfg.model.overrides.get("size", 256))
        trainer = Trainer(cfg, SyntheticPairs(batch * 2, size), dist=ctx)
        before = torch.cat([p.detach().flatten().float().cpu() for p in trainer.g_params])
        data = {k: v.to(dev) for k, v in next(iter(trainer._loader())).items()}
        trainer.train_step(data)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(data)
        sync()
        seconds = time.perf_counter() - t0
        after = torch.cat([p.detach().flatten().float().cpu() for p in trainer.g_params])
        probe = torch.ones(1, device=dev)
        dist.all_reduce(probe)
        res = {"backend": dist.get_backend(), "world_size": dist.get_world_size(), "device": str(dev),
               "ddp_wrapped": isinstance(trainer.g_net, DistributedDataParallel), "optimizer_steps": steps + 1,
               "parameters_moved": float((after - before).abs().max()), "all_reduce_ok": float(probe) == 1.0,
               "images_per_s": steps * batch / seconds, "batch": batch, "size": size, "torch": torch.__version__}
        if cuda:
            res["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    (Path(a.out) / "ddp.json").write_text(json.dumps(res))
    ctx.close()
    return 0


# -- a short EDTalk retrofit on real clips, EDI diagnostics over its steps -----------------------------------------
EDI_KEYS = ("edi/entropy_d", "edi/entropy_ms", "edi/slot_usage_d", "edi/slot_usage_ms", "edi/recall_gap_ms",
            "edi/recall_gap_d")


def fit(cfg, dataset) -> tuple[Path, list[dict], float]:
    """``Trainer(cfg, dataset).fit()``; returns the model file, the metrics.jsonl records and the seconds."""
    from plugtalk.train import Trainer

    t0 = time.perf_counter()
    trainer = Trainer(cfg, dataset)
    trainer.fit()
    out = Path(cfg.output_dir)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    trainer.dist.close()
    return out / "model.safetensors", records, time.perf_counter() - t0


def step_retrofit(ctx, sec) -> None:
    from gpu_report import table
    from plugtalk.train import load_config

    batch = 2 if ctx.tiny else 16
    base = common_overrides(ctx, batch)
    start = _checkpoints(ctx, base)["retrofit"]
    ips = ctx.cache.get("train_ips:retrofit")
    steps = 3 if ctx.tiny else int(min(400, max(10, 0.6 * ctx.left() * (ips or 16) / batch - 5)))
    cfg = load_config(GPU_CONFIG, base + ["stage=retrofit", f"model.checkpoint={start}", f"optim.steps={steps}",
                                          "log.every=1", "log.image_every=0", "log.checkpoint_every=1000000",
                                          "log.keep_last=1", f"output_dir={ctx.scratch / 'retrofit'}"])
    size = int(cfg.model.overrides.get("size", 256))
    data = train_pairs(ctx, size, steps * batch)
    sec.note(f"EDTalk {size} px (start: {Path(start).name}), stage retrofit (EMI + EDI on the frozen backbone), "
             f"{steps} steps, batch {batch}, bf16, {ctx.cache['train_clips']} shared training clips; EDI's "
             "diagnostics per step (plugtalk.EDI.diagnostics); all of them in retrofit_edi.jsonl")
    ctx.log(f"retrofit: {steps} steps")
    _, records, seconds = fit(cfg, data)
    keep = [{k: r[k] for k in ("step", "loss/total", *EDI_KEYS, "speed/images_per_s") if k in r} for r in records]
    from gpu_report import clean, write_output

    write_output(ctx.out / "retrofit_edi.jsonl", "".join(json.dumps(clean(r)) + "\n" for r in keep))
    pick = sorted({int(i) for i in np.linspace(0, len(keep) - 1, min(10, len(keep))).round()})
    cols = ["step", "loss/total", *EDI_KEYS, "speed/images_per_s"]
    sec.data = {"steps": steps, "seconds": seconds, "first": keep[0], "last": keep[-1], "start": start}
    sec.lines = table([c.replace("edi/", "") for c in cols], [[keep[i].get(c) for c in cols] for i in pick])
    if not all(k in keep[-1] for k in EDI_KEYS):
        raise RuntimeError(f"EDI diagnostics missing from the training log: {sorted(set(EDI_KEYS) - set(keep[-1]))}")


# -- step 5: the reference model -----------------------------------------------------------------------------------
def _reference_overrides(ctx, config: str, size: int, batch: int, steps: int, out: Path) -> list[str]:
    import yaml

    values = yaml.safe_load((ROOT / "examples" / "reference_model" / config).read_text())
    geometry = {**values["model"]["overrides"], "size": size}
    return [f"model.overrides={json.dumps(geometry)}", f"data.batch_size={batch}", "data.workers=0",
            f"device={ctx.device.type}", f"precision={'bf16' if ctx.cuda else 'fp32'}", f"optim.steps={steps}",
            "log.every=10", "log.image_every=0", "log.checkpoint_every=1000000", "log.keep_last=1",
            "log.progress=false", f"output_dir={out}"]


def _plan_steps(ctx, size: int, batch: int, budget: float) -> tuple[int, int]:
    """(B0 steps, steps per variant) for ``budget`` seconds of training, from a short timing of B0."""
    if ctx.tiny:
        return 4, 2
    from plugtalk.train.bench import benchmark

    over = _reference_overrides(ctx, "b0.yaml", size, batch, 10, ctx.scratch / "ref-bench")
    s = benchmark(str(ROOT / "examples" / "reference_model" / "b0.yaml"), 5, 2, over)["seconds_per_step"]
    ctx.cache["reference_s_per_step"] = s
    # B0 half of the time; baseline and +both a quarter each minus a margin for EMI/EDI's extra cost
    return max(10, int(0.5 * budget / s)), max(10, int(0.18 * budget / s) // 2 * 2)


def train_reference(ctx, sec, size: int, batch: int) -> dict[str, Path]:
    from plugtalk.train import load_config
    from reference_model import last_checkpoint

    budget = 0.62 * ctx.left()
    b0_steps, k = _plan_steps(ctx, size, batch, budget)
    data = train_pairs(ctx, size, max(b0_steps, k) * batch)
    plan = [("b0", "b0.yaml", b0_steps, None), ("baseline", "baseline.yaml", k, "b0"),
            ("both-stage1", "emi.yaml", k // 2, "b0"), ("both", "both_stage2.yaml", k // 2, "both-stage1")]
    runs, info = {}, sec.data.setdefault("training", {})
    for name, config, steps, start in plan:
        over = _reference_overrides(ctx, config, size, batch, steps, ctx.scratch / "ref" / name)
        if start is not None:
            disc = last_checkpoint(runs[start].parent) / "discriminator.safetensors"
            over += [f"model.checkpoint={runs[start]}", f"model.discriminator_checkpoint={disc}"]
        ctx.log(f"reference: {name} {steps} steps")
        runs[name], records, seconds = fit(load_config(str(ROOT / "examples" / "reference_model" / config), over), data)
        info[name] = {"config": config, "steps": steps, "seconds": round(seconds, 1),
                      "last": {k: v for k, v in records[-1].items() if k.startswith(("loss/", "speed/"))}}
        ctx.save()
    from gpu_report import write_output

    for v in ("baseline", "both"):
        write_output(ctx.out / f"reference_{v}.safetensors", copy_from=runs[v])
    return {"baseline": ctx.out / "reference_baseline.safetensors", "both": ctx.out / "reference_both.safetensors"}


#: Protocol metrics that need a face detector and identity / landmark models (dlib).
FACE_METRICS = ("csim", "identity_shift", "f_lmd", "faces_found")


class NoFaces:
    """Stands in for the protocol's dlib Scorer when dlib is missing: no face is ever found, so the face
    metrics (CSIM, identity shift, F-LMD) come out NaN and are left out of the tables, with the reason."""

    def __init__(self):
        self.cache: dict = {}

    def faces(self, key: str, images: np.ndarray):
        from reference_protocol import Face

        return [Face(np.full(128, np.nan), None, None) for _ in images]

    def boxes(self, images):
        return [None] * len(images)

    def embed(self, images, boxes):
        return np.full((len(images), 128), np.nan)

    def landmarks(self, images, boxes):
        return np.full((len(images), 68, 2), np.nan)


def scorer():
    """The protocol's dlib scorer, or :class:`NoFaces` with the reason."""
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError as e:
        return NoFaces(), f"face metrics (CSIM, identity shift, F-LMD) not scored: {e}"
    from reference_protocol import Scorer

    return Scorer(), None


def _render(model, source: np.ndarray, driving: np.ndarray, device) -> np.ndarray:
    """The protocol's absolute-motion render, on ``device``."""
    from plugtalk.io.images import resize_square, to_tensor, to_uint8

    size = model.adapter.image_size
    with torch.inference_mode():
        out = model(to_tensor(resize_square(source[None], size), device=device),
                    to_tensor(resize_square(driving, size), device=device))
    return to_uint8(out.float().cpu())


def _source_image(src) -> np.ndarray:
    from plugtalk.io.images import load_image

    if src.is_clip or src.path.is_dir():
        return read_clip(src.path, 1)[0][0]
    return load_image(src.path)


def _driving(path: Path, kind: str, frames: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """The protocol's frames of a driving clip (cross: over the first DRIVER_FRAMES, self: after frame 0)."""
    import reference_protocol as P

    n = frame_count(path)
    idx = P.frame_indices(min(n, P.DRIVER_FRAMES), frames) if kind == "cross" else P.frame_indices(n, frames, start=1)
    all_frames, have = read_clip(path, None if path.is_dir() else max(idx) + 1)
    pos = {j: i for i, j in enumerate(have)}
    missing = [j for j in idx if j not in pos]
    if missing:
        raise FileNotFoundError(f"{path}: frames {missing[:5]} not in the pack (rebuild it with the same --frames)")
    return all_frames[[pos[j] for j in idx]], tuple(idx)


def score_pair(pair, models: dict, sc, frames: int, device) -> dict:
    """One protocol pair with every model and copy-source (reference_protocol.run_pair's scores, on the device)."""
    import reference_protocol as P
    from plugtalk.io.images import resize_square

    src = resize_square(_source_image(pair.source)[None], P.SCORE_SIZE)[0]
    drv, idx = _driving(pair.driving, pair.kind, frames)
    drv = resize_square(drv, P.SCORE_SIZE)
    src_face = sc.faces(f"source:{pair.source.name}", src[None])[0]
    drv_faces = sc.faces(f"clip:{pair.driving.name}:{idx}", drv)
    row = {"kind": pair.kind, "key": pair.key, "style": pair.source.style, "frames": list(idx), "scores": {}}
    for name, model in models.items():
        out = resize_square(_render(model, src, drv, device), P.SCORE_SIZE)
        row["scores"][name] = (P.score_cross(sc, out, src_face, drv_faces) if pair.kind == "cross"
                               else P.score_self(sc, out, drv, drv_faces))
    if pair.kind == "cross":
        row["scores"]["copy-source"] = P.score_copy_source_cross(sc, pair.source.name, src, src_face, drv_faces)
    else:
        row["scores"]["copy-source"] = P.score_self(sc, np.repeat(src[None], len(drv), 0), drv, drv_faces, src_face)
    return row


def _pairs(ctx, n_cross: int):
    import reference_protocol as P

    data = ctx.shared("data")
    test = clips(ctx, "test")
    entries = P.manifest(data)
    sources = [P.Source(f"first-frame_{c.name}", P.clip_identity(c.with_suffix(".mp4"), entries), c, "photo",
                        "first frame of a test clip") for c in test]
    stills = data / "stills"
    if stills.is_dir():
        sources = [s for s in P.sources(data) if not s.is_clip] + sources
    ids = {c: P.clip_identity(c.with_suffix(".mp4"), entries) for c in test}
    cross = [P.Pair("cross", s, c, ids[c]) for s in sources for c in test if ids[c] != s.identity]
    own = [P.Pair("self", s, s.path, s.identity) for s in sources if s.path in ids]
    return own, P.spread(cross, n_cross), len(cross), len(sources) - len(test)


def _load_models(paths: dict[str, Path], device) -> dict:
    from plugtalk.weights.load import load_animator
    from plugtalk.default_model import default_model_path

    models = {v: load_animator(p).model.eval().to(device) for v, p in paths.items()}
    shipped = default_model_path()
    if shipped is not None:
        models["cpu-default"] = load_animator(shipped).model.eval().to(device)
    return models


def score_reference(ctx, sec, sc, paths: dict[str, Path], frames: int, n_cross: int) -> list[dict]:
    models = _load_models(paths, ctx.device)
    own, cross, total, stills = _pairs(ctx, n_cross)
    sec.note(f"protocol v2 pairs on the test split: {len(own)} self-reenactment, {len(cross)} of {total} "
             f"cross-reenactment (reference_protocol.spread; sources: {stills} stills and the test clips' first "
             f"frames), {frames} frames each; models: {', '.join(models)} "
             "(cpu-default: the shipped 64 px embedded default), copy-source")
    rows = []
    for pair in own + cross:
        if ctx.left() < 3:
            sec.status = "partial"
            sec.note(f"budget ran out after {len(rows)} of {len(own) + len(cross)} pairs")
            break
        rows.append(score_pair(pair, models, sc, frames, ctx.device))
    from gpu_report import clean, write_output

    write_output(ctx.out / "reference_scores.json", json.dumps(clean({"rows": rows}), default=float, allow_nan=False))
    return rows


def step_reference(ctx, sec) -> None:
    from reference_model import metric_table

    size, batch = (32, 2) if ctx.tiny else (128, 32)
    frames, n_cross = REFERENCE_FRAMES[ctx.tiny], 2 if ctx.tiny else 16
    paths = train_reference(ctx, sec, size, batch)
    sc, reason = scorer()
    if reason:
        sec.note(reason)
    rows = score_reference(ctx, sec, sc, paths, frames, n_cross)
    models = ["baseline", "both", "cpu-default", "copy-source"]
    faces = not isinstance(sc, NoFaces)
    lines, summary = [], {}
    for kind, metrics in (("self", ("psnr", "ssim", "f_lmd", "csim")),
                          ("cross", ("csim", "identity_shift", "niqe", "cpbd", "faces_found"))):
        part = [r for r in rows if r["kind"] == kind]
        scored = tuple(m for m in metrics if (faces or m not in FACE_METRICS) and any(
            math.isfinite(float(r["scores"][v].get(m, math.nan))) for r in part for v in r["scores"]))
        if not part or not scored:
            continue
        t, s = metric_table(part, models, scored, "copy-source")
        lines += [f"**{kind}-reenactment** ({len(part)} pairs):", "", *t, ""]
        summary[kind] = s
    sec.data.update(size=size, batch=batch, frames=frames, pairs=len(rows), summary=summary)
    sec.lines = [f"Trained at {size} px (B0 {sec.data['training']['b0']['steps']} steps, then baseline and +both "
                 f"{sec.data['training']['baseline']['steps']} steps each); saved as reference_baseline.safetensors "
                 "and reference_both.safetensors.", "", *lines, _rule_line(summary)]


def _rule_line(summary: dict) -> str:
    """The protocol's fixed selection rule where its inputs were scored, else why not."""
    from reference_model import select_default

    cross = summary.get("cross", {})
    if not any(cross.get(v, {}).get("identity_shift", {}).get("mean") is not None for v in ("baseline", "both")):
        return ("Selection rule (reference_model.SELECTION_RULE) not applied: it needs the identity shift, a face "
                "metric that was not scored here.")
    chosen, why = select_default({"self": summary.get("self", {}),
                                  "cross": {"all cross-reenactment pairs": cross}}, ["baseline", "both"])
    return f"Selection rule among the GPU-trained variants: **{chosen}** ({why}); compare with `cpu-default` above."
