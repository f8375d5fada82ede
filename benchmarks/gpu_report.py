"""One prepared GPU run that measures everything plugtalk claims for a GPU (issue 23).

    python benchmarks/gpu_report.py --out DIR [--budget-s 480] [--device cuda|cpu] [--tiny] [--shared PATH]
    python benchmarks/gpu_report.py --pack .gpu_pack [--tiny]      # build the folder that travels (see below)

One process (plus one ``torchrun`` child for the process-group step) writes ``DIR/report.md`` and
``DIR/report.json`` after every measured case, so a run cut short still returns what it measured; beside
them at most five more files: ``log.txt``, ``retrofit_edi.jsonl``, ``reference_baseline.safetensors``,
``reference_both.safetensors``, ``reference_scores.json``.  Steps, in order of value, each with its own
share of ``--budget-s`` (a step that fails is reported with its error and the run goes on; a step that
runs out of time reports what it measured and what it left out):

1. ``environment``: GPU, driver, torch / CUDA / cuDNN, the packages this script can and cannot use;
2. ``parity``: the four backbones (LIA, EDTalk, DPE, GoHD) in float32 on the device against the fixtures'
   float64 records, under the CPU tests' sensitivity rule (:mod:`plugtalk.parity`: float64 on the device,
   its response to float32-sized rounding noise, float32 within 4x of it; cuDNN/cuBLAS TF32 off), and
   bf16 autocast's error against float32 per tensor;
3. ``speed``: 256 px inference of each backbone, base and +EMI+EDI (GoHD: +EDI, it refuses EMI), batch
   1 / 16 / 64 / 256, float32 / bf16, channels-last, ``torch.compile``, CUDA graphs; frames/s, ms per frame,
   peak memory; issue 23's goals printed beside (not asserted);
4. ``train_speed``: training images/s of ``stage1``, ``stage2``, ``retrofit`` (EDTalk 256 px, bf16,
   batch 16); ``ddp``: a world-size-1 NCCL (gloo on CPU) process group through ``torchrun`` doing real
   optimizer steps under DistributedDataParallel; ``retrofit``: a short EDTalk-256 retrofit on the
   shared training clips with EDI's diagnostics (entropy, slot usage, recall gap) over its steps;
   ``recipe``: the ``fixtalk-edtalk`` recipe, run short if ``plugtalk.train`` offers it;
5. ``reference``: the reference model (``examples/reference_model``: B0, then baseline and +both with the
   same number of steps) at 128 px with the remaining minutes, scored with the reference protocol
   (``examples/reference_protocol.py``) on the test split against copy-source and the shipped CPU model.

``--tiny`` runs every step at tiny sizes (32 px models, a few steps, a few pairs): CI runs it on the CPU
(``tests/test_gpu_report.py``), where the steps that need CUDA (CUDA graphs, NCCL) say so.

**The GPU machine** (``/work/.library/device``: torch 2.11, no PyAV / dlib / librosa / typer / pydantic)
gets a carried folder built here with ``--pack .gpu_pack`` (git-ignored): the parity fixtures, JPEG frames
of the shared clips (PIL decodes them; no video decoder needed), the data MANIFEST and the wheels of
pydantic (+ pydantic-core, annotated-types, typing-inspection, typing-extensions), checked to stay within
60 MiB together with the repository.  The one call, about 8 minutes of work inside a 10-minute command::

    run(command="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site
                 .gpu_pack/wheels/*.whl; export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1;
                 python3 benchmarks/gpu_report.py --out $OUT/report --shared .gpu_pack --budget-s 480",
        carry=[".gpu_pack"], timeout_s=600)

(the command on one line).  Face metrics (CSIM, identity shift, LMD) need dlib and are left out with
that reason when it is missing; the report says which metrics were scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE), str(ROOT / "examples")):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402

#: Largest --budget-s accepted (s).
MAX_BUDGET_S = 3600
#: Files the run may write into --out besides report.md / report.json (issue 23: at most six more).
EXTRA_FILES = ("log.txt", "retrofit_edi.jsonl", "reference_baseline.safetensors", "reference_both.safetensors",
               "reference_scores.json")


# -- the report ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Section:
    """One step's part of the report: ``status`` is ``ok``, ``partial`` (budget ran out), ``failed``,
    ``skipped`` (cannot run here, with the reason), ``not available`` or ``pending``."""

    name: str
    title: str
    budget_s: float
    status: str = "pending"
    seconds: float = 0.0
    lines: list[str] = dataclasses.field(default_factory=list)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None

    def note(self, text: str) -> None:
        self.notes.append(text)


class Report:
    """``report.json`` + ``report.md`` in ``out``, rewritten atomically by :meth:`write`."""

    def __init__(self, out: Path, meta: dict[str, Any]):
        self.out, self.meta, self.sections = out, meta, {}
        self.t0 = time.monotonic()

    def add(self, section: Section) -> Section:
        self.sections[section.name] = section
        return section

    def write(self) -> None:
        from plugtalk.io.atomic import atomic_path

        self.meta["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        doc = {"meta": self.meta, "sections": {k: dataclasses.asdict(s) for k, s in self.sections.items()}}
        with atomic_path(self.out / "report.json") as tmp:
            tmp.write_text(json.dumps(clean(doc), indent=1, default=_jsonable, allow_nan=False))
        with atomic_path(self.out / "report.md") as tmp:
            tmp.write_text("\n".join(self.markdown()) + "\n")

    def markdown(self) -> list[str]:
        m = self.meta
        lines = ["# plugtalk GPU report", "",
                 f"{m['started']} UTC, device `{m['device']}`{' (--tiny)' if m['tiny'] else ''}, "
                 f"{m['elapsed_s']:.0f} s of a {m['budget_s']:.0f} s budget; command: `{m['command']}`", ""]
        for i, s in enumerate(self.sections.values(), 1):
            lines += [f"## {i}. {s.title} [`{s.name}`]: {s.status}", "",
                      f"{s.seconds:.1f} s of its {s.budget_s:.0f} s budget.", ""]
            lines += [f"- {n}" for n in s.notes] + ([""] if s.notes else [])
            lines += s.lines + ([""] if s.lines else [])
            if s.error:
                lines += ["```", s.error.rstrip(), "```", ""]
        return lines


def _jsonable(x):
    if isinstance(x, (Path, torch.device, torch.dtype)):
        return str(x)
    if hasattr(x, "item"):   # numpy / torch scalars
        return clean(x.item())
    return repr(x)


def clean(obj):
    """``obj`` with non-finite floats as ``None`` (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def write_output(path: Path, text: str | None = None, copy_from: Path | None = None) -> Path:
    """Write ``text`` (or a copy of ``copy_from``) to ``path`` atomically (plugtalk.io.atomic)."""
    import shutil

    from plugtalk.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        if copy_from is not None:
            shutil.copyfile(copy_from, tmp)
        else:
            tmp.write_text(text or "")
    return path


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """Markdown table lines."""
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v))  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(fmt(v) for v in r) + " |" for r in rows)]


# -- the run's context -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Context:
    """What every step gets: options, device, the report, the budget and a scratch folder."""

    args: argparse.Namespace
    device: torch.device
    report: Report
    scratch: Path
    deadline: float                       #: monotonic time the whole run must end by
    step_deadline: float = math.inf       #: monotonic time the current step must end by
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)   #: things steps hand on (checkpoints)
    logfile: Any = None

    @property
    def tiny(self) -> bool:
        return self.args.tiny

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def out(self) -> Path:
        return self.report.out

    def left(self) -> float:
        """Seconds left for the current step (never more than the run has left)."""
        return min(self.step_deadline, self.deadline) - time.monotonic()

    def log(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.report.t0:7.1f} s] {msg}"
        print(line, flush=True)
        if self.logfile is not None:
            self.logfile.write(line + "\n")
            self.logfile.flush()

    def save(self) -> None:
        self.report.write()

    def shared(self, *parts: str) -> Path:
        """A path in the shared folder (``--shared``, else ``$PLUGTALK_SHARED`` / ``../shared``).

        Raises:
            FileNotFoundError: the shared folder or the path does not exist.
        """
        from plugtalk.shared_data import find_shared

        root = Path(self.args.shared) if self.args.shared else find_shared()
        if root is None or not root.joinpath(*parts).exists():
            raise FileNotFoundError(f"{'/'.join(parts)} not found in the shared folder ({root}): pass --shared PATH "
                                    "(the shared folder, or a folder built by --pack)")
        return root.joinpath(*parts)


class StepSkipped(Exception):
    """The step cannot run here (the message says why); not a failure."""


class NotAvailable(Exception):
    """What the step measures is not offered by this plugtalk (the message says what is missing)."""


# -- the steps -------------------------------------------------------------------------------------------
def step_environment(ctx: Context, sec: Section) -> None:
    """GPU, driver, torch / CUDA / cuDNN and the optional packages."""
    import platform
    import subprocess

    import plugtalk

    env = {"plugtalk": plugtalk.__version__, "python": platform.python_version(), "torch": torch.__version__,
           "cuda (torch build)": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version()),
           "cpu_count": os.cpu_count(), "torch threads": torch.get_num_threads(), "device": str(ctx.device)}
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        env.update({"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                    "gpu memory GiB": round(props.total_memory / 2**30, 1),
                    "multiprocessors": props.multi_processor_count})
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
            env["driver"] = q.stdout.strip() or q.stderr.strip()
        except (OSError, subprocess.SubprocessError) as e:
            env["driver"] = f"nvidia-smi failed: {e}"
    try:
        env["git commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        env["git commit"] = "unknown"
    packages = {dist: _package(dist, module) for dist, module in PACKAGES.items()}
    sec.data = {"environment": env, "packages": packages}
    sec.lines = table(["what", "value"], [[k, v] for k, v in env.items()]) + [""] + table(
        ["package", "version"], [[k, v] for k, v in packages.items()])


#: distribution -> module of the packages the report lists (what the GPU machine has or lacks)
PACKAGES = {"numpy": "numpy", "scipy": "scipy", "torchvision": "torchvision", "safetensors": "safetensors",
            "timm": "timm", "einops": "einops", "pydantic": "pydantic", "PyYAML": "yaml", "Pillow": "PIL",
            "av": "av", "opencv-python-headless": "cv2", "dlib": "dlib",
            "face-recognition-models": "face_recognition_models", "librosa": "librosa", "typer": "typer",
            "onnxruntime": "onnxruntime", "tensorboard": "tensorboard"}


def _package(dist: str, module: str) -> str:
    """The installed version, ``missing``, or ``<version> (not importable)``."""
    import importlib.metadata
    import importlib.util

    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = None
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # e.g. an import blocked through sys.modules
        found = False
    if found:
        return version or "installed"
    return f"{version} (not importable)" if version else "missing"


#: the recipe step's child: the Python API, since the GPU machine has no typer (``plugtalk train`` is its CLI)
RECIPE_CHILD = """
import json, sys
from plugtalk.train.recipes import resolve_recipe, run_recipe
out, sets, until = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
planned = resolve_recipe("fixtalk-edtalk", out, sets, until=until)
print("steps:", ", ".join(f"{p.index}-{p.step.name} ({p.config.stage})" for p in planned), flush=True)
print("final model:", run_recipe(planned, out), flush=True)
"""


def step_recipe(ctx: Context, sec: Section) -> None:
    """FixTalk's order as a recipe (issue 20): ``plugtalk train --recipe fixtalk-edtalk``, run short.

    Runs :func:`plugtalk.train.recipes.run_recipe` in a child process (what the CLI calls; the GPU machine has
    no typer), two optimiser steps per recipe step, on the pack's training frame folders, up to the
    ``mouth-pose`` step: the shared clips carry no emotion labels, which the ``expression`` step needs.
    """
    import subprocess

    from gpu_report_train import TINY_OVERRIDES, clip_folder_for_cli

    data = clip_folder_for_cli(ctx)
    out = ctx.scratch / "recipe"
    sets = ["optim.steps=2", f"device={ctx.device.type}", f"data.folder={json.dumps(str(data))}",
            *(TINY_OVERRIDES if ctx.tiny else [])]
    until = "mouth-pose"
    cmd = [sys.executable, "-c", RECIPE_CHILD, str(out), json.dumps(sets), until]
    sec.data["command"] = (f"plugtalk train --recipe fixtalk-edtalk --until {until} -o {out} "
                           + " ".join(f"--set '{o}'" for o in sets))
    sec.notes.append("the expression step is not run: the shared training clips carry no emotion labels "
                     "(MEAD's manifest.jsonl gives them)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(10, ctx.left()), env=env)
    tail = r.stderr[-3000:]  # progress bars and warnings; the steps and the result are on stdout
    sec.data.update(returncode=r.returncode, stdout=r.stdout[-2000:], stderr_tail=tail)
    sec.lines = [f"`{sec.data['command']}` (through the Python API) -> exit {r.returncode}", "", "```",
                 r.stdout[-1000:], tail[-1000:], "```"]
    if r.returncode != 0:
        raise RuntimeError(f"the recipe exited with {r.returncode}")
    sec.data["final_model"] = str(out / "model.safetensors")


def steps() -> list[tuple[str, str, tuple[float, float], Callable[[Context, Section], None]]]:
    """``(name, title, (share of the budget, share with --tiny), function)`` in order of value; ``reference``
    takes what is left.  --tiny's shares follow the CPU's fixed costs (a torchrun start, model builds)."""
    import gpu_report_model as M
    import gpu_report_train as T

    return [("environment", "Environment", (0.02, 0.02), step_environment),
            ("parity", "CUDA parity (float32 vs the fixtures' float64) and bf16 autocast error", (0.14, 0.16),
             M.step_parity),
            ("speed", "Inference speed at 256 px", (0.24, 0.16), M.step_speed),
            ("train_speed", "Training images/s (stage1, stage2, retrofit; bf16, batch 16)", (0.10, 0.16),
             T.step_train_speed),
            ("ddp", "Process group at world size 1 through torchrun", (0.08, 0.14), T.step_ddp),
            ("retrofit", "EDTalk retrofit on the shared training clips, EDI diagnostics", (0.09, 0.08),
             T.step_retrofit),
            ("recipe", "Training recipe fixtalk-edtalk", (0.06, 0.12), step_recipe),
            ("reference", "GPU-trained reference model, scored with the reference protocol", (1.0, 1.0),
             T.step_reference)]


def run_step(ctx: Context, sec: Section, fn: Callable[[Context, Section], None]) -> None:
    """Run one step within its budget; any error is recorded and the run goes on."""
    t0 = time.monotonic()
    ctx.step_deadline = t0 + sec.budget_s
    sec.status = "running"
    ctx.log(f"step {sec.name}: budget {sec.budget_s:.0f} s")
    ctx.save()
    try:
        fn(ctx, sec)
        if sec.status == "running":
            sec.status = "ok"
    except StepSkipped as e:
        sec.status, sec.error = "skipped", str(e)
    except NotAvailable as e:
        sec.status, sec.error = "not available", str(e)
    except Exception as e:  # noqa: BLE001 - one failing step must not end the run
        sec.status = "failed"
        sec.error = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=-6))[-4000:]
    finally:
        sec.seconds = round(time.monotonic() - t0, 1)
        if ctx.cuda:
            torch.cuda.empty_cache()
        ctx.log(f"step {sec.name}: {sec.status} in {sec.seconds:.1f} s")
        ctx.save()


def fail(message: str):
    """One ``error:`` line on stderr, exit status 2 (the project's CLI convention)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def bounded(value: float, low: float, high: float, what: str) -> float:
    if not (low <= value <= high):
        fail(f"{what} must be within [{low:g}, {high:g}], got {value:g}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="report folder (created)")
    p.add_argument("--budget-s", type=float, default=None, help="whole run's budget (default 480, --tiny 120)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    p.add_argument("--tiny", action="store_true", help="every step at tiny sizes (CI, CPU)")
    p.add_argument("--shared", type=Path, default=None, help="shared folder or a --pack folder (fixtures, data)")
    p.add_argument("--steps", default=None, help="comma-separated subset of the steps (default: all)")
    p.add_argument("--pack", type=Path, default=None, help="build the folder to carry to the GPU machine and exit")
    p.add_argument("--worker", choices=("ddp",), default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.budget_s is None:
        a.budget_s = 120.0 if a.tiny else 480.0
    bounded(a.budget_s, 5, MAX_BUDGET_S, "--budget-s")
    if a.pack is None and a.out is None:
        p.error("--out is required (or --pack)")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.worker == "ddp":
        import gpu_report_train

        return gpu_report_train.ddp_worker(a)
    if a.pack is not None:
        import gpu_pack

        return gpu_pack.build(a.pack, tiny=a.tiny, shared=a.shared)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda, but torch sees no CUDA device")
    known = [s[0] for s in steps()]
    chosen = known if not a.steps else [s.strip() for s in a.steps.split(",")]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        fail(f"unknown steps {unknown}; known: {', '.join(known)}")
    if a.out.exists() and not a.out.is_dir():
        fail(f"--out {a.out} is a file, not a folder")
    a.out.mkdir(parents=True, exist_ok=True)
    meta = {"started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "device": str(device), "tiny": a.tiny, "budget_s": a.budget_s, "steps": chosen,
            "command": " ".join(["python", "benchmarks/gpu_report.py", *(argv if argv is not None else sys.argv[1:])])}
    report = Report(a.out, meta)
    with tempfile.TemporaryDirectory(prefix="gpu_report-") as scratch, open(a.out / "log.txt", "w") as log:
        ctx = Context(a, device, report, Path(scratch), time.monotonic() + a.budget_s, logfile=log)
        plan = [s for s in steps() if s[0] in chosen]
        for name, title, shares, _ in plan:
            report.add(Section(name, title, shares[a.tiny] * a.budget_s))
        for name, _, shares, fn in plan:
            sec = report.sections[name]
            left = ctx.deadline - time.monotonic()
            sec.budget_s = round(max(0.0, min(shares[a.tiny] * a.budget_s, left)), 1)
            if sec.budget_s < 1:
                sec.status, sec.error = "skipped", "no time left in --budget-s"
                ctx.save()
                continue
            run_step(ctx, sec, fn)
    print(f"report: {a.out / 'report.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
