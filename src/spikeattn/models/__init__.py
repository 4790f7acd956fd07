"""Backbones, registered in timm: `timm.create_model(name, attention=..., coding=..., T=...)`.

Importing this package registers every model with timm. `BACKBONES` maps each registered
name to its class, so configs can be checked against constructor signatures without
building a model (a test keeps it equal to what timm has registered from this package);
`backbone_defaults` gives what a name builds with when a setting is not passed.
"""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from .demo import DemoCNN
from .ma_cnn import MACNNGait, MACNNGesture
from .ms_resnet import VARIANTS as MS_RESNET_VARIANTS, MSResNet
from .sma_vgg import SMAVGG8

BACKBONES: dict[str, type[nn.Module]] = {
    "demo_cnn": DemoCNN,
    "ms_resnet18": MSResNet,
    "ms_resnet34": MSResNet,
    "ms_resnet104": MSResNet,
    "gac_ms_resnet18_cifar": MSResNet,
    "ma_cnn_gesture": MACNNGesture,
    "ma_cnn_gait": MACNNGait,
    "sma_vgg8": SMAVGG8,
}


def model_class(name: str) -> type[nn.Module]:
    """The class behind backbone `name`."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {list(BACKBONES)}") from None


def backbone_defaults(name: str) -> dict[str, Any]:
    """The constructor arguments backbone `name` builds with when not given: its class's
    defaults, then what its timm entry point sets over them (ms_resnet104's depths, GAC's CIFAR
    net), so the same class under two names shows each name's own values."""
    params = inspect.signature(model_class(name)).parameters
    own = {key: p.default for key, p in params.items() if p.default is not inspect.Parameter.empty}
    return {**own, **MS_RESNET_VARIANTS.get(name, {})}


__all__ = ["BACKBONES", "DemoCNN", "MACNNGait", "MACNNGesture", "MSResNet", "SMAVGG8",
           "backbone_defaults", "model_class"]
