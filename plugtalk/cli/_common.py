"""Shared CLI plumbing: plugtalk's own errors as a one-line message and exit 2; user text printed verbatim
(never read as Rich markup, so ``in/[draft]face.png`` stays as it is); Python warnings as ``warning:`` lines;
``--device`` checked before any model is loaded."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import InputError, PlugtalkError

console = Console()
err_console = Console(stderr=True)

_LABEL_STYLE = {"error": "bold red", "warning": "bold yellow", "note": "bold yellow"}


def say(text: str) -> None:
    """Print a line of plain text (paths and numbers) on stdout: no markup, no highlighting."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def tell(label: str, text: object, console_: Console | None = None) -> None:
    """Print ``label: text`` on stderr (or ``console_``), the label styled, ``text`` verbatim."""
    style = _LABEL_STYLE.get(label, "bold")
    (console_ or err_console).print(f"[{style}]{label}:[/] {escape(str(text))}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print :class:`~plugtalk.errors.PlugtalkError` (and file errors) as ``error: ...`` and exit with 2."""
    try:
        yield
    except (PlugtalkError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError) as e:
        tell("error", e)
        raise typer.Exit(code=2) from None


@contextlib.contextmanager
def console_warnings() -> Iterator[None]:
    """Show Python warnings raised inside the block at once, as ``warning: message`` lines on stderr (each
    text once; deprecation warnings are left to Python's filters), instead of Python's
    ``file:line: UserWarning: ...`` with a source line."""
    previous = warnings.showwarning
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (DeprecationWarning, PendingDeprecationWarning)):
            return previous(message, category, filename, lineno, file, line)
        text = str(message)
        if text not in seen:
            seen.add(text)
            tell("warning", text)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = previous


def parse_device(device: str):
    """``--device`` as a ``torch.device``, checked: a CUDA device needs a GPU that torch can use.

    Raises:
        InputError: an unknown device name, CUDA without a usable GPU, or a GPU index out of range.
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"--device {device!r} is not a device name (cpu, cuda, cuda:N): {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: CUDA is not available on this machine (no GPU, no driver, or a "
                             "CPU-only torch build); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def print_table(table) -> None:
    """Print a rich table; off a terminal (logs, pipes, CI) on a wide page so columns are not squeezed."""
    target = console if console.is_terminal else Console(width=max(console.width, 160))
    target.print(table)
