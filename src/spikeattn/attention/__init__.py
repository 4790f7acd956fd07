"""Attention modules by name, so configs and models never branch on attention names.

Each attention family has a *slot* in a spiking conv layer:

    conv -> [conv slot] -> BN -> (pool) -> [current slot] -> LIF

- MA-SNN's TA/CA/SA and combinations weight the layer's current before the LIF ("current").
- SMA (and SMA-L, SMA-C, and SMA or SMA-L with AZO) replaces the conv's output before its BN
  ("conv").

Backbones ask `attention_slots()` for both and put `nn.Identity()` where nothing goes.
Options come per family: `attention_kwargs={"ma": {...}, "sma": {...}}`.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .ma import (
    MA_VARIANTS,
    ChannelAttention,
    MultiDimAttention,
    SpatialAttention,
    TemporalAttention,
    build_ma,
)
from .sma import SMA

# Paper name -> SMA options it implies (Params forbids setting these in attention_kwargs).
# SMA-C: the channel half only, no time weights (SMA appendix Tab. 6; see sma.py); it takes no AZO.
SMA_VARIANTS: dict[str, dict[str, bool]] = {
    "SMA": {"light": False, "azo": False, "temporal": True},
    "SMA-L": {"light": True, "azo": False, "temporal": True},
    "SMA-C": {"light": False, "azo": False, "temporal": False},
    "SMA+AZO": {"light": False, "azo": True, "temporal": True},
    "SMA-L+AZO": {"light": True, "azo": True, "temporal": True},
}
ATTENTIONS: tuple[str, ...] = ("none", *MA_VARIANTS, *SMA_VARIANTS)
# Family -> the builder that receives attention_kwargs[family]: Params checks those options
# against its signature, so build_attention must send them nowhere else.
FAMILY_BUILDERS: dict[str, Callable[..., nn.Module]] = {"ma": build_ma, "sma": SMA}
FAMILIES = tuple(FAMILY_BUILDERS)


def family(name: str) -> str | None:
    """'ma', 'sma', or None for no attention; unknown names list what exists."""
    if name == "none":
        return None
    if name in MA_VARIANTS:
        return "ma"
    if name in SMA_VARIANTS:
        return "sma"
    raise ValueError(f"unknown attention {name!r}; choose one of {list(ATTENTIONS)}")


def slot(name: str) -> str | None:
    """Where attention `name` goes in a layer: 'current', 'conv', or None."""
    return {"ma": "current", "sma": "conv", None: None}[family(name)]


def _options(name: str, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    kwargs = kwargs or {}
    unknown = set(kwargs) - set(FAMILIES)
    if unknown:
        raise ValueError(
            f"attention_kwargs takes one mapping per family {list(FAMILIES)}, e.g. "
            f"{{'ma': {{'ratio_c': 8}}}}; got key(s) {sorted(unknown)}"
        )
    return dict(kwargs.get(family(name), {}))


def build_attention(
    name: str,
    *,
    T: int,
    channels: int,
    spatial: bool = True,
    make_neuron: Callable[[], nn.Module] | None = None,
    attention_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """The attention block `name` for a layer of `channels` channels at `T` time steps.

    "none" is the identity. `make_neuron` builds the LIFs of SMA's branches.
    """
    options = _options(name, attention_kwargs)
    fam = family(name)
    if fam is None:
        return nn.Identity()
    builder = FAMILY_BUILDERS[fam]
    if fam == "ma":
        return builder(name, T=T, channels=channels, spatial=spatial, **options)
    if not spatial:
        raise ValueError(
            f"attention {name!r} needs [T, B, C, H, W] input; fully connected layers take TA only"
        )
    return builder(T, channels, make_neuron=make_neuron, **SMA_VARIANTS[name], **options)


def attention_slots(name: str, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """(conv slot, current slot) for one layer: the attention in its slot, Identity in the other."""
    module = build_attention(name, **kwargs)
    where = slot(name)
    return (
        module if where == "conv" else nn.Identity(),
        module if where == "current" else nn.Identity(),
    )


__all__ = [
    "ATTENTIONS",
    "FAMILIES",
    "FAMILY_BUILDERS",
    "MA_VARIANTS",
    "SMA_VARIANTS",
    "attention_slots",
    "build_attention",
    "build_ma",
    "family",
    "slot",
    "ChannelAttention",
    "MultiDimAttention",
    "SpatialAttention",
    "TemporalAttention",
]
