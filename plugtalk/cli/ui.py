"""``plugtalk ui``: serve the local Gradio page (needs ``plugtalk[ui]``)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import typer

from . import app
from ._common import console, err_console, parse_device, user_errors


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: this machine only; another "
                                                         "address exposes the page to the network)"),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535,
                                       help="port (default: the first free one from 7860)"),
    max_upload_mb: int = typer.Option(50, "--max-upload-mb", min=1, help="size limit of each uploaded file"),
    max_frames: int = typer.Option(300, "--max-frames", min=1, help="most frames one request may animate"),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="where uploads and results go (default: a new "
                                                                   "temporary folder, removed when the server stops)"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N"),
) -> None:
    """Open a local web page: upload a portrait and a driving video (or use the demo pair), pick a model, animate.

    For a model retrofitted with EMI/EDI the page also renders the pair with the modules off and shows both with their identity shift toward the driver.
    """
    from ..errors import InputError

    with user_errors():
        try:
            from ..ui import UIConfig, launch
        except ImportError as e:
            raise InputError(f"plugtalk ui needs Gradio ({e.name} is missing): pip install 'plugtalk[ui]'") from None
        parse_device(device)
        _check_host(host)
        if workdir is not None and workdir.exists() and not workdir.is_dir():
            raise InputError(f"--workdir {str(workdir)!r} is a file, not a folder")

        def warn(text: str) -> None:
            err_console.print(f"[bold yellow]warning:[/] {text}", highlight=False, soft_wrap=True)

        with _work_folder(workdir) as folder:
            cfg = UIConfig(workdir=folder, max_upload_mb=max_upload_mb, max_frames=max_frames, device=device)
            app_, url = launch(host, port, cfg, block=False, on_warning=warn)
            console.print(f"plugtalk ui on {url} (uploads and results in {cfg.workdir}); Ctrl+C stops it",
                          highlight=False, soft_wrap=True)
            try:
                app_.block_thread()
            finally:
                app_.close()


def _check_host(host: str) -> None:
    """Resolve ``--host`` once: an address that cannot be resolved is one error, not a resolver retry loop.

    Raises:
        InputError: naming the host.
    """
    import socket

    from ..errors import InputError

    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise InputError(f"--host {host!r} is not an address of this machine or a name it can resolve "
                         f"({getattr(e, 'strerror', None) or e})") from None


@contextlib.contextmanager
def _work_folder(workdir: Optional[Path]) -> Iterator[Path]:
    """``--workdir`` (created if missing, kept afterwards), or a new temporary ``plugtalk-ui-*`` folder that is
    removed when the server stops or fails to start."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir.resolve()
        return
    folder = Path(tempfile.mkdtemp(prefix="plugtalk-ui-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
