"""A core-only install (issue 22.1): ``pip install plugtalk`` brings torch, torchvision, timm, einops, numpy and
safetensors; every other package comes with an extra, and a feature whose extra is missing says which one.

Each test runs plugtalk in a subprocess where the optional packages cannot be imported (``tests/no_extras.py``
hides them even though this environment has them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from no_extras import OPTIONAL

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_python(blocked: str | None, code: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", code] if blocked is None else [sys.executable, str(HERE / "no_extras.py"),
                                                                 blocked, "-c", code]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_core_api_imports_no_optional_package(tmp_path):
    """``from plugtalk import EMI, EDI, retrofit`` and the core packages load no face detector, video library,
    demo clip, CLI or plotting package, even where they are installed."""
    code = f"""
import sys, json
from plugtalk import EMI, EDI, retrofit, load_retrofitted
import plugtalk.backbones, plugtalk.adapters, plugtalk.hooks, plugtalk.retrofitting
loaded = sorted({{n.split('.')[0] for n in sys.modules}} & set({list(OPTIONAL)!r}))
print(json.dumps(loaded))
"""
    r = run_python(None, code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


CORE_RUN = """
import json, torch
import plugtalk.backbones as B
from plugtalk import EMI, EDI, retrofit, load_retrofitted
TINY = dict(size=32, channel_base=512, channel_max=32, style_dim=64)
torch.manual_seed(0)
lia = B.create("lia", **TINY).eval()
spec = retrofit(lia).adapter.feature_spec
emi, edi = EMI.from_spec(spec, num_layers=1, num_queries=4), EDI.from_spec(spec, num_slots=8)
model = retrofit(lia, emi=True, edi=True).eval()
src, drv = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
with torch.inference_mode():
    out = model(src, drv)
model.save_pretrained("r.safetensors")
again = load_retrofitted("r.safetensors").eval()
lia.save_pretrained("b.safetensors")
with torch.inference_mode():
    same = again(src, drv)
    plain = B.load("b.safetensors")(src, drv)
print(json.dumps({"shape": list(out.shape), "reload": float((same - out).abs().max()),
                  "emi": type(emi).__name__, "edi": type(edi).__name__, "plain": list(plain.shape)}))
"""


def test_core_api_works_without_any_extra(tmp_path):
    """Build EMI / EDI, retrofit a backbone, forward, save and load plugtalk files with every optional package
    hidden."""
    r = run_python("all", CORE_RUN, tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["shape"] == [2, 3, 32, 32] and result["plain"] == [2, 3, 32, 32]
    assert result["reload"] == 0.0
    assert (result["emi"], result["edi"]) == ("EMI", "EDI")


def test_plugtalk_command_without_cli_extra_names_it(tmp_path):
    r = run_python("all", "from plugtalk.__main__ import main; import sys; sys.argv = ['plugtalk', '--help']; main()",
                   tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["error: the plugtalk command needs typer, which is not installed: pip install 'plugtalk[cli]'"]


#: command line -> the extra its first missing package belongs to (with only ``plugtalk[cli]`` installed).
COMMANDS = {
    "animate -s s.png -d v.mp4 -o out.mp4": "video",
    "bench --frames 2": "video",
    "eval -p v.mp4": "eval",
    "export -o ex": "onnx",
    "prepare vids -o prep": "video",
    "probe --out pr": "eval",
    "train -c small-cpu --set data.folder=vids": "video",
    "ui": "ui",
    "demo --out d": "video",
}

CLI_RUN = """
import contextlib, io, json, shlex, sys
import numpy as np
from PIL import Image
from plugtalk.cli import main
Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save("s.png")
open("v.mp4", "wb").close()
import os; os.makedirs("vids", exist_ok=True); open("vids/v.mp4", "wb").close()
results = {}
for line in COMMANDS:
    err = io.StringIO()
    sys.argv = ["plugtalk", *shlex.split(line)]
    code = 0
    with contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as e:
            code = e.code
    results[line] = [code, err.getvalue()]
print(json.dumps(results))
"""


@pytest.mark.slow
def test_each_cli_command_names_its_missing_extra(tmp_path):
    """With only ``plugtalk[cli]`` installed every command that needs more fails with exit 2 and one
    ``error:`` line naming the extra to install; nothing is left behind."""
    r = run_python("cli", f"COMMANDS = {list(COMMANDS)!r}\n" + CLI_RUN, tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout.strip().splitlines()[-1])
    for line, extra in COMMANDS.items():
        code, err = results[line]
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 2, (line, err)
        assert len(errors) == 1 and f"pip install 'plugtalk[{extra}]'" in errors[0], (line, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png", "v.mp4", "vids"]
