"""ImageNet-1k from a folder the user provides (it cannot be downloaded without a licence).

Layout, torchvision's ImageFolder one with val/ already sorted into class folders:
`<root>/train/<wnid>/*.JPEG` and `<root>/val/<wnid>/*.JPEG`. Labels are the indices of the
sorted class folder names, as ImageFolder and timm number them. At 1.28M images the set is
streamed from disk while training, so this source lists files and decodes one image at a time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .base import DataError, ImageSource

if TYPE_CHECKING:
    import torch

KEY = "datasets.imagenet.root"
LAYOUT = "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (val sorted into the same class folders)"
EXTENSIONS = (".jpeg", ".jpg", ".png", ".webp")  # what torchvision.io.decode_image reads
SPLITS = {"train": "train", "test": "val"}


def _is_image(entry: os.DirEntry) -> bool:
    return (
        entry.is_file()
        and entry.name.lower().endswith(EXTENSIONS)
        and not entry.name.startswith(".")
    )


def load_image(path: Path, size: int | None = None) -> torch.Tensor:
    """uint8 [3, H, W] RGB; with `size`, shorter side resized to it then centre-cropped square."""
    import torch
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2 import functional as F

    try:
        data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err}); check the files under {KEY}") from None
    try:
        image = decode_image(data, mode=ImageReadMode.RGB)
    except Exception as err:  # torchvision raises RuntimeError on bad or unknown data
        raise DataError(
            f"{path}: cannot be decoded as an image ({type(err).__name__}: {err}); "
            f"replace or delete the file (it lies under {KEY})"
        ) from None
    if size is not None:
        image = F.center_crop(F.resize(image, [size], antialias=True), [size, size])
    return image


class ImageNetFolder(ImageSource):
    name = "imagenet"
    num_classes = 1000
    origin = "folder"  # cannot be downloaded without a licence: `download` checks the folder
    streamed = True
    frame_keys = ImageSource.frame_keys + ("root",)
    train_samples = 1281167  # ILSVRC-2012 train

    @staticmethod
    def _fail(path: Path, problem: str) -> DataError:
        return DataError(
            f"{path}: {problem}; set {KEY} in params.yaml to a folder laid out as {LAYOUT}"
        )

    def _class_dirs(self, root: Path, folder: str) -> list[str]:
        path = root / folder
        if not path.is_dir():
            raise self._fail(path, f"missing (no {folder}/ folder in the ImageNet root)")
        names = sorted(
            e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")
        )
        if not names:
            raise self._fail(path, "holds no class folders")
        return names

    def check(self, root: Path) -> None:
        """DataError naming the path, the params key and the layout unless `root` has that layout."""
        root = Path(root)
        if not root.is_dir():
            raise self._fail(root, "ImageNet folder not found")
        train, val = self._class_dirs(root, "train"), self._class_dirs(root, "val")
        if train != val:
            only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
            raise self._fail(
                root,
                f"train/ and val/ hold different class folders (only in train: "
                f"{only_train[:5]}, only in val: {only_val[:5]})",
            )
        for folder in ("train", "val"):
            for wnid in train:
                with os.scandir(root / folder / wnid) as entries:
                    if not any(_is_image(e) for e in entries):
                        raise self._fail(
                            root / folder / wnid,
                            f"class folder holds no {'/'.join(EXTENSIONS)} image",
                        )

    def classes(self, root: Path) -> list[str]:
        """Class folder names (wnids), sorted: a label is an index into this list."""
        self.check(root)
        return self._class_dirs(Path(root), "train")

    def records(self, root: Path, split: str) -> list[tuple[Path, int]]:
        """(image file, label) of split "train" (train/) or "test" (val/), sorted by class and name."""
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        base = Path(root) / SPLITS[split]
        out = []
        for label, wnid in enumerate(self.classes(root)):
            with os.scandir(base / wnid) as entries:
                out += [
                    (base / wnid / name, label)
                    for name in sorted(e.name for e in entries if _is_image(e))
                ]
        return out

    load_image = staticmethod(load_image)

    def load(self, raw: Path, split: str):
        raise NotImplementedError(
            "ImageNet is streamed from disk at train time, not cached as one "
            "array: use ImageNetFolder.records() and load_image()"
        )
