"""How Python values become MLflow params, tags and metrics: flattened, stringified, and cut to
MLflow's length limits with a visible mark (MLflow would cut silently or raise)."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from ..io import canonical_json

_TRUNCATION_MARK = "...[truncated]"


def stringify(value: Any) -> str:
    """Strings as they are; everything else as canonical JSON (numbers, bools, lists, numpy)."""
    if isinstance(value, str):
        return value
    try:
        return canonical_json(value)
    except TypeError:
        return str(value)


def truncate(text: str, limit: int) -> str:
    """Cut to `limit` characters with a visible mark (MLflow would cut silently or raise)."""
    if len(text) <= limit:
        return text
    return text[: limit - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"opt": {"lr": 1}} -> {"opt.lr": 1}; a key produced twice is an error, not an overwrite."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        items = flatten(value, f"{name}.") if isinstance(value, Mapping) else {name: value}
        for k, v in items.items():
            if k in flat:
                raise ValueError(f"parameter {k!r} given twice after flattening nested dicts")
            flat[k] = v
    return flat


def limits() -> tuple[int, int, int, int]:
    """MLflow's (param value, tag value, params+tags per batch, metrics per batch) limits."""
    from mlflow.utils import validation as v

    return (
        v.MAX_PARAM_VAL_LENGTH,
        v.MAX_TAG_VAL_LENGTH,
        v.MAX_PARAMS_TAGS_PER_BATCH,
        v.MAX_METRICS_PER_BATCH,
    )


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_name(what: str, name: str) -> str:
    """Study/cell names go into a search filter between single quotes: keep them plain."""
    if not name or "'" in name or "\\" in name:
        raise ValueError(f"{what} name {name!r} must be non-empty without quotes or backslashes")
    return name


def as_float(key: str, value: Any) -> float:
    """float(value) (numpy and 1-element torch scalars included), naming the metric if it fails."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {key!r} must be a number, not {type(value).__name__}") from None
