"""What a training run reports (rank 0 only): tensorboard scalars and image grids, a JSON-lines
metrics file, and a tqdm progress bar with the losses and the ETA."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

__all__ = ["TrainMonitor", "image_grid"]


def image_grid(source: Tensor, driving: Tensor, output: Tensor, rows: int = 4) -> Tensor:
    """``(3, H', W')`` grid in [0, 1]: one row per sample, columns source | driving | output.

    Inputs: ``(B, 3, H, W)`` in [-1, 1] (output clamped).
    """
    from torchvision.utils import make_grid

    n = min(rows, source.shape[0])
    cells = torch.stack([source[:n], driving[:n], output[:n]], dim=1).flatten(0, 1)
    cells = (cells.detach().float().clamp(-1, 1) + 1) / 2
    return make_grid(cells.cpu(), nrow=3, padding=2, pad_value=1.0)


class TrainMonitor:
    """Logging of one run into ``folder`` (``tensorboard/`` and ``metrics.jsonl``).

    Every method is a no-op when ``enabled`` is false (ranks other than 0).
    """

    def __init__(self, folder: str | os.PathLike, total_steps: int, start_step: int = 0, enabled: bool = True,
                 progress: bool = True):
        self.enabled = enabled
        self.writer = None
        self.bar = None
        self._jsonl = None
        if not enabled:
            return
        from .._optional import require
        require("tensorboard", "train", "training logs")
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=start_step if start_step else None)
        self._jsonl = open(folder / "metrics.jsonl", "a", encoding="utf-8")
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True,
                            mininterval=1.0)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")
        self._jsonl.flush()
        if self.bar is not None:
            shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in values.items() if k.startswith("loss/")}
            self.bar.set_postfix(shown, refresh=False)

    def images(self, step: int, source: Tensor, driving: Tensor, output: Tensor, rows: int) -> None:
        if self.enabled:
            self.writer.add_image("samples/source|driving|output", image_grid(source, driving, output, rows), step)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self._jsonl is not None:
            self._jsonl.close()
        self.enabled = False
