"""Building blocks shared by the backbones: time-distributed layers on [T, B, ...] tensors."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TimeDistributed(nn.Sequential):
    """Apply ordinary (single-step) layers to every time step at once by merging T into B.

    BatchNorm inside sees T*B samples, i.e. it normalises over time and batch together
    (tdBN without its threshold scaling), as the papers' code does.
    """

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        y = super().forward(x.flatten(0, 1))
        return y.reshape(T, B, *y.shape[1:])


def conv_bn(
    in_chans: int, out_chans: int, kernel_size: int = 3, stride: int = 1, bias: bool = False
) -> TimeDistributed:
    """Conv2d + BatchNorm2d over all time steps."""
    return TimeDistributed(
        nn.Conv2d(
            in_chans, out_chans, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias
        ),
        nn.BatchNorm2d(out_chans),
    )


class SpikingStage(nn.Module):
    """MA-SNN's layer tail on a current: (pool) -> attention -> LIF, returning spikes."""

    def __init__(self, attention: nn.Module, neuron: nn.Module, pool: int = 1):
        super().__init__()
        self.pool = TimeDistributed(nn.AvgPool2d(pool)) if pool > 1 else nn.Identity()
        self.attention = attention
        self.neuron = neuron

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(self.attention(self.pool(x)))


class TimeSharedDropout(nn.Module):
    """Dropout on [T, B, ...] whose mask is drawn once per forward and shared over T, or per
    step when `shared=False`.

    Shared is SpikingJelly's multi-step `layer.Dropout` (SMA's VGG), and it is also the
    MS-ResNet head of MA-SNN's and SMA's code, which averages the features over T, applies
    Dropout once, then the FC: before a linear layer whose outputs the loss averages over T,
    mean_t(W (m * x_t) + b) = W (m * mean_t x_t) + b, with the same mask m for the same draws.
    """

    def __init__(self, p: float = 0.5, shared: bool = True):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p
        self.shared = shared

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = (1, *x.shape[1:]) if self.shared else x.shape
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * mask / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, shared={self.shared}"
