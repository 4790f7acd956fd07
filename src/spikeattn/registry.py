"""Name tables that remember who registered each name: the library (built in) or a plugin.

Every closed set a study's grid or model section names from (attentions, codings, neuron
presets, surrogates, backbones, datasets) is one `Registry`. The built-in modules register
into it with the same call a plugin uses; `plugins.load_plugins` imports a plugin inside
`loading(label)`, so every name it registers is owned by that label. Owners let validation
list plugin names with their file, refuse a plugin that takes a name somebody else owns, and
let `Params.train_spec` key exactly the cells that use a plugin's names on its source.

No torch here: the planning reads owners without building a model.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Iterable, Iterator, TypeVar

V = TypeVar("V")

# Who registers now: a plugin's label (as written under `plugins:`), None for the library
# (`built_in`), or _NOBODY outside both, where registering is refused: a name registered from
# a script or notebook would count as built in, and could not be told apart or keyed.
_NOBODY = "<outside the plugin loader>"
_OWNER: ContextVar[str | None] = ContextVar("spikeattn_registry_owner", default=_NOBODY)


class RegistrationError(ValueError):
    """A registration that cannot be accepted (a name taken, an option without a default)."""


@contextlib.contextmanager
def loading(owner: str) -> Iterator[None]:
    """Within: every registration is owned by plugin `owner`."""
    token = _OWNER.set(owner)
    try:
        yield
    finally:
        _OWNER.reset(token)


@contextlib.contextmanager
def built_in() -> Iterator[None]:
    """Within: registrations are the library's, whatever plugin is being loaded. The library's
    modules register their names inside it, so a module first imported by a plugin (directly,
    through spikeattn.plugins, or through a helper of the plugin's) still registers built-ins."""
    token = _OWNER.set(None)
    try:
        yield
    finally:
        _OWNER.reset(token)


def current_owner() -> str | None:
    """The plugin being loaded, or None (the library's own modules, and outside the loader)."""
    owner = _OWNER.get()
    return None if owner is _NOBODY else owner


def describe_owner(owner: str | None) -> str:
    return "spikeattn (built in)" if owner is None else owner


ALL: dict[str, "Registry[Any]"] = {}  # kind -> its registry, in creation order

# Codings that need a static image repeated over time: Params refuses them on event datasets.
# A set here, not an attribute of the coding, because the planning checks it without torch
# (the coding modules import it). GAC's gate is built in; plugins add theirs on registration.
STATIC_ONLY_CODINGS: set[str] = {"gac"}


class Registry(dict[str, V]):
    """name -> value, in registration order, with the owner of each name.

    A dict, so `name in registry`, iteration, `sorted(registry)` and `registry[name]` work
    as they did on the plain dicts and tuples it replaces.
    """

    def __init__(self, kind: str):
        super().__init__()
        if kind in ALL:
            raise RegistrationError(f"a registry of {kind!r} exists already")
        self.kind = kind
        self.owners: dict[str, str | None] = {}
        ALL[kind] = self

    def register(self, name: str, value: V) -> V:
        """Record `name` -> `value` for the current owner (`loading` or `built_in`). A taken
        name is refused, whoever holds it: a plugin re-imported after an edit has its names
        dropped first (`drop_owner`), so nothing is ever replaced in place."""
        if _OWNER.get() is _NOBODY:
            raise RegistrationError(
                f"{self.kind} {name!r}: registered outside the plugin loader; list the file "
                "that registers it under plugins: in params.yaml (it is imported from there)"
            )
        if not isinstance(name, str) or not name:
            raise RegistrationError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        owner = current_owner()
        if name in self:
            held = self.owners.get(name)
            raise RegistrationError(
                f"{self.kind} {name!r} is already registered by "
                + (
                    f"{describe_owner(held)}; register yours under another name"
                    if held != owner or owner is None
                    else f"{owner} itself; register each name once"
                )
            )
        self[name] = value
        self.owners[name] = owner
        return value

    def owner(self, name: str) -> str | None:
        """Who registered `name`: a plugin's label, or None (built in, or not registered)."""
        return self.owners.get(name)

    def drop(self, owner: str) -> None:
        """Forget every name `owner` registered."""
        for name in [n for n, o in self.owners.items() if o == owner]:
            self.pop(name, None)
            del self.owners[name]

    def describe(self, names: Iterable[str] | None = None) -> str:
        """'none, TA, ..., TDG (examples/tdg_attention.py)': the names, plugin ones with their
        file, for messages that list what exists."""
        shown = list(self) if names is None else list(names)
        return ", ".join(
            name if self.owner(name) is None else f"{name} ({self.owner(name)})" for name in shown
        )


def owner_of(kind: str, name: str) -> str | None:
    """The plugin that registered `name` in the registry of `kind`; None when built in,
    unknown, or when that registry was never imported (so no plugin can have used it)."""
    registry = ALL.get(kind)
    return None if registry is None else registry.owner(name)


def owners() -> set[str]:
    """Every plugin that owns a name somewhere."""
    return {o for registry in ALL.values() for o in registry.owners.values() if o is not None}


def drop_owner(owner: str) -> None:
    """Forget everything plugin `owner` registered, in every registry."""
    for registry in ALL.values():
        registry.drop(owner)
    STATIC_ONLY_CODINGS.difference_update(_static_only_of.pop(owner, set()))


# Which static-only codings each plugin added, so `drop_owner` removes exactly those.
_static_only_of: dict[str, set[str]] = {}


def mark_static_only(coding: str) -> None:
    """Record that coding `coding` (being registered by the current owner) is static only."""
    STATIC_ONLY_CODINGS.add(coding)
    owner = current_owner()
    if owner is not None:
        _static_only_of.setdefault(owner, set()).add(coding)


Snapshot = dict[str, tuple[dict[str, Any], dict[str, str | None]]]
State = tuple[Snapshot, set[str], dict[str, set[str]]]


def snapshot() -> State:
    """Every registry's entries and owners as they are now (for tests that load plugins)."""
    return (
        {kind: (dict(r), dict(r.owners)) for kind, r in ALL.items()},
        set(STATIC_ONLY_CODINGS),
        {owner: set(codings) for owner, codings in _static_only_of.items()},
    )


def restore(state: State) -> None:
    """Put every registry back as `snapshot` found it. A registry created since keeps only its
    built-in entries (its module was first imported after the snapshot)."""
    tables, static_only, static_only_of = state
    for kind, registry in ALL.items():
        if kind in tables:
            entries, owners_ = tables[kind]
        else:
            entries = {n: v for n, v in registry.items() if registry.owner(n) is None}
            owners_ = {n: None for n in entries}
        registry.clear()
        registry.update(entries)
        registry.owners.clear()
        registry.owners.update(owners_)
    STATIC_ONLY_CODINGS.clear()
    STATIC_ONLY_CODINGS.update(static_only)
    _static_only_of.clear()
    _static_only_of.update({owner: set(codings) for owner, codings in static_only_of.items()})
