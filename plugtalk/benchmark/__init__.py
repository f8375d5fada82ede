"""``plugtalk benchmark``: the identity-leakage protocol (v2) and FixTalk's tables for any model ``animate`` takes.

>>> from plugtalk.benchmark import BenchmarkSettings, ModelSpec, run_benchmark
>>> run_benchmark(BenchmarkSettings(data="clips", out="report"), [ModelSpec("base", "a.safetensors"),
...               ModelSpec("fixtalk", "b.safetensors")])                                    # doctest: +SKIP
"""

from __future__ import annotations

from .runner import ModelSpec
from .settings import BenchmarkSettings

__all__ = ["BenchmarkSettings", "ModelSpec", "PROTOCOLS", "run_benchmark"]


def _leakage(*a, **k):
    from .leakage import run_leakage

    return run_leakage(*a, **k)


def _hdtf(*a, **k):
    from .paper import run_fixtalk_hdtf

    return run_fixtalk_hdtf(*a, **k)


def _mead(*a, **k):
    from .paper import run_fixtalk_mead_audio

    return run_fixtalk_mead_audio(*a, **k)


#: protocol name -> runner ``(settings, models, log) -> report dict | None``.
PROTOCOLS = {"leakage": _leakage, "fixtalk-hdtf": _hdtf, "fixtalk-mead-audio": _mead}


def run_benchmark(settings: BenchmarkSettings, models, log=print) -> dict | None:
    """Check the settings and models, create ``settings.out`` and run the protocol.

    Args:
        models: :class:`ModelSpec` list (labels unique); the first is the baseline of the paired differences.

    Returns:
        The report data (``report.json``'s content); ``None`` on torchrun ranks other than 0.

    Raises:
        InputError: bad settings, no model, duplicate labels, a missing checkpoint, data without clips.
    """
    from pathlib import Path

    from ..errors import InputError

    settings.check()
    models = list(models)
    if not models:
        raise InputError("give at least one model (-c MODEL)")
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels) or "copy-source" in labels:
        raise InputError(f"model labels must be unique and not 'copy-source': {labels}")
    from ..weights.load import load_animator

    for m in models:
        if m.checkpoint is not None and not Path(m.checkpoint).is_file():
            raise InputError(f"-c {m.checkpoint!r}: the checkpoint does not exist")
        if m.renderer is None:  # fail here, before any pair, not inside a worker process
            load_animator(m.checkpoint, m.backbone)
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file, expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    return PROTOCOLS[settings.protocol](settings, models, log=log)
