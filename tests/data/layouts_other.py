"""Tiny copies of the on-disk layouts of DVS128-Gait, CIFAR-10/100 and an ImageNet folder.

Archives are built as the real ones are and extracted the way `spikeattn download` does
(`data/raw/<name>/A.tar.gz` -> `data/raw/<name>/A/`), so a reader sees exactly what it will.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from torchvision.io import encode_jpeg, encode_png

from spikeattn.data.archives import safe_extract


def extract_like_download(archive: Path) -> Path:
    """Extract `archive` next to itself into a folder named after it, as the download stage does."""
    dest = archive.parent / archive.name.removesuffix(".tar.gz").removesuffix(".zip")
    safe_extract(archive, dest)
    return dest


# --- DVS128-Gait: DVS128-Gait-Day.zip -> {train,test}/<subject>/<n>.txt, lines "t x y p" ------------


def gait_events(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 4] int64 rows (t, x, y, p), t in µs increasing from an arbitrary start."""
    t = 1_000_000 + np.cumsum(rng.integers(0, 500, n))
    return np.stack([t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)], 1)


def write_gait(raw: Path, top: str = "", seed: int = 0) -> dict[str, tuple[np.ndarray, int, int]]:
    """DVS128-Gait-Day.zip with subjects 0 and 20 in train and test, two walks each, extracted.

    `top` puts the release one folder deeper inside the zip. Returns {relative file name inside
    the release: (events [n, 4], label, split)}.
    """
    rng = np.random.default_rng(seed)
    samples = {}
    raw.mkdir(parents=True, exist_ok=True)
    archive = raw / "DVS128-Gait-Day.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for split, folder in enumerate(("train", "test")):
            for subject in (0, 20):
                for walk in (1, 2):
                    rel = f"{folder}/{subject}/{walk}.txt"
                    events = gait_events(rng, int(rng.integers(5, 40)))
                    text = "\n".join(" ".join(map(str, row)) for row in events) + "\n"
                    zf.writestr(top + rel, text)
                    samples[rel] = (events, subject, split)
    extract_like_download(archive)
    return samples


# --- CIFAR: pickled dicts of uint8 [N, 3072] CHW rows, protocol 2 like the release ---------------


def cifar_batch(
    rng: np.random.Generator, n: int, classes: int, label_key: bytes
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(pickle bytes, images [n, 32, 32, 3], labels [n]) of one batch."""
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # R plane, G plane, B plane
    batch = {
        b"batch_label": b"tiny",
        b"data": rows,
        label_key: [int(v) for v in labels],
        b"filenames": [b"img%d.png" % i for i in range(n)],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [int(v) // 5 for v in labels]
    return pickle.dumps(batch, protocol=2), images, labels


def write_cifar(
    raw: Path, which: str = "cifar10", seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """cifar-10-python.tar.gz or cifar-100-python.tar.gz with tiny batches, extracted.

    Returns {split: (images, labels)} in the order the batch files are concatenated.
    """
    rng = np.random.default_rng(seed)
    if which == "cifar10":
        top, classes, key = "cifar-10-batches-py", 10, b"labels"
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        archive = raw / "cifar-10-python.tar.gz"
    else:
        top, classes, key = "cifar-100-python", 100, b"fine_labels"
        files = {"train": ["train"], "test": ["test"]}
        archive = raw / "cifar-100-python.tar.gz"
    raw.mkdir(parents=True, exist_ok=True)
    expected = {}
    with tarfile.open(archive, "w:gz") as tf:
        for split, names in files.items():
            parts = []
            for name in names:
                data, images, labels = cifar_batch(rng, int(rng.integers(2, 6)), classes, key)
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                parts.append((images, labels))
            expected[split] = (
                np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]),
            )
    extract_like_download(archive)
    return expected


# --- ImageNet: <root>/{train,val}/<wnid>/*.JPEG ---------------------------------------------------

WNIDS = ("n01440764", "n01443537", "n01484850")


def write_imagenet(
    root: Path, per_class: int = 2, seed: int = 0
) -> dict[Path, tuple[torch.Tensor, int]]:
    """A folder with 3 classes; smooth JPEGs in train/, noise PNGs in val/, sizes vary.

    Returns {file: (the pixels written, uint8 [3, H, W], label)}; JPEG pixels are pre-loss.
    """
    gen = torch.Generator().manual_seed(seed)
    written = {}
    for folder, ext in (("train", ".JPEG"), ("val", ".png")):
        for label, wnid in enumerate(WNIDS):
            (root / folder / wnid).mkdir(parents=True)
            for i in range(per_class):
                h, w = (
                    int(torch.randint(8, 20, (1,), generator=gen)),
                    int(torch.randint(8, 20, (1,), generator=gen)),
                )
                if ext == ".png":  # noise: lossless, so every pixel can be compared
                    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
                else:  # smooth: JPEG keeps it within a few levels
                    base = torch.randint(0, 120, (3, 1, 1), generator=gen)
                    ramp = 3 * torch.arange(w) + 2 * torch.arange(h)[:, None]
                    image = (base + ramp).to(torch.uint8)
                data = encode_jpeg(image, quality=95) if ext == ".JPEG" else encode_png(image)
                path = root / folder / wnid / f"{wnid}_{i}{ext}"
                path.write_bytes(data.numpy().tobytes())
                written[path] = (image, label)
    return written
