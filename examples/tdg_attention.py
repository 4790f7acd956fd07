"""TDG, a temporal-difference gate: an example plugin (our own block, in none of the papers).

A spiking layer's current often repeats from one time step to the next (a static scene, a
slow saccade). TDG passes the current where it changed since the last step and damps it
where it stayed:

    d_t = |x_t - x_{t-1}|   (d_0 = 0: the first step has no past)
    g_t = sigmoid(DWConv_k(d_t) + b)
    out_t = g_t * x_t

The depthwise conv (C * k^2 weights) starts at zero, so the gate starts as the constant
sigmoid(init_bias) (0.88 at 2.0) and learns from there how much a local change opens it.
The magnitude |d| makes a rise and a fall of the current count alike.

Copy this file to start your own block; README "Bring your own module (plugins)" walks
through it. Listed in params.yaml as `plugins: [examples/tdg_attention.py]`, it adds the
grid name `TDG` (attention family `tdg`, options `attention_kwargs: {tdg: {kernel, init_bias}}`).
What makes its energy comparable with MA and SMA rows: its conv is an `nn.Conv2d` module (the
energy hooks count it, as attention), and `elementwise_macs` counts the gate's products.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeattn.plugins import register_attention


class TemporalDifferenceGate(nn.Module):
    """The gate on a current [T, B, C, H, W]; returns the gated current, same shape."""

    def __init__(self, channels: int, kernel: int, init_bias: float):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"TDG kernel must be odd and >= 1 (same-size output), got {kernel}")
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        nn.init.zeros_(self.conv.weight)  # the gate starts as the constant sigmoid(init_bias)
        nn.init.constant_(self.conv.bias, init_bias)

    def forward(self, x: Tensor) -> Tensor:
        change = torch.cat([torch.zeros_like(x[:1]), (x[1:] - x[:-1]).abs()])
        gate = torch.sigmoid(self.conv(change.flatten(0, 1))).view_as(x)
        return gate * x

    def elementwise_macs(self, x: Tensor) -> int:
        """Energy: one product (gate times current) per element of the output `x`."""
        return x.numel()


@register_attention("tdg", slot="current", variants=["TDG"])
def tdg(*, T: int, channels: int, kernel: int = 3, init_bias: float = 2.0) -> nn.Module:
    """The builder the grid name `TDG` calls: `T` and `channels` come from the backbone,
    `kernel` and `init_bias` from `attention_kwargs.tdg` (so each needs a default). It names no
    `spatial` parameter: the library then keeps it off fully connected layers."""
    return TemporalDifferenceGate(channels, kernel=kernel, init_bias=init_bias)
