"""The embedded datasets' entries and the readers of the raw files `spikeattn prepare` writes.

`digits` is scikit-learn's bundled 8x8 digits scaled up to `image_size`; `digits-dvs` their
events from a simulated event camera (`spikeattn.data.embedded`, which builds both raw
folders). Each raw folder holds one npz with the samples, their labels and the train/test split
`prepare` drew (`splits.per_class_split`, the rule of the real datasets' `split: per_class`),
so every later stage reads the same split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..splits import train_per_class
from .base import SPLITS, EventSource, ImageSource

DIGITS_MAX = 16  # load_digits values are 0..16
# What `prepare` writes, as a version: part of `registry.raw_params` (so the workflow rebuilds
# a raw folder of an older version, and `preprocess` refuses one) and of the frames cache key
# (so no cache of the older data is reused). 1: sklearn's train_test_split; 2: the per-class
# split of the real datasets (`splits.per_class_split`).
RAW_VERSION = 2


def digit_labels(max_samples: int | None) -> np.ndarray:
    """int64 labels of the first `max_samples` (or all 1,797) digits, as `prepare` keeps them."""
    from sklearn.datasets import load_digits

    return load_digits().target.astype(np.int64)[:max_samples]


def embedded_train(params: Mapping[str, Any]) -> int:
    """Training samples of an embedded dataset: the sum over classes of
    `splits.train_per_class`, the count `per_class_split` puts in training, for the classes
    of the digits `prepare` keeps (their labels are read, so the count is exact)."""
    sizes = np.bincount(digit_labels(params.get("max_samples")))
    return sum(train_per_class(int(n), params["test_fraction"]) for n in sizes if n)


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of [N, h, w] images to [N, size, size] float32, values unchanged in scale."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


class Digits(ImageSource):
    """The 8x8 digits, one grey channel, scaled to `image_size` and to 0..255 for the cache."""

    name = "digits"
    origin = "embedded"
    num_classes = 10
    in_channels = 1
    frame_keys = ("image_size",)
    loader_keys = ()
    raw_version = RAW_VERSION
    file = "digits.npz"

    @classmethod
    def train_count(cls, params: Mapping[str, Any]) -> int:
        return embedded_train(params)

    def arrays(self, raw: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """images uint8 [N, 8, 8] (0..16), labels int64 [N], split int8 [N] (0 train, 1 test)."""
        with np.load(Path(raw) / self.file) as f:
            return f["images"], f["labels"], f["split"]

    def images(self, raw: Path, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels, which = self.arrays(raw)
        x = np.round(upsample(images, size) * (255 / DIGITS_MAX)).astype(np.uint8)[:, None]
        chosen = which == SPLITS.index(split)
        return x[chosen], labels[chosen]


class EventSamples:
    """Indexable view of the concatenated event array: item i is sample i's events."""

    def __init__(self, events: np.ndarray, offsets: np.ndarray):
        self.events, self.offsets = events, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.events[self.offsets[i] : self.offsets[i + 1]]


class DigitsDVS(EventSource):
    """The digits seen by a simulated event camera of `sensor_size`^2 pixels, framed in T time
    bins of each whole sample (`event_frames.Framing`, method time_bins)."""

    name = "digits-dvs"
    origin = "embedded"
    num_classes = 10
    sensor = None  # the square `sensor_size` is a parameter
    size_key = "sensor_size"
    frame_keys = ()
    loader_keys = ()
    official_split = True  # drawn once by `prepare` and stored with the events
    raw_version = RAW_VERSION
    file = "events.npz"

    @classmethod
    def train_count(cls, params: Mapping[str, Any]) -> int:
        return embedded_train(params)

    @classmethod
    def cross_check(cls, params: Mapping[str, Any]) -> None:
        """The moving digit must stay on the sensor, and the saccade must be whole steps."""
        if params["digit_size"] + params["saccade_px"] > params["sensor_size"]:
            raise ValueError(
                "datasets.digits-dvs.sensor_size must be >= digit_size + saccade_px "
                f"(got {params['sensor_size']} < {params['digit_size']} + {params['saccade_px']})"
                " so the moving digit stays on the sensor"
            )
        if (params["saccade_ms"] * 1000) % params["step_us"]:
            raise ValueError(
                "datasets.digits-dvs.step_us must divide saccade_ms * 1000 "
                f"(got {params['step_us']} and {params['saccade_ms']} ms)"
            )

    def samples(self, raw: str | Path) -> tuple[EventSamples, np.ndarray, np.ndarray]:
        """Per-sample events (indexable), labels int64 [N], split int8 [N] (0 train, 1 test)."""
        with np.load(Path(raw) / self.file) as f:
            return EventSamples(f["events"], f["offsets"]), f["labels"], f["split"]


def load_events(raw: str | Path) -> tuple[EventSamples, np.ndarray, np.ndarray]:
    """Per-sample events (indexable), labels int64 [N], split int8 [N] from a `digits-dvs` raw dir."""
    return DigitsDVS().samples(raw)
