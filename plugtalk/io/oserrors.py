"""One home for operating-system errors met while reading or writing files: a plain sentence naming the path.

A full disk, a read-only mount or an over-long file name is the user's environment, not a bug: the CLI reports
it as one ``error:`` line (``'out/o.mp4': no space left on device ...``) and exit 2, the UI as a message.  The
writers in :mod:`plugtalk.io.atomic` report these errors against the destination the user named (not the hidden
temporary file) and remove the temporary file first, so nothing partial stays behind.
"""

from __future__ import annotations

import errno
import os
import re

__all__ = ["os_error_message", "as_os_error"]

#: errno -> what to say (lower case, as the rest of plugtalk's messages) and what the user can do.
_TEXT = {
    errno.ENOSPC: "no space left on device (nothing was kept; free some space or write elsewhere)",
    errno.EDQUOT: "disk quota exceeded (nothing was kept; free some space or write elsewhere)",
    errno.EROFS: "read-only file system (write the output elsewhere)",
    errno.ENAMETOOLONG: "file name too long (one name in a path may have at most 255 bytes)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EMFILE: "too many open files",
    errno.EIO: "input/output error (a failing disk or a lost network mount)",
}

#: safetensors' Rust errors carry the OS error only in their text: ``... (os error 28)``.
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _shown(path: object) -> str:
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return repr(text if len(text) <= 120 else text[:60] + "..." + text[-40:])


def os_error_message(e: OSError) -> str:
    """``e`` as one line: the path(s) it names and what happened in words.

    >>> os_error_message(OSError(28, "No space left on device", "out/o.mp4"))
    "'out/o.mp4': no space left on device (nothing was kept; free some space or write elsewhere)"
    """
    code = e.errno
    text = _TEXT.get(code) if code is not None else None
    if text is None:
        text = (e.strerror or str(e) or type(e).__name__).strip()
        text = text[:1].lower() + text[1:]
    if code == errno.EXDEV:
        text = "cannot move a file across file systems"
    names = [_shown(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(names)}: {text}" if names else text


def as_os_error(e: BaseException, path: object) -> OSError | None:
    """An :class:`OSError` about ``path`` for an error raised while writing it, or ``None`` when ``e`` is none.

    Covers Python's and PyAV's ``OSError`` (whose file name may be a temporary sibling of ``path``) and
    safetensors' ``SafetensorError`` (``... (os error 28)``).
    """
    if isinstance(e, OSError):
        code = e.errno
    else:
        m = _RUST_OS_ERROR.search(str(e)) if type(e).__name__ == "SafetensorError" else None
        code = int(m.group(1)) if m else None
    if code is None:
        return None
    return OSError(code, os.strerror(code), os.fspath(path))
