"""Shared CLI plumbing: turn plugtalk's own errors into a one-line message and a nonzero exit."""

from __future__ import annotations

import contextlib
from typing import Iterator

import typer
from rich.console import Console

from ..errors import PlugtalkError

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print :class:`~plugtalk.errors.PlugtalkError` (and file errors) as ``error: ...`` and exit with 2."""
    try:
        yield
    except (PlugtalkError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def print_table(table) -> None:
    """Print a rich table; off a terminal (logs, pipes, CI) on a wide page so columns are not squeezed."""
    target = console if console.is_terminal else Console(width=max(console.width, 160))
    target.print(table)
