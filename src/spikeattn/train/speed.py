"""Training-step settings that buy speed from the hardware (`train.deterministic`, `train.compile`,
`train.channels_last`, `train.fused_optimizer`) or memory (`train.grad_checkpointing`), and the
peak memory a training step takes.

None of them changes what is trained, only how the kernels run it: deterministic algorithms make
a run bit-reproducible (and a resumed run bit-identical to an uninterrupted one) at the price of
the fastest CUDA kernels, which cudnn's benchmark mode picks per shape, non-deterministically.
So `auto` keeps determinism where it costs nothing (CPU) and trades it for speed on CUDA.
`compile` hands the model to torch.compile (the LIF custom op composes with it); `channels_last`
stores conv weights and image batches NHWC, the layout tensor cores read fastest. Both are off
by default until measured to win per backbone (benchmarks/train.py).

`fused_optimizer` runs the optimizer step as one fused kernel (torch's `fused=True`) instead of
torch's default per-tensor-list (foreach) kernels; it rounds in a different order, so results
differ in the last bits. `auto` fuses on CUDA where the optimizer class has a fused kernel (torch
SGD, Adam, AdamW, Adagrad; not NAdam), never on CPU, where runs stay bit-identical to the default.
`grad_checkpointing` keeps only each backbone block's input in the forward and recomputes the
block in the backward (the models' `set_grad_checkpointing`): less activation memory for about
one more forward's time, and the same gradients (random draws are replayed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

DETERMINISTIC = ("auto", True, False)
FUSED = ("auto", True, False)
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


def fused_kernel_devices() -> tuple[str, ...]:
    """Device types torch's fused optimizer kernels run on (CPU included since torch 2.4)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # a torch without the (private) list: CUDA has had them longest
        return ("cuda",)
    return tuple(_get_fused_kernels_supported_devices())


def optimizer_has_fused(opt: str) -> bool:
    """Whether timm optimizer `opt`'s class takes torch's `fused` argument (a fused kernel)."""
    import inspect

    from timm.optim import get_optimizer_info

    cls = get_optimizer_info(opt.lower().split("_")[-1]).opt_class  # (lookahead_ prefixes)
    return not isinstance(cls, str) and "fused" in inspect.signature(cls).parameters


def fused_problem(setting: Any, opt: str, opt_kwargs: Mapping[str, Any]) -> tuple[str, str] | None:
    """What is wrong with `train.fused_optimizer` for optimizer `opt` on any device, as (the train
    key to blame, the problem); None: nothing. `opt_kwargs.fused` is refused: the setting has one
    home, `train.fused_optimizer`."""
    if setting not in FUSED or not isinstance(setting, (str, bool)):
        return "fused_optimizer", f"must be auto, true or false, got {setting!r}"
    if "fused" in opt_kwargs:
        return "opt_kwargs", (
            "holds fused; set train.fused_optimizer (auto, true or false) "
            "instead, which chooses the fused kernel per device"
        )
    if setting is True and not optimizer_has_fused(opt):
        return "fused_optimizer", (
            f"true, but optimizer {opt} has no fused kernel (torch's sgd, "
            "momentum, adam, adamw and adagrad have); set it to auto or false"
        )
    if setting is True and opt_kwargs.get("foreach"):
        return "fused_optimizer", (
            "true, and train.opt_kwargs.foreach: true asks for the other kernel; drop one of them"
        )
    return None


def resolve_fused(
    setting: Any, opt: str, device_type: str, opt_kwargs: Mapping[str, Any] | None = None
) -> bool:
    """`train.fused_optimizer` for a run of optimizer `opt` on `device_type`: whether to pass
    `fused=True` to the optimizer class. auto: on CUDA when the class has a fused kernel and
    opt_kwargs sets no `foreach` (an explicit kernel choice); true: wherever torch has the kernel
    (CPU too, for tests), else an error naming the key; false: torch's default."""
    opt_kwargs = opt_kwargs or {}
    problem = fused_problem(setting, opt, opt_kwargs)
    if problem:
        raise ValueError(f"train.{problem[0]}: {problem[1]}")
    if setting == "auto":
        return device_type == "cuda" and "foreach" not in opt_kwargs and optimizer_has_fused(opt)
    if setting and device_type not in fused_kernel_devices():
        raise ValueError(
            f"train.fused_optimizer: true, but torch has no fused optimizer kernel "
            f"on {device_type} devices; set it to auto or false"
        )
    return setting


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
    grad_checkpointing: bool = False
    fused_optimizer: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], device_type: str) -> "StepSettings":
        return cls(
            resolve_deterministic(settings.get("deterministic", "auto"), device_type),
            _flag(settings, "compile"),
            _flag(settings, "channels_last"),
            _flag(settings, "grad_checkpointing"),
            resolve_fused(
                settings.get("fused_optimizer", "auto"),
                settings.get("opt", "sgd"),
                device_type,
                settings.get("opt_kwargs") or {},
            ),
        )

    def prepare(self, model: nn.Module) -> None:
        """Convert the model's weights in place (before its optimizer is built), and switch on
        activation checkpointing (timm's convention: the model's `set_grad_checkpointing`)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.grad_checkpointing:
            if not hasattr(model, "set_grad_checkpointing"):
                raise ValueError(
                    f"train.grad_checkpointing: true, but {type(model).__name__} cannot "
                    "checkpoint its blocks (it has no set_grad_checkpointing); set it "
                    "to false for this backbone"
                )
            model.set_grad_checkpointing(True)

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
        return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
