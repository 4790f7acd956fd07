"""Backbones, registered in timm: `timm.create_model(name, attention=..., coding=..., T=...)`.

Importing this package registers every model with timm: each entry point's `register` line
(`_factory.register`) names the class it builds and what it sets over that class's defaults.
`BACKBONES` (name -> class), `model_class` and `backbone_defaults` are read from that record,
so configs are checked against constructor signatures without building a model and no list
of names is kept by hand: a new backbone is a module with a registered entry point, imported
below, or a plugin's (`register_backbone`, the same decorator; `build_backbone` its body).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from torch import nn

from ..registry import built_in
from ._factory import REGISTRY
from ._factory import build as build_backbone
from ._factory import register as register_backbone

# Imported for their registrations (the library's, whichever import comes first); the order
# is the order names are listed in.
with built_in():
    from .demo import DemoCNN
    from .ma_cnn import MACNNGait, MACNNGesture
    from .ms_resnet import MSResNet
    from .sma_vgg import SMAVGG8


class _Classes(Mapping[str, type[nn.Module]]):
    """name -> class, read from REGISTRY at each use: a plugin's backbone appears once
    registered and goes with it."""

    def __getitem__(self, name: str) -> type[nn.Module]:
        return REGISTRY[name].cls

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return f"BACKBONES({REGISTRY.describe()})"


BACKBONES: Mapping[str, type[nn.Module]] = _Classes()


def model_class(name: str) -> type[nn.Module]:
    """The class behind backbone `name`."""
    try:
        return REGISTRY[name].cls
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; choose one of {REGISTRY.describe()}"
        ) from None


def backbone_defaults(name: str) -> dict[str, Any]:
    """The constructor arguments backbone `name` builds with when not given: its class's
    defaults, then what its entry point's variant sets over them (ms_resnet104's depths,
    GAC's CIFAR net, ma_cnn_gait's T and frame size), so the same class under two names
    shows each name's own values."""
    model_class(name)  # unknown names fail listing the known ones
    return REGISTRY[name].defaults()


__all__ = [
    "BACKBONES",
    "DemoCNN",
    "MACNNGait",
    "MACNNGesture",
    "MSResNet",
    "SMAVGG8",
    "backbone_defaults",
    "build_backbone",
    "model_class",
    "register_backbone",
]
