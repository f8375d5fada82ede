"""Atomic file output: write to a temporary file in the destination folder, then rename.

A crash, a kill or an exception mid-write leaves either the previous file or nothing, never a
truncated one (``os.replace`` is atomic on POSIX within one filesystem).  The temporary file is removed
on an exception, on Ctrl-C (SIGINT) and on SIGTERM (``timeout``, ``kill``, job schedulers): while an
atomic write is open in the main thread, SIGTERM raises ``SystemExit(143)`` instead of killing the
process outright, unless the program installed its own SIGTERM handler.  Only SIGKILL can leave one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from .oserrors import as_os_error

__all__ = ["atomic_path", "check_output_path", "sigterm_as_exit", "save_figure"]


def _file_mode() -> int:
    """Permission bits a newly created file gets under the process umask (``mkstemp`` uses 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def check_output_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking its folder exists and is writable.

    Raises:
        InputError: the parent folder is missing or not writable, or ``path`` is a folder.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise InputError(f"output path {str(p)!r} is a folder; give a file name")
    if not parent.is_dir():
        raise InputError(f"output folder {str(parent)!r} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise InputError(f"output folder {str(parent)!r} is not writable")
    return p


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


_sigterm = {"depth": 0, "installed": False}


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Inside the block, SIGTERM raises ``SystemExit(143)`` so ``finally`` / ``except`` clean-up runs, as for
    Ctrl-C.  Only in the main thread and only over Python's default handler (a program's own handler is
    kept); blocks may nest and end in any order - the default returns when the last one ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _sigterm["depth"] == 0 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        _sigterm["installed"] = True
    _sigterm["depth"] += 1
    try:
        yield
    finally:
        _sigterm["depth"] -= 1
        if _sigterm["depth"] == 0 and _sigterm["installed"]:
            _sigterm["installed"] = False
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The temporary file keeps ``path``'s suffix (some writers pick the format from it).  On any
    exception the temporary file is removed and ``path`` is left untouched.
    """
    dest = check_output_path(path)
    with sigterm_as_exit():
        with _atomic_temp(dest, suffix) as tmp_path:
            yield tmp_path


@contextlib.contextmanager
def _atomic_temp(dest: Path, suffix: str | None) -> Iterator[Path]:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.partial-",
                                   suffix=dest.suffix if suffix is None else suffix, dir=dest.parent)
    except OSError as e:  # a read-only mount, a full disk, a name over the file system's limit
        raise OSError(e.errno, e.strerror, str(dest)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    # keep an overwritten file's permissions; a new file gets the usual umask-based ones, not 0o600
    mode = (dest.stat().st_mode & 0o7777) if dest.is_file() else _FILE_MODE
    os.chmod(tmp_path, mode)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)  # again: some writers (safetensors) replace the file with a 0o600 one
        os.replace(tmp_path, dest)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        translated = _about_dest(e, tmp_path, dest)
        if translated is not None:
            raise translated from e
        raise


def _about_dest(e: BaseException, tmp_path: Path, dest: Path) -> OSError | None:
    """A writer's OS error (disk full, ...) about the hidden temporary file, reported against ``dest``; ``None``
    for any other error (including an OSError about another file, e.g. an input that vanished)."""
    if isinstance(e, OSError) and e.filename is not None and Path(os.fsdecode(e.filename)).name != tmp_path.name:
        return None
    return as_os_error(e, dest)


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically and close it (also on an error).  -> the path."""
    from .._optional import require
    require("matplotlib", "eval", "writing plots")
    import matplotlib.pyplot as plt

    p = Path(path)
    try:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return p
