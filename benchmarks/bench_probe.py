"""Cost of a full probe: N pairs (half self-, half cross-reenactment from the shared clips) x every tap
and FixTalk group of a backbone at its official 256 px size, in both directions, on this machine.

    OMP_NUM_THREADS=1 python benchmarks/bench_probe.py --backbone lia --num-pairs 8 --out /tmp/probe-bench

Prints the wall time and its split (load, faces, rendering, scoring) and writes the usual report
(``report.json`` holds the same timing).  Random weights unless ``--checkpoint`` is given: rendering
cost does not depend on the weights; scoring cost does a little (dlib finds no face in noise).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from plugtalk.probe import ProbeSpec, run_probe, usable_pairs_from_folder, write_report
from plugtalk.shared_data import shared_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="lia")
    ap.add_argument("--checkpoint")
    ap.add_argument("--num-pairs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 1 on the CPU, 8 on GPUs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="/tmp/plugtalk-probe-bench")
    args = ap.parse_args()
    t0 = time.perf_counter()
    pairs, _ = usable_pairs_from_folder(shared_path("data", "faces"), args.num_pairs, seed=0)
    spec = ProbeSpec(args.backbone, pairs, checkpoint=args.checkpoint, batch_size=args.batch_size, device=args.device)
    result = run_probe(spec)
    write_report(result, args.out)
    wall = time.perf_counter() - t0
    tm = result.timing
    summary = {"backbone": args.backbone, "pairs": tm["pairs"], "variants": tm["variants"],
               "distinct_variants": tm["distinct_variants"], "images_rendered": tm["images_rendered"],
               "wall_s": round(wall, 1), "load_s": round(tm["load_s"], 1), "faces_s": round(tm["faces_s"], 1),
               "render_s": round(tm["model_s"], 1), "capture_s": round(tm["capture_s"], 1),
               "patched_s": round(tm["patched_s"], 1), "scoring_s": round(tm["scoring_s"], 1),
               "s_per_image": round(tm["seconds_per_image"], 3), "batch_size": tm["batch_size"],
               "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
               "cpus": os.cpu_count(), "loadavg_1min_at_end": round(os.getloadavg()[0], 2)}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
