"""Attention modules by name, so configs and models never branch on attention names."""
from __future__ import annotations

from torch import nn

from .ma import MA_VARIANTS, ChannelAttention, MultiDimAttention, SpatialAttention, TemporalAttention, build_ma

ATTENTIONS: tuple[str, ...] = ("none", *MA_VARIANTS)


def build_attention(name: str, *, T: int, channels: int, spatial: bool = True, **kwargs) -> nn.Module:
    """The attention block `name` for a layer of `channels` channels at `T` time steps.

    `kwargs` are the block's options (ratio_t, ratio_c, sa_kernel); "none" is the identity.
    """
    if name == "none":
        return nn.Identity()
    if name in MA_VARIANTS:
        return build_ma(name, T=T, channels=channels, spatial=spatial, **kwargs)
    raise ValueError(f"unknown attention {name!r}; choose one of {list(ATTENTIONS)}")


__all__ = ["ATTENTIONS", "MA_VARIANTS", "build_attention", "build_ma", "ChannelAttention",
           "MultiDimAttention", "SpatialAttention", "TemporalAttention"]
