"""Input codings: how an image or a clip becomes the first layer's input over T steps.

A coding is a builder (a function or an nn.Module class) registered with `register_coding`;
the built-ins are their classes, registered with the same call as a plugin's. `build_coding`
calls it as `builder(T=, stem=, [channels=], [make_neuron=], **options)`, passing channels and
make_neuron only as the builder names them, and of the backbone's coding_kwargs the options it
names: one coding_kwargs serves every coding of a study's grid, so each takes its own (Params
refuses a key no coding of the grid takes). The module it returns keeps `T`, `stem` (the
conv-BN it was given: energy counts it as the encoding layer) and `emits_spikes` (whether its
output already is spikes).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from torch import nn

from ..registry import RegistrationError, Registry, built_in, mark_static_only
from .direct import DirectCoding, to_time_major
from .gac import GACCoding

CODINGS: Registry[Callable[..., nn.Module]] = Registry("coding")  # name -> builder
GIVEN = ("T", "stem", "channels", "make_neuron")  # what build_coding passes, by keyword
CONTRACT = ("T", "stem", "emits_spikes")  # attributes every coding module has

B = TypeVar("B", bound=Callable[..., nn.Module])


def _keyword(builder: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return {
        n: p
        for n, p in inspect.signature(builder).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def register_coding(name: str, *, static_only: bool = False) -> Callable[[B], B]:
    """Decorator: register coding `name`'s builder (a function or an nn.Module class) taking
    keywords T and stem, and optionally channels, make_neuron (a callable that builds the
    backbone's LIF) and options with defaults, set by coding_kwargs.
    `static_only`: it needs a static image repeated over T (Params refuses it on event data)."""

    def fail(problem: str) -> RegistrationError:
        return RegistrationError(f"register_coding({name!r}): {problem}")

    def decorate(builder: B) -> B:
        try:
            params = inspect.signature(builder).parameters
        except (TypeError, ValueError) as err:
            raise fail(f"cannot read the builder's signature ({err})") from None
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise fail(
                "the builder takes **kwargs; name each option as a keyword parameter with a "
                "default instead (Params checks coding_kwargs against those names)"
            )
        missing = [n for n in ("T", "stem") if n not in _keyword(builder)]
        if missing:
            raise fail(
                f"the builder must take keyword parameter(s) {', '.join(missing)} "
                "(it is called as builder(T=..., stem=..., ...))"
            )
        no_default = [
            n
            for n, p in params.items()
            if n not in GIVEN and p.default is p.empty and p.kind is not p.VAR_POSITIONAL
        ]
        if no_default:
            raise fail(
                f"option(s) {', '.join(no_default)} have no default: a model without them in "
                "coding_kwargs could not build it; give each a default"
            )
        CODINGS.register(name, builder)
        if static_only:
            mark_static_only(name)
        return builder

    return decorate


# GAC is static only: registry.STATIC_ONLY_CODINGS holds "gac" (read without torch at planning).
with built_in():
    register_coding("direct")(DirectCoding)
    register_coding("gac")(GACCoding)


def coding_options(name: str) -> dict[str, inspect.Parameter]:
    """What coding_kwargs may set for coding `name`: its builder's keyword parameters other
    than those build_coding passes itself."""
    if name not in CODINGS:
        raise ValueError(f"unknown coding {name!r}; choose one of {CODINGS.describe()}")
    return {n: p for n, p in _keyword(CODINGS[name]).items() if n not in GIVEN}


def build_coding(
    name: str,
    *,
    T: int,
    stem: nn.Module,
    channels: int,
    make_neuron: Callable[[], nn.Module],
    **kwargs: Any,
) -> nn.Module:
    """The coding `name` around a backbone's stem (conv-BN with `channels` outputs), with the
    options of `kwargs` (coding_kwargs) it takes."""
    options = coding_options(name)
    unknown = sorted(set(kwargs) - {o for c in CODINGS for o in coding_options(c)})
    if unknown:
        raise ValueError(
            f"coding_kwargs {', '.join(map(repr, unknown))}: no coding takes it; coding "
            f"{name!r} takes {', '.join(options) or 'none'}"
        )
    given = {"T": T, "stem": stem, "channels": channels, "make_neuron": make_neuron}
    accepted = _keyword(CODINGS[name])
    module = CODINGS[name](
        **{k: v for k, v in given.items() if k in accepted},
        **{k: v for k, v in kwargs.items() if k in options},
    )
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
    "coding_options",
    "register_coding",
    "to_time_major",
]
