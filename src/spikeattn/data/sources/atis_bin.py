"""N-MNIST and N-Caltech101: ATIS recordings, one `.bin` file of 40-bit events per sample.

Layouts are tonic's: N-MNIST `Train/<digit>/*.bin` and `Test/<digit>/*.bin` (from train.zip,
test.zip); N-Caltech101 `Caltech101/<class>/*.bin`, packed as an inner Caltech101.zip inside
N-Caltech101-archive.zip. Files are found at any depth, since `download` adds a folder level.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (
    EVENT_DTYPE,
    DataError,
    EventRecord,
    EventSource,
    extract_inner,
    find_dirs,
    refetch_hint,
    sample_files,
    unique,
)

DIGITS = tuple("0123456789")

# The 101 folders of N-Caltech101, sorted: the background class plus 100 objects ("Faces" was
# dropped from Caltech101 as a near copy of "Faces_easy"). All 101 are classes, as in
# SpikingJelly and the papers; fixed here so labels do not depend on which folders are present.
CALTECH101_CLASSES = (
    "BACKGROUND_Google Faces_easy Leopards Motorbikes accordion airplanes anchor ant barrel bass "
    "beaver binocular bonsai brain brontosaurus buddha butterfly camera cannon car_side ceiling_fan "
    "cellphone chair chandelier cougar_body cougar_face crab crayfish crocodile crocodile_head cup "
    "dalmatian dollar_bill dolphin dragonfly electric_guitar elephant emu euphonium ewer ferry "
    "flamingo flamingo_head garfield gerenuk gramophone grand_piano hawksbill headphone hedgehog "
    "helicopter ibis inline_skate joshua_tree kangaroo ketch lamp laptop llama lobster lotus mandolin "
    "mayfly menorah metronome minaret nautilus octopus okapi pagoda panda pigeon pizza platypus "
    "pyramid revolver rhino rooster saxophone schooner scissors scorpion sea_horse snoopy "
    "soccer_ball stapler starfish stegosaurus stop_sign strawberry sunflower tick trilobite umbrella "
    "watch water_lilly wheelchair wild_cat windsor_chair wrench yin_yang"
).split()


def read_atis_bin(path: Path, name: str) -> np.ndarray:
    """tonic's reader, after checking the file holds whole 5-byte events (else: truncated)."""
    from tonic.io import read_mnist_file

    size = Path(path).stat().st_size
    if size % 5:
        raise DataError(
            f"{path}: {size} bytes is not a whole number of 5-byte ATIS events; "
            "the file is truncated: " + refetch_hint(name)
        )
    return read_mnist_file(str(path), dtype=EVENT_DTYPE)


class NMNIST(EventSource):
    """N-MNIST (Orchard et al. 2015): digits seen by a saccading ATIS, official train/test."""

    name = "n-mnist"
    sensor = (34, 34)
    num_classes = 10
    official_split = True
    official_train, total = 60000, 70000  # MNIST's 60,000 / 10,000

    def records(self, raw: Path) -> list[EventRecord]:
        folders = ("Train", "Test")  # split 0, 1
        for folder in folders:
            find_dirs(raw, f"**/{folder}", self.name, f"{folder}/ folder")
        found = [
            EventRecord(path, int(path.parent.name), folders.index(path.parent.parent.name))
            for path in sample_files(raw, "*.bin")
            if path.parent.parent.name in folders and path.parent.name in DIGITS
        ]
        for split, folder in enumerate(folders):
            if not any(r.split == split for r in found):
                raise DataError(
                    f"{raw}: no {folder}/<digit>/*.bin files; " + refetch_hint(self.name)
                )
        return unique(
            sorted(found, key=lambda r: (r.split, r.label, r.path.name, str(r.path))), self.name
        )

    def read(self, path: Path) -> np.ndarray:
        return read_atis_bin(path, self.name)


class NCaltech101(EventSource):
    """N-Caltech101 (Orchard et al. 2015): Caltech101 images seen by a saccading ATIS, no split.

    Raw coordinates are kept (tonic shifts each sample to start at 0; SpikingJelly does not):
    recordings are at most 240x180, so every event must lie in that frame.
    """

    name = "n-caltech101"
    sensor = (180, 240)
    num_classes = 101
    official_split = False
    # 8,709 recordings (Caltech101's 9,144 images less the 435 of Faces; 101 classes with
    # BACKGROUND_Google), per_class 90/10: ~7,889 (the class sizes are unequal: approximate).
    total = 8709

    def after_extract(self, raw: Path) -> None:
        """Unpack the inner Caltech101.zip next to itself, once (tonic's folder counts as done)."""
        extract_inner(raw, "Caltech101.zip")

    def records(self, raw: Path) -> list[EventRecord]:
        find_dirs(
            raw,
            "**/Caltech101",
            self.name,
            "Caltech101/ folder (is the inner Caltech101.zip extracted?)",
        )
        index = {c: i for i, c in enumerate(CALTECH101_CLASSES)}
        found = []
        for path in sample_files(raw, "*.bin"):
            if path.parent.parent.name != "Caltech101":  # e.g. Caltech101_annotations/
                continue
            if path.parent.name not in index:
                raise DataError(
                    f"{path}: class folder {path.parent.name!r} is not one of the 101 "
                    "N-Caltech101 classes; the folder belongs to another dataset"
                )
            found.append(EventRecord(path, index[path.parent.name]))
        if not found:
            raise DataError(f"{raw}: no Caltech101/<class>/*.bin files; " + refetch_hint(self.name))
        return unique(sorted(found, key=lambda r: (r.label, r.path.name, str(r.path))), self.name)

    def read(self, path: Path) -> np.ndarray:
        return read_atis_bin(path, self.name)
