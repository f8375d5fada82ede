"""``plugtalk ui``: serve the local Gradio page (needs ``plugtalk[ui]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app
from ._common import console, err_console, user_errors


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: this machine only; another "
                                                         "address exposes the page to the network)"),
    port: Optional[int] = typer.Option(None, "--port", help="port (default: the first free one from 7860)"),
    max_upload_mb: int = typer.Option(50, "--max-upload-mb", min=1, help="size limit of each uploaded file"),
    max_frames: int = typer.Option(300, "--max-frames", min=1, help="most frames one request may animate"),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="where uploads and results go (default: a new "
                                                                   "temporary folder)"),
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
        cfg = UIConfig(max_upload_mb=max_upload_mb, max_frames=max_frames, device=device)
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
            cfg.workdir = workdir.resolve()

        def warn(text: str) -> None:
            err_console.print(f"[bold yellow]warning:[/] {text}", highlight=False, soft_wrap=True)

        app_, url = launch(host, port, cfg, block=False, on_warning=warn)
        console.print(f"plugtalk ui on {url} (uploads and results in {cfg.workdir}); Ctrl+C stops it",
                      highlight=False, soft_wrap=True)
        try:
            app_.block_thread()
        finally:
            app_.close()
