"""Input codings: how an image or a clip becomes the first layer's input over T steps.

A coding is a builder registered with `register_coding` (the built-ins use the same call as a
plugin). `build_coding` calls it as `builder(T=, stem=, [channels=], [make_neuron=], **options)`,
passing channels, make_neuron and the backbone's coding_kwargs only as the builder names them
(coding_kwargs serve every coding of a study's grid, so a builder takes the ones it knows).
The module it returns keeps `T`, `stem` (the conv-BN it was given: energy counts it as the
encoding layer) and `emits_spikes` (whether its output already is spikes).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from torch import nn

from ..registry import RegistrationError, Registry, mark_static_only
from .direct import DirectCoding, to_time_major
from .gac import GACCoding

CODINGS: Registry[Callable[..., nn.Module]] = Registry("coding")  # name -> builder
GIVEN = ("T", "stem", "channels", "make_neuron")  # what build_coding passes, by keyword
CONTRACT = ("T", "stem", "emits_spikes")  # attributes every coding module has

B = TypeVar("B", bound=Callable[..., nn.Module])


def register_coding(name: str, *, static_only: bool = False) -> Callable[[B], B]:
    """Decorator: register coding `name`'s builder (a function or an nn.Module class) taking
    keywords T and stem, and optionally channels, make_neuron and options with defaults.
    `static_only`: it needs a static image repeated over T (Params refuses it on event data)."""

    def decorate(builder: B) -> B:
        try:
            params = inspect.signature(builder).parameters
        except (TypeError, ValueError) as err:
            raise RegistrationError(
                f"register_coding({name!r}): cannot read the builder's signature ({err})"
            ) from None
        keyword = [
            n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        missing = [n for n in ("T", "stem") if n not in keyword]
        if missing:
            raise RegistrationError(
                f"register_coding({name!r}): the builder must take keyword parameter(s) "
                f"{', '.join(missing)} (it is called as builder(T=..., stem=..., ...))"
            )
        no_default = [
            n
            for n, p in params.items()
            if n not in GIVEN
            and p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if no_default:
            raise RegistrationError(
                f"register_coding({name!r}): option(s) {', '.join(no_default)} have no default: "
                f"a model without them in coding_kwargs could not build it; give each a default"
            )
        CODINGS.register(name, builder)
        if static_only:
            mark_static_only(name)
        return builder

    return decorate


@register_coding("direct")
def _direct(*, T: int, stem: nn.Module) -> nn.Module:
    return DirectCoding(T, stem)


# Static only: registry.STATIC_ONLY_CODINGS holds "gac" (read without torch at planning).
@register_coding("gac")
def _gac(
    *, T: int, stem: nn.Module, channels: int, make_neuron: Callable[[], nn.Module], **kwargs: Any
) -> nn.Module:
    return GACCoding(T, stem, channels, make_neuron(), **kwargs)


def build_coding(
    name: str,
    *,
    T: int,
    stem: nn.Module,
    channels: int,
    make_neuron: Callable[[], nn.Module],
    **kwargs: Any,
) -> nn.Module:
    """The coding `name` around a backbone's stem (conv-BN with `channels` outputs)."""
    if name not in CODINGS:
        raise ValueError(f"unknown coding {name!r}; choose one of {CODINGS.describe()}")
    builder = CODINGS[name]
    params = inspect.signature(builder).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    given = {"T": T, "stem": stem, "channels": channels, "make_neuron": make_neuron, **kwargs}
    module = builder(**{k: v for k, v in given.items() if takes_all or k in params})
    missing = [a for a in CONTRACT if not hasattr(module, a)]
    if missing or not isinstance(getattr(module, "stem", None), nn.Module):
        raise TypeError(
            f"coding {CODINGS.describe([name])} built {type(module).__name__}, which lacks "
            f"{', '.join(missing) or 'stem as an nn.Module'}: a coding module keeps T, stem "
            f"(the conv-BN it was given) and emits_spikes"
        )
    return module


__all__ = [
    "CODINGS",
    "DirectCoding",
    "GACCoding",
    "build_coding",
    "register_coding",
    "to_time_major",
]
