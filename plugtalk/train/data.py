"""Training data by kind: each stage names the kind it needs (:attr:`plugtalk.train.stages.Stage.data`).

* ``pairs`` - self-reenactment pairs (source and driving frame of one clip,
  :class:`plugtalk.data.SelfReenactmentDataset`);
* ``mouth-swap`` - two clips with mouth replacement (:class:`plugtalk.data.decoupling.MouthSwapDataset`,
  ``data.mouth_box``);
* ``emotion-pairs`` - pairs of emotion-labelled clips (:class:`plugtalk.data.decoupling.EmotionPairsDataset`,
  labels from :func:`plugtalk.data.labels.clip_labels`);
* ``audio-windows`` - windows of consecutive frames of clips with sound, each frame with its mel window and
  the frozen animator's bank coefficients (:class:`plugtalk.data.audio_windows.WindowDataset`, ``audio.*``).

:data:`DATASETS` maps a kind to ``(config, size, stage, model) -> Dataset`` (``model``: what the stage
trains, e.g. a companion stage's frozen animator that labels the frames); a stage with new data needs adds
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

DATASETS: dict[str, Callable[[TrainConfig, int, Any, Any], Dataset]] = {}
#: per kind, ``(n, size, seed) -> Dataset`` of random items of that kind (benchmarks)
SYNTHETIC: dict[str, Callable[[int, int, int], Dataset]] = {}
#: per kind, ``(config, stage) -> None`` raising InputError when the data cannot serve the stage (cheap)
CHECKS: dict[str, Callable[[TrainConfig, Any], None]] = {}


def register_dataset(kind: str, factory: Callable[[TrainConfig, int, Any, Any], Dataset],
                     synthetic: Callable[[int, int, int], Dataset] | None = None,
                     check: Callable[[TrainConfig, Any], None] | None = None) -> None:
    """Register ``factory(config, size, stage, model) -> Dataset`` for data kind ``kind``, and optionally
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


def _pairs(cfg: TrainConfig, size: int, stage: Any, model: Any = None) -> Dataset:
    from ..data.datasets import SelfReenactmentDataset

    d = cfg.data
    return SelfReenactmentDataset(data_folder(cfg), repeats=d.repeats, seed=cfg.seed, hflip=d.hflip,
                                  size=d.size or size)


def _mouth_swap(cfg: TrainConfig, size: int, stage: Any, model: Any = None) -> Dataset:
    from ..data.decoupling import MouthSwapDataset

    d = cfg.data
    options = stage.data_options(cfg) if stage.data_options is not None else {}  # e.g. L_sync^m's window
    return MouthSwapDataset(data_folder(cfg), repeats=d.repeats, seed=cfg.seed, hflip=d.hflip, size=d.size or size,
                            mouth_box=d.mouth_box, **options)


def _emotion_labels(cfg: TrainConfig, stage: Any) -> dict:
    from ..data.labels import clip_labels

    labels, source = clip_labels(data_folder(cfg))
    if source is None:
        raise InputError(f"stage {stage.name!r} needs emotion labels: no manifest.jsonl or labels.json in "
                         f"{data_folder(cfg)!r} (see plugtalk.data.labels)")
    return labels


def _emotion_pairs(cfg: TrainConfig, size: int, stage: Any, model: Any = None) -> Dataset:
    from ..data.decoupling import EmotionPairsDataset

    d = cfg.data
    labels = _emotion_labels(cfg, stage)
    return EmotionPairsDataset(data_folder(cfg), labels, repeats=d.repeats, seed=cfg.seed, hflip=d.hflip,
                               size=d.size or size)


def _audio_windows(cfg: TrainConfig, size: int, stage: Any, model: Any) -> Dataset:
    from ..data.audio_windows import WindowDataset, load_audio_windows
    from .stages.companion import frames_bank_reader

    if model is None:
        raise InputError(f"stage {stage.name!r}: audio windows are labelled by the frozen animator: pass the model")
    a, o = cfg.audio, stage.data_options(cfg)  # {"banks": (...), "length": frames, "frames": keep them}
    windows = load_audio_windows(data_folder(cfg), frames_bank_reader(model.animator, o["banks"]), size=size,
                                 length=o["length"], holdout=a.holdout, keep_frames=o["frames"],
                                 max_clips=a.max_clips, max_frames=a.max_frames, fps=a.fps)
    return WindowDataset(windows, "train", frames=o["frames"])


def _clips_with_sound(cfg: TrainConfig, stage: Any, every: bool = False) -> None:
    """Preflight: some clip (``every``: each clip) may have sound, a ``.wav`` beside it or a video container."""
    from ..data.datasets import list_clips

    clips = list_clips(data_folder(cfg))
    silent = [c for c in clips if not (c.path.with_suffix(".wav").is_file() or c.kind == "video")]
    if silent and (every or len(silent) == len(clips)):
        raise InputError(f"stage {stage.name!r} trains on clips with sound: {silent[0].name!r} under "
                         f"{data_folder(cfg)!r} has no .wav of the same name beside it and is not a video "
                         "(plugtalk prepare writes the wav)")


def _mouth_swap_check(cfg: TrainConfig, stage: Any) -> None:
    """With L_sync^m on (a sync window in the stage's data options) every clip needs sound."""
    if stage.data_options is not None and stage.data_options(cfg).get("sync_window"):
        _clips_with_sound(cfg, stage, every=True)


def _synthetic_audio_windows(n: int, size: int, seed: int) -> Dataset:
    """``n`` random 5-frame windows with frames (what the audio stages read; EDTalk's bank sizes)."""
    import torch

    from ..backbones.edtalk import EDTalkConfig
    from ..data.audio_windows import AudioClip, AudioWindows, WindowDataset

    c = EDTalkConfig()
    g = torch.Generator().manual_seed(seed)
    length = 5
    frames = length + n - 1
    clip = AudioClip("synthetic", "synthetic", torch.rand(frames, 1, 80, 16, generator=g) * 8 - 4,
                     {bank: torch.randn(frames, k, generator=g) * 0.1 for bank, k in
                      (("mouth", c.mouth_dim), ("pose", c.pose_dim), ("expression", c.expression_dim))},
                     torch.randint(0, 256, (frames, 3, size, size), generator=g, dtype=torch.uint8))
    return WindowDataset(AudioWindows([clip], length), frames=True)


register_dataset("pairs", _pairs, lambda n, size, seed: _RandomItems(n, size, seed, ("source", "driving")))
register_dataset("mouth-swap", _mouth_swap, _synthetic_mouth_swap, check=_mouth_swap_check)
register_dataset("emotion-pairs", _emotion_pairs,
                 lambda n, size, seed: _RandomItems(n, size, seed, ("source", "driving"), {"emotion": 0}),
                 check=_emotion_labels)
register_dataset("audio-windows", _audio_windows, _synthetic_audio_windows, check=_clips_with_sound)


def build_dataset(cfg: TrainConfig, size: int, model: Any = None) -> Dataset:
    """The training data of ``cfg.stage`` from ``cfg.data`` (frames resized to ``data.size`` or ``size``);
    ``model``: the model the stage trains (kinds that label frames with the frozen animator need it).

    Raises:
        InputError: ``data.folder`` not set or holding no usable clips, or labels the stage needs missing.
    """
    stage = _stage_with_data(cfg)
    return DATASETS[stage.data](cfg, size, stage, model)


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
