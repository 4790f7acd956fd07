"""Which datasets exist, what their parameters are, and where their files live.

Parameters arrive as a plain dict from params.yaml `datasets.<name>`; every stage validates
them here first so a typo fails at once with the key's full name instead of deep in numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

# A rule checks one value; it returns the normalised value or raises ValueError("must be ...").
Rule = Callable[[Any], Any]


def _int(lo: int, hi: int | None = None) -> Rule:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            raise ValueError(f"must be in [{lo}, {hi}], got {value}" if hi is not None
                             else f"must be >= {lo}, got {value}")
        return value
    return check


def _optional(rule: Rule) -> Rule:
    def check(value: Any) -> Any:
        return None if value is None else rule(value)
    return check


def _float(lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False) -> Rule:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        value = float(value)  # so 1 and 1.0 give the same cache key
        too_low = value <= lo if open_lo else value < lo
        too_high = value >= hi if open_hi else value > hi
        if too_low or too_high:
            raise ValueError(f"must be in {'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"
                             f", got {value}")
        return value
    return check


def _is(expected: str) -> Rule:
    def check(value: Any) -> str:
        if value != expected:
            raise ValueError(f"must be {expected!r}, got {value!r}")
        return value
    return check


_SPLIT_RULES: dict[str, Rule] = {
    "test_fraction": _float(0.0, 1.0, open_lo=True, open_hi=True),
    "split_seed": _int(0),
    "max_samples": _optional(_int(20)),
}


@dataclass(frozen=True)
class DatasetInfo:
    """What downstream stages need to know about a dataset without loading it."""

    name: str
    kind: str  # "static" (images) or "events" (tonic event streams)
    source: str  # "embedded" (built locally) or "download"
    num_classes: int
    in_channels: int
    size_key: str  # the parameter that gives the (square) input size
    rules: Mapping[str, Rule]
    # Keys used only when turning raw data into frames; changing them must not force `prepare`.
    frame_keys: tuple[str, ...] = ()
    cross_check: Callable[[dict], None] = field(default=lambda params: None)

    @property
    def required_keys(self) -> tuple[str, ...]:
        return tuple(self.rules)

    def input_size(self, params: Mapping[str, Any]) -> tuple[int, int]:
        """(H, W) of one frame as the model sees it."""
        size = params[self.size_key]
        return size, size


def _check_dvs_geometry(params: dict) -> None:
    """The moving digit must stay on the sensor, and the saccade must be whole steps."""
    if params["digit_size"] + params["saccade_px"] > params["sensor_size"]:
        raise ValueError("datasets.digits-dvs.sensor_size must be >= digit_size + saccade_px "
                         f"(got {params['sensor_size']} < {params['digit_size']} + {params['saccade_px']})"
                         " so the moving digit stays on the sensor")
    if (params["saccade_ms"] * 1000) % params["step_us"]:
        raise ValueError("datasets.digits-dvs.step_us must divide saccade_ms * 1000 "
                         f"(got {params['step_us']} and {params['saccade_ms']} ms)")


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        name="digits", kind="static", source="embedded", num_classes=10, in_channels=1,
        size_key="image_size",
        rules={"source": _is("embedded"), "image_size": _int(8, 256), **_SPLIT_RULES},
        frame_keys=("image_size",),
    ),
    "digits-dvs": DatasetInfo(
        name="digits-dvs", kind="events", source="embedded", num_classes=10, in_channels=2,
        size_key="sensor_size",
        rules={
            "source": _is("embedded"),
            "digit_size": _int(8, 128),
            "sensor_size": _int(8, 256),
            "saccade_px": _int(1, 32),
            "saccade_ms": _int(1, 10_000),
            "step_us": _int(1, 1_000_000),
            "threshold": _float(0.0, 5.0, open_lo=True),
            "threshold_sigma": _float(0.0, 0.25),
            "seed": _int(0),
            **_SPLIT_RULES,
        },
        cross_check=_check_dvs_geometry,
    ),
}


def get_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; the error lists the names that do exist."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `params` for dataset `name` and return a normalised copy (floats as float).

    Errors name the full params.yaml key, e.g. "datasets.digits-dvs.threshold must be > 0".
    """
    info = get_info(name)
    prefix = f"datasets.{name}"
    missing = [key for key in info.rules if key not in params]
    unknown = sorted(set(params) - set(info.rules))
    if missing:
        raise ValueError(f"{prefix}.{missing[0]} is missing (required keys: {', '.join(info.rules)})")
    if unknown:
        raise ValueError(f"{prefix}.{unknown[0]} is not a known key (known: {', '.join(info.rules)})")
    checked = {}
    for key, rule in info.rules.items():
        try:
            checked[key] = rule(params[key])
        except ValueError as err:
            raise ValueError(f"{prefix}.{key} {err}") from None
    info.cross_check(checked)
    return checked


def raw_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The validated parameters that determine the raw data (what `prepare` depends on)."""
    checked = check_params(name, params)
    return {k: v for k, v in checked.items() if k not in get_info(name).frame_keys}


def raw_dir(name: str, root: str | Path) -> Path:
    """Where `prepare` puts a dataset's raw files."""
    return Path(root) / "data" / "raw" / name
