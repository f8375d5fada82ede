"""The reference experiment's evaluation protocol (v2): which pairs, which frames, and one in-process batch
scorer (face models and all variants loaded once per worker process).  Used by ``reference_model.py``.

Pairs (all counts come from the shared folder, nothing is hard-coded):

* **cross-reenactment**: every source, i.e. every image in ``stills/`` and the first frame of every
  test clip, driven by every test clip of *another* identity (identities from ``MANIFEST.json``; a
  still's person never has video, so each still meets every test clip);
* **self-reenactment**: each test clip driven by itself from its own first frame.

Frames: a cross pair is scored on ``frames`` frames evenly spaced over the driver's first
``driver_frames`` (100) frames; a self pair on ``self_frames`` frames evenly spaced over the clip after
frame 0 (frame 0 is the source).  Motion is absolute (LIA's absolute mode: an output frame depends only
on the source and its own driving frame), so only the scored frames are rendered; that is what makes
several hundred pairs x 4 variants fit in an hour on 2 CPU cores.

Sources are ``photo`` or ``stylised``: a still is stylised when its MANIFEST note names a painting,
drawing, sculpture, statue, bust, cartoon, caricature or digital art (:data:`STYLISED_WORDS`); test
clip frames are photos.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

STYLISED_WORDS = ("painting", "painted", "drawing", "sculpture", "statue", "bust", "cartoon", "caricature",
                  "digital art")
SCORE_SIZE = 256
DRIVER_FRAMES = 100


# -- pairs -----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Source:
    """A source image: ``name`` (unique), ``identity`` (the person), ``path`` (a still or a test clip),
    ``style`` (``"photo"`` | ``"stylised"``), ``note`` (the MANIFEST's)."""

    name: str
    identity: str
    path: Path
    style: str
    note: str = ""

    @property
    def is_clip(self) -> bool:
        return self.path.suffix.lower() == ".mp4"


@dataclasses.dataclass(frozen=True)
class Pair:
    """``kind`` (``"cross"`` | ``"self"``), the source, the driving clip and its identity."""

    kind: str
    source: Source
    driving: Path
    driving_identity: str

    @property
    def key(self) -> str:
        return f"{self.source.name}__{self.driving.stem}"


def manifest(data: Path) -> dict[str, dict]:
    """``{relative path: MANIFEST entry}`` (empty when the folder has no MANIFEST.json)."""
    path = data / "MANIFEST.json"
    if not path.is_file():
        return {}
    return {f["path"]: f for f in json.loads(path.read_text()).get("files", [])}


def clip_identity(clip: Path, entries: dict[str, dict] | None = None) -> str:
    entry = (entries or {}).get(f"faces/{clip.parent.name}/{clip.name}")
    return entry["identity"] if entry else clip.stem.split("__")[0]


def style_of(note: str) -> str:
    """``"stylised"`` when the note names an artwork (:data:`STYLISED_WORDS`), else ``"photo"``."""
    return "stylised" if any(w in note.lower() for w in STYLISED_WORDS) else "photo"


def test_clips(data: Path) -> list[Path]:
    return sorted((data / "faces" / "test").glob("*.mp4"))


def sources(data: Path) -> list[Source]:
    """Every still, then the first frame of every test clip."""
    entries = manifest(data)
    out = []
    for still in sorted((data / "stills").glob("*.png")):
        e = entries.get(f"stills/{still.name}", {})
        note = e.get("note") or ""
        out.append(Source(still.stem, e.get("identity", still.stem), still, style_of(note), note))
    for clip in test_clips(data):
        out.append(Source(f"first-frame_{clip.stem}", clip_identity(clip, entries), clip, "photo",
                          "first frame of a test clip"))
    return out


def cross_pairs(data: Path) -> list[Pair]:
    """Every source driven by every test clip of another identity."""
    entries = manifest(data)
    clips = [(c, clip_identity(c, entries)) for c in test_clips(data)]
    return [Pair("cross", s, c, ident) for s in sources(data) for c, ident in clips if ident != s.identity]


def self_pairs(data: Path) -> list[Pair]:
    """Each test clip from its own first frame."""
    return [Pair("self", s, s.path, s.identity) for s in sources(data) if s.is_clip]


def spread(pairs: list[Pair], n: int | None) -> list[Pair]:
    """At most ``n`` pairs, taken evenly over the list (so a small run still mixes sources and drivers)."""
    if n is None or n >= len(pairs):
        return list(pairs)
    return [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, n).round().astype(int)]


def frame_indices(available: int, count: int, start: int = 0) -> list[int]:
    """``count`` frame indices evenly spaced over ``[start, available)`` (fewer if the clip is shorter)."""
    span = available - start
    if span <= 0:
        return []
    return sorted({int(i) for i in np.linspace(start, available - 1, min(count, span)).round()})


# -- reading ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def clip_frames(path: Path, indices: tuple[int, ...]) -> np.ndarray:
    """``(len(indices), H, W, 3)`` uint8 frames of a clip (decoded up to the last index)."""
    from plugtalk.io.video import read_frames

    frames = read_frames(path, max_frames=max(indices) + 1)
    return frames[list(indices)]


def source_image(source: Source) -> np.ndarray:
    from plugtalk.io.images import load_image

    return clip_frames(source.path, (0,))[0] if source.is_clip else load_image(source.path)


def pair_indices(pair: Pair, frames: int, self_frames: int) -> tuple[int, ...]:
    from plugtalk.io.video import probe_video

    n = probe_video(pair.driving).frame_count
    if pair.kind == "cross":
        return tuple(frame_indices(min(n, DRIVER_FRAMES), frames))
    return tuple(frame_indices(n, self_frames, start=1))


# -- scoring ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Face:
    """What the protocol needs of one 256 px image: identity embedding, landmarks and head pose (``None`` /
    NaN when dlib finds no face)."""

    embedding: np.ndarray
    landmarks: np.ndarray | None
    pose: object | None


class Scorer:
    """Face models loaded once; per-image face data cached by key."""

    def __init__(self):
        from plugtalk.face.identity import DlibIdentityEncoder
        from plugtalk.face.landmarks import DlibLandmarkDetector

        self.encoder = DlibIdentityEncoder()
        self.landmarker = DlibLandmarkDetector()
        self.cache: dict[str, Face] = {}

    def boxes(self, images: np.ndarray) -> list:
        from plugtalk.errors import NoFaceError
        from plugtalk.face.landmarks import find_largest_face

        out = []
        for im in images:
            try:
                out.append(find_largest_face(im))
            except NoFaceError:
                out.append(None)
        return out

    def embed(self, images: np.ndarray, boxes: list) -> np.ndarray:
        e = np.full((len(images), self.encoder.dim), np.nan)
        found = [i for i, b in enumerate(boxes) if b is not None]
        if found:
            e[found] = self.encoder.embed(images[found], boxes=[boxes[i] for i in found])
        return e

    def landmarks(self, images: np.ndarray, boxes: list) -> np.ndarray:
        lm = np.full((len(images), 68, 2), np.nan)
        for i, (im, b) in enumerate(zip(images, boxes)):
            if b is not None:
                lm[i] = self.landmarker.landmarks(im, b)
        return lm

    def faces(self, key: str, images: np.ndarray) -> list[Face]:
        """Face data of 256 px ``images`` (cached under ``key/i``)."""
        from plugtalk.face.pose import head_pose

        missing = [i for i in range(len(images)) if f"{key}/{i}" not in self.cache]
        if missing:
            sub = images[missing]
            boxes = self.boxes(sub)
            emb, lms = self.embed(sub, boxes), self.landmarks(sub, boxes)
            for j, i in enumerate(missing):
                ok = boxes[j] is not None
                self.cache[f"{key}/{i}"] = Face(emb[j], lms[j] if ok else None, head_pose(lms[j]) if ok else None)
        return [self.cache[f"{key}/{i}"] for i in range(len(images))]


def _nanmean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    ok = np.isfinite(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


def _cross_scores(e: np.ndarray, found: np.ndarray, niqe_v, cpbd_v, src: Face, drivers: list[Face]) -> dict:
    from plugtalk.metrics import cosine_similarity
    from plugtalk.metrics.identity_shift import identity_shift_from_embeddings

    d = np.stack([f.embedding for f in drivers])
    shift = identity_shift_from_embeddings(e, src.embedding, d)["shift"]
    return {"csim": _nanmean(cosine_similarity(e, src.embedding)), "identity_shift": _nanmean(shift),
            "niqe": _nanmean(niqe_v), "cpbd": _nanmean(cpbd_v), "faces_found": float(np.mean(found)),
            "frames": len(e)}


def score_cross(scorer: Scorer, outputs: np.ndarray, src: Face, drivers: list[Face]) -> dict:
    """Pair means of CSIM to the source, identity shift toward the driver, NIQE, CPBD and the share of
    frames with a face, for 256 px ``outputs`` (frame ``t`` driven by ``drivers[t]``)."""
    from plugtalk.metrics import cpbd, niqe

    boxes = scorer.boxes(outputs)
    return _cross_scores(scorer.embed(outputs, boxes), np.array([b is not None for b in boxes]),
                         np.atleast_1d(niqe(outputs)), np.atleast_1d(cpbd(outputs)), src, drivers)


def score_copy_source_cross(scorer: Scorer, key: str, image: np.ndarray, src: Face, drivers: list[Face]) -> dict:
    """:func:`score_cross` of the source repeated once per driving frame, computed from the one image."""
    from plugtalk.metrics import cpbd, niqe

    if f"quality:{key}" not in scorer.cache:
        scorer.cache[f"quality:{key}"] = (float(np.atleast_1d(niqe(image[None]))[0]),
                                          float(np.atleast_1d(cpbd(image[None]))[0]))
    q, n = scorer.cache[f"quality:{key}"], len(drivers)
    return _cross_scores(np.repeat(src.embedding[None], n, 0), np.full(n, src.pose is not None), [q[0]] * n,
                         [q[1]] * n, src, drivers)


def score_self(scorer: Scorer, outputs: np.ndarray, truth: np.ndarray, truth_faces: list[Face],
               output_face: Face | None = None) -> dict:
    """Pair means of PSNR, SSIM, F-LMD (px at 256 px) and CSIM to the true frames.  ``output_face``: the face
    data of every output when they are all one image (copy-source), instead of detecting each."""
    from plugtalk.metrics import cosine_similarity, landmark_distance, psnr, ssim

    if output_face is None:
        boxes = scorer.boxes(outputs)
        found = [b is not None for b in boxes]
        e = scorer.embed(outputs, boxes)
        lm = scorer.landmarks(outputs, boxes)
    else:
        found = [output_face.landmarks is not None] * len(outputs)
        e = np.repeat(output_face.embedding[None], len(outputs), 0)
        lm = np.repeat((output_face.landmarks if output_face.landmarks is not None
                        else np.full((68, 2), np.nan))[None], len(outputs), 0)
    true_lm = np.stack([f.landmarks if f.landmarks is not None else np.full((68, 2), np.nan) for f in truth_faces])
    true_e = np.stack([f.embedding for f in truth_faces])
    return {"psnr": _nanmean(np.atleast_1d(psnr(outputs, truth))),
            "ssim": _nanmean(np.atleast_1d(ssim(outputs, truth))),
            "f_lmd": _nanmean(landmark_distance(lm, true_lm)), "csim": _nanmean(cosine_similarity(e, true_e)),
            "faces_found": float(np.mean(found)), "frames": len(outputs)}


def pair_geometry(src: Face, drivers: list[Face]) -> dict:
    """Mean head-pose difference (degrees) and expression distance between the source and the scored driving
    frames (NaN when the source or every driving frame lacks a face), and the frames that had both."""
    from plugtalk.face.pose import expression_distance, pose_difference

    if src.pose is None:
        return {"pose_diff": float("nan"), "expression_dist": float("nan"), "geometry_frames": 0}
    ok = [f for f in drivers if f.pose is not None]
    return {"pose_diff": _nanmean([pose_difference(src.pose, f.pose) for f in ok]),
            "expression_dist": _nanmean([expression_distance(src.landmarks, f.landmarks) for f in ok]),
            "geometry_frames": len(ok)}


# -- the worker ------------------------------------------------------------------------------------------
_STATE: dict = {}


def init_worker(models: dict[str, str], threads: int = 1) -> None:
    """Load the face models and every variant once in this process."""
    import torch

    from plugtalk.loading import load_animator

    torch.set_num_threads(threads)
    _STATE["scorer"] = Scorer()
    _STATE["models"] = {v: load_animator(p).model.eval() for v, p in models.items()}


def render(model, source: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """Absolute-motion reenactment of one source by a batch of driving frames, at the model's size
    (``(H, W, 3)`` / ``(T, H, W, 3)`` uint8 in; ``(T, S, S, 3)`` uint8 out)."""
    import torch

    from plugtalk.io.images import resize_square, to_tensor, to_uint8

    size = model.adapter.image_size
    with torch.inference_mode():
        out = model(to_tensor(resize_square(source[None], size)), to_tensor(resize_square(driving, size)))
    return to_uint8(out)


def run_pair(pair: Pair, indices: tuple[int, ...], variants: list[str]) -> dict:
    """Every variant (and the reference rows) on one pair; returns its row (pair means per variant)."""
    from plugtalk.io.images import resize_square

    scorer, models = _STATE["scorer"], _STATE["models"]
    t0, c0 = time.perf_counter(), time.process_time()
    src = resize_square(source_image(pair.source)[None], SCORE_SIZE)[0]
    drv = resize_square(clip_frames(pair.driving, indices), SCORE_SIZE)
    src_face = scorer.faces(f"source:{pair.source.name}", src[None])[0]
    drv_faces = scorer.faces(f"clip:{pair.driving.name}:{indices}", drv)
    row = {"kind": pair.kind, "key": pair.key, "source": pair.source.name, "source_identity": pair.source.identity,
           "style": pair.source.style, "driving": pair.driving.stem, "driving_identity": pair.driving_identity,
           "frames": list(indices), "source_face": src_face.pose is not None, "scores": {}}
    per_model = row["cpu_seconds_per_model"] = {}
    if pair.kind == "cross":
        row.update(pair_geometry(src_face, drv_faces))
        for v in variants:
            c = time.process_time()
            out = resize_square(render(models[v], src, drv), SCORE_SIZE)
            row["scores"][v] = score_cross(scorer, out, src_face, drv_faces)
            per_model[v] = time.process_time() - c
        row["scores"]["copy-source"] = score_copy_source_cross(scorer, pair.source.name, src, src_face, drv_faces)
    else:
        for v in variants:
            c = time.process_time()
            out = resize_square(render(models[v], src, drv), SCORE_SIZE)
            row["scores"][v] = score_self(scorer, out, drv, drv_faces)
            per_model[v] = time.process_time() - c
        row["scores"]["copy-source"] = score_self(scorer, np.repeat(src[None], len(drv), 0), drv, drv_faces, src_face)
        size = next(iter(models.values())).adapter.image_size if models else 64
        ceiling = resize_square(resize_square(drv, size), SCORE_SIZE)
        row["scores"][f"{size}px-ceiling"] = score_self(scorer, ceiling, drv, drv_faces)
    row["seconds"], row["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
    return row


def _run_pair_task(args) -> dict:
    return run_pair(*args)


def evaluate_pairs(pairs: list[Pair], models: dict[str, Path], *, frames: int, self_frames: int, jobs: int,
                   cache: Path | None = None, log=print) -> list[dict]:
    """Score every pair with every model; rows are cached (one JSON line per pair) in ``cache`` so an
    interrupted evaluation continues where it stopped (a changed model or frame choice is scored anew)."""
    stamp = {v: f"{p.stat().st_size}:{int(p.stat().st_mtime)}" for v, p in models.items()}
    done: dict[str, dict] = {}
    if cache is not None and cache.is_file():
        for line in cache.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption: scored again
                continue
            done[r["cache_key"]] = r
    variants = list(models)
    tasks, rows = [], {}
    for pair in pairs:
        idx = pair_indices(pair, frames, self_frames)
        ck = json.dumps([pair.kind, pair.key, idx, stamp], sort_keys=True)
        if ck in done:
            rows[ck] = done[ck]
        else:
            tasks.append((ck, (pair, idx, variants)))
    log(f"{len(pairs)} pairs: {len(rows)} cached, {len(tasks)} to score with {len(variants)} model(s) "
        f"({', '.join(variants)}) on {jobs} process(es)")
    models_str = {v: str(p) for v, p in models.items()}
    t0 = time.perf_counter()

    def collect(results) -> None:
        with open(cache, "a") if cache is not None else contextlib.nullcontext() as sink:
            for i, ((ck, _), row) in enumerate(zip(tasks, results), 1):
                row["cache_key"] = ck
                rows[ck] = row
                if sink is not None:
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                if i % 10 == 0 or i == len(tasks):
                    el = time.perf_counter() - t0
                    log(f"  {i}/{len(tasks)} pairs scored, {el:.0f} s elapsed, ~{el / i * (len(tasks) - i):.0f} s left")

    if not tasks:
        pass
    elif jobs <= 1:
        init_worker(models_str, threads=1)
        collect(_run_pair_task(a) for _, a in tasks)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                                 initargs=(models_str, 1)) as pool:
            collect(pool.map(_run_pair_task, [a for _, a in tasks], chunksize=1))
    order = [json.dumps([p.kind, p.key, pair_indices(p, frames, self_frames), stamp], sort_keys=True) for p in pairs]
    return [rows[k] for k in order]


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))
