"""Data-parallel training under ``torchrun``: PyTorch's process group and DistributedDataParallel, nothing home-made.

``torchrun --nproc_per_node N -m vitlab train ...`` starts N copies of the command with RANK, LOCAL_RANK and
WORLD_SIZE set. Every rank holds the whole uint8 dataset, draws the same epoch order, and trains on its own
slice of every global batch (``train.batch_size`` is the global batch: each rank computes ``batch_size / N``
images). DDP averages the gradients, so the update equals one process training on the whole batch; the small
per-step statistics (loss, correct, images, seconds, stop request) are summed across ranks so every rank takes
the same decisions. Rank 0 alone prints, validates, writes checkpoints and builds the report.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The process's place in a ``torchrun`` launch (a single process when not launched by torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    return world_from_env().is_main


def init_process_group(world: World, device: torch.device) -> torch.device:
    """Join the launch's process group (nccl on GPUs, gloo on CPUs); returns this rank's device."""
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            # Rank 0 validates and checkpoints while the others wait at the next collective.
            timeout=timedelta(minutes=60),
        )
    return device


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (the values themselves on a single process)."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_sum_tensor(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(t)
    return t


def gather_objects(obj: Any, world: World) -> list[Any]:
    """``obj`` of every rank, in rank order."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


@contextlib.contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. decoding images into the shared cache); the others then reuse its work."""
    if not world.is_main:
        barrier(world)
    yield
    if world.is_main:
        barrier(world)
