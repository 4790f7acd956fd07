"""The JSON Schema of params.yaml, and violations as 'key.path: what is wrong' lines.

Structure, types and ranges are declared once, in params.schema.yaml; config.py checks a
whole params file with it and data/registry.py checks one dataset's entry with its part.
A plugin dataset brings its own entry (`data.registry.register_dataset` records it in
`DATASET_SCHEMAS`); `params_schema()` adds those entries under `datasets` at each call, so a
plugin that is dropped (reloaded, or a test's registries restored) takes its entry with it.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, Iterable

import yaml

from .registry import Registry

# dataset name -> its entry under `datasets:` (a sub-schema), for plugin datasets only: the
# built-ins' entries are in params.schema.yaml.
DATASET_SCHEMAS: Registry[dict] = Registry("dataset schema")


@functools.cache
def file_schema() -> dict:
    """params.schema.yaml as written (read once; never modified)."""
    return yaml.safe_load(resources.files("spikeattn").joinpath("params.schema.yaml").read_text())


def params_schema() -> dict:
    """The schema of params.yaml: the file's, with each registered plugin dataset's entry."""
    schema = file_schema()
    if not DATASET_SCHEMAS:
        return schema
    datasets = schema["properties"]["datasets"]
    return {
        **schema,
        "properties": {
            **schema["properties"],
            "datasets": {
                **datasets,
                "properties": {**datasets["properties"], **DATASET_SCHEMAS},
            },
        },
    }


def part(*path: str) -> dict:
    """The sub-schema at `path` (e.g. "properties", "datasets", ...), standalone: its $refs
    still resolve because the root's $defs come along."""
    schema = params_schema()
    node = schema
    for key in path:
        node = node[key]
    defs = schema["$defs"]
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/"):  # a shared definition: return it, with any local additions
        node = {
            **defs[ref.removeprefix("#/$defs/")],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return {**node, "$defs": defs}


def key_path(path: Iterable[Any], prefix: str = "") -> str:
    out = prefix
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(top level)"


def violations(instance: Any, schema: dict | None = None, prefix: str = "") -> list[str]:
    """Every violation of `schema` (default: the whole params schema) by `instance`."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema or params_schema())
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(_cause(err), prefix) for err in errors]


def _cause(err: Any) -> Any:
    """For a failed oneOf/anyOf, the branch error that explains it (e.g. "5 is less than the
    minimum of 20" rather than "not valid under any of the given schemas"): jsonschema's
    best_match descends into the alternative whose type the value has."""
    from jsonschema.exceptions import best_match

    return best_match([err]) if err.context else err


def _describe(err: Any, prefix: str) -> str:
    """One 'key.path: what is wrong' line; unknown keys list the allowed ones."""
    where = key_path(err.absolute_path, prefix)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"{where}: unknown key(s) {', '.join(map(repr, extra))}{hint}"
    if err.validator in ("oneOf", "anyOf") and err.context:  # no branch explains it best: list them
        reasons = list(dict.fromkeys(c.message for c in err.context))
        return f"{where}: {err.message} ({'; '.join(reasons)})"
    return f"{where}: {err.message}"
