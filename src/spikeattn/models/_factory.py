"""Glue between timm's `create_model` and our model classes, and the one record of which
backbone names exist.

A backbone is registered once, by the `register` decorator on its timm entry point: it
registers the entry point with timm and records the class the name builds and the keyword
arguments the name sets over that class's defaults (its variant). `models.BACKBONES`,
`model_class` and `backbone_defaults` read that record, so configs are checked against
constructor signatures and frame-size checks without building a model, and no list of
names is kept by hand. A plugin registers its own backbone with the same decorator
(`spikeattn.plugins.register_backbone`); `_check_class` and `_check_plugin_name` are the
contract it is held to before timm hears of it.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from timm.models import is_model, register_model
from torch import nn

from ..registry import RegistrationError, Registry, current_owner, describe_owner

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


REGISTRY: Registry[Backbone] = Registry("backbone")  # filled by `register`, in import order

EntryPoint = Callable[..., nn.Module]

# What the pipeline passes every backbone's constructor (job_inputs.model_spec); a study's
# `model:` keys come on top, checked against the signature by Params.
CELL_ARGUMENTS = ("attention", "coding", "T", "num_classes", "in_chans", "img_size")
# What the pipeline calls on the class: Params checks each cell's frame size with
# check_img_size((H, W)) before any job; train.grad_checkpointing calls set_grad_checkpointing.
CLASS_METHODS = ("check_img_size", "set_grad_checkpointing")

# Names this module gave timm for plugins. timm cannot forget a name, so after a plugin is
# dropped (an edited plugin reloaded, a test's registries restored) its name stays in timm's
# table: it is ours to give again, and its old entry point refuses to build (`with_variant`).
_PLUGIN_NAMES: set[str] = set()


def _check_class(name: str, cls: Any) -> None:
    """The backbone contract, checked on the class before anything is registered."""
    what = f"backbone {name!r}"
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise RegistrationError(f"{what}: register_backbone takes an nn.Module class, got {cls!r}")
    missing = [m for m in CLASS_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise RegistrationError(
            f"{what}: {cls.__name__} has no {' or '.join(missing)}; the pipeline calls "
            "check_img_size((H, W)) -> (H, W) (or ValueError) on the class to check each "
            "grid cell's frames before any job, and set_grad_checkpointing(enable) for "
            "train.grad_checkpointing (a @staticmethod and a method; see README 'Bring your "
            "own module')"
        )
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        absent = [a for a in CELL_ARGUMENTS if a not in params]
        if absent:
            raise RegistrationError(
                f"{what}: {cls.__name__}() takes no {', '.join(absent)}; every backbone is "
                f"built with the keywords {', '.join(CELL_ARGUMENTS)} (each cell's values)"
            )


def _check_plugin_name(name: str) -> None:
    """A plugin's entry point: under a name timm does not have already (timm would overwrite
    that model with only a warning)."""
    if name not in REGISTRY and name not in _PLUGIN_NAMES and is_model(name):
        raise RegistrationError(
            f"backbone {name!r}: timm has a model of that name already, which "
            "timm.create_model would stop building; name your entry point otherwise"
        )


def register(cls: type[nn.Module], **variant: Any) -> Callable[[EntryPoint], EntryPoint]:
    """Decorator for a backbone's timm entry point `def name(pretrained=False, **kwargs)`
    whose body builds `cls` with what it is given (`return build(cls, pretrained, **kwargs)`):
    registers it with timm under the function's name, called with `variant` under the
    caller's arguments, and records the name in REGISTRY (owned by the plugin being loaded,
    if any: `registry.loading`)."""

    def decorate(entry: EntryPoint) -> EntryPoint:
        name = entry.__name__
        owner = current_owner()
        _check_class(name, cls)
        if owner is not None:
            _check_plugin_name(name)
        record = REGISTRY.register(name, Backbone(cls, MappingProxyType(dict(variant))))

        @functools.wraps(entry)
        def with_variant(pretrained: bool = False, **kwargs: Any) -> nn.Module:
            if REGISTRY.get(name) is not record:
                raise ValueError(
                    f"backbone {name!r} of {describe_owner(owner)} is no longer registered "
                    "(its plugin was unloaded or loaded again); list the plugin under "
                    "plugins: in params.yaml"
                )
            return entry(pretrained, **{**variant, **kwargs})

        if owner is None:
            return register_model(with_variant)
        _PLUGIN_NAMES.add(name)
        with warnings.catch_warnings():  # timm's "Overwriting": the same plugin's own old entry
            warnings.filterwarnings("ignore", message="Overwriting", category=UserWarning)
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
