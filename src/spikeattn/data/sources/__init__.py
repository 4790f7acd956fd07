"""The dataset registry: one class per dataset, which is both its entry (class attributes:
kind, sensor, classes, parameter roles, origin, training samples) and the reader of its
on-disk layout, one module per layout. `ENTRIES` lists them in the order datasets are shown;
`spikeattn.data.registry` derives `DatasetInfo` from it.

Reader modules import their heavy or optional dependencies (torch, torchvision, tonic, aedat)
inside the functions that read, so importing this package costs numpy only.
"""

from __future__ import annotations

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
_BY_NAME = {entry.name: entry for entry in ENTRIES}


def get_source(name: str) -> Source:
    """The reader for dataset `name` (a fresh instance)."""
    try:
        return _BY_NAME[name]()
    except KeyError:
        raise KeyError(
            f"no reader for dataset {name!r}; readers exist for {', '.join(sorted(_BY_NAME))}"
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
    "NCaltech101",
    "NMNIST",
    "Source",
    "check_events",
    "get_source",
    "read_events",
]
