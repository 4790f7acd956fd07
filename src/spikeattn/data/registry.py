"""Which datasets exist, what their parameters are, and where their files live.

Parameters arrive as a plain dict from params.yaml `datasets.<name>`; every stage validates
them here first (against that dataset's part of params.schema.yaml, plus checks a schema
cannot express) so a typo fails at once with the key's full name instead of deep in numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..schema import part, violations

@dataclass(frozen=True)
class DatasetInfo:
    """What downstream stages need to know about a dataset without loading it."""

    name: str
    kind: str  # "static" (images) or "events" (tonic event streams)
    source: str  # "embedded" (built locally) or "download"
    num_classes: int
    in_channels: int
    size_key: str | None = None  # the parameter that gives a square input size, or:
    sensor: tuple[int, int] | None = None  # a real event camera's (H, W), divided by `downsample`
    # Keys used only when turning raw data into frames; changing them must not force `prepare`.
    frame_keys: tuple[str, ...] = ()
    # Keys used only when loading batches (augmentation, clip sampling): no cache depends on them.
    loader_keys: tuple[str, ...] = ()
    cross_check: Callable[[dict], None] = field(default=lambda params: None)

    @property
    def schema(self) -> dict:
        """This dataset's entry in params.schema.yaml."""
        return part("properties", "datasets", "properties", self.name)

    @property
    def required_keys(self) -> tuple[str, ...]:
        return tuple(self.schema["required"])

    def input_size(self, params: Mapping[str, Any]) -> tuple[int, int]:
        """(H, W) of one frame as the model sees it."""
        if self.size_key is not None:
            return params[self.size_key], params[self.size_key]
        height, width = self.sensor
        return height // params["downsample"], width // params["downsample"]


def _check_dvs_geometry(params: dict) -> None:
    """The moving digit must stay on the sensor, and the saccade must be whole steps."""
    if params["digit_size"] + params["saccade_px"] > params["sensor_size"]:
        raise ValueError("datasets.digits-dvs.sensor_size must be >= digit_size + saccade_px "
                         f"(got {params['sensor_size']} < {params['digit_size']} + {params['saccade_px']})"
                         " so the moving digit stays on the sensor")
    if (params["saccade_ms"] * 1000) % params["step_us"]:
        raise ValueError("datasets.digits-dvs.step_us must divide saccade_ms * 1000 "
                         f"(got {params['step_us']} and {params['saccade_ms']} ms)")


def _check_loading(info: DatasetInfo, params: Mapping[str, Any]) -> None:
    """Loader settings the schema cannot check alone: one normalize value per input channel;
    AutoAugment only where workers see uint8 images (streamed folders), translate_px only where
    the device shifts cached images."""
    key = f"datasets.{info.name}"
    normalize = params.get("normalize") or {}
    for stat in ("mean", "std") if normalize else ():
        values = normalize[stat]
        if len(values) != info.in_channels:
            raise ValueError(f"{key}.normalize.{stat} must hold one value per input channel: "
                             f"{info.in_channels}, got {len(values)}")
    augment = params.get("augment") or {}
    streamed = info.source == "folder"
    if augment.get("autoaugment") and not streamed:
        raise ValueError(f"{key}.augment.autoaugment: AutoAugment runs only on streamed image folders "
                         f"(imagenet); {info.name} is cached and augmented on the device by flip and "
                         f"translate_px: remove the key or set it to false")
    if augment.get("translate_px") and streamed:
        raise ValueError(f"{key}.augment.translate_px: not applied to streamed image folders "
                         f"(RandomResizedCrop crops them): remove it")


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        name="digits", kind="static", source="embedded", num_classes=10, in_channels=1,
        size_key="image_size", frame_keys=("image_size",),
    ),
    "digits-dvs": DatasetInfo(
        name="digits-dvs", kind="events", source="embedded", num_classes=10, in_channels=2,
        size_key="sensor_size",
        cross_check=_check_dvs_geometry,
    ),
}

# Real datasets: fetched by `spikeattn download` (ImageNet: a folder the user provides, which
# `download` checks). The raw files depend only on the archives; every other key shapes the
# frames (frame keys) or the batches (loader keys).
_LOADER_KEYS = ("train_window", "test_clips", "augment", "normalize")
_DVS_FRAME_KEYS = ("frame_method", "dt_ms", "downsample", "event_count_split", "split", "test_fraction",
                   "split_seed")
_REAL_DVS = {  # name: (classes, sensor H x W)
    "dvs128-gesture": (11, (128, 128)),
    "dvs128-gait": (21, (128, 128)),
    "cifar10-dvs": (10, (128, 128)),
    "n-caltech101": (101, (180, 240)),
    "n-mnist": (10, (34, 34)),
}
_REAL_IMAGES = {"cifar10": (10, "download"), "cifar100": (100, "download"),
                "imagenet": (1000, "folder")}  # name: (classes, source)
DATASETS.update({
    name: DatasetInfo(name=name, kind="events", source="download", num_classes=classes,
                      in_channels=2, sensor=sensor, frame_keys=_DVS_FRAME_KEYS + _LOADER_KEYS,
                      loader_keys=_LOADER_KEYS)
    for name, (classes, sensor) in _REAL_DVS.items()
})
DATASETS.update({
    name: DatasetInfo(name=name, kind="static", source=source, num_classes=classes,
                      in_channels=3, size_key="image_size",
                      frame_keys=("image_size",) + _LOADER_KEYS + (("root",) if source == "folder" else ()),
                      loader_keys=_LOADER_KEYS)
    for name, (classes, source) in _REAL_IMAGES.items()
})


def get_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; the error lists the names that do exist."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


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
    """The validated parameters that determine the raw data (what `prepare` depends on)."""
    checked = check_params(name, params)
    return {k: v for k, v in checked.items() if k not in get_info(name).frame_keys}


def raw_dir(name: str, root: str | Path) -> Path:
    """Where `prepare` puts a dataset's raw files."""
    return Path(root) / "data" / "raw" / name
