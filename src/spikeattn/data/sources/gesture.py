"""DVS128 Gesture in tonic's preprocessed layout (the original .aedat release is no longer served).

ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz hold `ibmGesture{Train,Test}/userNN_<lighting>/
<label>.npy`: one gesture per file, an [N, 4] array of x, y, p, t with t in milliseconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataError, EventRecord, EventSource, find_dirs, refetch_hint, sample_files, unique

FOLDERS = ("ibmGestureTrain", "ibmGestureTest")  # split 0, 1


class DVSGesture(EventSource):
    """IBM DVS128 Gesture (Amir et al. 2017): 11 gestures, 29 users, official train/test users."""

    name = "dvs128-gesture"
    sensor = (128, 128)
    num_classes = 11
    official_split = True

    def records(self, raw: Path) -> list[EventRecord]:
        for folder in FOLDERS:
            find_dirs(raw, f"**/{folder}", self.name, f"{folder}/ folder")
        found = []
        for path in sample_files(raw, "user*_*/*.npy"):
            if path.parent.parent.name in FOLDERS and path.stem.isdigit():
                label = int(path.stem)
                if label >= self.num_classes:
                    raise DataError(f"{path}: label {label} is not one of the 11 gestures; "
                                    "the folder belongs to another dataset")
                found.append(EventRecord(path, label, FOLDERS.index(path.parent.parent.name),
                                         path.parent.name))
        for split, folder in enumerate(FOLDERS):
            if not any(r.split == split for r in found):
                raise DataError(f"{raw}: no {folder}/userNN_<lighting>/<label>.npy files; "
                                + refetch_hint(self.name))
        return unique(sorted(found, key=lambda r: (r.split, r.group, r.label, str(r.path))), self.name)

    def read(self, path: Path) -> np.ndarray:
        """Columns x, y, p, t(ms) -> fields x, y, p, t(µs), as tonic does."""
        data = np.load(path, allow_pickle=False)
        if data.ndim != 2 or data.shape[1] != 4:
            raise DataError(f"{path}: expected an [N, 4] array of x, y, p, t, got shape {data.shape}; "
                            + refetch_hint(self.name))
        t = data[:, 3]
        if np.issubdtype(t.dtype, np.floating):  # ms stored as floats: round, do not truncate
            t = np.rint(t.astype(np.float64) * 1000)
        else:
            t = t.astype(np.int64) * 1000
        return np.rec.fromarrays([data[:, 0], data[:, 1], data[:, 2], t.astype(np.int64)],
                                 names=("x", "y", "p", "t"))
