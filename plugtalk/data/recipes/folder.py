"""``--dataset folder`` (the default): video files, or folders of videos (non-recursive); the identity is the
``id__`` prefix of a file name, else its stem (or ``--id``); no split, no labels."""

from __future__ import annotations

from .base import Recipe, VideoJob, register


def folder_jobs(*roots, out=None, seed: int = 0, split_file=None, identity: str | None = None) -> list[VideoJob]:
    from ..prepare import _check_identity, find_videos

    _check_identity(identity)
    return [VideoJob(v, identity, dataset="folder") for v in find_videos(roots)]


register(Recipe("folder", "video files or folders of videos (identity: the 'id__' file-name prefix)", folder_jobs))
