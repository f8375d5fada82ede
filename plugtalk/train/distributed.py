"""torch.distributed plumbing: one process per device, launched by ``torchrun``.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) training runs in a single process.
NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from ..errors import InputError

__all__ = ["DistContext", "ResumableSampler"]


@dataclasses.dataclass
class DistContext:
    """Rank / world size / device of this process (``world_size == 1``: no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto", timeout_s: float = 1800) -> "DistContext":
        """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...).

        ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.  Each process uses
        ``cuda:LOCAL_RANK``.

        Raises:
            InputError: ``cuda`` without a GPU torch can use.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise InputError("device 'cuda' requested (config 'device') but CUDA is not available on this machine "
                             "(no GPU, no driver, or a CPU-only torch build); use --set device=cpu")
        dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(dev)
        owns = False
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s),
                                    device_id=dev if use_cuda else None)
            owns = True
        return cls(rank, world, local, dev, owns)

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def all_reduce_max(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t /= self.world_size
        return t

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (a list of ``world_size`` items on every rank)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


class ResumableSampler(DistributedSampler):
    """:class:`~torch.utils.data.DistributedSampler` that can start part-way through an epoch.

    The order of an epoch depends only on ``(seed, epoch)``; ``start`` skips the first ``start``
    indices of this rank's share (set when resuming, cleared by :meth:`set_epoch`), so a resumed run
    sees exactly the samples the uninterrupted run would have.
    """

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
