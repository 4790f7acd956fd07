"""Glue between timm's `create_model` and our model classes."""
from __future__ import annotations

from typing import Any

from torch import nn

# Arguments timm's create_model hands every entry point; our models have no pretrained weights.
_TIMM_ARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def build(cls: type[nn.Module], pretrained: bool, **kwargs: Any) -> nn.Module:
    """Instantiate `cls` from a timm entry point's arguments."""
    if pretrained:
        raise ValueError(f"{cls.__name__} has no pretrained weights; train it with the pipeline")
    for key in _TIMM_ARGS:
        kwargs.pop(key, None)
    return cls(**kwargs)
