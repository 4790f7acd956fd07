"""Backbones, registered in timm: `timm.create_model(name, attention=..., coding=..., T=...)`.

Importing this package registers every model with timm. `BACKBONES` maps each registered
name to its class, so configs can be checked against constructor signatures without
building a model (a test keeps it equal to what timm has registered from this package).
"""
from __future__ import annotations

from torch import nn

from .demo import DemoCNN
from .ma_cnn import MACNNGait, MACNNGesture
from .ms_resnet import MSResNet
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


__all__ = ["BACKBONES", "DemoCNN", "MACNNGait", "MACNNGesture", "MSResNet", "SMAVGG8", "model_class"]
