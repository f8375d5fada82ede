"""Support for the official-code parity tests (see ../shared/fixtures/README.md).

Rebuilds the official-keyed weights from the manifest's rule (crc32 seeds, randn, scale), checks
each against its sha256, writes them as an official-style ``torch.save`` checkpoint, and compares
our outputs with the recorded float64 reference.
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

import pytest
import torch
from safetensors.torch import load_file

from plugtalk.shared_data import find_shared

FIXTURES = (find_shared() / "fixtures") if find_shared() else None


def require_fixtures(backbone: str) -> Path:
    if FIXTURES is None or not (FIXTURES / f"{backbone}_official_256.manifest.json").is_file():
        pytest.skip("parity fixtures not found: set PLUGTALK_SHARED or put shared/ beside the checkout")
    return FIXTURES


def load_manifest(backbone: str) -> dict:
    return json.loads((require_fixtures(backbone) / f"{backbone}_official_256.manifest.json").read_text())


def load_reference(backbone: str) -> dict[str, torch.Tensor]:
    return load_file(str(require_fixtures(backbone) / f"{backbone}_official_256.safetensors"))


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


_CHILD = ("import json, sys; sys.path.insert(0, sys.argv[1]); import parity_support as P; "
          "from safetensors.torch import save_file; "
          "save_file(P._generate(json.loads(open(sys.argv[2]).read()), sys.argv[3]), sys.argv[4])")


def rule_state_dict(manifest: dict, module: str) -> dict[str, torch.Tensor]:
    """Regenerate one official module's state dict by the weight rule, verifying every sha256.

    ``torch.randn`` fills large tensors with a vectorised kernel (AVX2 / AVX-512) whose last bits differ
    from the scalar one that ``ATEN_CPU_CAPABILITY=default`` selects.  The weights are test inputs, not
    what is tested, so when that override is set and the bits differ they are rebuilt in a child process
    with the CPU's own kernels (and verified against the same sha256s).
    """
    state = _generate(manifest, module)
    bad = _not_reproduced(manifest, module, state)
    if bad and os.environ.get("ATEN_CPU_CAPABILITY"):
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "manifest.json").write_text(json.dumps(manifest))
            env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
            subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).parent), str(Path(d) / "manifest.json"),
                            module, str(Path(d) / "w.safetensors")], env=env, check=True)
            state = load_file(str(Path(d) / "w.safetensors"))
        bad = _not_reproduced(manifest, module, state)
    assert not bad, f"weight rule does not reproduce {bad[0]} ({len(bad)} tensors)"
    return state


def write_official_checkpoint(manifest: dict, module: str, path: Path, container: str) -> Path:
    torch.save({container: rule_state_dict(manifest, module)}, path)
    return path


def official_generator(backbone: str, directory: Path, filename: str, container: str = "gen"
                       ) -> tuple[dict[str, torch.Tensor], Path]:
    """The backbone's recorded reference outputs and its generator fixture written as an official checkpoint
    (``{container: state_dict}`` in ``directory / filename``)."""
    manifest, ref = load_manifest(backbone), load_reference(backbone)
    return ref, write_official_checkpoint(manifest, "generator", directory / filename, container)


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
        return value + rel * value * torch.randn(value.shape, generator=gen, dtype=value.dtype)
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
        out[k] = (v.detach().double() - ref.double()).abs().max().item()
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
