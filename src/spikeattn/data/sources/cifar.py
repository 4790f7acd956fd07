"""CIFAR-10/100 in torchvision's layout: the pickled batches of the official python archives.

cifar-10-python.tar.gz -> cifar-10-batches-py/data_batch_1..5, test_batch (b"labels");
cifar-100-python.tar.gz -> cifar-100-python/train, test (b"fine_labels"). Each pickle is a dict
with b"data": uint8 [N, 3072], each row the 32x32 R, G and B planes in turn.
The pickles are read here rather than by torchvision, whose md5 check per batch ties it to the
exact release files; unpickling admits numpy's array reconstructors only, so a corrupted or
foreign file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np

from .base import DataError, ImageSource, find_dirs, refetch_hint

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: not a CIFAR batch")
        return super().find_class(module, name)


class _CIFAR(ImageSource):
    folder: ClassVar[str]
    files: ClassVar[dict[str, tuple[str, ...]]]  # split -> batch files
    label_key: ClassVar[bytes]

    def _batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        hint = refetch_hint(self.name)
        try:
            with open(path, "rb") as f:
                batch = _ArraysOnly(f, encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[self.label_key], dtype=np.int64)
        except FileNotFoundError:
            raise DataError(f"{path}: missing {self.name} batch file; " + hint) from None
        except Exception as err:  # truncated or garbled: EOFError, UnpicklingError, KeyError, ...
            raise DataError(
                f"{path}: unreadable {self.name} batch ({type(err).__name__}: {err}); "
                "it is probably truncated or corrupted: " + hint
            ) from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
            raise DataError(
                f"{path}: expected data [N, 3072] and N labels, got {data.shape} and "
                f"{labels.shape}: " + hint
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DataError(f"{path}: labels outside 0..{self.num_classes - 1}: " + hint)
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels

    def _folder(self, raw: Path) -> Path:
        """The batches folder; the archive's own extraction folder may share its name."""
        found = find_dirs(raw, f"**/{self.folder}", self.name, f"{self.folder}/ folder")
        names = [f for split in self.files.values() for f in split]
        holding = [d for d in found if any((d / f).is_file() for f in names)]
        if len(holding) > 1:
            raise DataError(
                f"{raw}: several {self.folder}/ folders hold batches "
                f"({', '.join(map(str, holding))}); keep one"
            )
        return holding[0] if holding else found[-1]  # none: the read names the missing file

    def load(self, raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self.files:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        folder = self._folder(Path(raw))
        parts = [self._batch(folder / f) for f in self.files[split]]
        images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
        return images, np.concatenate([p[1] for p in parts])


class CIFAR10(_CIFAR):
    name = "cifar10"
    num_classes = 10
    train_samples = 50000  # CIFAR-10/100: 50,000 train, 10,000 test
    folder = "cifar-10-batches-py"
    files = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
    label_key = b"labels"


class CIFAR100(_CIFAR):
    name = "cifar100"
    num_classes = 100
    train_samples = 50000
    folder = "cifar-100-python"
    files = {"train": ("train",), "test": ("test",)}
    label_key = b"fine_labels"
