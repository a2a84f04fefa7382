"""Training on several processes: torch.distributed, launched by ``torchrun``.

``torchrun --nproc_per_node N -m seq2seq train CONFIG`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous in their environment; each joins one
process group (NCCL on GPUs, gloo on CPUs) and trains a DistributedDataParallel replica on
its own shard of every epoch's batches. Without those variables, training is one process
and none of this runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from seq2seq.runtime import pick_device

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, logs and writes the run directory."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (a picklable object)."""
        if self.size == 1:
            return obj
        box: list[Any] = [obj]
        dist.broadcast_object_list(box, src=0)
        result: T = box[0]
        return result

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on one (e.g. a rank's clock ran out)."""
        return self.any_each([flag])[0]

    def any_each(self, flags: list[bool]) -> list[bool]:
        """:meth:`any` of several flags in one all-reduce."""
        if self.size == 1:
            return flags
        t = torch.tensor([int(flag) for flag in flags])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the ranks."""
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]


def init_world(device_name: str) -> tuple[World, torch.device]:
    """Join the process group that torchrun set up, if any, and pick this rank's device
    (GPU ``LOCAL_RANK`` under CUDA)."""
    device = pick_device(device_name, "training.device")
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    world = World(
        rank=int(os.environ["RANK"]),
        size=size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def close_world(world: World, finished: bool) -> None:
    """Leave the process group. After a normal finish the ranks first meet at a barrier:
    rank 0 still writes its last checkpoint after the final collective, and a rank that tears
    its gloo connections down while a peer is still using them can abort that peer (seen as
    SIGABRT at exit). After an error there is no barrier, which could wait forever."""
    if world.size > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def shard(plan: list[T], world: World) -> list[T]:
    """This rank's batches of an epoch: batches r, r + W, r + 2W, ... of the first
    W * (len // W), so every rank gets the same number and none waits at the epoch's end
    for a gradient all-reduce that never comes. At most W − 1 batches an epoch are left
    out, different ones each epoch since the plan is reshuffled."""
    usable = len(plan) // world.size * world.size
    return plan[world.rank : usable : world.size]
