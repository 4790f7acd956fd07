"""Glue between timm's `create_model` and our model classes."""
from __future__ import annotations

from typing import Any, Sequence

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


def frame_size(img_size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from a model's `img_size`: an int for square frames, or an (H, W) pair, as
    stages.model_spec passes non-square datasets (N-Caltech101's 180x240)."""
    if isinstance(img_size, int):
        return img_size, img_size
    if len(img_size) != 2:
        raise ValueError(f"img_size takes an int (square frames) or an (H, W) pair, got {img_size!r}")
    height, width = img_size
    return int(height), int(width)
