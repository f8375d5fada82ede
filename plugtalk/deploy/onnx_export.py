"""Export an animator (any backbone, plain or retrofitted with EMI/EDI) to ONNX for stock onnxruntime.

The model folder holds two graphs with a dynamic batch axis ``batch`` and a manifest
(:data:`~plugtalk.deploy.MANIFEST`, JSON) that documents them:

``encode.onnx`` (run once on the source, and on every batch of driving frames)
    ``image (B, 3, S, S)`` in [-1, 1] ->  ``latent (B, style_dim)``, ``pyramid_0 .. pyramid_{n-1}``
    ``(B, C_i, r_i, r_i)`` coarse to fine, ``code (B, D)``: the motion code (EMI's ``z``, or the backbone's
    plain motion input, the latent, without EMI).  :meth:`Retrofitted.encode_source`.

``render.onnx`` (per frame)
    the source's encoding (``latent``, ``pyramid_i``, ``code``, batch ``B``), one motion code
    ``{driver}_code (B, D)`` per driver of the model (LIA / DPE: ``driving``; EDTalk: ``mouth``,
    ``pose``, ``expression``; a driver with no input takes the source's ``code``: it keeps the
    source's own motion), and per control of the model (EDTalk: ``mouth_coefficients (B, 20)``,
    ``pose_coefficients (B, 6)``, ``expression_weights (B, 10)``) the value and ``use_{control} (B, 1)``:
    1 replaces that driver's coefficients by the value, 0 ignores it; for a model with EDI and several
    drivers or controls (EDTalk) also ``primary_code (B, D)``: the code EDI is conditioned on, the mean code
    of the request's distinct driving frames (:meth:`Retrofitted.combined_code`), else the source's  ->  ``image (B, 3, S, S)``,
    roughly in [-1, 1].  :meth:`Retrofitted.render`.

Per-frame animation is ``render(source encoding, encode(driving).code)``.  The cut is at the motion code
because that is where ``plugtalk animate`` smooths motion over time and applies relative motion
(``z_s + z_d - z_start``), so the exported model runs the same streaming pipeline as the torch one.

Fixed weights are folded: the QR bases of the motion dictionaries (LIA / DPE ``dictionary``, EDTalk's
banks; LIA Sec. 3.2) are computed once at export and stored as constants (QR has no ONNX operator);
the onnxscript optimizer folds every other constant subgraph.  DPE's mode (``expression`` / ``pose``)
is the exported adapter's; export one folder per mode (``plugtalk export --mode``); its two-stage
``both`` is the expression model's output run through the pose model.  Only 4-D ``GridSample``
(opset >= 16) warps, so the stock onnxruntime wheel runs every backbone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InputError
from ..io.oserrors import as_os_error
from . import MANIFEST, require_onnx

__all__ = ["ExportResult", "export_onnx", "frozen_bases", "MIN_OPSET", "DEFAULT_OPSET", "FORMAT_VERSION"]

#: Oldest opset the exporter writes (torch's ONNX exporter starts at 18; GridSample needs >= 16).
MIN_OPSET = 18
DEFAULT_OPSET = 18
FORMAT_VERSION = 1


@dataclasses.dataclass
class ExportResult:
    """What :func:`export_onnx` wrote: the folder, its manifest and the export-time check."""

    path: Path
    manifest: dict[str, Any]
    seconds: float

    @property
    def max_abs_error(self) -> float:
        """Largest |onnxruntime - torch| over the example inputs, [-1, 1] units."""
        return float(self.manifest["check"]["max_abs_error"])


@contextlib.contextmanager
def frozen_bases(model: nn.Module) -> Iterator[None]:
    """Inside the block every motion dictionary's ``basis()`` returns its QR basis computed once now,
    a constant (QR has no ONNX operator; the basis is fixed at inference)."""
    from ..backbones.edtalk import MotionBanks
    from ..layers.dictionary import MotionDictionary

    patched = []
    for m in model.modules():
        if isinstance(m, (MotionDictionary, MotionBanks)):
            with torch.no_grad():
                q = m.basis().detach().clone()
            m.basis = (lambda q=q: q)  # instance attribute shadows the method
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.basis


class _Encode(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor):
        state = self.model.encode_source(image)
        return (state.encoding.latent, *state.encoding.pyramid, state.code)


class _Render(nn.Module):
    """``render(source encoding, driver codes, controls)`` with controls as (value, use) pairs that replace
    the ``{driver}.alpha`` hook point of the driver they stand for (the adapter's own control path)."""

    varargs = True

    def __init__(self, model, levels: int, controls: list[tuple[str, str]], primary: bool):
        super().__init__()
        self.model, self.levels, self.controls, self.primary = model, levels, controls, primary

    def forward(self, *inputs: Tensor):
        from ..backbones.base import Encoding
        from ..retrofitting import DriverState, SourceState

        n, drivers = self.levels, self.model.adapter.drivers
        latent, pyramid, code = inputs[0], tuple(inputs[1:1 + n]), inputs[1 + n]
        codes = dict(zip(drivers, inputs[2 + n:2 + n + len(drivers)]))
        rest = inputs[2 + n + len(drivers):]
        driving_code = None
        if self.primary:  # the code EDI is conditioned on (Retrofitted.combined_code of the request's drivers)
            driving_code, rest = rest[0], rest[1:]
        handles = []
        for i, (control, driver) in enumerate(self.controls):
            value, use = rest[2 * i], rest[2 * i + 1]
            hook = (lambda mod, args, out, v=value, u=use: u * v + (1 - u) * out)
            handles.append(self.model.taps.point(f"{driver}.alpha").register_forward_hook(hook))
        try:
            image = self.model.render(SourceState(None, Encoding(latent, pyramid), code), DriverState({}, codes, {}),
                                      driving_code=driving_code)
        finally:
            for h in handles:
                h.remove()
        return image


def _control_widths(model, example: Tensor, controls: list[tuple[str, str]]) -> dict[str, int]:
    """Width of each control = width of the ``{driver}.alpha`` value it replaces (read from one forward)."""
    widths: dict[str, int] = {}
    handles = [model.taps.point(f"{d}.alpha").register_forward_hook(
        lambda mod, args, out, c=c: widths.__setitem__(c, int(out.shape[-1]))) for c, d in controls]
    try:
        with torch.no_grad():
            state = model.encode_source(example)
            model.render(state, model.encode_drivers({d: example for d in model.adapter.drivers}))
    finally:
        for h in handles:
            h.remove()
    return widths


def _check_model(model) -> list[tuple[str, str]]:
    from ..retrofitting import Retrofitted

    if not isinstance(model, Retrofitted):
        raise InputError(f"export needs a Retrofitted model (a plain backbone is retrofit(b, emi=None, edi=None)), "
                         f"got {type(model).__name__}")
    a = model.adapter
    from ..backbones import backbone_entry

    controls_in = backbone_entry(a.backbone.name).controls
    if "driving" not in controls_in:  # GoHD: a coefficient window per frame, no encode-the-driving-frame graph
        raise InputError(f"plugtalk export writes an encode graph for driving frames; a {a.backbone.name} model is "
                         f"driven by {', '.join(controls_in)} and cannot be exported to ONNX (use the torch runtime)")
    if a.wants_images:
        raise InputError(f"{type(a).__name__} re-runs the model on images inside its motion step; "
                         "it cannot be exported as encode + render graphs")
    controls = list(a.control_replaces.items())
    taps = set(model.taps.names())
    for control, driver in controls:
        if f"{driver}.alpha" not in taps:
            raise InputError(f"{type(a).__name__}: control {control!r} replaces driver {driver!r}, but the model has "
                             f"no hook point {driver}.alpha to expose it through")
    return controls


def _prepare_dir(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(f"output {str(out_dir)!r} is a file; give a folder for the exported model")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
            raise InputError(f"output folder {str(out_dir)!r} is not empty and not a plugtalk ONNX export; "
                             "give a new or empty folder")
    elif not out_dir.parent.is_dir():
        raise InputError(f"output folder {str(out_dir.parent)!r} does not exist (create it first)")


def _export_graph(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                  opset: int) -> None:
    import warnings

    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes: tuple = tuple({0: batch} for _ in args)
    if getattr(module, "varargs", False):
        shapes = (shapes,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=shapes, input_names=input_names,
                                        output_names=output_names, opset_version=opset, optimize=True,
                                        verbose=False)
        except Exception as e:  # the exporter raises many types; keep its first line and name the graph
            first = _summary(e)
            raise InputError(f"ONNX export of {path.name} at opset {opset} failed: {first}") from e
    program.save(str(path))


def _summary(error: Exception) -> str:
    """The exporter's own one-line cause (its ``## Exception summary``), else the message's first line."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("## Exception summary") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[0] if lines else type(error).__name__


def export_onnx(model, out_dir: str | os.PathLike, *, opset: int = DEFAULT_OPSET, example_batch: int = 2,
                description: str = "", check: bool = True) -> ExportResult:
    """Export ``model`` (a :class:`~plugtalk.retrofitting.Retrofitted`) to ``out_dir`` (see the module docstring).

    Args:
        model: any backbone, plain (``retrofit(b, emi=None, edi=None)``) or with EMI and/or EDI; eval mode
            is set for the export.
        out_dir: a new folder, an empty one, or a previous export (replaced).  Written atomically: a
            temporary sibling folder is renamed into place.
        opset: ONNX opset, ``MIN_OPSET`` up to the installed onnx's newest.
        example_batch: batch of the example inputs traced (>= 2 so the batch axis stays symbolic).
        description: where the weights came from (stored in the manifest).
        check: run both graphs on onnxruntime and compare with torch eager on random inputs; the result is
            stored in the manifest (``check.max_abs_error``) and a model onnxruntime rejects raises.

    Returns:
        :class:`ExportResult`.

    Raises:
        InputError: no ONNX packages, an opset outside the supported range, a model the exporter cannot
            trace, an output folder that cannot be used, or a graph onnxruntime rejects (naming the operator).
    """
    require_onnx("onnx", "onnxscript")
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise InputError(f"unsupported opset {opset}: plugtalk exports opset {MIN_OPSET}..{newest} (torch's ONNX "
                         f"exporter starts at {MIN_OPSET}; the warp needs GridSample, opset >= 16)")
    if example_batch < 2:
        raise InputError(f"example_batch must be >= 2 (batch 1 would be traced as a constant), got {example_batch}")
    controls = _check_model(model)
    out = Path(out_dir)
    _prepare_dir(out)
    t0 = time.perf_counter()
    model = model.eval()
    adapter = model.adapter
    size, drivers = adapter.image_size, list(adapter.drivers)
    levels = len(adapter.feature_spec.levels)
    p = next(model.parameters())
    gen = torch.Generator().manual_seed(0)
    example = (torch.rand(example_batch, 3, size, size, generator=gen) * 2 - 1).to(device=p.device, dtype=p.dtype)
    widths = _control_widths(model, example, controls)

    enc_out = ["latent", *(f"pyramid_{i}" for i in range(levels)), "code"]
    render_in = [*enc_out, *(f"{d}_code" for d in drivers)]
    # which driver's code conditions EDI depends on which drivers a request has (several drivers / controls)
    primary = model.edi is not None and (len(drivers) > 1 or bool(controls))
    if primary:
        render_in.append("primary_code")
    for c, _ in controls:
        render_in += [c, f"use_{c}"]
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent if str(out.parent) else "."))
    except OSError as e:  # a read-only mount, a full disk, a name over the limit: about the folder asked for
        raise OSError(e.errno, e.strerror, str(out)) from None
    os.chmod(tmp, _folder_mode())  # mkdtemp makes it private (0700); an export folder is an ordinary one
    try:
        with frozen_bases(model), torch.no_grad():
            encode = _Encode(model).eval()
            _export_graph(encode, (example,), tmp / "encode.onnx", ["image"], enc_out, opset)
            state = encode(example)
            other = encode(example.flip(0))  # another frame per row: drivers differ from the source
            code = state[-1]
            ctrl_args: list[Tensor] = []
            for c, _ in controls:
                ctrl_args += [torch.randn(example_batch, widths[c], generator=gen).to(code),
                              torch.tensor([[1.0]] + [[0.0]] * (example_batch - 1)).to(code)]
            # one distinct tensor per input: the tracer would merge inputs given the same tensor object
            codes = [other[-1] * (1 + 0.25 * i) for i in range(len(drivers) + primary)]
            render_args = (*state, *codes, *ctrl_args)
            render = _Render(model, levels, controls, primary).eval()
            _export_graph(render, render_args, tmp / "render.onnx", render_in, ["image"], opset)
            for graph, names in (("encode", ["image"]), ("render", render_in)):
                got = [i.name for i in onnx.load(str(tmp / f"{graph}.onnx"), load_external_data=False).graph.input]
                if got != names:
                    raise InputError(f"ONNX export: {graph}.onnx has inputs {got}, expected {names}")
            expected = {"encode": [t.float().cpu().numpy() for t in state],
                        "render": [render(*render_args).float().cpu().numpy()]}
        feeds = {"encode": {"image": example.float().cpu().numpy()},
                 "render": {n: t.float().cpu().numpy() for n, t in zip(render_in, render_args)}}
        manifest = _manifest(model, opset, widths, controls, enc_out, render_in, description, int(code.shape[-1]))
        manifest["seconds"] = round(time.perf_counter() - t0, 1)
        if check:
            manifest["check"] = _check_with_runtime(tmp, feeds, expected)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        about_tmp = isinstance(e, OSError) and (e.filename is None or tmp.name in os.fsdecode(e.filename))
        if about_tmp:  # disk full while writing a graph: about the output folder, not the hidden temporary one
            raise as_os_error(e, out) from e
        raise
    return ExportResult(out, manifest, time.perf_counter() - t0)


def _folder_mode() -> int:
    """Permission bits a new folder gets under the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _manifest(model, opset: int, widths: dict[str, int], controls, enc_out, render_in, description: str,
              code_dim: int) -> dict[str, Any]:
    import onnx
    import onnxscript

    a, b = model.adapter, model.backbone
    spec = a.feature_spec
    return {
        "format": "plugtalk-onnx", "format_version": FORMAT_VERSION, "opset": opset,
        "backbone": b.name, "backbone_class": type(b).__name__, "backbone_config": b.config.to_dict(),
        "adapter_options": a.options(), "emi": model.emi is not None, "edi": model.edi is not None,
        "image_size": a.image_size, "drivers": list(a.drivers), "driving_fills": list(a.driving_fills),
        "controls": {c: {"replaces": d, "width": widths[c]} for c, d in controls},
        "pyramid": [{"name": f"pyramid_{i}", "channels": lv.channels, "resolution": lv.height}
                    for i, lv in enumerate(spec.levels)],
        "code_dim": code_dim,
        "graphs": {
            "encode": {"file": "encode.onnx", "inputs": ["image"], "outputs": enc_out},
            "render": {"file": "render.onnx", "inputs": render_in, "outputs": ["image"]},
        },
        "batch_axis": "batch (axis 0 of every input and output)",
        "value_range": "images (B, 3, S, S) float32 in [-1, 1]",
        "source": description,
        "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__},
    }


def _check_with_runtime(folder: Path, feeds: dict, expected: dict) -> dict[str, Any]:
    from .onnx_runtime import open_session

    errors = {}
    for graph in ("encode", "render"):
        session = open_session(folder / f"{graph}.onnx", threads=1)
        got = session.run(None, feeds[graph])
        errors[graph] = max(float(np.abs(g - e).max()) for g, e in zip(got, expected[graph]))
    return {"max_abs_error": max(errors.values()), "per_graph": errors, "inputs": "random, batch 2"}
