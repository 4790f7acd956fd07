"""Attention modules by name, so configs and models never branch on attention names.

Each attention family has a *slot* in a spiking conv layer:

    conv -> [conv slot] -> BN -> (pool) -> [current slot] -> LIF

- MA-SNN's TA/CA/SA and combinations weight the layer's current before the LIF ("current").
- SMA (and SMA-L, SMA-C, and SMA or SMA-L with AZO) replaces the conv's output before its BN
  ("conv").

Backbones ask `attention_slots()` for both and put `nn.Identity()` where nothing goes.
Options come per family: `attention_kwargs={"ma": {...}, "sma": {...}}`. Both families
register with `register_attention` (registration.py), the call a plugin's own family uses.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from ..registry import built_in
from .ma import (
    MA_VARIANTS,
    ChannelAttention,
    MultiDimAttention,
    SpatialAttention,
    TemporalAttention,
    build_ma,
)
from .registration import (
    ATTENTIONS,
    FAMILY_BUILDERS,
    SIGNATURES,
    AttentionEntry,
    family_options,
    register_attention,
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
with built_in():
    register_attention("ma", slot="current", variants={n: {"name": n} for n in MA_VARIANTS})(
        build_ma
    )
    register_attention("sma", slot="conv", variants=SMA_VARIANTS)(SMA)
FAMILIES = FAMILY_BUILDERS  # the same live table: `fam in FAMILIES`, ", ".join(FAMILIES)


def _entry(name: str) -> AttentionEntry:
    try:
        return ATTENTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown attention {name!r}; choose one of {ATTENTIONS.describe()}"
        ) from None


def family(name: str) -> str | None:
    """The family of attention `name` ('ma', 'sma', a plugin's), or None for no attention;
    unknown names list what exists."""
    return _entry(name).family


def slot(name: str) -> str | None:
    """Where attention `name` goes in a layer: 'current', 'conv', or None."""
    return _entry(name).slot


def _options(fam: str | None, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    kwargs = kwargs or {}
    unknown = set(kwargs) - set(FAMILIES)
    if unknown:
        raise ValueError(
            f"attention_kwargs takes one mapping per family {list(FAMILIES)}, e.g. "
            f"{{'ma': {{'ratio_c': 8}}}}; got key(s) {sorted(unknown)}"
        )
    return dict(kwargs.get(fam, {})) if fam is not None else {}


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

    "none" is the identity. `spatial=False` (a fully connected layer, [T, B, F] input) and
    `make_neuron` (builds the LIFs of SMA's branches) reach only builders that name them.
    """
    entry = _entry(name)
    options = _options(entry.family, attention_kwargs)
    if entry.family is None:
        return nn.Identity()
    accepts = SIGNATURES[entry.family].accepts
    given: dict[str, Any] = {"T": T, "channels": channels}
    if "spatial" in accepts:
        given["spatial"] = spatial
    elif not spatial:
        raise ValueError(
            f"attention {name!r} needs [T, B, C, H, W] input (its builder takes no `spatial`); "
            f"fully connected layers take TA only"
        )
    if "make_neuron" in accepts:
        given["make_neuron"] = make_neuron
    return FAMILY_BUILDERS[entry.family](**given, **entry.variant, **options)


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
    "AttentionEntry",
    "FAMILIES",
    "FAMILY_BUILDERS",
    "MA_VARIANTS",
    "SMA_VARIANTS",
    "attention_slots",
    "build_attention",
    "build_ma",
    "family",
    "family_options",
    "register_attention",
    "slot",
    "ChannelAttention",
    "MultiDimAttention",
    "SpatialAttention",
    "TemporalAttention",
]
