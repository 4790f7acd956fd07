"""Multi-process (DDP) training: what differs between one process and `torchrun`'s many.

A study opts in with `distributed: {nproc_per_node: G}`. `spikeattn train` then re-launches
itself under `torch.distributed.run` (torchrun) with G processes; each process trains on its
share of every global batch, gradients are averaged by DistributedDataParallel, epoch metrics
are summed over processes, and only rank 0 writes files and talks to MLflow.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as torch_dist

# Set by torchrun in every process it starts.
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in _TORCHRUN_ENV)


@dataclass(frozen=True)
class Dist:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls, backend: str = "auto") -> "Dist":
        """Join the process group torchrun set up (env://); one process when not under torchrun."""
        if not launched_by_torchrun():
            return cls()
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        local_rank = int(os.environ["LOCAL_RANK"])
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group(backend)
        return cls(torch_dist.get_rank(), torch_dist.get_world_size(), local_rank)

    def device(self) -> torch.device:
        """This process's GPU (its local rank among the visible ones), else the CPU."""
        if torch.cuda.is_available():
            return torch.device(
                "cuda", self.local_rank if self.active else torch.cuda.current_device()
            )
        return torch.device("cpu")

    def sum(self, values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
        """Element-wise sum over processes (float64, so counts stay exact)."""
        if not self.active:
            return [float(v) for v in values]
        if torch_dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        torch_dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order (on every process)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model DDP averages gradients for (the model itself for one process)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if torch.cuda.is_available() else None
        return DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        if self.active and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def torchrun_argv(nproc: int, argv: Sequence[str]) -> list[str]:
    """Re-run `python -m spikeattn <argv>` as `nproc` processes on this node (torchrun
    --standalone picks a free rendezvous port, so concurrent jobs do not collide)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "spikeattn",
        *argv,
    ]
