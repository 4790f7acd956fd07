"""Backbones, registered in timm: `timm.create_model(name, attention=..., coding=..., T=...)`.

Importing this package registers every model with timm: each entry point's `register` line
(`_factory.register`) names the class it builds and what it sets over that class's defaults.
`BACKBONES` (name -> class), `model_class` and `backbone_defaults` are read from that record,
so configs are checked against constructor signatures without building a model and no list
of names is kept by hand: a new backbone is a module with a registered entry point, imported
below.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from torch import nn

from ._factory import REGISTRY

# Imported for their registrations; the order is the order names are listed in.
from .demo import DemoCNN
from .ma_cnn import MACNNGait, MACNNGesture
from .ms_resnet import MSResNet
from .sma_vgg import SMAVGG8

BACKBONES: Mapping[str, type[nn.Module]] = MappingProxyType(
    {name: b.cls for name, b in REGISTRY.items()}
)


def model_class(name: str) -> type[nn.Module]:
    """The class behind backbone `name`."""
    try:
        return REGISTRY[name].cls
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {list(REGISTRY)}") from None


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
    "model_class",
]
