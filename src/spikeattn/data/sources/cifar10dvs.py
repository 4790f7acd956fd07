"""CIFAR10-DVS in tonic's layout: CIFAR10DVS.zip holds ten inner zips (airplane.zip ... truck.zip),
each unpacking to a class folder of AEDAT 4.0 recordings. Reading needs the `aedat` package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (
    DataError,
    EventRecord,
    EventSource,
    extract_inner,
    refetch_hint,
    sample_files,
    unique,
)

# tonic's CIFAR10DVS.classes: folder name -> label
CLASSES = {
    "airplane": 0,
    "automobile": 1,
    "bird": 2,
    "cat": 3,
    "deer": 4,
    "dog": 5,
    "frog": 6,
    "horse": 7,
    "ship": 8,
    "truck": 9,
}


def class_of(path: Path) -> str | None:
    """The nearest folder above `path` named after a class (inner zips may add a level)."""
    return next((p.name for p in path.parents if p.name in CLASSES), None)


class CIFAR10DVS(EventSource):
    """CIFAR10-DVS (Li et al. 2017): 10,000 CIFAR-10 images moved before a DVS128, no split."""

    name = "cifar10-dvs"
    sensor = (128, 128)
    num_classes = 10
    official_split = False
    total, equal_classes = 10000, True  # 1,000 recordings per class; per_class 90/10: 9,000

    def after_extract(self, raw: Path) -> None:
        """Unpack each inner <class>.zip next to itself, once (tonic's folder counts as done)."""
        extract_inner(raw, "*.zip", keep=lambda inner: inner.stem in CLASSES)

    def records(self, raw: Path) -> list[EventRecord]:
        found = []
        for path in sample_files(raw, "*.aedat4"):
            label = class_of(path.relative_to(raw))
            if label is None:
                raise DataError(
                    f"{path}: not inside a class folder ({', '.join(CLASSES)}); "
                    "is an inner <class>.zip extracted by hand to the wrong place?"
                )
            found.append(EventRecord(path, CLASSES[label]))
        if not found:
            raise DataError(
                f"{raw}: no <class>/*.aedat4 files (airplane/ ... truck/, unpacked from the "
                "inner zips of CIFAR10DVS.zip); " + refetch_hint(self.name)
            )
        return unique(sorted(found, key=lambda r: (r.label, r.path.name, str(r.path))), self.name)

    def read(self, path: Path) -> np.ndarray:
        try:
            import aedat  # noqa: F401  (tonic's read_aedat4 imports it on each call)
        except ImportError:  # not the file's fault: say so, instead of calling every file corrupted
            raise DataError(
                f"{path}: reading AEDAT 4.0 files needs the `aedat` package "
                "(pip install aedat==2.3.0)"
            ) from None
        from tonic.io import read_aedat4

        events = read_aedat4(str(path))
        events.dtype.names = ("t", "x", "y", "p")  # aedat names polarity "on"; rename as tonic does
        return events
