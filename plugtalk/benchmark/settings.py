"""Options of ``plugtalk benchmark`` (one dataclass, bounds checked before any work)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import InputError

__all__ = ["BenchmarkSettings"]

MAX_FRAMES = 1000


@dataclasses.dataclass
class BenchmarkSettings:
    """``data``: the clip folder (:func:`plugtalk.benchmark.pairs.load_data`); ``out``: the report folder;
    ``frames`` per cross pair (over the driver's first 100), ``self_frames`` per self pair; ``max_pairs`` /
    ``max_self``: at most this many pairs, spread evenly; ``jobs`` worker processes; ``resume``: keep the rows
    an earlier run cached in ``out``; ``split``: the manifest split scored; ``stills``: extra sources;
    ``*_weights``: user-supplied networks (ArcFace for CSIM, Inception-v3 for FID, SyncNet, an emotion
    classifier); ``audio_checkpoint``: EDTalk's audio-to-mouth weights (fixtalk-mead-audio); ``seed``: of the
    bootstrap."""

    data: Path
    out: Path
    protocol: str = "leakage"
    frames: int = 10
    self_frames: int = 40
    max_pairs: int | None = None
    max_self: int | None = None
    jobs: int = 1
    resume: bool = False
    split: str = "test"
    stills: Path | None = None
    arcface_weights: Path | None = None
    inception_weights: Path | None = None
    syncnet_weights: Path | None = None
    emotion_weights: Path | None = None
    audio_checkpoint: Path | None = None
    seed: int = 0

    def check(self) -> "BenchmarkSettings":
        """Raises: InputError for counts outside their bounds or an unknown protocol."""
        from . import PROTOCOLS

        if self.protocol not in PROTOCOLS:
            raise InputError(f"unknown --protocol {self.protocol!r}; choose from {', '.join(PROTOCOLS)}")
        for name, v, hi in (("--frames", self.frames, MAX_FRAMES), ("--self-frames", self.self_frames, MAX_FRAMES)):
            if not 1 <= v <= hi:
                raise InputError(f"{name} must be between 1 and {hi}, got {v}")
        for name, v in (("--max-pairs", self.max_pairs), ("--max-self", self.max_self)):
            if v is not None and not 0 <= v <= 10_000_000:
                raise InputError(f"{name} must be >= 0, got {v}")
        if self.audio_checkpoint is not None and not Path(self.audio_checkpoint).is_file():
            raise InputError(f"--audio-checkpoint {str(self.audio_checkpoint)!r} does not exist")
        if self.arcface_weights is not None and not Path(self.arcface_weights).is_file():
            raise InputError(f"--arcface-weights {str(self.arcface_weights)!r} does not exist")
        return self
