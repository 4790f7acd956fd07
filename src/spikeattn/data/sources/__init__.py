"""Readers of the real datasets' on-disk layouts, one module per layout, found by dataset name.

Modules are imported on first use, so a reader's optional dependency (aedat for CIFAR10-DVS)
costs nothing to runs that never touch that dataset.
"""
from __future__ import annotations

import importlib

from .base import (EVENT_DTYPE, DataError, EventRecord, EventSource, ImageSource, check_events,
                   read_events)

# dataset name -> (module in this package, class)
_READERS: dict[str, tuple[str, str]] = {
    "dvs128-gesture": ("gesture", "DVSGesture"),
    "n-mnist": ("atis_bin", "NMNIST"),
    "n-caltech101": ("atis_bin", "NCaltech101"),
    "cifar10-dvs": ("cifar10dvs", "CIFAR10DVS"),
    "dvs128-gait": ("gait", "DVS128Gait"),
    "cifar10": ("cifar", "CIFAR10"),
    "cifar100": ("cifar", "CIFAR100"),
    "imagenet": ("imagenet", "ImageNetFolder"),
}


def get_source(name: str) -> EventSource | ImageSource:
    """The reader for dataset `name` (a fresh instance)."""
    try:
        module, cls = _READERS[name]
    except KeyError:
        raise KeyError(f"no reader for dataset {name!r}; readers exist for {', '.join(sorted(_READERS))}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()


__all__ = ["EVENT_DTYPE", "DataError", "EventRecord", "EventSource", "ImageSource", "check_events",
           "get_source", "read_events"]
