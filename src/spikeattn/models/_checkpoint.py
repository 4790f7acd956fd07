"""Activation checkpointing over a backbone's blocks (`train.grad_checkpointing`), timm's way:
each backbone has `set_grad_checkpointing(enable)` and, when it is on, runs its blocks
through `run_blocks`, which keeps only each block's input in the forward and recomputes the
block in the backward (torch.utils.checkpoint, non-reentrant).

What makes the recomputation equal to the first run:
- random draws (dropout masks) are replayed: torch's `preserve_rng_state` restores the CPU and
  CUDA generators before the recompute, and puts them back after it;
- state a block updates in its forward (BatchNorm's running statistics and batch count) is
  updated once: the recompute runs from a copy of the block's buffers and puts them back, or
  every checkpointed step would move BN's running statistics twice and change evaluation.
Autocast is replayed by torch itself. Under torch.compile (`train.compile`) the checkpoint is
traced into the compiled graph, whose recompute never repeats a buffer update. So the gradients, the weights and the buffers after a
step are those of the plain step (tests/models/test_grad_checkpointing.py).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Sequence, Union

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

Block = Union[nn.Module, Sequence[nn.Module]]  # a module, or modules applied in turn


@contextlib.contextmanager
def _buffers_kept(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Run the body, then put the modules' buffers back as they were (the recompute's updates undone)."""
    saved = [(b, b.detach().clone()) for m in modules for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _sequence(x: Tensor, *modules: nn.Module) -> Tensor:
    for module in modules:
        x = module(x)
    return x


def run_blocks(blocks: Iterable[Block], x: Tensor, enabled: bool) -> Tensor:
    """`x` through `blocks` in turn (a block: a module, or a tuple of modules applied in turn,
    for a backbone whose layers are not grouped in modules of their own); with `enabled` (and
    gradients on) each block is a checkpoint: its activations are recomputed in the backward
    instead of kept."""
    for block in blocks:
        modules = tuple(block) if isinstance(block, (tuple, list)) else (block,)
        if enabled and torch.is_grad_enabled() and torch.compiler.is_compiling():
            # torch.compile (train.compile) traces the checkpoint into its graph: its recompute
            # takes the activations only (buffer updates are applied once, at the graph's end)
            x = checkpoint(_sequence, x, *modules, use_reentrant=False, preserve_rng_state=True)
        elif enabled and torch.is_grad_enabled():
            x = checkpoint(
                _sequence,
                x,
                *modules,
                use_reentrant=False,
                preserve_rng_state=True,
                context_fn=lambda modules=modules: (
                    contextlib.nullcontext(),
                    _buffers_kept(modules),
                ),
            )
        else:
            x = _sequence(x, *modules)
    return x


class GradCheckpointing:
    """timm's `set_grad_checkpointing` for a backbone whose forward runs its blocks through
    `run_blocks(..., self.grad_checkpointing)`."""

    grad_checkpointing: bool = False

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = bool(enable)
