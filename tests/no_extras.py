"""Run plugtalk as if only some packages were installed: ``python tests/no_extras.py BLOCKED -c CODE`` or
``... BLOCKED -m MODULE ARGS``, where BLOCKED is ``all`` (every optional package), ``cli`` (all but the
``[cli]`` extra's) or a comma-separated list of top-level import names that
must look absent (their ``import`` raises ``ModuleNotFoundError``; ``importlib.util.find_spec`` returns
``None``), as on a machine where ``pip install plugtalk`` installed the core only.

The blocker wraps every finder on ``sys.meta_path``, so a package that is installed is still hidden.
"""

from __future__ import annotations

import runpy
import sys

#: The packages of every optional extra (pyproject.toml).  yaml, tqdm and PIL are not listed: timm and
#: torchvision, core dependencies, require them.
OPTIONAL = ("av", "dlib", "face_recognition_models", "skimage", "skvideo", "scipy", "matplotlib", "soundfile",
            "librosa", "tensorboard", "pydantic", "gradio", "onnx", "onnxruntime", "onnxscript", "mediapipe",
            "selenium", "typer", "rich")
#: What ``pip install 'plugtalk[cli]'`` adds: typer, rich, and pydantic (which typer requires).
CLI = ("typer", "rich", "pydantic")


class _Hidden:
    def __init__(self, finder, blocked: frozenset[str]):
        self._finder, self._blocked = finder, blocked

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self._blocked:
            return None
        find = getattr(self._finder, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, attr):
        return getattr(self._finder, attr)


def hide(blocked) -> None:
    """Make the packages ``blocked`` (top-level import names) unimportable in this process."""
    blocked = frozenset(blocked)
    present = sorted(n for n in sys.modules if n.split(".")[0] in blocked)
    if present:
        raise RuntimeError(f"already imported: {present}")
    sys.meta_path[:] = [_Hidden(f, blocked) for f in sys.meta_path]


if __name__ == "__main__":
    names, mode, target, *rest = sys.argv[1:]
    groups = {"all": OPTIONAL, "cli": tuple(n for n in OPTIONAL if n not in CLI)}
    hide(groups[names] if names in groups else [n for n in names.split(",") if n])
    if mode == "-c":
        sys.argv = ["-c", *rest]
        exec(compile(target, "<no_extras>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = [target, *rest]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
