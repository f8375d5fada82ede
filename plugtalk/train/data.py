"""Training data by kind: each stage names the kind it needs (:attr:`plugtalk.train.stages.Stage.data`).

* ``pairs`` - self-reenactment pairs (source and driving frame of one clip,
  :class:`plugtalk.data.SelfReenactmentDataset`);
* ``mouth-swap`` - two clips with mouth replacement (:class:`plugtalk.data.decoupling.MouthSwapDataset`,
  ``data.mouth_box``);
* ``emotion-pairs`` - pairs of emotion-labelled clips (:class:`plugtalk.data.decoupling.EmotionPairsDataset`,
  labels from :func:`plugtalk.data.labels.clip_labels`).

:data:`DATASETS` maps a kind to ``(config, size, stage) -> Dataset``; a stage with new data needs adds
one entry (:func:`register_dataset`).
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from ..errors import InputError
from .config import TrainConfig, expand_path

__all__ = ["DATASETS", "register_dataset", "build_dataset", "data_folder"]

DATASETS: dict[str, Callable[[TrainConfig, int, Any], Dataset]] = {}


def register_dataset(kind: str, factory: Callable[[TrainConfig, int, Any], Dataset]) -> None:
    """Register ``factory(config, size, stage) -> Dataset`` for data kind ``kind``.

    Raises:
        ValueError: ``kind`` is taken.
    """
    if kind in DATASETS:
        raise ValueError(f"training data kind {kind!r} is already registered")
    DATASETS[kind] = factory


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


def _emotion_pairs(cfg: TrainConfig, size: int, stage: Any) -> Dataset:
    from ..data.decoupling import EmotionPairsDataset
    from ..data.labels import clip_labels

    d = cfg.data
    labels, source = clip_labels(data_folder(cfg))
    if source is None:
        raise InputError(f"stage {stage.name!r} needs emotion labels: no manifest.jsonl or labels.json in "
                         f"{data_folder(cfg)!r} (see plugtalk.data.labels)")
    return EmotionPairsDataset(data_folder(cfg), labels, repeats=d.repeats, seed=cfg.seed, hflip=d.hflip,
                               size=d.size or size)


register_dataset("pairs", _pairs)
register_dataset("mouth-swap", _mouth_swap)
register_dataset("emotion-pairs", _emotion_pairs)


def build_dataset(cfg: TrainConfig, size: int) -> Dataset:
    """The training data of ``cfg.stage`` from ``cfg.data`` (frames resized to ``data.size`` or ``size``).

    Raises:
        InputError: ``data.folder`` not set or holding no usable clips, or labels the stage needs missing.
    """
    from .stages import get_stage

    stage = get_stage(cfg.stage)
    if stage.data not in DATASETS:
        raise InputError(f"stage {stage.name!r} needs training data of kind {stage.data!r}, which is not registered "
                         f"(registered: {', '.join(DATASETS)})")
    return DATASETS[stage.data](cfg, size, stage)
