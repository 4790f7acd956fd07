"""Bring your own module: the API a plugin registers through, and the loader of `plugins:`.

A plugin is a .py file (or a package, or an importable module name) listed under `plugins:` in
params.yaml. `Params` imports each one before it checks any name, inside
`registry.loading(label)`, so every attention, coding, neuron preset, surrogate, backbone or
dataset it registers is owned by that label: validation lists it with its file, and the train
spec of a cell that uses it carries the plugin's source digest (an edit re-runs exactly those
cells). The `register_*` names here are the library's own calls, imported on first use: this
module imports no torch, so planning without plugins stays light.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.util
import re
import site
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from . import registry
from .registry import RegistrationError

# Public name -> the module that defines it (imported when the name is first asked for: the
# import registers the built-ins first, so a plugin's clash with one is always seen).
_API = {
    "register_attention": "spikeattn.attention",
    "register_coding": "spikeattn.coding",
    "register_neuron": "spikeattn.neurons",
    "register_surrogate": "spikeattn.neurons",
    "LIFConfig": "spikeattn.neurons",
    "Surrogate": "spikeattn.neurons",
    "register_backbone": "spikeattn.models",
    "build_backbone": "spikeattn.models",
    "register_dataset": "spikeattn.data",
    "EventSource": "spikeattn.data.sources.base",
    "ImageSource": "spikeattn.data.sources.base",
    "EventRecord": "spikeattn.data.sources.base",
    "EVENT_DTYPE": "spikeattn.data.sources.base",
}
MODULE_PREFIX = "spikeattn_plugin_"  # path plugins' module names (tests/conftest.py pops them)


def __getattr__(name: str) -> Any:
    if name in _API:  # the library's modules register their own names as built in
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


class PluginError(ValueError):
    """A plugin under `plugins:` could not be loaded: the message names the entry, its file and
    line, and the cause."""


@dataclass(frozen=True)
class Plugin:
    """One loaded entry of `plugins:`."""

    label: str  # as written there: the owner of its registrations
    path: Path | None  # the file (a package: its __init__.py); None for a module name
    module: str  # its name in sys.modules
    digest: str  # source_digest of its files


_LOADED: dict[str, Plugin] = {}  # label -> the plugin loaded under it in this process
# label -> the modules of the user's project its import brought in (a helper it imports):
# forgotten with it, so a reload imports them again and they register again.
_HELPERS: dict[str, set[str]] = {}
# Module names this loader imported (kept by forget_all): only these may be imported afresh.
_IMPORTED: set[str] = set()


def loaded_digest(label: str) -> str | None:
    """The source digest of the plugin loaded as `label`, or None when none is."""
    plugin = _LOADED.get(label)
    return None if plugin is None else plugin.digest


def forget_all() -> None:
    """Forget which plugins were loaded (tests: with `registry.restore`, a clean slate)."""
    _LOADED.clear()
    _HELPERS.clear()


def _user_modules(names: Iterable[str], root: Path) -> set[str]:
    """Of modules `names`, those of the user's project: a file under `root`, outside spikeattn
    and the installed packages (which other code uses: never forgotten)."""
    base = root.resolve()
    installed = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, *site.getsitepackages())]
    found = set()
    for name in names:
        file = getattr(sys.modules.get(name), "__file__", None)
        if name.split(".")[0] == "spikeattn" or not file:
            continue
        path = Path(file).resolve()
        if path.is_relative_to(base) and not any(path.is_relative_to(i) for i in installed):
            found.add(name)
    return found


def _drop(label: str) -> None:
    """Forget plugin `label`: its names, its module and the helpers its import brought in."""
    registry.drop_owner(label)
    plugin = _LOADED.pop(label, None)
    for name in _HELPERS.pop(label, set()) | ({plugin.module} if plugin else set()):
        _forget_module(name)


def source_digest(files: Iterable[Path | str], base: Path | str | None = None) -> str:
    """sha256 (16 hex) over each file's path relative to `base` (default: their common
    directory) and its syntax tree: comments, blank lines and formatting change nothing, any
    edit of code or a docstring changes it. Raises SyntaxError for a file that does not parse."""
    paths = sorted(Path(f).resolve() for f in files)
    if base is None:
        base = _common_parent(paths)
    digest = hashlib.sha256()
    for path in paths:
        tree = ast.dump(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        relative = path.relative_to(Path(base).resolve()).as_posix()
        digest.update(f"{relative}\0{len(tree)}\0{tree}\0".encode())
    return digest.hexdigest()[:16]


def _common_parent(paths: Sequence[Path]) -> Path:
    if not paths:
        return Path(".").resolve()
    common = paths[0].parent
    while not all(p.is_relative_to(common) for p in paths):
        common = common.parent
    return common


@dataclass(frozen=True)
class _Source:
    """What one entry names: its files (hashed) and how to import it."""

    path: Path | None  # the file a path entry names (a package: its __init__.py)
    module: str
    files: tuple[Path, ...]
    base: Path  # paths in the digest are relative to it
    package: Path | None  # a package's directory (its submodules' search location)


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def _locate(entry: str, root: Path) -> _Source:
    """The files and module of one entry; PluginError (without its index) when there are none.
    (Finding `pkg.mod` imports `pkg`: inside `loading`, so what `pkg` registers is the entry's.)"""
    if _is_path(entry):
        target = (root / entry).resolve()
        init = target / "__init__.py"
        if target.is_dir() and init.is_file():
            files = tuple(sorted(target.rglob("*.py")))
            return _Source(init, _module_name(target), files, target.parent, target)
        if not target.is_file():
            raise PluginError(f"{entry}: no such file (paths are relative to {root.resolve()})")
        return _Source(target, _module_name(target), (target,), target.parent, None)
    if entry.split(".")[0] == "spikeattn":
        raise PluginError(f"{entry}: a module of spikeattn itself; list a module of your own")
    with _on_path(root), registry.loading(entry):
        importlib.invalidate_caches()
        try:
            spec = importlib.util.find_spec(entry)
        except Exception as err:  # a parent package that is missing or broken
            registry.drop_owner(entry)
            raise PluginError(
                f"{entry}: cannot be imported ({type(err).__name__}: {err})"
            ) from None
    if spec is None:
        raise PluginError(
            f"{entry}: no such module (a file needs its .py suffix; a module name is looked up "
            f"on sys.path and in {root.resolve()})"
        )
    locations = [Path(p) for p in spec.submodule_search_locations or ()]
    if locations:  # a package: every module under it
        files = tuple(sorted({f.resolve() for d in locations for f in d.rglob("*.py")}))
        return _Source(None, entry, files, locations[0].parent.resolve(), locations[0])
    origin = Path(spec.origin) if spec.origin and Path(spec.origin).is_file() else None
    files = (origin.resolve(),) if origin and origin.suffix == ".py" else ()
    return _Source(None, entry, files, origin.parent.resolve() if origin else root, None)


def _module_name(path: Path) -> str:
    """A module name of its own per file (two attention.py in two folders do not collide) and
    without dots (no parent package to fake)."""
    stem = re.sub(r"\W", "_", path.stem if path.suffix else path.name)
    return f"{MODULE_PREFIX}{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


@contextlib.contextmanager
def _on_path(root: Path) -> Iterator[None]:
    """`root` first on sys.path for the block (the `snakemake` script does not put the working
    directory there, `python -m` does)."""
    entry = str(root.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)


def _forget_module(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
        del sys.modules[key]


def _import(source: _Source, label: str, root: Path) -> None:
    """Import `source` afresh, its registrations owned by `label` (those of library modules it
    imports for the first time stay built in: `registry.built_in`)."""
    _forget_module(source.module)
    with registry.loading(label), _on_path(root):
        if source.path is None:
            importlib.invalidate_caches()
            importlib.import_module(source.module)
            return
        spec = importlib.util.spec_from_file_location(
            source.module,
            source.path,
            submodule_search_locations=None if source.package is None else [str(source.package)],
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[source.module] = module  # timm's register_model looks the module up there
        # Compiled from the text just hashed (not a __pycache__ file an edit in the same second
        # may leave stale), so the code that runs is the code the digest names.
        code = compile(source.path.read_text(encoding="utf-8"), str(source.path), "exec")
        exec(code, module.__dict__)


def _where(err: BaseException, source: _Source, label: str) -> str:
    """'label:line' (or 'label: other/file.py:line'): the deepest line of the plugin's own files
    the error passed through; just 'label' when it never reached them."""
    files = {f.resolve() for f in source.files}
    line: tuple[Path, int] | None = None
    if isinstance(err, SyntaxError) and err.filename and err.lineno:
        line = (Path(err.filename).resolve(), err.lineno)
    else:
        for frame in traceback.extract_tb(err.__traceback__):
            if frame.filename and Path(frame.filename).resolve() in files and frame.lineno:
                line = (Path(frame.filename).resolve(), frame.lineno)
    if line is None:
        return label
    path, number = line
    if source.path is not None and path == source.path.resolve():
        return f"{label}:{number}"
    try:
        shown = path.relative_to(source.base).as_posix()
    except ValueError:
        shown = str(path)
    return f"{label}: {shown}:{number}"


def load_plugins(entries: Sequence[str], root: Path | str = Path(".")) -> tuple[Plugin, ...]:
    """Import every entry of `plugins:` (paths relative to `root`), in order.

    An entry loaded before in this process with the same source digest is reused (a Params
    built twice); an edited one replaces its registrations; a plugin loaded before but not
    among `entries` is dropped, so the registries hold the built-ins and these plugins only.
    Any failure undoes that entry (its names, and the modules its import brought in) and
    raises PluginError naming `plugins[i]`, the file and line."""
    root = Path(root)
    for label in [label for label in _LOADED if label not in entries]:  # another params' plugin
        _drop(label)
    loaded: list[Plugin] = []
    seen: dict[str, int] = {}  # module name -> index of the entry that named it
    for i, label in enumerate(entries):
        before = set(sys.modules)
        try:
            loaded.append(_load(i, label, root, seen))
        except PluginError:
            _drop(label)
            for name in _user_modules(set(sys.modules) - before, root):
                _forget_module(name)
            raise
    return tuple(loaded)


def _load(i: int, label: str, root: Path, seen: dict[str, int]) -> Plugin:
    """Entry `i` of `plugins:`, reused when unchanged, else imported afresh."""
    try:
        source = _locate(label, root)
    except PluginError as err:
        raise PluginError(f"plugins[{i}]: {err}") from None
    if source.module in seen:
        raise PluginError(
            f"plugins[{i}]: {label} is plugins[{seen[source.module]}] again; list it once"
        )
    seen[source.module] = i
    try:
        digest = source_digest(source.files, source.base)
    except (SyntaxError, UnicodeDecodeError, OSError) as err:
        raise PluginError(
            f"plugins[{i}] ({_where(err, source, label)}): {type(err).__name__}: {err}"
        ) from None
    plugin = Plugin(label, source.path, source.module, digest)
    previous = _LOADED.get(label)
    if previous == plugin and label in registry.owners():
        return previous
    if source.module in sys.modules and source.module not in _IMPORTED:
        raise PluginError(
            f"plugins[{i}] ({label}): module {source.module} was imported before the "
            "plugins were loaded, so what it registers could not be told apart; list a "
            "module of your own, before any plugin that imports it"
        )
    _drop(label)
    _IMPORTED.add(source.module)
    before = set(sys.modules)
    try:
        _import(source, label, root)
    except Exception as err:  # whatever the plugin's code raises, the plugin caused it
        raise PluginError(
            f"plugins[{i}] ({_where(err, source, label)}): {type(err).__name__}: {err}"
        ) from err
    _HELPERS[label] = _user_modules(set(sys.modules) - before, root)
    if label not in registry.owners():
        raise PluginError(
            f"plugins[{i}] ({label}): registers nothing; decorate your builder or class "
            "with one of spikeattn.plugins' register_* calls (register_attention, "
            "register_coding, register_neuron, register_surrogate, register_backbone, "
            "register_dataset)"
        )
    _LOADED[label] = plugin
    return plugin


__all__ = [
    *_API,
    "Plugin",
    "PluginError",
    "RegistrationError",
    "forget_all",
    "load_plugins",
    "loaded_digest",
    "source_digest",
]
