"""EDI's cost at 256 px (issue 11): where its time goes and what it adds to LIA / EDTalk, batch 1.

Interleaved timings, minimum over repeats (robust on a shared CPU), one thread by default:

    PYTHONPATH=. python benchmarks/edi_cost.py [--repeats 7] [--threads 1]

Prints, per backbone, the plain backbone's forward, and with EDI in the old full-size setting
(``fusion_grid=0, fusion_dim=0``: 32 x 32 restore, full-width attention over 1024 tokens) and in the
default one, the added milliseconds and percent; then EDI's parts at 512 x 32 x 32.
"""

from __future__ import annotations

import argparse
import time

import torch

from plugtalk import backbones
from plugtalk.edi import EDI, EDIConfig
from plugtalk.retrofitting import retrofit

SETTINGS = {"old (full restore + full attention)": {"fusion_grid": 0, "fusion_dim": 0}, "default": {}}


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


@torch.no_grad()
def backbone_costs(name: str, repeats: int) -> None:
    torch.manual_seed(0)
    backbone = backbones.create(name).eval()
    models = {"base": retrofit(backbone, emi=False, edi=False).eval()}
    for label, options in SETTINGS.items():
        models[label] = retrofit(backbone, emi=False, edi=options).eval()
    size = models["base"].adapter.image_size
    src, drv = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 3, size, size) * 2 - 1
    best = {k: float("inf") for k in models}
    for _ in range(repeats):   # interleaved, so load changes hit every variant alike
        for k, m in models.items():
            best[k] = min(best[k], best_ms(lambda: m(src, drv), 1))
    base = best["base"]
    print(f"{name}: base {base:.0f} ms")
    for k in SETTINGS:
        print(f"  + EDI {k}: {best[k]:.0f} ms (+{best[k] - base:.0f} ms, {100 * (best[k] - base) / base:+.1f} %)")


@torch.no_grad()
def edi_parts(repeats: int) -> None:
    for label, options in SETTINGS.items():
        torch.manual_seed(0)
        edi = EDI(EDIConfig(**options)).eval()
        src, z, token = torch.randn(1, 512, 32, 32), torch.randn(1, 512), torch.randn(1, 512)
        restored = edi.decompressor(token)
        q, ctx = src.flatten(2).transpose(1, 2), restored.flatten(2).transpose(1, 2)
        parts = {
            "compressor + addressing + recall": lambda: edi.motion_source_logits(edi.compressor(src), z, z).softmax(-1)
            @ edi.memory_d,
            "decompressor": lambda: edi.decompressor(token),
            "fusion": lambda: edi.fusion(q, ctx),
            "whole EDI": lambda: edi.forward_inference(src, z, z),
        }
        shown = ", ".join(f"{k} {best_ms(fn, repeats):.1f} ms" for k, fn in parts.items())
        print(f"EDI {label} at 512x32x32: {shown}; {sum(p.numel() for p in edi.parameters()) / 1e6:.2f} M parameters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backbone", action="append", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    edi_parts(args.repeats)
    for name in args.backbone or ["lia", "edtalk"]:
        backbone_costs(name, args.repeats)


if __name__ == "__main__":
    main()
