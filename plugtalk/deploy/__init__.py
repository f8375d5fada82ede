"""Deployment: export a model to ONNX (:mod:`.onnx_export`) and run it on onnxruntime (:mod:`.onnx_runtime`).

Both need the optional extra ``plugtalk[onnx]`` (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

__all__ = ["MANIFEST", "require_onnx"]

#: The description file of an exported model folder.
MANIFEST = "plugtalk-onnx.json"


def require_onnx(*modules: str) -> None:
    """Import ``modules`` or raise one clear :class:`~plugtalk.errors.InputError` naming the extra to install."""
    import importlib

    from ..errors import InputError

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise InputError(f"ONNX support needs the '{name}' package: pip install 'plugtalk[onnx]'") from None
