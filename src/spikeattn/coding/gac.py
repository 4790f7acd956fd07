"""GAC, the gated attention coding of Qiu et al. (code: bollossom/GAC).

The stem's conv-BN output `x` ([T, B, C, H, W], the image repeated T times) drives a LIF
(spikes `s`) and two attention branches that gate those spikes:

    TA(x):  avg and max over (C, H, W) -> shared MLP T -> T/2 -> T, summed (no sigmoid here);
            the max routes its gradient to one element, as the authors' max-pool layer
    SCA(x): per frame Conv2d(C, C, k=4, 'same') -> ReLU -> Conv2d(C, C, k=4, 'same'), no bias
    y = sigmoid(TA(x) * SCA(x)) * s           real-valued in (0, 1), fed to the next layer

The gate shares the stem's conv-BN: GAC adds no convolution of its own in front of it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..attention.ma import SharedMLP, max_pool
from ..layers import TimeDistributed
from .direct import to_time_major


def _same_pad(kernel_size: int) -> nn.ZeroPad2d:
    """Zero padding that keeps H x W for any kernel size (even ones pad one more on the right),
    the same numbers as Conv2d(padding='same') without its extra copy and warning."""
    left = (kernel_size - 1) // 2
    right = kernel_size - 1 - left
    return nn.ZeroPad2d((left, right, left, right))


class GACCoding(nn.Module):
    """Stem conv-BN -> LIF spikes gated by temporal x spatial-channel attention."""

    emits_spikes = True  # the gate has its own LIF; its output feeds the next conv directly

    def __init__(
        self,
        T: int,
        stem: nn.Module,
        channels: int,
        make_neuron: Callable[[], nn.Module],
        ratio_t: int = 2,
        sca_kernel: int = 4,
    ):
        super().__init__()
        self.T = T
        self.stem = stem
        self.neuron = make_neuron()  # the backbone's LIF, for the stem's spikes
        self.ta = SharedMLP(T, ratio_t)
        self.sca = TimeDistributed(
            _same_pad(sca_kernel),
            nn.Conv2d(channels, channels, sca_kernel, bias=False),
            nn.ReLU(),
            _same_pad(sca_kernel),
            nn.Conv2d(channels, channels, sca_kernel, bias=False),
        )

    def forward(self, image: Tensor) -> Tensor:
        if image.dim() != 4:
            raise ValueError(
                "GAC codes static images [B, C, H, W]; event frames already carry "
                "time, use coding 'direct' for them"
            )
        x = self.stem(to_time_major(image, self.T))
        spikes = self.neuron(x)
        flat = x.flatten(2)  # [T, B, C*H*W]
        ta = self.ta(flat.mean(2).t(), max_pool(flat, 2).t()).t()  # [T, B]
        gate = torch.sigmoid(ta[:, :, None, None, None] * self.sca(x))
        return gate * spikes

    def elementwise_macs(self, x: Tensor) -> int:
        """The two elementwise products (TA x SCA, gate x spikes), per forward."""
        return 2 * x.numel()
