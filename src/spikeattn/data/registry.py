"""Which datasets exist, what their parameters are, and where their files live.

Parameters arrive as a plain dict from params.yaml `datasets.<name>`; every stage validates
them here first (against that dataset's part of params.schema.yaml, plus checks a schema
cannot express) so a typo fails at once with the key's full name instead of deep in numpy.
"""
from __future__ import annotations

import math
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
    # Training samples per epoch before anything is downloaded (`spikeattn plan`): a number, or
    # a function of the dataset's parameters (its split); None when unknown. A built frames
    # cache knows the true count (meta.json `counts`), which the plan prefers.
    train_samples: int | Callable[[Mapping[str, Any]], int] | None = None

    def train_count(self, params: Mapping[str, Any]) -> int | None:
        """The declared number of training samples under `params` (see `train_samples`)."""
        if callable(self.train_samples):
            return self.train_samples(params)
        return self.train_samples

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


DIGITS_SAMPLES = 1797  # sklearn.datasets.load_digits: 1,797 8x8 scans (embedded.digit_images)


def _embedded_train(params: Mapping[str, Any]) -> int:
    """embedded.stratified_split: sklearn's train_test_split puts ceil(test_fraction * n) in test."""
    n = min(DIGITS_SAMPLES, params.get("max_samples") or DIGITS_SAMPLES)
    return n - math.ceil(params["test_fraction"] * n)


def _event_train(official: int | None, total: int, classes: int,
                 equal_classes: bool = False) -> Callable[[Mapping[str, Any]], int | None]:
    """Training samples of a real event dataset: the official split's count, or under
    `split: per_class` (splits.per_class_split: ceil((1 - test_fraction) * n) per class) the
    exact sum when every class has total/classes samples, else that sum's expectation
    (each class rounds up by half a sample on average): approximate."""
    def count(params: Mapping[str, Any]) -> int | None:
        if params.get("split", "official") == "official":
            return official
        keep = 1 - params["test_fraction"]
        if equal_classes:
            return classes * math.ceil(keep * (total // classes))
        return round(keep * total + classes / 2)
    return count


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        name="digits", kind="static", source="embedded", num_classes=10, in_channels=1,
        size_key="image_size", frame_keys=("image_size",), train_samples=_embedded_train,
    ),
    "digits-dvs": DatasetInfo(
        name="digits-dvs", kind="events", source="embedded", num_classes=10, in_channels=2,
        size_key="sensor_size",
        cross_check=_check_dvs_geometry, train_samples=_embedded_train,
    ),
}

# Real datasets: fetched by `spikeattn download` (ImageNet: a folder the user provides, which
# `download` checks). The raw files depend only on the archives; every other key shapes the
# frames (frame keys) or the batches (loader keys).
_LOADER_KEYS = ("train_window", "test_clips", "augment", "normalize")
_DVS_FRAME_KEYS = ("frame_method", "dt_ms", "downsample", "event_count_split", "split", "test_fraction",
                   "split_seed")
_REAL_DVS = {  # name: (classes, sensor H x W, training samples: see _event_train)
    # IBM's release: the labelled gestures of the 98 recordings in trials_to_train.txt, 1,176
    # as SpikingJelly counts them (1,464 in all, 288 test; README "Gesture release").
    "dvs128-gesture": (11, (128, 128), _event_train(1176, 1464, 11)),
    # 20 subjects x 100 walks in each of 2 sessions = 4,000 recordings (zhangxiann/
    # TPAMI_Gait_Identification README); train/ taken as one session, 2,000: approximate, as no
    # split count is published and the archive was not checked.
    "dvs128-gait": (21, (128, 128), _event_train(2000, 4000, 20)),
    # 10,000 recordings, 1,000 per class; per_class 90/10: 9,000.
    "cifar10-dvs": (10, (128, 128), _event_train(None, 10000, 10, equal_classes=True)),
    # 8,709 recordings (Caltech101's 9,144 images less the 435 of Faces; 101 classes with
    # BACKGROUND_Google), per_class 90/10: ~7,889 (the class sizes are unequal: approximate).
    "n-caltech101": (101, (180, 240), _event_train(None, 8709, 101)),
    "n-mnist": (10, (34, 34), _event_train(60000, 70000, 10)),  # MNIST's 60,000 / 10,000
}
_REAL_IMAGES = {  # name: (classes, source, training samples)
    "cifar10": (10, "download", 50000),  # CIFAR-10/100: 50,000 train, 10,000 test
    "cifar100": (100, "download", 50000),
    "imagenet": (1000, "folder", 1281167),  # ILSVRC-2012 train
}
DATASETS.update({
    name: DatasetInfo(name=name, kind="events", source="download", num_classes=classes,
                      in_channels=2, sensor=sensor, frame_keys=_DVS_FRAME_KEYS + _LOADER_KEYS,
                      loader_keys=_LOADER_KEYS, train_samples=train)
    for name, (classes, sensor, train) in _REAL_DVS.items()
})
DATASETS.update({
    name: DatasetInfo(name=name, kind="static", source=source, num_classes=classes,
                      in_channels=3, size_key="image_size",
                      frame_keys=("image_size",) + _LOADER_KEYS + (("root",) if source == "folder" else ()),
                      loader_keys=_LOADER_KEYS, train_samples=train)
    for name, (classes, source, train) in _REAL_IMAGES.items()
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
