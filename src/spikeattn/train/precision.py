"""Mixed precision (`train.precision`), as the authors' ImageNet codes train (torch autocast
with fp16 and a GradScaler in all three).

fp32: no autocast. bf16 / fp16: forward and loss under torch.autocast on the training device's
type (weights, optimizer state and LIF membranes stay fp32; evaluation runs under it too).
fp16 also scales the loss (torch.amp.GradScaler): a step whose gradients overflow is skipped
and the scale lowered, which is not divergence; a non-finite loss value still is.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Mapping

import torch
from torch import Tensor

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and loss scaling for one run; `scaler` is None unless fp16."""

    def __init__(self, name: str, device_type: str):
        if name not in DTYPES:
            raise ValueError(f"train.precision must be one of {list(DTYPES)}, got {name!r}")
        self.name, self.device_type, self.dtype = name, device_type, DTYPES[name]
        if self.dtype is not None and not torch.amp.is_autocast_available(device_type):
            raise ValueError(
                f"train.precision {name}: torch has no autocast on {device_type} "
                f"devices; set train.precision: fp32 for this machine"
            )
        self.scaler = torch.amp.GradScaler(device_type) if name == "fp16" else None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], device_type: str) -> "Precision":
        return cls(settings.get("precision", "fp32"), device_type)

    def autocast(self) -> ContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and optimizer step, through the scaler when there is one."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)  # skipped when a gradient is inf/NaN
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(dict(state))
