"""The dataset registry: one class per dataset, which is both its entry (class attributes:
kind, sensor, classes, parameter roles, origin, training samples) and the reader of its
on-disk layout, one module per layout. `ENTRIES` lists them in the order datasets are shown;
`spikeattn.data.registry` derives `DatasetInfo` from it and registers each entry (and a plugin's
own, `register_dataset`) in `READERS`, the readers `get_source` builds.

Reader modules import their heavy or optional dependencies (torch, torchvision, tonic, aedat)
inside the functions that read, so importing this package costs numpy only.
"""

from __future__ import annotations

from ...registry import Registry
from ..errors import DataError
from .atis_bin import NMNIST, NCaltech101
from .base import (
    EVENT_DTYPE,
    EventRecord,
    EventSource,
    ImageSource,
    Source,
    check_events,
    read_events,
)
from .cifar import CIFAR10, CIFAR100
from .cifar10dvs import CIFAR10DVS
from .digits import Digits, DigitsDVS
from .gait import DVS128Gait
from .gesture import DVSGesture
from .imagenet import ImageNetFolder

ENTRIES: tuple[type[Source], ...] = (
    Digits,
    DigitsDVS,  # embedded: built locally by `spikeattn prepare`
    DVSGesture,
    DVS128Gait,
    CIFAR10DVS,
    NCaltech101,
    NMNIST,  # event cameras, downloaded
    CIFAR10,
    CIFAR100,
    ImageNetFolder,  # images: downloaded, or a folder (ImageNet)
)
# name -> reader class, filled by `registry.register_dataset` (the built-ins: ENTRIES, in order).
READERS: Registry[type[Source]] = Registry("dataset source")


def get_source(name: str) -> Source:
    """The reader for dataset `name` (a fresh instance)."""
    try:
        return READERS[name]()
    except KeyError:
        raise KeyError(
            f"no reader for dataset {name!r}; readers exist for {READERS.describe()}"
        ) from None


__all__ = [
    "CIFAR10",
    "CIFAR100",
    "CIFAR10DVS",
    "DVS128Gait",
    "DVSGesture",
    "Digits",
    "DigitsDVS",
    "ENTRIES",
    "EVENT_DTYPE",
    "DataError",
    "EventRecord",
    "EventSource",
    "ImageNetFolder",
    "ImageSource",
    "READERS",
    "NCaltech101",
    "NMNIST",
    "Source",
    "check_events",
    "get_source",
    "read_events",
]
