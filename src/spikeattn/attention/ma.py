"""MA-SNN's multi-dimensional attention (Yao et al., TPAMI 2023) on time-major currents.

Each block computes weights from the current `x` of a layer ([T, B, C, H, W]) and multiplies
them in, before the current enters the LIF membrane:

    TA: pool over (C, H, W) -> [T, B]; shared MLP T -> T/r_t -> T (no bias, ReLU between)
        on the avg and the max; weight = sigmoid(mlp(avg) + mlp(max))      -> [T, B, 1, 1, 1]
    CA: pool over (T, H, W) -> [B, C]; shared MLP C -> C/r_c -> C; same  -> [1, B, C, 1, 1]
    SA: mean and max over the merged T*C axis -> 2 maps; Conv2d(2 -> 1, k) -> sigmoid
                                                                          -> [1, B, 1, H, W]

Combinations apply in sequence (`out = TA(out) * out; out = CA(out) * out; ...`) and every
wrapper ends in ReLU, as the authors' code does. TA pools over every axis after B, so the
same block also serves fully connected layers ([T, B, F]).

The max pools route their gradient as the authors' max-pool layers do (`max_pool`): to one
maximal element per pooled row, the first in the authors' [B, T, C, H, W] order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _hidden(width: int, ratio: int) -> int:
    return max(1, width // ratio)


def max_pool(x: Tensor, dim: int) -> Tensor:
    """The maximum over `dim`, with the gradient of each row sent to ONE element: the first
    maximal one, as the authors' `nn.AdaptiveMaxPool*` layers and `torch.max(dim)` route it.

    `amax` would split the gradient evenly among tied maxima instead; on spikes and event
    counts ties are the rule, and the attention's parameter gradients would differ.
    """
    return x.max(dim).values


class SharedMLP(nn.Module):
    """Two bias-free linear layers with a ReLU between; returns mlp(avg) + mlp(max), pre-sigmoid.

    (The authors implement it as 1x1 convolutions; a linear layer on the pooled vector is the
    same map.) GAC's temporal branch reuses it without the sigmoid.
    """

    def __init__(self, width: int, ratio: int):
        super().__init__()
        self.fc1 = nn.Linear(width, _hidden(width, ratio), bias=False)
        self.fc2 = nn.Linear(_hidden(width, ratio), width, bias=False)

    def forward(self, avg: Tensor, mx: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(avg))) + self.fc2(torch.relu(self.fc1(mx)))


class TemporalAttention(nn.Module):
    """TA: one weight per time step and sample. Its MLP has T inputs, so T is fixed at build."""

    def __init__(self, T: int, ratio: int = 4):
        super().__init__()
        self.T = T
        self.mlp = SharedMLP(T, ratio)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.T:
            raise ValueError(
                f"TA was built for T={self.T} (its MLP has {self.T} inputs) but got "
                f"T={x.shape[0]}; build the model with T={x.shape[0]}"
            )
        flat = x.flatten(2)  # [T, B, rest]
        w = torch.sigmoid(self.mlp(flat.mean(2).t(), max_pool(flat, 2).t())).t()  # [T, B]
        return w.reshape(*w.shape, *([1] * (x.dim() - 2)))


class ChannelAttention(nn.Module):
    """CA: one weight per channel and sample, shared over time and space."""

    def __init__(self, channels: int, ratio: int = 8):
        super().__init__()
        self.mlp = SharedMLP(channels, ratio)

    def forward(self, x: Tensor) -> Tensor:
        per_c = x.transpose(0, 1).transpose(1, 2).flatten(2)  # [B, C, T*H*W]
        w = torch.sigmoid(self.mlp(per_c.mean(2), max_pool(per_c, 2)))  # [B, C]
        return w[None, :, :, None, None]


class SpatialAttention(nn.Module):
    """SA: one map per sample, shared over time and channels."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"SA kernel_size must be odd (same padding), got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        per_b = x.transpose(0, 1).flatten(1, 2)  # [B, T*C, H, W]
        maps = torch.stack([per_b.mean(1), max_pool(per_b, 1)], dim=1)  # [B, 2, H, W]
        return torch.sigmoid(self.conv(maps))[None]  # [1, B, 1, H, W]


class MultiDimAttention(nn.Module):
    """A sequence of TA / CA / SA blocks, each `out = w(out) * out`, then ReLU."""

    def __init__(
        self,
        dims: str,
        T: int,
        channels: int,
        ratio_t: int = 4,
        ratio_c: int = 8,
        sa_kernel: int = 3,
    ):
        super().__init__()
        builders = {
            "T": lambda: TemporalAttention(T, ratio_t),
            "C": lambda: ChannelAttention(channels, ratio_c),
            "S": lambda: SpatialAttention(sa_kernel),
        }
        self.dims = dims
        self.blocks = nn.ModuleList(builders[d]() for d in dims)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for block in self.blocks:
            out = block(out) * out
        return torch.relu(out)

    def elementwise_macs(self, x: Tensor) -> int:
        """Multiplications of weights into the current, per forward (for energy estimates)."""
        return len(self.blocks) * x.numel()


# Paper name -> the blocks it applies, in order.
MA_VARIANTS = {
    "TA": "T",
    "CA": "C",
    "SA": "S",
    "TCA": "TC",
    "TSA": "TS",
    "CSA": "CS",
    "TCSA": "TCS",
}


def build_ma(
    name: str,
    *,
    T: int,
    channels: int,
    spatial: bool = True,
    ratio_t: int = 4,
    ratio_c: int = 8,
    sa_kernel: int = 3,
) -> MultiDimAttention:
    """An MA variant by its paper name; `spatial=False` (FC layers) allows TA only."""
    dims = MA_VARIANTS[name]
    if not spatial and dims != "T":
        raise ValueError(
            f"attention {name!r} needs [T, B, C, H, W] input; fully connected layers take TA only"
        )
    return MultiDimAttention(
        dims, T=T, channels=channels, ratio_t=ratio_t, ratio_c=ratio_c, sa_kernel=sa_kernel
    )
