"""Training data by kind: each stage names the kind it needs (:attr:`plugtalk.train.stages.Stage.data`).

* ``pairs`` - self-reenactment pairs (source and driving frame of one clip,
  :class:`plugtalk.data.SelfReenactmentDataset`);
* ``mouth-swap`` - two clips with mouth replacement (:class:`plugtalk.data.decoupling.MouthSwapDataset`,
  ``data.mouth_box``);
* ``emotion-pairs`` - pairs of emotion-labelled clips (:class:`plugtalk.data.decoupling.EmotionPairsDataset`,
  labels from :func:`plugtalk.data.labels.clip_labels`).

:data:`DATASETS` maps a kind to ``(config, size, stage) -> Dataset``; a stage with new data needs adds
one entry (:func:`register_dataset`).  :func:`check_data` runs a kind's cheap preflight (e.g. labels present)
so that a recipe fails before its first step, not after days of training at the step that needs them.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from ..errors import InputError
from .config import TrainConfig, expand_path

__all__ = ["DATASETS", "SYNTHETIC", "register_dataset", "build_dataset", "check_data", "data_folder",
           "synthetic_dataset"]

DATASETS: dict[str, Callable[[TrainConfig, int, Any], Dataset]] = {}
#: per kind, ``(n, size, seed) -> Dataset`` of random items of that kind (benchmarks)
SYNTHETIC: dict[str, Callable[[int, int, int], Dataset]] = {}
#: per kind, ``(config, stage) -> None`` raising InputError when the data cannot serve the stage (cheap)
CHECKS: dict[str, Callable[[TrainConfig, Any], None]] = {}


def register_dataset(kind: str, factory: Callable[[TrainConfig, int, Any], Dataset],
                     synthetic: Callable[[int, int, int], Dataset] | None = None,
                     check: Callable[[TrainConfig, Any], None] | None = None) -> None:
    """Register ``factory(config, size, stage) -> Dataset`` for data kind ``kind``, and optionally
    ``synthetic(n, size, seed)``: ``n`` random items of the same keys and shapes (for
    ``python -m plugtalk.train.bench``), and ``check(config, stage)``: a preflight that raises
    :class:`~plugtalk.errors.InputError` without decoding any clip.

    Raises:
        ValueError: ``kind`` is taken.
    """
    if kind in DATASETS:
        raise ValueError(f"training data kind {kind!r} is already registered")
    DATASETS[kind] = factory
    if synthetic is not None:
        SYNTHETIC[kind] = synthetic
    if check is not None:
        CHECKS[kind] = check


class _RandomItems(Dataset):
    """``n`` items of random images in [-1, 1] under ``keys`` (plus fixed extras), fixed by ``seed``."""

    def __init__(self, n: int, size: int, seed: int, keys: tuple[str, ...], extra: dict[str, Any] | None = None):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, len(keys), 3, size, size, generator=g) * 2 - 1
        self.keys, self.extra = keys, dict(extra or {})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {**{k: self.images[i, j] for j, k in enumerate(self.keys)}, **self.extra}


def synthetic_dataset(kind: str, n: int, size: int, seed: int = 0) -> Dataset:
    """``n`` random items of data kind ``kind`` at ``size`` px.

    Raises:
        InputError: the kind has no synthetic form.
    """
    if kind not in SYNTHETIC:
        raise InputError(f"training data kind {kind!r} has no synthetic form for benchmarks")
    return SYNTHETIC[kind](n, size, seed)


def _synthetic_mouth_swap(n: int, size: int, seed: int) -> Dataset:
    from ..data.decoupling import mouth_mask

    return _RandomItems(n, size, seed, ("source", "driving", "source_b", "driving_b", "a_mouth_b", "b_mouth_a"),
                        {"mouth_mask": mouth_mask(size)})


def data_folder(cfg: TrainConfig) -> str:
    """``data.folder``, expanded.

    Raises:
        InputError: not set.
    """
    if not cfg.data.folder:
        raise InputError("data.folder is not set: give the folder of training clips "
                         "(e.g. --set data.folder=path/to/clips, as written by `plugtalk prepare`)")
    return expand_path(cfg.data.folder)


def _pairs(cfg: TrainConfig, size: int, stage: Any) -> Dataset:
    from ..data.datasets import SelfReenactmentDataset

    d = cfg.data
    return SelfReenactmentDataset(data_folder(cfg), repeats=d.repeats, seed=cfg.seed, hflip=d.hflip,
                                  size=d.size or size)


def _mouth_swap(cfg: TrainConfig, size: int, stage: Any) -> Dataset:
    from ..data.decoupling import MouthSwapDataset

    d = cfg.data
    return MouthSwapDataset(data_folder(cfg), repeats=d.repeats, seed=cfg.seed, hflip=d.hflip, size=d.size or size,
                            mouth_box=d.mouth_box)


def _emotion_labels(cfg: TrainConfig, stage: Any) -> dict:
    from ..data.labels import clip_labels

    labels, source = clip_labels(data_folder(cfg))
    if source is None:
        raise InputError(f"stage {stage.name!r} needs emotion labels: no manifest.jsonl or labels.json in "
                         f"{data_folder(cfg)!r} (see plugtalk.data.labels)")
    return labels


def _emotion_pairs(cfg: TrainConfig, size: int, stage: Any) -> Dataset:
    from ..data.decoupling import EmotionPairsDataset

    d = cfg.data
    labels = _emotion_labels(cfg, stage)
    return EmotionPairsDataset(data_folder(cfg), labels, repeats=d.repeats, seed=cfg.seed, hflip=d.hflip,
                               size=d.size or size)


register_dataset("pairs", _pairs, lambda n, size, seed: _RandomItems(n, size, seed, ("source", "driving")))
register_dataset("mouth-swap", _mouth_swap, _synthetic_mouth_swap)
register_dataset("emotion-pairs", _emotion_pairs,
                 lambda n, size, seed: _RandomItems(n, size, seed, ("source", "driving"), {"emotion": 0}),
                 check=_emotion_labels)


def build_dataset(cfg: TrainConfig, size: int) -> Dataset:
    """The training data of ``cfg.stage`` from ``cfg.data`` (frames resized to ``data.size`` or ``size``).

    Raises:
        InputError: ``data.folder`` not set or holding no usable clips, or labels the stage needs missing.
    """
    stage = _stage_with_data(cfg)
    return DATASETS[stage.data](cfg, size, stage)


def _stage_with_data(cfg: TrainConfig):
    from .stages import get_stage

    stage = get_stage(cfg.stage)
    if stage.data not in DATASETS:
        raise InputError(f"stage {stage.name!r} needs training data of kind {stage.data!r}, which is not registered "
                         f"(registered: {', '.join(DATASETS)})")
    return stage


def check_data(cfg: TrainConfig) -> None:
    """The preflight of ``cfg.stage``'s data kind (``data.folder`` set, the labels it needs present).

    Raises:
        InputError: what :func:`build_dataset` would raise about the folder or its labels.
    """
    stage = _stage_with_data(cfg)
    data_folder(cfg)
    if stage.data in CHECKS:
        CHECKS[stage.data](cfg, stage)
