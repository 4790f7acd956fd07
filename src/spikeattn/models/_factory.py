"""Glue between timm's `create_model` and our model classes, and the one record of which
backbone names exist.

A backbone is registered once, by the `register` decorator on its timm entry point: it
registers the entry point with timm and records the class the name builds and the keyword
arguments the name sets over that class's defaults (its variant). `models.BACKBONES`,
`model_class` and `backbone_defaults` read that record, so configs are checked against
constructor signatures and frame-size checks without building a model, and no list of
names is kept by hand.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from timm.models import register_model
from torch import nn

# Arguments timm's create_model hands every entry point; our models have no pretrained weights.
_TIMM_ARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


@dataclass(frozen=True)
class Backbone:
    """A registered backbone name: the class it builds, and what the name sets over the
    class's own defaults (ms_resnet34's depths, ma_cnn_gait's T, classes and frame size)."""

    cls: type[nn.Module]
    variant: Mapping[str, Any]

    def defaults(self) -> dict[str, Any]:
        """The constructor arguments the name builds with when none is passed: the class's
        signature defaults, then the variant over them."""
        params = inspect.signature(self.cls).parameters
        own = {
            key: p.default for key, p in params.items() if p.default is not inspect.Parameter.empty
        }
        return {**own, **self.variant}


REGISTRY: dict[str, Backbone] = {}  # filled by `register`, in import order


EntryPoint = Callable[..., nn.Module]


def register(cls: type[nn.Module], **variant: Any) -> Callable[[EntryPoint], EntryPoint]:
    """Decorator for a backbone's timm entry point `def name(pretrained=False, **kwargs)`
    whose body builds `cls` with what it is given (`return build(cls, pretrained, **kwargs)`):
    registers it with timm under the function's name, called with `variant` under the
    caller's arguments, and records the name in REGISTRY."""

    def decorate(entry: EntryPoint) -> EntryPoint:
        name = entry.__name__
        if name in REGISTRY:
            raise ValueError(
                f"backbone {name!r} is registered twice ({entry.__module__}); "
                "give the entry point another name"
            )
        REGISTRY[name] = Backbone(cls, MappingProxyType(dict(variant)))

        @functools.wraps(entry)
        def with_variant(pretrained: bool = False, **kwargs: Any) -> nn.Module:
            return entry(pretrained, **{**variant, **kwargs})

        return register_model(with_variant)

    return decorate


def build(cls: type[nn.Module], pretrained: bool, **kwargs: Any) -> nn.Module:
    """Instantiate `cls` from a timm entry point's arguments."""
    if pretrained:
        raise ValueError(f"{cls.__name__} has no pretrained weights; train it with the pipeline")
    for key in _TIMM_ARGS:
        kwargs.pop(key, None)
    return cls(**kwargs)


def frame_size(img_size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from a model's `img_size`: an int for square frames, or an (H, W) pair, as
    job_inputs.model_spec passes non-square datasets (N-Caltech101's 180x240)."""
    if isinstance(img_size, int):
        return img_size, img_size
    if len(img_size) != 2:
        raise ValueError(
            f"img_size takes an int (square frames) or an (H, W) pair, got {img_size!r}"
        )
    height, width = img_size
    return int(height), int(width)
