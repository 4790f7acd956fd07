"""Which datasets exist, what their parameters are, and where their files live.

The datasets are the entries of `sources.ENTRIES` (one class per dataset, which also reads
its files); `DatasetInfo` is what downstream stages read of an entry without loading anything.
Parameters arrive as a plain dict from params.yaml `datasets.<name>`; every stage validates
them here first (against that dataset's part of params.schema.yaml, plus checks a schema
cannot express) so a typo fails at once with the key's full name instead of deep in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..schema import part, violations
from .sources import ENTRIES, Source


@dataclass(frozen=True)
class DatasetInfo:
    """What downstream stages need to know about a dataset without loading it: its entry's
    class attributes, made by `of` (`sources.base.Source` says what each one means)."""

    name: str
    kind: str  # "static" (images) or "events" (event streams)
    source: str  # the entry's `origin`: "embedded" (built locally), "download" or "folder"
    num_classes: int
    in_channels: int
    size_key: str | None  # the parameter that gives a square input size, or:
    sensor: tuple[int, int] | None  # a real event camera's (H, W), divided by `downsample`
    frame_keys: tuple[str, ...]  # used only when framing: changing them must not force `prepare`
    loader_keys: tuple[str, ...]  # used only when loading batches: no cache depends on them
    streamed: bool  # the cache indexes files read while training (ImageNet)
    raw_version: int | None  # version of what `prepare` writes (embedded), else None
    cross_check: Callable[[Mapping[str, Any]], None]  # checks the schema cannot express
    # Training samples per epoch under the given parameters before anything is downloaded
    # (`spikeattn plan`); None when unknown. A built frames cache knows the true count
    # (meta.json `counts`), which the plan prefers.
    train_count: Callable[[Mapping[str, Any]], int | None]

    @classmethod
    def of(cls, entry: type[Source]) -> DatasetInfo:
        """The facts of one registry entry (a `sources` class)."""
        return cls(
            name=entry.name,
            kind=entry.kind,
            source=entry.origin,
            num_classes=entry.num_classes,
            in_channels=entry.in_channels,
            size_key=entry.size_key,
            sensor=entry.sensor,
            frame_keys=entry.frame_keys,
            loader_keys=entry.loader_keys,
            streamed=entry.streamed,
            raw_version=entry.raw_version,
            cross_check=entry.cross_check,
            train_count=entry.train_count,
        )

    @property
    def schema(self) -> dict:
        """This dataset's entry in params.schema.yaml."""
        return part("properties", "datasets", "properties", self.name)

    def input_size(self, params: Mapping[str, Any]) -> tuple[int, int]:
        """(H, W) of one frame as the model sees it."""
        if self.size_key is not None:
            return params[self.size_key], params[self.size_key]
        height, width = self.sensor
        return height // params["downsample"], width // params["downsample"]


def _check_loading(info: DatasetInfo, params: Mapping[str, Any]) -> None:
    """Loader settings the schema cannot check alone: one normalize value per input channel;
    AutoAugment only where workers see uint8 images (streamed folders), translate_px only where
    the device shifts cached images."""
    key = f"datasets.{info.name}"
    normalize = params.get("normalize") or {}
    for stat in ("mean", "std") if normalize else ():
        values = normalize[stat]
        if len(values) != info.in_channels:
            raise ValueError(
                f"{key}.normalize.{stat} must hold one value per input channel: "
                f"{info.in_channels}, got {len(values)}"
            )
    augment = params.get("augment") or {}
    if augment.get("autoaugment") and not info.streamed:
        raise ValueError(
            f"{key}.augment.autoaugment: AutoAugment runs only on streamed image folders "
            f"(imagenet); {info.name} is cached and augmented on the device by flip and "
            f"translate_px: remove the key or set it to false"
        )
    if augment.get("translate_px") and info.streamed:
        raise ValueError(
            f"{key}.augment.translate_px: not applied to streamed image folders "
            f"(RandomResizedCrop crops them): remove it"
        )


DATASETS: dict[str, DatasetInfo] = {entry.name: DatasetInfo.of(entry) for entry in ENTRIES}


def get_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; the error lists the names that do exist."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        ) from None


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `params` for dataset `name` and return a normalised copy.

    Errors name the full params.yaml key, e.g. "datasets.digits-dvs.threshold: 0 is less than
    or equal to the minimum of 0". Numbers the schema declares as `number` come back as float,
    so `1` and `1.0` give the same cache key.
    """
    info = get_info(name)
    problems = violations(params, info.schema, prefix=f"datasets.{name}")
    if problems:
        raise ValueError("; ".join(problems))
    floats = {k for k, spec in info.schema["properties"].items() if spec.get("type") == "number"}
    checked = {k: float(v) if k in floats and v is not None else v for k, v in params.items()}
    _check_loading(info, checked)
    info.cross_check(checked)
    return checked


def raw_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The validated parameters that determine the raw data (what `prepare` depends on), and for
    an embedded dataset `raw_version`: the version of `prepare` itself (a new split rule), so
    a raw folder it wrote earlier no longer matches (the workflow rebuilds it; `preprocess`
    refuses it)."""
    info = get_info(name)
    checked = check_params(name, params)
    raw = {k: v for k, v in checked.items() if k not in info.frame_keys}
    return raw if info.raw_version is None else {**raw, "raw_version": info.raw_version}


def raw_dir(name: str, root: str | Path) -> Path:
    """Where `prepare` puts a dataset's raw files."""
    return Path(root) / "data" / "raw" / name
