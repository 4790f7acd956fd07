"""Building blocks shared by the backbones: time-distributed layers on [T, B, ...] tensors."""
from __future__ import annotations

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


def conv_bn(in_chans: int, out_chans: int, kernel_size: int = 3, stride: int = 1,
            bias: bool = False) -> TimeDistributed:
    """Conv2d + BatchNorm2d over all time steps."""
    return TimeDistributed(
        nn.Conv2d(in_chans, out_chans, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias),
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
