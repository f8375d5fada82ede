"""Time plugtalk's backbones against the official implementations on the same machine.

    python benchmarks/compare_official.py --official-root /path/to/clones [--threads 2] [--batch 1]

``--official-root`` holds your own clones of the official repositories, named ``wyhsirius+LIA``,
``tanshuai0219+EDTalk`` and ``OpenTalker+DPE`` (no official code ships with plugtalk).  Their
generators are imported from there with the two shims their README-era code needs on current
PyTorch on a CPU (``torch.qr`` -> ``torch.linalg.qr``; ``Tensor.cuda`` as identity for the
hard-coded grid).  Both sides run the same 256 px forward (random weights: speed does not depend on
them), each in a fresh process, median of ``--iters`` after one warm-up.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPOS = {"lia": "wyhsirius+LIA", "edtalk": "tanshuai0219+EDTalk", "dpe": "OpenTalker+DPE"}


def _time_one(side: str, name: str, root: str, threads: int, batch: int, iters: int) -> float:
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x, y, z = (torch.rand(batch, 3, 256, 256, generator=g) * 2 - 1 for _ in range(3))
    if side == "official":
        torch.qr = lambda a, some=True: torch.linalg.qr(a, mode="reduced" if some else "complete")
        torch.Tensor.cuda = lambda self, *a, **k: self
        sys.path.insert(0, str(Path(root) / REPOS[name]))
        gen = importlib.import_module("networks.generator")
        if name == "edtalk":
            model = gen.Generator(256, 512, 20, 6, 10, 1).eval()
            fn = lambda: model.test_EDTalk_V(x, y, z, z)  # noqa: E731
        else:
            model = gen.Generator(256, 512, 20, 1).eval()
            fn = (lambda: model(x, y)) if name == "lia" else (lambda: model(x, y, "exp"))
    else:
        import plugtalk.backbones as B

        model = B.create(name).eval()
        fn = {"lia": lambda: model(x, y), "dpe": lambda: model(x, y, mode="expression"),
              "edtalk": lambda: model(x, mouth=y, pose=z, expression=z)}[name]
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-root", type=Path, required=True)
    ap.add_argument("--backbones", nargs="+", default=list(REPOS), choices=list(REPOS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        side, name = args.worker
        print(json.dumps(_time_one(side, name, str(args.official_root), args.threads, args.batch, args.iters)))
        return
    missing = [REPOS[b] for b in args.backbones if not (args.official_root / REPOS[b] / "networks").is_dir()]
    if missing:
        sys.exit(f"not found under {args.official_root}: {missing} (clone the official repositories there)")
    import torch

    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, 256 px, median of {args.iters}")
    for name in args.backbones:
        t = {}
        for side in ("official", "plugtalk"):
            out = subprocess.run([sys.executable, __file__, "--official-root", str(args.official_root), "--threads",
                                  str(args.threads), "--batch", str(args.batch), "--iters", str(args.iters),
                                  "--worker", side, name], capture_output=True, text=True, check=True)
            t[side] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:7s} official {t['official']:.3f} s   plugtalk {t['plugtalk']:.3f} s   "
              f"speed-up {t['official'] / t['plugtalk']:.2f}x")


if __name__ == "__main__":
    main()
