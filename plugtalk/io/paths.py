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

__all__ = ["same_file", "check_outputs", "require_suffix", "check_folder_holds_no_inputs", "removing_new_folders",
           "check_path_component", "check_inside", "check_outside_input_folders", "NAME_MAX_BYTES",
           "TEMP_NAME_EXTRA", "VIDEO_SUFFIXES"]

#: File suffixes read as video (here, not in :mod:`plugtalk.io.video`, so that listing clips needs no PyAV).
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".flv", ".wmv")

#: The longest file name (one path component, in UTF-8 bytes) that common file systems take (ext4, XFS, tmpfs).
NAME_MAX_BYTES = 255
#: Bytes :func:`plugtalk.io.atomic.atomic_path` adds to a file name for its temporary sibling
#: (``.<name>.partial-XXXXXXXX<suffix>``), which must fit the limit too.
TEMP_NAME_EXTRA = 32

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


def check_path_component(name: str, option: str, *, reserve: int = 0) -> str:
    """Refuse a name built from user text that is not exactly one path component.

    Args:
        name: the user's text (e.g. ``prepare --id``), used inside a file name.
        option: how the user gave it (``"--id"``), for the message.
        reserve: bytes the caller will add around ``name`` in the final file name (suffixes, separators).

    Returns:
        ``name`` unchanged.

    Raises:
        InputError: an empty name, ``.`` or ``..``, a path separator (``/``, ``\\``), a control character
            (including NUL), or a name whose final file name would exceed :data:`NAME_MAX_BYTES` bytes.
    """
    if not name or name in (".", ".."):
        raise InputError(f"{option} {name!r} is not a name: give one file-name component (letters, digits, '-', '_')")
    bad = [c for c in name if c in "/\\" or c == os.sep or (os.altsep and c == os.altsep)]
    if bad:
        raise InputError(f"{option} {name!r} contains a path separator {bad[0]!r}: it must be one file-name "
                         "component, not a path")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InputError(f"{option} {name!r} contains a control character: it must be a plain file-name component")
    if len(name.encode("utf-8", "surrogateescape")) + reserve > NAME_MAX_BYTES:
        raise InputError(f"{option} {name[:40]!r}...: file name too long (the file names built from it would exceed "
                         f"{NAME_MAX_BYTES} bytes)")
    return name


def check_inside(path: PathLike, folder: PathLike, option: str) -> Path:
    """Refuse an output ``path`` that does not lie inside ``folder`` once both are resolved.

    Returns:
        ``Path(path)``.

    Raises:
        InputError: ``path`` escapes ``folder`` (``..``, an absolute part, or a symlink out of it).
    """
    p, f = Path(path), Path(folder)
    rp, rf = p.resolve(), f.resolve()
    if rp.parent != rf and rf not in rp.parents:
        raise InputError(f"{option}: the output {str(p)!r} would be written outside {str(f)!r}; refused")
    return p


def check_outside_input_folders(outputs: Mapping[str, Paths], inputs: Mapping[str, Paths]) -> None:
    """Refuse an output that lies inside an input that is a folder (e.g. ``eval --pred frames/ --json
    frames/x.json``: a second run would score the report's plot as a frame).

    Raises:
        InputError: naming both options.
    """
    folders = [(name, p.resolve()) for name, p in _named(inputs) if p.is_dir()]
    for oname, opath in _named(outputs):
        ro = opath.resolve()
        for iname, folder in folders:
            if folder in ro.parents:
                raise InputError(f"{oname} {str(opath)!r} lies inside the {iname} folder {str(folder)!r}: outputs are "
                                 "never written into an input folder; choose another place")


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
