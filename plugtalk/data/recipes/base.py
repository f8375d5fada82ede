"""What a dataset recipe produces: one :class:`VideoJob` per source video (who is in it, which split,
which labels, where its audio and annotated face boxes are), and the registry of recipes.

A recipe is its own module with a ``jobs(root, *, out, seed, split_file)`` function, registered once with
:func:`register` (see ``folder.py``, ``mead.py``, ``hdtf.py``, ``vfhq.py``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Mapping

from ...errors import InputError
from ...face.detect import FaceBox
from ...io.paths import TEMP_NAME_EXTRA, check_path_component

__all__ = ["VideoJob", "Recipe", "register", "recipe", "recipe_names", "name_part"]

#: The separator between identity and clip in a prepared clip's file name (the dataset convention).
SEP = "__"


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """One source video to prepare.

    Attributes:
        source: the video file.
        identity: the person (one file-name component; the clips are ``<identity>__<clip>[_NN].mp4``).
        clip: the clip stem, ``None`` for the source's own name (``id__clip.mp4`` sources keep their parts).
        split: ``"train"`` / ``"test"``, or ``None`` when the dataset has no split.
        labels: extra labels for the manifest (MEAD: ``emotion``, ``intensity``, ``view``, ``sentence``).
        audio: a separate audio file (MEAD's ``.m4a``) used when the video has no sound track of its own.
        boxes: annotated face boxes ``{native frame index: FaceBox}`` in source pixels (VFHQ); when given,
            no face detector runs.
        dataset: the recipe's name.
    """

    source: Path
    identity: str | None
    clip: str | None = None
    split: str | None = None
    labels: Mapping[str, object] = dataclasses.field(default_factory=dict)
    audio: Path | None = None
    boxes: Mapping[int, FaceBox] | None = None
    dataset: str = "folder"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A registered dataset reader: ``jobs(root, out=, seed=, split_file=) -> list[VideoJob]``."""

    name: str
    help: str
    jobs: Callable[..., list[VideoJob]]


_RECIPES: dict[str, Recipe] = {}


def register(r: Recipe) -> Recipe:
    if r.name in _RECIPES:
        raise ValueError(f"dataset recipe {r.name!r} registered twice")
    _RECIPES[r.name] = r
    return r


def recipe_names() -> tuple[str, ...]:
    return tuple(_RECIPES)


def recipe(name: str) -> Recipe:
    """The recipe called ``name``.

    Raises:
        InputError: no such recipe.
    """
    if name not in _RECIPES:
        raise InputError(f"unknown --dataset {name!r}; choose from {', '.join(_RECIPES)}")
    return _RECIPES[name]


def name_part(text: str, what: str) -> str:
    """``text`` checked as one file-name component (it comes from a dataset path and goes into clip names).

    Raises:
        InputError: a separator, ``..``, a control character, an empty or an over-long name (naming ``what``).
    """
    return check_path_component(text, what, reserve=len(SEP) + len("_00.mp4") + TEMP_NAME_EXTRA)


def existing_root(root: str | os.PathLike, dataset: str) -> Path:
    p = Path(root)
    if not p.is_dir():
        raise InputError(f"--dataset {dataset}: ROOT {str(p)!r} is not a folder")
    return p
