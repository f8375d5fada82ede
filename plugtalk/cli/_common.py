"""Shared CLI plumbing: plugtalk's own errors as a one-line message and exit 2; user text printed verbatim
(never read as Rich markup, so ``in/[draft]face.png`` stays as it is); Python warnings as ``warning:`` lines;
``--device`` checked before any model is loaded."""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as _usage
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as _usage

from ..errors import InputError, PlugtalkError
from ..io.oserrors import os_error_message

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
    """Print :class:`~plugtalk.errors.PlugtalkError` and every ``OSError`` (a missing file, a full disk, a
    read-only mount, a file name over the limit: :func:`plugtalk.io.oserrors.os_error_message`) as one
    ``error: ...`` line and exit with 2."""
    try:
        yield
    except PlugtalkError as e:
        tell("error", e)
        raise typer.Exit(code=2) from None
    except OSError as e:
        tell("error", os_error_message(e))
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


class OneLineErrors(TyperGroup):
    """The ``plugtalk`` group: a usage error of the command line (a value out of range, an unknown option or
    command, a missing option) is one ``error: ...`` line on stderr and exit 2, like every other refusal,
    instead of the framework's usage block and boxed panel."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _usage.NoArgsIsHelpError as e:  # plain ``plugtalk``: the help was printed
            sys.exit(e.exit_code)
        except _usage.UsageError as e:
            tell("error", usage_message(e))
            sys.exit(2)
        except _usage.ClickException as e:
            tell("error", e.format_message())
            sys.exit(e.exit_code)
        except typer.Abort:
            tell("error", "aborted")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def usage_message(e: _usage.UsageError) -> str:
    """A usage error as one line, pointing at the command's ``--help``."""
    text = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        text += f" (see {ctx.command_path} --help)"
    return text
