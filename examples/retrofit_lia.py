"""Retrofit LIA with FixTalk's EMI and EDI and animate a real face.

    python examples/retrofit_lia.py [--checkpoint vox.pt] [--frames 50] [--out retrofit_lia.mp4]

Without --checkpoint, LIA and both modules have random weights (the point here is the plumbing: the
modules plug into an unmodified backbone; train them with `plugtalk train`).  With the official
`vox.pt`, the backbone is loaded exactly and left untouched, and EMI/EDI start as pass-throughs, so
the output equals official LIA until the modules are trained.

Source: a portrait still from the shared data; driving: a held-out test clip (relative motion, as
LIA's own demo).  Writes source | driving | output side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import plugtalk.backbones as backbones
from plugtalk import retrofit
from plugtalk.io.images import load_image, to_tensor, to_uint8
from plugtalk.io.video import VideoReader, VideoWriter
from plugtalk.shared_data import shared_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="official LIA checkpoint (e.g. vox.pt); random weights if omitted")
    ap.add_argument("--source", type=Path, default=None, help="source portrait (default: a shared still)")
    ap.add_argument("--driving", type=Path, default=None, help="driving clip (default: a shared test clip)")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("retrofit_lia.mp4"))
    args = ap.parse_args()

    source_path = args.source or shared_path("data", "stills", "vox_macron.png")
    driving_path = args.driving or shared_path("data", "faces", "test", "vox_driving2__driving2.mp4")

    torch.manual_seed(0)
    lia = backbones.load_official("lia", args.checkpoint) if args.checkpoint else backbones.create("lia")
    model = retrofit(lia, emi=True, edi=True).eval()           # EMI + EDI, backbone frozen
    added = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("adapter.backbone."))
    print(f"LIA {sum(p.numel() for p in lia.parameters()) / 1e6:.1f} M parameters + EMI/EDI {added / 1e6:.1f} M")

    source_img = load_image(source_path)                         # (256, 256, 3) uint8, already a face crop
    reader = VideoReader(driving_path, max_frames=args.frames)   # streams frames, 256 px face crops
    with torch.inference_mode(), VideoWriter(args.out, fps=reader.fps) as writer:
        source = model.encode_source(to_tensor(source_img))      # encoded once
        start_code = None
        for batch in reader.batches(8):
            driving = to_tensor(batch)
            if start_code is None:                               # relative motion w.r.t. the first frame
                start_code = model.start_code(driving[:1])
            out = model.render(source, model.encode_drivers({"driving": driving}), start_code=start_code)
            frames = to_uint8(out.clamp(-1, 1))
            writer.write(np.concatenate([np.broadcast_to(source_img, batch.shape), batch, frames], axis=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
