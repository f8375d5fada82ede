"""Exceptions raised by plugtalk.  All derive from :class:`PlugtalkError`; the ones about bad input
also derive from :class:`ValueError` so generic handlers keep working."""

from __future__ import annotations

__all__ = ["PlugtalkError", "InputError", "CheckpointError", "ConversionError", "NoFaceError"]


class PlugtalkError(Exception):
    """Base class of every error plugtalk raises on purpose."""


class InputError(PlugtalkError, ValueError):
    """A tensor, image, video, audio file or path given by the user cannot be used as is."""


class NoFaceError(InputError):
    """No face was detected where one is required."""


class CheckpointError(PlugtalkError, ValueError):
    """A checkpoint file is missing, truncated, not a weights file, or unsafe to load."""


class ConversionError(CheckpointError):
    """An official checkpoint's keys or shapes do not fit the requested backbone.

    Attributes:
        backbone: the backbone that was asked for.
        looks_like: the backbone the file's keys suggest, or ``None``.
        missing, unexpected: official keys expected but absent / present but unknown.
        mismatched: ``(key, file_shape, expected_shape)`` triples.
    """

    def __init__(self, message: str, *, backbone: str = "", looks_like: str | None = None,
                 missing: list[str] | None = None, unexpected: list[str] | None = None,
                 mismatched: list[tuple[str, tuple, tuple]] | None = None):
        super().__init__(message)
        self.backbone, self.looks_like = backbone, looks_like
        self.missing, self.unexpected = missing or [], unexpected or []
        self.mismatched = mismatched or []
