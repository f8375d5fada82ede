"""``--dataset hdtf``: HDTF's clips as HDTF names them (``WDA_BarackObama_000.mp4``: source prefix, person,
clip number), anywhere under ROOT.  The identity is the name without its clip number.  Split 8:2 by identity
(EDTalk suppl. 1.2): a seeded permutation of the sorted identities, the first fifth (at least one) is the test
split; it is written to a split file (default ``<out>/hdtf_split.json``) that later runs read back instead of
drawing again, so adding clips never moves a person between splits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...io.jsonfile import write_json
from ...io.paths import VIDEO_SUFFIXES
from .base import Recipe, VideoJob, existing_root, name_part, register

SPLIT_FILE = "hdtf_split.json"
TEST_SHARE = 0.2
_CLIP_NUMBER = re.compile(r"^(.+?)_(\d+)$")


def hdtf_identity(stem: str) -> str:
    """``WDA_BarackObama_000`` -> ``WDA_BarackObama`` (a name without a clip number is its own identity)."""
    m = _CLIP_NUMBER.match(stem)
    return m.group(1) if m else stem


def draw_split(identities, seed: int) -> dict[str, list[str]]:
    """``{"train": [...], "test": [...]}``: 20 % of the identities (at least one when there are two or more)
    in test, by a permutation seeded with ``seed``."""
    ids = sorted(set(identities))
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test = max(1, round(TEST_SHARE * len(ids))) if len(ids) >= 2 else 0
    test = sorted(ids[i] for i in order[:n_test])
    return {"train": sorted(set(ids) - set(test)), "test": test}


def _read_split(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
        return {i: s for s in ("train", "test") for i in data[s]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"HDTF split file {str(path)!r} is unreadable ({e}); delete it to draw the split again") \
            from None


def hdtf_jobs(root, *, out=None, seed: int = 0, split_file=None, identity=None) -> list[VideoJob]:
    """One job per video under ``root``, with the split of the split file (drawn and written when missing).

    Raises:
        InputError: no video; an identity the existing split file does not list; a bad split file.
    """
    root = existing_root(root, "hdtf")
    videos = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
                    and not f.name.startswith("."))
    if not videos:
        raise InputError(f"--dataset hdtf: no video under {str(root)!r}")
    idents = {v: name_part(hdtf_identity(name_part(v.stem, "HDTF clip")), "HDTF identity") for v in videos}
    path = Path(split_file) if split_file is not None else (Path(out) / SPLIT_FILE if out is not None else None)
    if path is not None and path.is_file():
        split = _read_split(path)
        unknown = sorted(set(idents.values()) - set(split))
        if unknown:
            raise InputError(f"HDTF identities {unknown[:5]} are not in the split file {str(path)!r}; "
                             "delete it to draw the split again (or add them by hand)")
    else:
        drawn = draw_split(idents.values(), seed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {"seed": seed, "test_share": TEST_SHARE, **drawn})
        split = {i: s for s, ids in drawn.items() for i in ids}
    return [VideoJob(v, idents[v], v.stem, split=split[idents[v]], dataset="hdtf") for v in videos]


register(Recipe("hdtf", "HDTF: <source>_<person>_<nnn>.mp4; 8:2 split by identity, seeded, kept in a split file",
                hdtf_jobs))
