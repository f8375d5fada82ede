"""Deployment: export a model to ONNX (:mod:`.onnx_export`) and run it on onnxruntime (:mod:`.onnx_runtime`).

Both need the optional extra ``plugtalk[onnx]`` (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

__all__ = ["MANIFEST", "require_onnx"]

#: The description file of an exported model folder.
MANIFEST = "plugtalk-onnx.json"


def require_onnx(*modules: str) -> None:
    """Import ``modules`` or raise :class:`~plugtalk._optional.MissingExtra` naming ``plugtalk[onnx]``."""
    from .._optional import require

    for name in modules:
        require(name, "onnx", "ONNX support")
