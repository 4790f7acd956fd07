"""Input codings: how an image or a clip becomes the first layer's input over T steps."""

from __future__ import annotations

from typing import Callable

from torch import nn

from .direct import DirectCoding, to_time_major
from .gac import GACCoding

CODINGS: tuple[str, ...] = ("direct", "gac")


def build_coding(
    name: str,
    *,
    T: int,
    stem: nn.Module,
    channels: int,
    make_neuron: Callable[[], nn.Module],
    **kwargs,
) -> nn.Module:
    """The coding `name` around a backbone's stem (conv-BN with `channels` outputs)."""
    if name == "direct":
        return DirectCoding(T, stem)
    if name == "gac":
        return GACCoding(T, stem, channels, make_neuron(), **kwargs)
    raise ValueError(f"unknown coding {name!r}; choose one of {list(CODINGS)}")


__all__ = ["CODINGS", "DirectCoding", "GACCoding", "build_coding", "to_time_major"]
