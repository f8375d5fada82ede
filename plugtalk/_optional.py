"""Optional dependencies: which pip extra brings which package, and one clear error when it is missing.

plugtalk's core (``plugtalk.emi``, ``edi``, ``retrofitting``, ``hooks``, ``backbones``, ``adapters``) needs
only torch, torchvision, timm, einops, numpy and safetensors.  Everything else is an extra named for what
it serves (``pip install 'plugtalk[video]'``; ``pyproject.toml`` lists them).  A feature imports its
packages through :func:`require`, which raises :class:`MissingExtra` - one line naming the extra - when
one is not installed; the CLI prints it as ``error: ...`` and exits with 2 (:func:`missing_extra` turns
a plain ``ModuleNotFoundError`` of a known package into the same message).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import PlugtalkError

__all__ = ["MissingExtra", "require", "missing_extra", "PACKAGES"]

#: import name -> (pip package, the extra that brings it for most features).
PACKAGES: dict[str, tuple[str, str]] = {
    "av": ("av (PyAV)", "video"),
    "dlib": ("dlib-bin", "face"),
    "face_recognition_models": ("face-recognition-models", "face"),
    "skimage": ("scikit-image", "face"),
    "scipy": ("scipy", "eval"),
    "matplotlib": ("matplotlib", "eval"),
    "soundfile": ("soundfile", "audio"),
    "librosa": ("librosa", "audio"),
    "skvideo": ("scikit-video", "demo"),
    "tensorboard": ("tensorboard", "train"),
    "pydantic": ("pydantic", "train"),
    "yaml": ("pyyaml", "train"),
    "tqdm": ("tqdm", "train"),
    "typer": ("typer", "cli"),
    "rich": ("rich", "cli"),
    "gradio": ("gradio", "ui"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "mediapipe": ("mediapipe", "mediapipe"),
}


class MissingExtra(PlugtalkError, ImportError):
    """An optional package is not installed; the message names the extra that installs it.

    Attributes:
        package: the import name (``"av"``); ``extra``: the pip extra (``"video"``).
    """

    def __init__(self, package: str, extra: str, feature: str | None = None):
        pip_name = PACKAGES.get(package, (package, extra))[0]
        what = feature or "this feature"
        super().__init__(f"{what} needs {pip_name}, which is not installed: pip install 'plugtalk[{extra}]'",
                         name=package)
        self.package, self.extra = package, extra


def require(module: str, extra: str | None = None, feature: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"av"``, ``"scipy.ndimage"``) or raise :class:`MissingExtra`.

    Args:
        module: dotted import name.
        extra: the extra that installs it (default: its entry in :data:`PACKAGES`).
        feature: what needs it, for the message (e.g. ``"reading video"``).

    Raises:
        MissingExtra: the package (the first component of ``module``) is not installed.  An import error
            inside an installed package is re-raised as it is.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != top:
            raise
        raise MissingExtra(top, extra or PACKAGES.get(top, (top, "all"))[1], feature) from None


def missing_extra(error: BaseException, feature: str | None = None) -> MissingExtra | None:
    """:class:`MissingExtra` for a ``ModuleNotFoundError`` of a package in :data:`PACKAGES`, else ``None``."""
    if isinstance(error, MissingExtra):
        return error
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.split(".")[0]
    if top not in PACKAGES:
        return None
    return MissingExtra(top, PACKAGES[top][1], feature)
