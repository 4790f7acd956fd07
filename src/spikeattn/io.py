"""Small file helpers shared by every stage.

Outputs are written to a temporary sibling and renamed into place, so a crash or a Ctrl-C
never leaves a half-written file that a later stage (or Snakemake) would take as finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping


def canonical_json(obj: Any) -> str:
    """JSON text that depends only on content: keys sorted, no whitespace noise.

    Used for Snakemake params and cache keys, so reordering keys or editing comments in
    params.yaml changes nothing downstream.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def short_hash(obj: Any, length: int = 10) -> str:
    """A short, stable digest of `obj`'s canonical JSON (for cache directory names)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks (archives can be many GB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_texts(out_dir: str | os.PathLike, texts: Mapping[str, str]) -> list[Path]:
    """Write each {file name: text} into `out_dir`, each atomically (UTF-8).

    Callers render every text first and write after, so a failure while rendering leaves the
    previous outputs untouched, never half of a new set."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in texts.items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(content, encoding="utf-8")
        written.append(out_dir / name)
    return written


def read_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file safely; a syntax error names the file, line and column. With libyaml's
    parser where PyYAML has it: the frozen params every job reads parse ~10x faster."""
    import yaml

    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ValueError(f"{where}: not valid YAML: {problem}; fix the file and re-run") from None


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in the error if it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: file not found (has the stage that writes it run?)"
        ) from None
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not valid JSON ({err}); delete it and re-run its stage"
        ) from None
