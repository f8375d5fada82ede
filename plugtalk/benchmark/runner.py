"""Score pairs with every model: models and face networks load once per worker process, rows are cached
one JSON line per pair (resume), ``--jobs`` worker processes, and under ``torchrun`` each rank scores its
shard of the pairs (``pairs[rank::world]``) and rank 0 gathers the rows (``torch.distributed``, gloo).

A pair's row depends only on the pair, the models and the settings (frames are rendered with absolute
motion: an output frame depends only on the source and its own driving frame; one thread per worker), so
any split of the pairs over processes or runs gives the same rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from .pairs import DRIVER_FRAMES, Pair, frame_indices
from .scoring import Scorer, pair_geometry, score_copy_source_cross, score_cross, score_self

__all__ = ["ModelSpec", "evaluate_pairs", "render_with", "SCORE_SIZE", "MAX_JOBS", "ROWS_NAME"]

SCORE_SIZE = 256
MAX_JOBS = 64
ROWS_NAME = "rows.jsonl"
#: A renderer: source ``(256, 256, 3)`` uint8 and driving frames ``(T, 256, 256, 3)`` uint8 ->
#: ``(T, S, S, 3)`` uint8 output frames (any size ``S``; scored at 256 px).
Renderer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model to benchmark: ``label`` (its name in the report), ``checkpoint`` (any weights file ``animate``
    takes; ``None``: the embedded default model), ``backbone`` (for official ``.pt`` files), or a
    ``renderer`` (a picklable callable, :data:`Renderer`) instead of weights."""

    label: str
    checkpoint: str | None = None
    backbone: str | None = None
    renderer: Renderer | None = None

    @property
    def stamp(self) -> str:
        """What identifies the weights in the row cache (a changed file is scored anew)."""
        if self.renderer is not None:
            return f"renderer:{getattr(self.renderer, '__qualname__', type(self.renderer).__name__)}"
        if self.checkpoint is None:
            from ..default_model import DEFAULT_MODEL_FILE

            path = Path(__file__).resolve().parents[1] / "assets" / DEFAULT_MODEL_FILE
            return f"default:{file_stamp(path)}" if path.is_file() else "default:none"
        return f"{self.backbone}:{file_stamp(self.checkpoint)}"


def file_stamp(path) -> str:
    """``"<size>:<mtime_ns>"`` of a file: what the row caches key its weights by (a changed file is scored anew)."""
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def render_with(model, source: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """Absolute-motion reenactment of one source by a batch of driving frames at the model's size."""
    import torch

    from ..io.images import resize_square, to_tensor, to_uint8

    size = model.adapter.image_size
    with torch.inference_mode():
        out = model(to_tensor(resize_square(source[None], size)), to_tensor(resize_square(driving, size)))
    return to_uint8(out)


_STATE: dict = {}


def init_worker(models: Sequence[ModelSpec], arcface_weights: str | None = None, threads: int = 1,
                self_quality: bool = False, fid_weights: str | None = None, features_dir: str | None = None) -> None:
    """Load the face networks (and Inception-v3 for FID) and every model once in this process."""
    import functools

    import torch

    from ..weights.load import load_animator

    torch.set_num_threads(threads)
    encoder = None
    if arcface_weights is not None:
        from ..face.identity import ArcFaceEncoder

        encoder = ArcFaceEncoder(arcface_weights)
    _STATE["scorer"] = Scorer(encoder)
    renderers, sizes = {}, {}
    for m in models:
        if m.renderer is not None:
            renderers[m.label] = m.renderer
            continue
        model = load_animator(m.checkpoint, m.backbone).model.eval()
        renderers[m.label] = functools.partial(render_with, model)
        sizes[m.label] = model.adapter.image_size
    _STATE["renderers"], _STATE["sizes"], _STATE["self_quality"] = renderers, sizes, self_quality
    _STATE["fid"], _STATE["features_dir"] = None, features_dir
    if fid_weights is not None:
        from ..metrics.fid import InceptionFeatures

        _STATE["fid"] = InceptionFeatures(fid_weights)


@lru_cache(maxsize=64)
def _frame_count(path: Path) -> int:
    from ..io.video import probe_video

    n = probe_video(path).frame_count
    if n is None:
        from ..io.video import read_frames

        n = len(read_frames(path))
    return n


@lru_cache(maxsize=16)
def clip_frames(path: Path, indices: tuple[int, ...]) -> np.ndarray:
    """``(len(indices), H, W, 3)`` uint8 frames of a clip (decoded up to the last index)."""
    from ..io.video import read_frames

    frames = read_frames(path, max_frames=max(indices) + 1)
    return frames[list(indices)]


def source_image(pair: Pair) -> np.ndarray:
    from ..io.images import load_image

    return clip_frames(pair.source.path, (0,))[0] if pair.source.is_clip else load_image(pair.source.path)


def pair_indices(pair: Pair, frames: int, self_frames: int) -> tuple[int, ...]:
    n = _frame_count(pair.driving)
    if pair.kind == "cross":
        return tuple(frame_indices(min(n, DRIVER_FRAMES), frames))
    return tuple(frame_indices(n, self_frames, start=1))


def run_pair(pair: Pair, indices: tuple[int, ...], labels: Sequence[str]) -> dict:
    """Every model (and the reference rows) on one pair -> its row (pair means per model)."""
    from ..io.images import resize_square

    scorer, renderers = _STATE["scorer"], _STATE["renderers"]
    t0, c0 = time.perf_counter(), time.process_time()
    src = resize_square(source_image(pair)[None], SCORE_SIZE)[0]
    drv = resize_square(clip_frames(pair.driving, indices), SCORE_SIZE)
    src_face = scorer.faces(f"source:{pair.source.name}", src[None])[0]
    drv_faces = scorer.faces(f"clip:{pair.driving}:{indices}", drv)
    row = {"kind": pair.kind, "key": pair.key, "source": pair.source.name, "source_identity": pair.source.identity,
           "style": pair.source.style, "driving": pair.driving.stem, "driving_identity": pair.driving_identity,
           "frames": list(indices), "source_face": src_face.pose is not None, "scores": {}}
    per_model = row["cpu_seconds_per_model"] = {}
    if pair.kind == "cross":
        row.update(pair_geometry(src_face, drv_faces))
    fid, feats = _STATE.get("fid"), {}
    if fid is not None and pair.kind == "self":
        feats["truth"] = fid.features(drv)
    for v in labels:
        c = time.process_time()
        out = resize_square(np.asarray(renderers[v](src, drv)), SCORE_SIZE)
        if "truth" in feats:
            feats[v] = fid.features(out)
        row["scores"][v] = score_cross(scorer, out, src_face, drv_faces) if pair.kind == "cross" else \
            score_self(scorer, out, drv, drv_faces, quality=_STATE.get("self_quality", False))
        per_model[v] = time.process_time() - c
    if pair.kind == "cross":
        row["scores"]["copy-source"] = score_copy_source_cross(scorer, pair.source.name, src, src_face, drv_faces)
    else:
        row["scores"]["copy-source"] = score_self(scorer, np.repeat(src[None], len(drv), 0), drv, drv_faces, src_face)
        sizes = sorted(set(_STATE["sizes"].values()))
        if len(sizes) == 1:  # the resolution ceiling of the models' size
            ceiling = resize_square(resize_square(drv, sizes[0]), SCORE_SIZE)
            row["scores"][f"{sizes[0]}px-ceiling"] = score_self(scorer, ceiling, drv, drv_faces)
    if feats:
        row["fid_features"] = save_features(feats, pair, indices)
    row["seconds"], row["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
    return row


def save_features(feats: dict[str, np.ndarray], pair: Pair, indices: tuple[int, ...]) -> str:
    """Write one pair's Inception features (``truth`` and each model) to ``features/<hash>.npz`` atomically."""
    import hashlib

    from ..io.atomic import atomic_path

    folder = Path(_STATE["features_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(json.dumps([pair.kind, pair.key, list(indices)]).encode()).hexdigest()[:20] + ".npz"
    with atomic_path(folder / name) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **feats)
    return name


def _run_pair_task(args) -> dict:
    return run_pair(*args)


def resume_rows(own: Path, files: Sequence[Path], resume: bool) -> dict[str, dict]:
    """The rows of ``files`` by ``cache_key`` with ``resume``; without it, ``own`` (this run's rows file) is
    removed and nothing is kept."""
    if resume:
        return _read_rows(files)
    if own.exists():
        own.unlink()
    return {}


def _read_rows(files: Sequence[Path]) -> dict[str, dict]:
    done: dict[str, dict] = {}
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text().splitlines():
            try:
                r = json.loads(line)
                done[r["cache_key"]] = r
            except (ValueError, KeyError, TypeError):  # a line cut short by an interruption: scored again
                continue
    return done


def _dist():
    """``(rank, world, torch.distributed or None, owned)`` from torchrun's environment.

    The gloo group is joined here when the caller has none (``owned`` is then True and the caller leaves it with
    :func:`_leave`: a rank that exits with the group still up aborts in gloo's teardown, "terminate called
    without an active exception").
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None, False
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), dist, owned


def _leave(dist, owned: bool, wait: bool = True) -> None:
    """Leave a process group :func:`_dist` joined (after a barrier unless this rank is failing)."""
    if dist is not None and owned and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def check_jobs(jobs: int | None) -> int:
    """``--jobs``: ``None`` -> min(2, CPUs); bounded to ``1..MAX_JOBS``.

    Raises:
        InputError: outside ``1..MAX_JOBS``.
    """
    if jobs is None:
        return max(1, min(2, os.cpu_count() or 1))
    if not 1 <= int(jobs) <= MAX_JOBS:
        raise InputError(f"--jobs must be between 1 and {MAX_JOBS}, got {jobs}")
    return int(jobs)


def evaluate_pairs(pairs: list[Pair], models: Sequence[ModelSpec], *, frames: int, self_frames: int, jobs: int = 1,
                   cache_dir: Path | None = None, resume: bool = False, arcface_weights: str | None = None,
                   self_quality: bool = False, fid_weights: str | None = None,
                   on_row: Callable[[dict], None] | None = None, log=print) -> list[dict] | None:
    """Score every pair with every model (see the module docstring).

    Args:
        cache_dir: where ``rows.jsonl`` (``rows.rank<R>.jsonl`` under torchrun) goes; with ``resume`` the rows
            already there are kept (a changed model, frame choice or encoder is scored anew).
        self_quality: also score NIQE and CPBD of the self-reenactment outputs (FixTalk Tab. 1).
        fid_weights: Inception-v3 weights: self-reenactment pairs also store the features of their true and
            output frames (``cache_dir/features/``, named by ``row["fid_features"]``) for FID.
        on_row: called with each new row once it is cached.

    Returns:
        The rows in the order of ``pairs`` (on every process without torchrun; on rank 0 under torchrun, where
        the other ranks get ``None``).
    """
    rank, world, dist, owned = _dist()
    try:
        rows = _evaluate_pairs(pairs, models, rank, world, dist, frames=frames, self_frames=self_frames, jobs=jobs,
                               cache_dir=cache_dir, resume=resume, arcface_weights=arcface_weights,
                               self_quality=self_quality, fid_weights=fid_weights, on_row=on_row, log=log)
    except BaseException:
        _leave(dist, owned, wait=False)
        raise
    _leave(dist, owned)
    return rows


def _evaluate_pairs(pairs, models, rank, world, dist, *, frames, self_frames, jobs, cache_dir, resume,
                    arcface_weights, self_quality, fid_weights, on_row, log):
    if fid_weights is not None and cache_dir is None:
        raise InputError("FID features need a cache folder")
    features_dir = None if cache_dir is None else str(Path(cache_dir) / "features")
    stamps = {m.label: m.stamp for m in models}
    labels = [m.label for m in models]
    own = f"rows.rank{rank}.jsonl" if world > 1 else ROWS_NAME
    cache = None if cache_dir is None else Path(cache_dir) / own
    done: dict[str, dict] = {}
    if cache is not None:
        done = resume_rows(cache, sorted(Path(cache_dir).glob("rows*.jsonl")), resume)
    keys = [json.dumps([p.kind, p.key, pair_indices(p, frames, self_frames), stamps, arcface_weights or "dlib",
                        self_quality, fid_weights], sort_keys=True) for p in pairs]
    mine = [i for i in range(len(pairs)) if i % world == rank]
    tasks = [(keys[i], (pairs[i], pair_indices(pairs[i], frames, self_frames), labels)) for i in mine
             if keys[i] not in done]
    log(f"{len(pairs)} pairs" + (f" (rank {rank} of {world}: {len(mine)})" if world > 1 else "")
        + f": {len(mine) - len(tasks)} cached, {len(tasks)} to score with {len(labels)} model(s) "
        f"({', '.join(labels)}) on {jobs} process(es)")
    rows = {k: done[k] for k in (keys[i] for i in mine) if k in done}
    t0 = time.perf_counter()

    def collect(results) -> None:
        with open(cache, "a") if cache is not None else contextlib.nullcontext() as sink:
            for i, ((ck, _), row) in enumerate(zip(tasks, results), 1):
                row["cache_key"] = ck
                rows[ck] = row
                if sink is not None:
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                if on_row is not None:
                    on_row(row)
                if i % 10 == 0 or i == len(tasks):
                    el = time.perf_counter() - t0
                    log(f"  {i}/{len(tasks)} pairs scored, {el:.0f} s elapsed, ~{el / i * (len(tasks) - i):.0f} s left")

    if tasks and jobs <= 1:
        init_worker(models, arcface_weights, 1, self_quality, fid_weights, features_dir)
        collect(_run_pair_task(a) for _, a in tasks)
    elif tasks:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=init_worker,
                                 initargs=(list(models), arcface_weights, 1, self_quality, fid_weights, features_dir)
                                 ) as pool:
            collect(pool.map(_run_pair_task, [a for _, a in tasks], chunksize=1))
    if dist is not None:
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(rows, gathered, dst=0)
        if rank != 0:
            return None
        rows = {k: v for part in gathered for k, v in part.items()}
    return [rows[k] for k in keys]
