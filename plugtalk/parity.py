"""Official-code parity machinery shared by the parity tests and ``benchmarks/gpu_report.py``.

The fixtures (``shared/fixtures``, README there) hold a weight rule (crc32 seeds, ``randn``, scale, a sha256
per tensor), the inputs and the official code's float64 outputs.  This module rebuilds the official-keyed
weights from the rule, records our backbones' outputs under the fixtures' keys (:data:`RECORDERS`, one
function per backbone, on any device), and compares them (:class:`ParityReport`): float64 to 1e-5 of each
tensor's scale, float32 within ``SAFETY32`` x the float64 model's *sensitivity* to float32-sized rounding
noise at every layer (:func:`rounding_noise`, measured in the same run, so the bound does not depend on the
CPU's or GPU's float32 kernels).  It imports no test framework: missing fixtures raise
:class:`FixturesMissing`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

__all__ = ["FixturesMissing", "BACKBONES", "fixture_paths", "load_manifest", "load_reference", "rule_state_dict",
           "write_official_checkpoint", "official_generator", "ParityReport", "rounding_noise", "record_dtypes",
           "assert_dtype_kept", "deviations", "first_item", "float64_run", "float32_run", "summarize", "RECORDERS",
           "ROUNDING_NOISE", "SAFETY32", "run_lia", "run_edtalk", "run_dpe", "run_gohd", "recorded_only"]

#: Backbones with a fixture ``<name>_official_256.{manifest.json,safetensors}``.
BACKBONES = ("lia", "edtalk", "dpe", "gohd")


class FixturesMissing(FileNotFoundError):
    """The parity fixtures of a backbone are not in the given folder."""


def fixture_paths(backbone: str, folder: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(manifest.json, safetensors)`` of ``backbone``'s fixture in ``folder`` (default: ``<shared>/fixtures``).

    Raises:
        FixturesMissing: no such files (the message says where it looked).
    """
    if folder is None:
        from .shared_data import find_shared

        root = find_shared()
        folder = root / "fixtures" if root else None
    if folder is None:
        raise FixturesMissing("parity fixtures not found: set PLUGTALK_SHARED or put shared/ beside the checkout")
    base = Path(folder) / f"{backbone}_official_256"
    paths = base.with_suffix(".manifest.json"), base.with_suffix(".safetensors")
    if not all(p.is_file() for p in paths):
        raise FixturesMissing(f"parity fixtures of {backbone!r} not found in {folder}")
    return paths


def load_manifest(backbone: str, folder: str | os.PathLike | None = None) -> dict:
    return json.loads(fixture_paths(backbone, folder)[0].read_text())


def load_reference(backbone: str, folder: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    return load_file(str(fixture_paths(backbone, folder)[1]))


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _generate(manifest: dict, module: str) -> dict[str, torch.Tensor]:
    out = {}
    for e in manifest["modules"][module]["state_dict"]:
        shape = tuple(e["shape"])
        if e["kind"] == "parameter":
            v = torch.randn(shape, generator=torch.Generator().manual_seed(e["seed"]), dtype=torch.float32)
            if e["scale"] != 1:
                v = v * torch.tensor(e["scale_float32"], dtype=torch.float32)
        else:
            key = e["key"]
            if e.get("values") is not None:
                v = torch.tensor(e["values"], dtype=getattr(torch, e["dtype"])).reshape(shape)
            elif key.endswith("running_mean"):
                v = torch.zeros(shape)
            elif key.endswith("running_var"):
                v = torch.ones(shape)
            elif key.endswith("num_batches_tracked"):
                v = torch.zeros(shape, dtype=torch.int64)
            else:
                raise AssertionError(f"no rule for buffer {key}")
        out[e["key"]] = v
    return out


def _not_reproduced(manifest: dict, module: str, state: dict[str, torch.Tensor]) -> list[str]:
    return [e["key"] for e in manifest["modules"][module]["state_dict"] if _sha256(state[e["key"]]) != e["sha256"]]


_CHILD = ("import json, sys; sys.path.insert(0, sys.argv[1]); import plugtalk.parity as P; "
          "from safetensors.torch import save_file; "
          "save_file(P._generate(json.loads(open(sys.argv[2]).read()), sys.argv[3]), sys.argv[4])")


def _generate_in_child(manifest: dict, module: str, capability: str | None) -> dict[str, torch.Tensor]:
    """:func:`_generate` in a child process whose ``ATEN_CPU_CAPABILITY`` is ``capability`` (None: unset)."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "manifest.json").write_text(json.dumps(manifest))
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if capability is not None:
            env["ATEN_CPU_CAPABILITY"] = capability
        subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).resolve().parents[1]),
                        str(Path(d) / "manifest.json"), module, str(Path(d) / "w.safetensors")], env=env, check=True)
        return load_file(str(Path(d) / "w.safetensors"))


def rule_state_dict(manifest: dict, module: str) -> dict[str, torch.Tensor]:
    """Regenerate one official module's state dict by the weight rule, verifying every sha256.

    ``torch.randn`` fills large tensors with a vectorised kernel whose last bits depend on the CPU
    capability ATen dispatches to (the scalar one of ``ATEN_CPU_CAPABILITY=default``, AVX2, AVX-512).  The
    weights are test inputs, not what is tested, so when the bits differ they are rebuilt in a child
    process with the CPU's own kernels, then with ``avx2`` and ``default`` (each verified against the same
    sha256s).

    Raises:
        AssertionError: no kernel reproduces every sha256.
    """
    state = _generate(manifest, module)
    bad = _not_reproduced(manifest, module, state)
    tried = [os.environ.get("ATEN_CPU_CAPABILITY")]
    for capability in (None, "avx2", "default"):
        if not bad:
            break
        if capability in tried:
            continue
        tried.append(capability)
        state = _generate_in_child(manifest, module, capability)
        bad = _not_reproduced(manifest, module, state)
    assert not bad, (f"weight rule does not reproduce {bad[0]} ({len(bad)} tensors; ATEN_CPU_CAPABILITY tried: "
                     f"{', '.join(c or 'unset' for c in tried)})")
    return state


SUMMARY_PARTS = ("mean", "crop", "full", "crop_center")


def summarize(prefix: str, maps, store: dict[str, torch.Tensor]) -> None:
    """The fixture's summary format for a list of maps: .shape, .mean (item 0), .crop, .full (<= 64 px)."""
    for i, m in enumerate(maps):
        store[f"{prefix}.{i}.shape"] = torch.tensor(m.shape, dtype=torch.int64)
        store[f"{prefix}.{i}.mean"] = m[0].mean(dim=(1, 2))
        store[f"{prefix}.{i}.crop"] = m[:, :8, :4, :4]
        if m.shape[1] == 3 and m.shape[-1] <= 64:
            store[f"{prefix}.{i}.full"] = m


#: float32's unit roundoff.
UNIT_ROUNDOFF32 = 2.0 ** -24
#: Relative noise put on every module output of the float64 model to stand in for float32 arithmetic:
#: 16 unit roundoffs, the typical (sqrt n) rounding of a float32 dot product of fan-in 256, i.e. at least
#: what one float32 layer adds.  A layer in float16 (unit roundoff 2**-11) adds 512x more, bfloat16 4096x.
ROUNDING_NOISE = 16 * UNIT_ROUNDOFF32
#: float32 passes when within this multiple of the float64 model's response to that noise.
SAFETY32 = 4.0


def _perturb(value, gen: torch.Generator, rel: float):
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            return value
        noise = torch.randn(value.shape, generator=gen, dtype=value.dtype)  # CPU generator: same draws on any device
        return value + rel * value * noise.to(value.device)
    if isinstance(value, tuple):
        items = [_perturb(v, gen, rel) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [_perturb(v, gen, rel) for v in value]
    return value


@contextlib.contextmanager
def rounding_noise(*models: torch.nn.Module, rel: float = ROUNDING_NOISE, seed: int = 0):
    """Inside the block every submodule output of ``models`` gets relative Gaussian noise ``rel * x * N(0, 1)``.

    Run in float64, this measures how far rounding noise of float32 size moves each recorded tensor
    (the model's sensitivity), without any float32 arithmetic, so it depends neither on the CPU's
    float32 kernels nor on the float32 code path being tested.
    """
    gen = torch.Generator().manual_seed(seed)
    hook = lambda module, args, out: _perturb(out, gen, rel)  # noqa: E731
    handles = [m.register_forward_hook(hook) for model in models for m in model.modules() if m is not model]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def record_dtypes(*models: torch.nn.Module):
    """Yield a set that collects ``(module name, dtype)`` of every floating tensor a submodule returns."""
    seen: set[tuple[str, torch.dtype]] = set()

    def collect(name, value):
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                seen.add((name, value.dtype))
        elif isinstance(value, (tuple, list)):
            for v in value:
                collect(name, v)

    handles = [m.register_forward_hook(lambda mod, args, out, name=f"{type(model).__name__}.{n}": collect(name, out))
               for model in models for n, m in model.named_modules() if m is not model]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def assert_dtype_kept(models, dtype: torch.dtype, seen: set, outputs: dict[str, torch.Tensor]) -> None:
    """Every floating parameter, buffer, submodule output and recorded tensor is ``dtype``."""
    wrong = [f"{type(m).__name__}.{n}: {t.dtype}" for m in models
             for n, t in [*m.named_parameters(), *m.named_buffers()] if t.is_floating_point() and t.dtype != dtype]
    wrong += [f"{name} returned {dt}" for name, dt in sorted(seen, key=str) if dt != dtype]
    wrong += [f"{k}: {v.dtype}" for k, v in outputs.items()
              if v.is_floating_point() and v.dtype != dtype and not k.startswith("audio.lip_smoothed")]
    assert seen, "no submodule output was recorded"
    assert not wrong, f"tensors not in {dtype}:\n  " + "\n  ".join(wrong[:20])


def deviations(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """Max abs difference per recorded floating tensor; where ``ours`` holds only the first items of the
    batch, against those items of the reference."""
    out = {}
    for k, v in ours.items():
        if k not in reference or not reference[k].is_floating_point():
            continue
        ref = reference[k] if v.shape == reference[k].shape else reference[k][: v.shape[0]]
        assert v.shape == ref.shape, f"{k}: {tuple(v.shape)} vs reference {tuple(reference[k].shape)}"
        out[k] = (v.detach().cpu().double() - ref.double()).abs().max().item()
    return out


def first_item(reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference with its batched inputs (``inputs.*`` of the source's batch size) cut to item 0."""
    b = reference["inputs.source"].shape[0]
    return {k: v[:1] if k.startswith("inputs.") and v.shape[0] == b else v for k, v in reference.items()}


class ParityReport:
    """Collects per-key comparisons and fails once with all offending keys.

    float64: every tensor within ``rel_tol64`` (1e-5) of its own scale (max |reference|).

    float32: within ``SAFETY32`` x the tensor's float64 *sensitivity* (``sensitivity[key]``: how far the
    float64 model moves it under :func:`rounding_noise`, i.e. float32-sized noise at every layer), and never
    less than ``SAFETY32 * ROUNDING_NOISE`` of its scale.  Float32 rounding in these flow-warping decoders
    is amplified chaotically (the official code's own float32 run moves EDTalk's images by up to 1.8), and
    how it is realised depends on the CPU's kernels and thread count; the sensitivity is measured in
    float64, so the tolerance does not.  A float32-specific bug (a layer, reduction or buffer in half
    precision) adds >= 512x more noise than ``ROUNDING_NOISE`` and fails wherever the model is not saturated.
    """

    def __init__(self, reference: dict[str, torch.Tensor], dtype: torch.dtype, sensitivity: dict[str, float] | None = None,
                 rel_tol64: float = 1e-5, safety32: float = SAFETY32):
        if dtype != torch.float64 and sensitivity is None:
            raise ValueError("a float32 comparison needs the float64 sensitivity (rounding_noise run)")
        self.ref, self.dtype, self.sensitivity = reference, dtype, sensitivity or {}
        self.rel_tol64, self.safety32 = rel_tol64, safety32
        self.rows: list[tuple[str, float, float, bool]] = []

    def tolerance(self, key: str) -> float:
        scale = max(self.ref[key].double().abs().max().item(), 1e-12)
        if self.dtype == torch.float64:
            return self.rel_tol64 * scale
        return self.safety32 * max(self._sensitivity(key), ROUNDING_NOISE * max(scale, 1.0))

    def _sensitivity(self, key: str) -> float:
        """A map's summaries (``.mean``, ``.crop``, ``.full``: a few pixels of one realisation of a chaotic
        field, measured on batch item 0) share the map's sensitivity: the largest over its summaries."""
        stem, _, part = key.rpartition(".")
        if part not in SUMMARY_PARTS:
            return self.sensitivity[key]
        return max(self.sensitivity.get(f"{stem}.{p}", 0.0) for p in SUMMARY_PARTS)

    def check(self, key: str, ours: torch.Tensor) -> None:
        ref = self.ref[key]
        ours = ours.detach().to("cpu")
        assert tuple(ours.shape) == tuple(ref.shape), f"{key}: shape {tuple(ours.shape)} vs reference {tuple(ref.shape)}"
        if not ref.is_floating_point():
            self.rows.append((key, float((ours != ref).sum()), 0.0, torch.equal(ours.to(ref.dtype), ref)))
            return
        err = (ours.double() - ref.double()).abs().max().item()
        tol = self.tolerance(key)
        self.rows.append((key, err, tol, err <= tol))

    def check_all(self, ours: dict[str, torch.Tensor]) -> None:
        for k, v in ours.items():
            self.check(k, v)

    def failures(self) -> list[tuple[str, float, float, bool]]:
        assert self.rows, "nothing was compared"
        return [r for r in self.rows if not r[3]]

    def assert_ok(self) -> None:
        bad = self.failures()
        assert not bad, "parity failures (key, max abs err, tolerance):\n" + "\n".join(
            f"  {k}: {e:.3e} > {t:.3e}" for k, e, t, _ in bad)


def float64_run(run, models, reference: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """``run(models, inputs)`` on float64 models: the outputs for ``reference``'s inputs, and each recorded
    tensor's sensitivity: its max abs deviation from ``reference`` when the model runs under
    :func:`rounding_noise`.  To halve the cost the noisy run takes batch item 0 only (the batch items are
    independent draws of the same input rule); its sensitivity stands for both items."""
    recorded = {k for k in reference if not k.startswith("inputs.")}
    out = run(models, reference)
    with rounding_noise(*models):
        noisy = run(models, first_item(reference))
    return out, deviations({k: v for k, v in noisy.items() if k in recorded}, reference)


def float32_run(run, models, reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``run(models, reference)`` on float32 models, asserting that nothing on the way left float32 (parameters,
    buffers, every submodule's outputs, the recorded tensors)."""
    with record_dtypes(*models) as seen:
        out = run(models, reference)
    assert_dtype_kept(models, torch.float32, seen, out)
    return out


def write_official_checkpoint(manifest: dict, module: str, path: Path, container: str) -> Path:
    torch.save({container: rule_state_dict(manifest, module)}, path)
    return path


def official_generator(backbone: str, directory: Path, filename: str, container: str = "gen",
                       folder: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], Path]:
    """The backbone's recorded reference outputs and its generator fixture written as an official checkpoint
    (``{container: state_dict}`` in ``directory / filename``)."""
    manifest, ref = load_manifest(backbone, folder), load_reference(backbone, folder)
    return ref, write_official_checkpoint(manifest, "generator", directory / filename, container)




# -- recorders: our intermediates under the fixtures' keys (README of the fixtures, per backbone) -----------
def _levels(r, prefix: str) -> list[torch.Tensor]:
    """``r["<prefix>.0"]``, ``r["<prefix>.1"]``, ... as far as they go (6 at the fixtures' 256 px)."""
    out = []
    while f"{prefix}.{len(out)}" in r.values:
        out.append(r.values[f"{prefix}.{len(out)}"])
    return out


def _inputs(model: torch.nn.Module, ref: dict[str, torch.Tensor], keys, dtype: torch.dtype) -> list[torch.Tensor]:
    """``inputs.<key>`` of the reference in ``dtype`` on the model's device."""
    device = next(model.parameters()).device
    return [ref[f"inputs.{k}"].to(device=device, dtype=dtype) for k in keys]


def run_lia(model, ref: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """LIA (fixtures README Sec. 4): absolute and relative motion calls."""
    src, drv, start = _inputs(model, ref, ("source", "driving", "driving_s3"), dtype)
    out = {}
    with torch.no_grad():
        r = model(src, drv, return_intermediates=True)
        out["outputs.image"] = r.image
        out["enc.latent_source"] = r["source.latent"]
        out["enc.alpha_driving"] = r["driving.alpha"]
        out["dec.direction_driving"] = r["driving.direction"]
        out["dec.latent"] = r["latent"]
        out["dec.Q"] = model.dictionary.basis()
        summarize("feats", _levels(r, "pyramid"), out)
        summarize("flows", _levels(r, "flow"), out)
        out["rel.h_start"] = model.motion_coefficients(model.encode(start).latent)
        rr = model(src, drv, driving_start=start, return_intermediates=True)
        out["outputs.image_relative"] = rr.image
        out["rel.alpha_driving"] = rr["driving.alpha"]
        out["rel.alpha_source"] = rr["source.alpha"]
        out["rel.direction_driving"] = rr["driving.direction"]
        out["rel.direction_source"] = rr["source.direction"]
        out["rel.direction_start"] = rr["start.direction"]
        out["rel.latent"] = rr["latent"]
    return out


#: our EDTalk bank name -> the official one
EDTALK_BANK = {"mouth": "lip", "pose": "pose", "expression": "exp"}


def _edtalk_call(prefix: str, r, out: dict, banks_from_frames) -> None:
    out[f"{prefix}.enc.latent_source"] = r["source.latent"]
    for bank in banks_from_frames:
        o = EDTALK_BANK[bank]
        out[f"{prefix}.enc.latent_{o}"] = r[f"{bank}.latent"]
        out[f"{prefix}.{o}_fc.input"] = r[f"{bank}.trunk"]
        out[f"{prefix}.{o}_fc.alpha"] = r[f"{bank}.alpha"]
    out[f"{prefix}.alpha_all"] = r["alpha"]
    out[f"{prefix}.directions"] = r["direction"]
    out[f"{prefix}.dec.latent"] = r["latent"]
    out[f"{prefix}.dec.exp_feature"] = r["expression_direction"]
    summarize(f"{prefix}.eem", _levels(r, "feature"), out)
    summarize(f"{prefix}.flows", _levels(r, "flow"), out)


def run_edtalk(model, audio, ref: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """EDTalk (fixtures README Sec. 5): video, expression-weight and audio-driven calls, the bank bases and,
    when ``audio`` (the Audio2Lip model) is given, its embeddings and mouth coefficients."""
    from .backbones.edtalk import orthonormal_basis
    from .layers import gaussian_smooth

    names = ("source", "driving", "driving_s3", "driving_s4", "exp_weights", "lip_alpha")
    x = dict(zip(names, _inputs(model, ref, names, dtype)))
    out = {}
    with torch.no_grad():
        r = model(x["source"], mouth=x["driving"], pose=x["driving_s3"], expression=x["driving_s4"],
                  return_intermediates=True)
        out["outputs.image_video"] = r.image
        _edtalk_call("video", r, out, ("mouth", "pose", "expression"))
        summarize("feats", _levels(r, "pyramid"), out)
        r = model(x["source"], mouth=x["driving"], pose=x["driving_s3"], expression_weights=x["exp_weights"],
                  return_intermediates=True)
        out["outputs.image_video_expw"] = r.image
        _edtalk_call("video_expw", r, out, ("mouth", "pose"))
        r = model(x["source"], mouth_coefficients=x["lip_alpha"], pose=x["driving_s3"], expression=x["driving_s4"],
                  return_intermediates=True)
        out["outputs.image_audio"] = r.image
        _edtalk_call("audio_drive", r, out, ("pose", "expression"))
        r = model(x["source"], mouth_coefficients=x["lip_alpha"], pose=x["driving_s3"],
                  expression_weights=x["exp_weights"], return_intermediates=True)
        out["outputs.image_audio_expw"] = r.image
        _edtalk_call("audio_drive_expw", r, out, ("pose",))
        out["dir.Q_all"] = model.banks.basis()
        out["dir.Q_lipnonlip"] = orthonormal_basis(torch.cat([model.banks.mouth, model.banks.pose], 1))
        out["dir.Q_exp_only"] = orthonormal_basis(model.banks.expression)
        if audio is not None:
            mel = _inputs(audio, ref, ("mel",), dtype)[0]
            out["audio.embedding"] = audio.embed(mel)
            lip = audio(mel.unsqueeze(0))
            out["audio.lip_raw"] = lip
            out["audio.lip_smoothed"] = gaussian_smooth(lip[0].float())
    return out


#: DPE: official stage name -> (our mode, official head/decoder names in the order they run)
DPE_STAGES = {"exp": ("expression", [("mlp_pose", "dec_pose", "expression")]),
              "pose": ("pose", [("mlp_exp", "dec_exp", "pose")]),
              "both": ("both", [("mlp_pose", "dec_pose", "expression"), ("mlp_exp", "dec_exp", "pose")])}


def _dpe_stage(model, src, drv, official: str, out: dict) -> None:
    mode, chain = DPE_STAGES[official]
    r = model(src, drv, mode=mode, return_intermediates=True)
    out[f"outputs.image_{official}"] = r.image
    p = f"stage_{official}"
    out[f"{p}.enc.latent_source"] = r["source.latent"]
    out[f"{p}.enc.latent_driving"] = r["driving.latent"]
    out[f"{p}.alpha_driving"] = r["driving.alpha"]
    out[f"{p}.direction_driving"] = r["driving.direction"]
    for head, _, ours in chain:
        out[f"{p}.{head}.out"] = r[f"{ours}.edit"]
    if official == "both":
        out[f"{p}.dec_pose.latent"] = r["expression.latent"]
        summarize(f"{p}.dec_pose.flows", _levels(r, "expression.flow"), out)
        out[f"{p}.enc2.latent"] = r["reencoded.latent"]
        summarize(f"{p}.feats2", _levels(r, "pyramid"), out)
        out[f"{p}.dec_exp.latent"] = r["latent"]
        summarize(f"{p}.dec_exp.flows", _levels(r, "flow"), out)
    else:
        dec = chain[0][1]
        out[f"{p}.{dec}.latent"] = r["latent"]
        summarize(f"{p}.{dec}.flows", _levels(r, "flow"), out)
        summarize("feats", _levels(r, "pyramid"), out)


def run_dpe(model, ref: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """DPE (fixtures README Sec. 6): expression, pose and both stages, and ``run_demo_single.py``'s one-shot
    chain (expression from ``driving``, then pose from ``driving_s3`` on the unclamped intermediate)."""
    src, drv, drv3 = _inputs(model, ref, ("source", "driving", "driving_s3"), dtype)
    out = {}
    with torch.no_grad():
        for official in DPE_STAGES:
            _dpe_stage(model, src, drv, official, out)
        first = model.reenact(src, drv, "expression")
        r = model.reenact(first, drv3, "pose", return_intermediates=True)
        out["outputs.image_single"] = r.image
        out["single.enc.latent_source"] = r["source.latent"]
        out["single.enc.latent_driving"] = r["driving.latent"]
        out["single.alpha_driving"] = r["driving.alpha"]
        out["single.direction_driving"] = r["driving.direction"]
        out["single.mlp_exp.out"] = r["pose.edit"]
        out["single.dec_exp.latent"] = r["latent"]
        out["dir.Q"] = model.dictionary.basis()
    return out


#: GoHD: key prefix -> input window; values compared among themselves (not with the record) start with CHECK.
GOHD_CASES = {"": "semantics", "t25.": "semantics_t25", "gaze.": "semantics_gaze"}
CHECK = "check."
GOHD_IMAGE_KEYS = {"": "outputs.image", "t25.": "outputs.image_t25", "gaze.": "outputs.image_gaze"}


def summarize_sft(prefix: str, m: torch.Tensor, store: dict[str, torch.Tensor]) -> None:
    """Fixture summary of a GoHD SFT map: .shape, .mean (item 0), .crop (top-left), .crop_center."""
    h, w = m.shape[-2:]
    store[f"{prefix}.shape"] = torch.tensor(m.shape, dtype=torch.int64)
    store[f"{prefix}.mean"] = m[0].mean(dim=(1, 2))
    store[f"{prefix}.crop"] = m[:, :8, :4, :4]
    store[f"{prefix}.crop_center"] = m[:, :8, h // 2 - 2:h // 2 + 2, w // 2 - 2:w // 2 + 2]


def _gohd_case(model, src, window, prefix: str, out: dict) -> None:
    r = model(src, window, return_intermediates=True)
    out[GOHD_IMAGE_KEYS[prefix]] = r.image
    if prefix == "":
        rgb = _levels(r, "rgb")   # coarse to fine; outputs.pyramid.i is the official list's item i (fine to coarse)
        for i in range(1, len(rgb)):
            out[f"outputs.pyramid.{i}"] = rgb[len(rgb) - 1 - i]
        out["enc.latent_source"] = r["source.latent"]
        out["dec.Q"] = model.dictionary.basis()
        summarize("feats", _levels(r, "pyramid"), out)
    else:  # the source encoding is stored once: ours must not depend on the window either
        out[f"{CHECK}{prefix}latent_source"] = r["source.latent"]
    out[f"{prefix}enc.mapping.first"] = r["coefficients.first"]
    out[f"{prefix}enc.mapping.pool_in"] = r["coefficients.pool_in"]
    out[f"{prefix}enc.mapping.embedding"] = r["coefficients.embedding"]
    out[f"{prefix}enc.alpha"] = r["alpha"]
    out[f"{prefix}dec.direction"] = r["direction"]
    out[f"{prefix}dec.latent"] = r["latent"]
    summarize(f"{prefix}flows", _levels(r, "flow"), out)
    blocks = sum(1 for j in range(8) if f"sft.{j}.out" in r.values)
    for j in range(blocks):  # 64, 128, 256 px at 256 px; the last block's state is never used (not recorded)
        for part in ("warped", "blend", "scale", "shift", "out") + (("state",) if j < blocks - 1 else ()):
            summarize_sft(f"{prefix}sft.{j}.{part}", r[f"sft.{j}.{part}"], out)


def run_gohd(model, ref: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """GoHD's animator (fixtures README Sec. 9): the main window, the 25-frame window and the gaze-only edit."""
    src = _inputs(model, ref, ("source",), dtype)[0]
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for prefix, name in GOHD_CASES.items():
            _gohd_case(model, src, _inputs(model, ref, (name,), dtype)[0], prefix, out)
    return out


def recorded_only(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``outputs`` without the values that are compared among themselves (:data:`CHECK`)."""
    return {k: v for k, v in outputs.items() if not k.startswith(CHECK)}


#: backbone -> ``record(models, reference, dtype)``: ``models`` is ``[generator]`` (EDTalk: ``[generator,
#: audio2lip or None]``); returns our tensors under the fixture's keys.
RECORDERS = {"lia": lambda m, ref, dt: run_lia(m[0], ref, dt),
             "edtalk": lambda m, ref, dt: run_edtalk(m[0], m[1] if len(m) > 1 else None, ref, dt),
             "dpe": lambda m, ref, dt: run_dpe(m[0], ref, dt),
             "gohd": lambda m, ref, dt: recorded_only(run_gohd(m[0], ref, dt))}
