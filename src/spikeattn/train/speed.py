"""Training-step settings that buy speed from the hardware (`train.deterministic`, `train.compile`,
`train.channels_last`), and the peak memory a training step takes.

None of them changes what is trained, only how the kernels run it: deterministic algorithms make
a run bit-reproducible (and a resumed run bit-identical to an uninterrupted one) at the price of
the fastest CUDA kernels, which cudnn's benchmark mode picks per shape, non-deterministically.
So `auto` keeps determinism where it costs nothing (CPU) and trades it for speed on CUDA.
`compile` hands the model to torch.compile (the LIF custom op composes with it); `channels_last`
stores conv weights and image batches NHWC, the layout tensor cores read fastest. Both are off
by default until measured to win per backbone (benchmarks/train.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

DETERMINISTIC = ("auto", True, False)
# torch.compile's backend; tests swap in "aot_eager" (the same graph capture and autograd
# tracing, without inductor's C++ code generation, which takes ~45 s cold on a CPU).
COMPILE_BACKEND = "inductor"


def resolve_deterministic(setting: Any, device_type: str) -> bool:
    """`train.deterministic` for a run on `device_type`: auto is true on CPU, false elsewhere."""
    if setting not in DETERMINISTIC or not isinstance(setting, (str, bool)):
        raise ValueError(f"train.deterministic must be auto, true or false, got {setting!r}")
    if setting == "auto":
        return device_type == "cpu"
    return setting


def set_deterministic(on: bool) -> None:
    """Deterministic algorithms (warning, not failing, where an op has none) and no cudnn
    benchmark; or neither, letting cudnn time its kernels per shape and keep the fastest."""
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = not on


def _flag(settings: Mapping[str, Any], key: str) -> bool:
    value = settings.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"train.{key} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class StepSettings:
    """How this run's training step runs, resolved for its device; `record()` is what
    metrics.json keeps of it."""

    deterministic: bool
    compile: bool
    channels_last: bool

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], device_type: str) -> "StepSettings":
        return cls(resolve_deterministic(settings.get("deterministic", "auto"), device_type),
                   _flag(settings, "compile"), _flag(settings, "channels_last"))

    def prepare(self, model: nn.Module) -> None:
        """Convert the model's weights in place (before its optimizer is built)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)

    def wrap(self, net: nn.Module) -> nn.Module:
        """The module the loop calls: `net` compiled when asked (it shares `net`'s parameters,
        so the bare model is still what is saved and restored)."""
        return torch.compile(net, backend=COMPILE_BACKEND) if self.compile else net

    def inputs(self, x: Tensor) -> Tensor:
        """A batch as the model's first conv reads it fastest: NHWC for 4-D [B, C, H, W] image
        batches when channels_last. 5-D [B, T, C, H, W] batches stay as they are (a 5-D
        channels_last layout would put T, not C, last); the first conv's channels_last weights
        make its output, and so every later conv's input, NHWC anyway."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def record(self) -> dict[str, Any]:
        return asdict(self)


class PeakMemory:
    """The most memory the training epoch's steps allocated on a CUDA device, in MiB (None on
    other devices: the CPU allocator keeps no such count, and a guessed number would mislead)."""

    def __init__(self, device: torch.device | str):
        device = torch.device(device)
        self.device = device if device.type == "cuda" else None

    def start(self) -> None:
        if self.device is not None:
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> float | None:
        if self.device is None:
            return None
        return round(torch.cuda.max_memory_allocated(self.device) / 2 ** 20, 1)
