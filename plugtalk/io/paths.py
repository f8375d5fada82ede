"""Guards on the paths a command writes: never onto one of its own inputs, never two outputs onto one file,
the file type the name promises, and no empty folders left behind when a command fails.

Every CLI command calls :func:`check_outputs` with all its output and input paths before it writes anything.
Existing outputs that are not inputs are replaced (atomically, only once the new file is complete).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Union

from ..errors import InputError

__all__ = ["same_file", "check_outputs", "require_suffix", "check_folder_holds_no_inputs", "removing_new_folders"]

PathLike = Union[str, os.PathLike]
Paths = Union[PathLike, Iterable[PathLike], None]


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: equal once resolved (``..``, symlinks, relative parts), or
    the same inode (hard links, bind mounts) when both exist."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def _named(paths: Mapping[str, Paths]) -> list[tuple[str, Path]]:
    out = []
    for name, value in paths.items():
        if value is None:
            continue
        items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
        out += [(name, Path(p)) for p in items if p is not None]
    return out


def check_outputs(outputs: Mapping[str, Paths], inputs: Mapping[str, Paths]) -> None:
    """Refuse an output that is one of the inputs, or two outputs that are one file.

    Args:
        outputs: option name (``"--out"``) -> the path(s) the command will write.
        inputs: option name -> the path(s) it reads (``None`` entries are ignored).

    Raises:
        InputError: naming both options and the path, before anything is written.
    """
    outs, ins = _named(outputs), _named(inputs)
    for i, (oname, opath) in enumerate(outs):
        for iname, ipath in ins:
            if same_file(opath, ipath):
                raise InputError(f"{oname} {str(opath)!r} is the {iname} input: writing it would destroy the "
                                 "input; choose another output name")
        for oname2, opath2 in outs[i + 1:]:
            if same_file(opath, opath2):
                raise InputError(f"{oname} and {oname2} are the same file {str(opath)!r}; give two names")


def require_suffix(path: PathLike | None, suffixes: tuple[str, ...], option: str) -> None:
    """Refuse an output name whose suffix is not one of ``suffixes`` (``(".json",)``), case-insensitively.

    Raises:
        InputError: e.g. ``--json out.mp4``.
    """
    if path is None:
        return
    if Path(path).suffix.lower() not in suffixes:
        raise InputError(f"{option} {str(path)!r}: the name must end in {' or '.join(suffixes)}")


def check_folder_holds_no_inputs(folder: PathLike, option: str, inputs: Iterable[PathLike], what: str) -> None:
    """Refuse an output ``folder`` that directly holds one of ``inputs`` (its outputs could replace them).

    Raises:
        InputError: naming the first such input.
    """
    f = Path(folder)
    if not f.is_dir():
        return
    for p in inputs:
        if same_file(Path(p).parent, f):
            raise InputError(f"{option} {str(f)!r} holds the {what} {str(p)!r}: outputs written there could replace "
                             "it; choose another folder")


@contextlib.contextmanager
def removing_new_folders(folder: PathLike) -> Iterator[Path]:
    """Yield ``folder``; if the block raises, remove the folders on its path that did not exist before and
    are empty now (deepest first), so a failed command leaves no empty output folders behind."""
    p = Path(folder)
    new = []
    q = p
    while not q.exists() and q != q.parent:
        new.append(q)
        q = q.parent
    try:
        yield p
    except BaseException:
        for d in new:  # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()  # only succeeds on an empty folder
        raise
