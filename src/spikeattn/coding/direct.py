"""Direct coding: the network's first conv-BN sees the input itself at every time step."""

from __future__ import annotations

from torch import Tensor, nn


def to_time_major(x: Tensor, T: int) -> Tensor:
    """[B, C, H, W] static images -> repeated T times; [B, T, C, H, W] frames -> [T, B, C, H, W]."""
    if x.dim() == 4:
        return x.unsqueeze(0).expand(T, *x.shape)
    if x.dim() == 5:
        if x.shape[1] != T:
            raise ValueError(
                f"input has {x.shape[1]} frames per sample but the model was built "
                f"for T={T}; preprocess the data with T={T} or build the model with "
                f"T={x.shape[1]}"
            )
        return x.transpose(0, 1)
    raise ValueError(
        f"expected [B, C, H, W] images or [B, T, C, H, W] frames, got shape {tuple(x.shape)}"
    )


class DirectCoding(nn.Module):
    """Repeat (or pass through) the input over T and apply the stem: the current of layer 1."""

    emits_spikes = False  # the backbone's first LIF turns this current into spikes

    def __init__(self, T: int, stem: nn.Module):
        super().__init__()
        self.T = T
        self.stem = stem

    def forward(self, x: Tensor) -> Tensor:
        return self.stem(to_time_major(x, self.T))
