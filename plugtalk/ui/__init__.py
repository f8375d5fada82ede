"""``plugtalk ui``: a local Gradio page over :func:`plugtalk.animate.animate` (optional extra ``plugtalk[ui]``)."""

from .app import UIConfig, build_app, launch, run_request

__all__ = ["UIConfig", "build_app", "launch", "run_request"]
