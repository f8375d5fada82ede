"""The reference experiment's evaluation protocol (v2), now :mod:`plugtalk.benchmark` (``plugtalk benchmark
--protocol leakage``): this module keeps the names ``reference_model.py`` and its tests use, over the shared
data folder (``faces/test`` clips and ``stills/``; identities from ``MANIFEST.json``).

See :mod:`plugtalk.benchmark.pairs` for the pairs and frames and :mod:`plugtalk.benchmark.scoring` for the
scores; nothing is scored here.
"""

from __future__ import annotations

import os
from pathlib import Path

from plugtalk.benchmark import ModelSpec
from plugtalk.benchmark import pairs as _pairs
from plugtalk.benchmark import runner as _runner
from plugtalk.benchmark.pairs import DRIVER_FRAMES, STYLISED_WORDS, Pair, Source, frame_indices, spread, style_of
from plugtalk.benchmark.runner import SCORE_SIZE, clip_frames, pair_indices
from plugtalk.benchmark.scoring import Face, Scorer, pair_geometry, score_copy_source_cross, score_cross, score_self

__all__ = ["DRIVER_FRAMES", "STYLISED_WORDS", "SCORE_SIZE", "Pair", "Source", "Face", "Scorer", "frame_indices",
           "spread", "style_of", "clip_frames", "pair_indices", "pair_geometry", "score_cross",
           "score_copy_source_cross", "score_self", "manifest", "clip_identity", "test_clips", "sources",
           "cross_pairs", "self_pairs", "source_image", "evaluate_pairs", "default_jobs"]


def manifest(data: Path) -> dict[str, dict]:
    """``{relative path: MANIFEST entry}`` (empty when the folder has no MANIFEST.json)."""
    return _pairs._shared_manifest(Path(data))


def clip_identity(clip: Path, entries: dict[str, dict] | None = None) -> str:
    entry = (entries or {}).get(f"faces/{clip.parent.name}/{clip.name}")
    return entry["identity"] if entry else clip.stem.split("__")[0]


def test_clips(data: Path) -> list[Path]:
    return sorted((Path(data) / "faces" / "test").glob("*.mp4"))


def sources(data: Path) -> list[Source]:
    """Every still, then the first frame of every test clip."""
    return _pairs.sources(_pairs.load_data(data))


def cross_pairs(data: Path) -> list[Pair]:
    """Every source driven by every test clip of another identity."""
    return _pairs.cross_pairs(_pairs.load_data(data))


def self_pairs(data: Path) -> list[Pair]:
    """Each test clip from its own first frame."""
    return _pairs.self_pairs(_pairs.load_data(data))


def source_image(source: Source):
    return _runner.source_image(Pair("self", source, source.path, source.identity))


def evaluate_pairs(pairs: list[Pair], models: dict[str, Path], *, frames: int, self_frames: int, jobs: int,
                   cache: Path | None = None, log=print) -> list[dict]:
    """:func:`plugtalk.benchmark.runner.evaluate_pairs` for ``{variant: weights}``; rows cached in the folder
    ``cache`` without its suffix (``eval/curve_rows/rows.jsonl``), resumed."""
    specs = [ModelSpec(v, str(p)) for v, p in models.items()]
    folder = None if cache is None else Path(cache).with_suffix("")
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    return _runner.evaluate_pairs(pairs, specs, frames=frames, self_frames=self_frames, jobs=jobs, cache_dir=folder,
                                  resume=True, log=log)


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))
