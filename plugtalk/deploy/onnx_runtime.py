"""Run an exported model folder (:func:`~plugtalk.deploy.onnx_export.export_onnx`) on onnxruntime.

:class:`OnnxAnimator` offers the staged API :func:`plugtalk.animate.animate` drives
(``encode_source`` / ``encode_drivers`` / ``render`` and an ``adapter`` description), so
``plugtalk animate --runtime onnx`` runs the very same streaming pipeline (cropping, smoothing,
relative motion, paste-back, sound) with onnxruntime doing the model work.  Tensors cross the seam as
CPU float32 torch tensors (zero-copy to / from NumPy).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import bounded_threads
from ..errors import InputError
from ..weights.load import LoadedAnimator
from . import MANIFEST, require_onnx

__all__ = ["OnnxAnimator", "LoadedOnnxAnimator", "load_onnx_animator", "open_session", "default_providers",
           "is_onnx_export"]

#: Providers tried in this order when none are asked for (those the installed onnxruntime has).
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

_OP_PATTERNS = (
    # "Could not find an implementation for GridSample(22) node with name 'n0'"
    re.compile(r"implementation for (?P<op>[\w.]+)\((?P<ver>-?\d+)\) node with name '(?P<node>[^']*)'"),
    # "com.example:Warp5D(-1) is not a registered function/op"
    re.compile(r"(?P<domain>[\w.]*):(?P<op>\w+)\((?P<ver>-?\d+)\) is not a registered function/op"),
    # "Node (n0) Op (Foo) [ShapeInferenceError] ..." / "This is an invalid model. In Node, ("n0", Foo, "", -1) ..."
    re.compile(r"Node \((?P<node>[^)]*)\) Op \((?P<op>[\w.]+)\)"),
    re.compile(r"In Node, \(\"(?P<node>[^\"]*)\", (?P<op>[\w.]+), \"(?P<domain>[^\"]*)\""),
)


def default_providers() -> list[str]:
    """The preferred execution providers the installed onnxruntime offers (CPU always last)."""
    require_onnx("onnxruntime")
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in have]


def _explain(path: Path, error: Exception) -> str:
    import onnxruntime as ort

    text = str(error).strip()
    for pattern in _OP_PATTERNS:
        m = pattern.search(text)
        if m:
            g = m.groupdict()
            domain = g.get("domain") or "ai.onnx"
            ver = f", opset {g['ver']}" if g.get("ver") not in (None, "-1") else ""
            node = f" (node {g['node']!r})" if g.get("node") else ""
            return (f"onnxruntime {ort.__version__} cannot run {path.name}: operator {g['op']} "
                    f"(domain {domain}{ver}){node} is not supported")
    m = re.search(r"[Oo]pset (\d+)", text)
    if m:
        return f"onnxruntime {ort.__version__} cannot run {path.name}: unsupported opset {m.group(1)} ({text.splitlines()[0]})"
    return f"onnxruntime {ort.__version__} cannot load {path.name}: {text.splitlines()[0] if text else type(error).__name__}"


def _check_graph_inputs(folder: Path, manifest: dict, sessions: dict) -> None:
    """Each graph's inputs must be the manifest's (a swapped or foreign ``render.onnx`` is refused at load, not
    with onnxruntime's missing-inputs error at the first frame).

    Raises:
        InputError: naming the file, the inputs it has and the ones the manifest lists.
    """
    for graph, spec in manifest["graphs"].items():
        want = list(spec.get("inputs", []))
        got = [i.name for i in sessions[graph].get_inputs()]
        if want and got != want:
            raise InputError(f"{str(folder / spec['file'])!r} takes inputs {got}, but {MANIFEST} says the {graph} graph "
                             f"takes {want}: the folder's files do not belong together; export again")


def open_session(path: str | os.PathLike, providers: Sequence[str] | None = None, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` with full graph optimisation.

    Args:
        path: an ``.onnx`` file.
        providers: execution providers (default: :func:`default_providers`).
        threads: intra-op threads (``None`` or 0: onnxruntime's default, all cores; capped at the cores available,
            with a warning).

    Raises:
        InputError: missing file, or a model onnxruntime rejects; the message names the operator
            (and opset) it has no kernel for.
    """
    require_onnx("onnxruntime")
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise InputError(f"ONNX model {str(p)!r} does not exist")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    threads = bounded_threads(threads)
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(p), sess_options=options, providers=list(providers or default_providers()))
    except Exception as e:  # onnxruntime raises its own pybind exception types
        raise InputError(_explain(p, e)) from None


class _BackboneInfo:
    """What the pipeline reads of a backbone: its registry ``name`` and typed ``config``."""

    def __init__(self, name: str, config: Any):
        self.name, self.config = name, config


@dataclasses.dataclass
class _AdapterInfo:
    """The adapter description :func:`~plugtalk.animate.animate` reads (from the manifest)."""

    backbone: Any
    image_size: int
    drivers: tuple[str, ...]
    driving_fills: tuple[str, ...]
    control_replaces: dict[str, str]
    wants_images: bool = False
    #: the backbone's adapter's declared driving controls (read by animate as for the torch model)
    controls: tuple = ()

    def control(self, name: str):
        """The declared control ``name`` (``InputError`` naming the ones there are)."""
        for c in self.controls:
            if c.name == name:
                return c
        have = ", ".join(c.name for c in self.controls) or "none"
        raise InputError(f"{self.backbone.name} has no control {name!r} (its controls: {have})")


def is_onnx_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by :func:`~plugtalk.deploy.onnx_export.export_onnx`."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def _read_manifest(folder: Path) -> dict[str, Any]:
    if not folder.exists():
        raise InputError(f"ONNX model folder {str(folder)!r} does not exist")
    if not is_onnx_export(folder):
        raise InputError(f"{str(folder)!r} is not a plugtalk ONNX export (no {MANIFEST}); create one with "
                         "plugtalk export --format onnx")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{folder / MANIFEST}: unreadable manifest ({e})") from None
    if manifest.get("format") != "plugtalk-onnx" or int(manifest.get("format_version", 0)) != 1:
        raise InputError(f"{folder / MANIFEST}: unsupported format {manifest.get('format')!r} "
                         f"version {manifest.get('format_version')!r}")
    return manifest


def _numpy(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


class OnnxAnimator(nn.Module):
    """An exported model on onnxruntime with the staged API of :class:`~plugtalk.retrofitting.Retrofitted`
    (``encode_source``, ``encode_drivers``, ``render``; eval only).

    Args:
        folder: the export folder.
        providers: onnxruntime execution providers (default: TensorRT / CUDA when present, then CPU).
        threads: intra-op threads per session (``None``: onnxruntime's default).

    Raises:
        InputError: not an export folder, an unsupported manifest, or graphs onnxruntime rejects.
    """

    def __init__(self, folder: str | os.PathLike, providers: Sequence[str] | None = None, threads: int | None = None):
        super().__init__()
        from ..backbones import backbone_entry, get_backbone_class

        self.folder = Path(folder)
        self.manifest = m = _read_manifest(self.folder)
        try:
            config = get_backbone_class(m["backbone"]).config_from(m["backbone_config"])
        except (KeyError, ValueError, TypeError) as e:
            raise InputError(f"{self.folder / MANIFEST}: bad backbone description ({e})") from None
        self.adapter = _AdapterInfo(_BackboneInfo(m["backbone"], config), int(m["image_size"]), tuple(m["drivers"]),
                                    tuple(m["driving_fills"]),
                                    {c: v["replaces"] for c, v in m["controls"].items()},
                                    controls=backbone_entry(m["backbone"]).adapter_class().controls)
        self.sessions = {g: open_session(self.folder / spec["file"], providers, threads)
                         for g, spec in m["graphs"].items()}
        _check_graph_inputs(self.folder, m, self.sessions)
        self.levels = len(m["pyramid"])
        self.inputs = {i.name for i in self.sessions["render"].get_inputs()}
        self.eval()
        self._source_cache: tuple[Any, int, dict[str, np.ndarray]] | None = None

    @property
    def backbone(self) -> _BackboneInfo:
        return self.adapter.backbone

    @property
    def variant(self) -> str:
        m = self.manifest
        return {(False, False): "base", (True, False): "+EMI", (False, True): "+EDI", (True, True): "+EMI+EDI"}[
            (bool(m["emi"]), bool(m["edi"]))]

    @property
    def providers(self) -> list[str]:
        return self.sessions["render"].get_providers()

    def train(self, mode: bool = True) -> "OnnxAnimator":
        if mode:
            raise InputError("an ONNX model runs in eval mode only")
        return super().train(False)

    # -- the staged API -------------------------------------------------------------------------------
    def _encode(self, image: Tensor) -> list[np.ndarray]:
        return self.sessions["encode"].run(None, {"image": _numpy(image)})

    def encode_source(self, source: Tensor):
        """``(B, 3, S, S)`` in [-1, 1] -> :class:`~plugtalk.retrofitting.SourceState` (CPU float32)."""
        from ..backbones.base import Encoding
        from ..retrofitting import SourceState

        out = [torch.from_numpy(a) for a in self._encode(source)]
        return SourceState(source, Encoding(out[0], tuple(out[1:1 + self.levels])), out[1 + self.levels])

    def encode_drivers(self, frames: dict[str, Tensor]):
        """Motion codes of each driver (one graph run per distinct tensor) as a ``DriverState``."""
        from ..retrofitting import DriverState

        codes: dict[int, Tensor] = {}
        state = DriverState({}, {}, dict(frames))
        for name, image in frames.items():
            if id(image) not in codes:
                codes[id(image)] = torch.from_numpy(self._encode(image)[-1])
            state.codes[name] = codes[id(image)]
        return state

    def _source_feeds(self, source, batch: int) -> dict[str, np.ndarray]:
        """The source's encoding as graph inputs at ``batch`` (a batch-1 source is broadcast once, cached)."""
        cached = self._source_cache
        if cached is not None and cached[0] is source and cached[1] == batch:  # holds the object: no id reuse
            return cached[2]
        enc = source.encoding
        arrays = [enc.latent, *enc.pyramid, source.code]
        names = ["latent", *(f"pyramid_{i}" for i in range(self.levels)), "code"]
        feeds = {}
        for n, t in zip(names, arrays):
            a = _numpy(t)
            if a.shape[0] != batch:
                if a.shape[0] != 1:
                    raise InputError(f"source batch {a.shape[0]} does not match driver batch {batch}")
                a = np.ascontiguousarray(np.broadcast_to(a, (batch, *a.shape[1:])))
            feeds[n] = a
        self._source_cache = (source, batch, feeds)
        return feeds

    def render(self, source, drivers, controls: dict[str, Tensor] | None = None,
               start_code: Tensor | None = None) -> Tensor:
        """Render ``(B, 3, S, S)`` from an encoded source and drivers' motion codes; ``controls`` as in
        :meth:`Retrofitted.render` (EDTalk: ``mouth_coefficients``, ``pose_coefficients``, ``expression_weights``)."""
        return torch.from_numpy(self.sessions["render"].run(None, self.render_feeds(source, drivers, controls,
                                                                                     start_code))[0])

    def render_feeds(self, source, drivers, controls: dict[str, Tensor] | None = None,
                     start_code: Tensor | None = None) -> dict[str, np.ndarray]:
        """The ``render.onnx`` inputs of a :meth:`render` call (see the manifest)."""
        controls = dict(controls or {})
        unknown = set(controls) - set(self.adapter.control_replaces)
        if unknown:
            raise InputError(f"this {self.backbone.name} model has no control(s) {sorted(unknown)}")
        batch = next((c.shape[0] for c in drivers.codes.values()),
                     next((c.shape[0] for c in controls.values()), source.code.shape[0]))
        feeds = dict(self._source_feeds(source, batch))
        src_code = feeds["code"]
        for d in self.adapter.drivers:
            z = drivers.codes.get(d)
            if z is not None and start_code is not None:
                z = source.code + z - start_code
            feeds[f"{d}_code"] = src_code if z is None else _numpy(z)
        if "primary_code" in self.inputs:  # the code EDI is conditioned on, as Retrofitted.render forms it
            from ..retrofitting import Retrofitted

            primary = Retrofitted.combined_code(drivers.codes, None) if drivers.codes else None
            if primary is not None and start_code is not None:
                primary = source.code + primary - start_code
            feeds["primary_code"] = src_code if primary is None else _numpy(primary)
        for c, spec in self.manifest["controls"].items():
            value = controls.get(c)
            if value is not None and drivers.codes.get(spec["replaces"]) is not None:
                raise InputError(f"the {spec['replaces']} driver got both frames and {c}")
            feeds[c] = np.zeros((batch, spec["width"]), np.float32) if value is None else _numpy(value)
            feeds[f"use_{c}"] = np.full((batch, 1), 0.0 if value is None else 1.0, np.float32)
        return feeds

    def forward(self, source: Tensor, driving: Tensor) -> Tensor:
        """One-call animation: ``source (B or 1, 3, S, S)`` with ``driving (B, 3, S, S)``, absolute motion."""
        return self.render(self.encode_source(source), self.encode_drivers({d: driving for d in self.adapter.driving_fills}))


@dataclasses.dataclass
class LoadedOnnxAnimator(LoadedAnimator):
    """:class:`~plugtalk.weights.load.LoadedAnimator` for an ONNX export folder (``model``: an :class:`OnnxAnimator`)."""

    @property
    def variant(self) -> str:
        return self.model.variant


def load_onnx_animator(folder: str | os.PathLike, providers: Sequence[str] | None = None,
                       threads: int | None = None) -> LoadedOnnxAnimator:
    """Open an export folder for :func:`~plugtalk.animate.animate` (see :class:`OnnxAnimator`)."""
    model = OnnxAnimator(folder, providers, threads)
    what = model.manifest.get("source") or "exported model"
    return LoadedOnnxAnimator(model, f"ONNX export {Path(folder).name} ({what}; {', '.join(model.providers)})")
