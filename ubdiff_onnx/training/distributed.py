"""DistributedDataParallel without user code: torchrun's environment switches it on.

Under ``torchrun --nproc_per_node N -m ubdiff_onnx train ...`` every process reads RANK/WORLD_SIZE/
LOCAL_RANK, joins a process group (NCCL on GPUs, gloo on CPU) and trains a shard of each global
batch. Without those variables everything here is a no-op, so one code path serves both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ubdiff_onnx.errors import UserError


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    if choice not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device: {choice!r}; expected auto, cpu or cuda")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available to torch (use --device cpu)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


@dataclass
class Dist:
    """Rank, world size and device of this process, with the few collectives training needs."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def min_(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return t

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any (so all ranks stop at the same step)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.max_(t).item() > 0)

    def broadcast_object(self, obj):
        """Rank 0's value on every rank (used to share one error message or decision)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(device_choice: str, threads: int = 0) -> Dist:
    """Join torchrun's process group if there is one; pick the device and CPU thread count."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = resolve_device(device_choice, local_rank)
    if threads > 0:
        torch.set_num_threads(threads)
    elif device.type == "cpu":
        # All cores but one, shared among this machine's processes: on 2 cores, 2 threads per process
        # collapse as soon as anything else runs (measured 3-10x slower steps), 1 thread does not.
        cores = os.cpu_count() or 1
        torch.set_num_threads(max(1, (cores - 1 if cores > 1 else 1) // local_world))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, local_world=local_world, device=device)


def shutdown_distributed(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
