"""The attention tables and `register_attention`, the one call built-ins and plugins use.

A *family* is one builder (a function or an nn.Module class) and the options
`attention_kwargs[family]` may give it; its *variants* are the grid names (TCSA, SMA-L, ...),
each with the builder arguments it implies. `build_attention` calls a builder as

    builder(T=T, channels=channels, [spatial=...], [make_neuron=...], **variant, **options)

passing `spatial` and `make_neuron` only to builders that name them. Which ones a builder
names is read once, here at registration: callers may swap `FAMILY_BUILDERS[family]` for a
wrapper with `**kwargs` (tests spy on the call) without changing what it receives.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping, Sequence, TypeVar

from ..registry import RegistrationError, Registry, built_in

SLOTS = ("current", "conv")  # where a block goes in a layer (see attention/__init__.py)
REQUIRED = ("T", "channels")  # every builder takes these by keyword
OPTIONAL = ("spatial", "make_neuron")  # passed only to builders that name them
GIVEN = (*REQUIRED, *OPTIONAL)  # set by build_attention: never an option


@dataclass(frozen=True)
class AttentionEntry:
    """A grid name: its family (None for "none"), slot, and the builder arguments it implies."""

    family: str | None
    slot: str | None
    variant: Mapping[str, Any]


@dataclass(frozen=True)
class Signature:
    """What a family's builder takes: which of `OPTIONAL` it names, and its options."""

    accepts: frozenset[str]
    options: Mapping[str, inspect.Parameter]


ATTENTIONS: Registry[AttentionEntry] = Registry("attention")  # grid name -> entry
FAMILY_BUILDERS: Registry[Callable[..., Any]] = Registry("attention family")  # family -> builder
# family -> Signature, a Registry too so a plugin's drop and a test's restore keep it in step.
SIGNATURES: Registry[Signature] = Registry("attention family signature")

with built_in():
    ATTENTIONS.register("none", AttentionEntry(None, None, MappingProxyType({})))

B = TypeVar("B", bound=Callable[..., Any])


def _fail(family: str, problem: str) -> RegistrationError:
    return RegistrationError(f"register_attention({family!r}): {problem}")


def _variants(
    family: str, variants: Mapping[str, Mapping[str, Any]] | Sequence[str] | None
) -> dict[str, dict[str, Any]]:
    if variants is None:
        return {family: {}}
    if isinstance(variants, str):
        raise _fail(family, f"variants must be a list of names, got the string {variants!r}")
    if isinstance(variants, Mapping):
        out = {}
        for name, implied in variants.items():
            if not isinstance(implied, Mapping):
                raise _fail(
                    family,
                    f"variant {name!r} must map to the builder arguments it implies "
                    f"(a dict, e.g. {{'light': True}}), got {implied!r}",
                )
            out[name] = dict(implied)
        if not out:
            raise _fail(family, "variants is empty: the family would have no grid name")
        return out
    names = list(variants)
    if not names:
        raise _fail(family, "variants is empty: the family would have no grid name")
    if len(set(names)) != len(names):
        raise _fail(family, f"variants name one grid name twice: {names}")
    return {name: {} for name in names}


def _signature(family: str, builder: Callable[..., Any], variants: dict[str, dict]) -> Signature:
    """Check the builder against the calling convention; what it accepts and its options."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError) as err:
        raise _fail(family, f"cannot read the builder's signature ({err})") from None
    keyword = {
        n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise _fail(
            family,
            "the builder takes **kwargs; name each option as a keyword parameter with a "
            "default instead (Params checks attention_kwargs against those names)",
        )
    missing = [n for n in REQUIRED if n not in keyword]
    if missing:
        raise _fail(
            family,
            f"the builder must take keyword parameter(s) {', '.join(missing)} "
            f"(it is called as builder(T=..., channels=..., ...))",
        )
    for name, implied in variants.items():
        bad = sorted(set(implied) - set(keyword))
        given = sorted(set(implied) & set(GIVEN))
        if bad or given:
            raise _fail(
                family,
                f"variant {name!r} sets {', '.join(bad or given)}, "
                + (
                    "which the builder does not take; add it as a keyword parameter or drop it"
                    if bad
                    else "which build_attention sets itself; drop it from the variant"
                ),
            )
    implied_by_all = set.intersection(*(set(v) for v in variants.values()))
    for name, p in params.items():
        if p.default is not p.empty or p.kind is p.VAR_POSITIONAL:
            continue
        if name in GIVEN or name in implied_by_all:  # always passed when named
            continue
        raise _fail(
            family,
            f"option {name!r} has no default: a cell without "
            f"attention_kwargs.{family}.{name} could not build it; give it a default",
        )
    implied_any = {key for implied in variants.values() for key in implied}
    options = {n: p for n, p in keyword.items() if n not in GIVEN and n not in implied_any}
    accepts = frozenset(n for n in OPTIONAL if n in keyword)
    return Signature(accepts, MappingProxyType(options))


def _check_free(family: str, names: Sequence[str]) -> None:
    """Refuse the whole registration before any name is recorded, so a clash on the third
    variant leaves no half-registered family behind."""
    for registry, name in [(FAMILY_BUILDERS, family), *((ATTENTIONS, n) for n in names)]:
        if not isinstance(name, str) or not name or name in registry:
            try:  # the registry words the refusal (and records nothing: it raises first)
                registry.register(name, None)
            except RegistrationError as err:
                raise _fail(family, str(err)) from None


def register_attention(
    family: str,
    *,
    slot: Literal["current", "conv"],
    variants: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
) -> Callable[[B], B]:
    """Decorator: register builder `family` and its grid names `variants` (default: one name,
    the family's). `slot` is where its block goes in a spiking layer: "current" (after BN and
    pool, before the LIF, as MA) or "conv" (between a conv and its BN, as SMA). Variants map a
    grid name to the builder arguments it implies ({"SMA-L": {"light": True}}); the builder's
    other keyword parameters are the options attention_kwargs[family] may set, each with a
    default. Raises RegistrationError naming the family and the fix."""
    if not isinstance(family, str) or not family:
        raise RegistrationError(
            f"register_attention: family must be a non-empty string, got {family!r}"
        )
    if slot not in SLOTS:
        raise _fail(family, f"slot must be one of {list(SLOTS)}, got {slot!r}")
    implied = _variants(family, variants)

    def decorate(builder: B) -> B:
        if not callable(builder):
            raise _fail(family, f"decorate a function or an nn.Module class, not {builder!r}")
        signature = _signature(family, builder, implied)
        _check_free(family, list(implied))
        FAMILY_BUILDERS.register(family, builder)
        SIGNATURES.register(family, signature)
        for name, args in implied.items():
            ATTENTIONS.register(name, AttentionEntry(family, slot, MappingProxyType(args)))
        return builder

    return decorate


def family_options(fam: str) -> dict[str, inspect.Parameter]:
    """What attention_kwargs[fam] may hold: the builder's keyword parameters, minus those
    build_attention sets (T, channels, spatial, make_neuron) and those a variant implies."""
    if fam not in FAMILY_BUILDERS:
        raise ValueError(
            f"unknown attention family {fam!r}; choose one of {FAMILY_BUILDERS.describe()}"
        )
    return dict(SIGNATURES[fam].options)
