"""The one seeded train/test split stratified by class, as int8 arrays (0 train, 1 test).

`per_class_split` follows SpikingJelly's `split_to_train_test_set`, which the SMA code calls:
within each class the first ceil((1 - test_fraction) * n) samples go to training, after
shuffling that class with the given seed (without a seed, in file order). The exact order
SpikingJelly's Python `random` produced cannot be replayed, so the seed here drives numpy's
generator instead. Every split this code draws uses it: the real datasets' `split: per_class`
(applied by `preprocess`) and the embedded datasets (drawn once by `prepare` and stored in the
raw folder; `sources.digits.RAW_VERSION` marks the raw folders drawn by an earlier rule, so
they are rebuilt rather than reused). `train_per_class` is the count alone, so that the
registry's training-sample count (`spikeattn plan`) is the split's own number.

A class left with no sample on one side is refused: a class absent from the test set is never
scored, and one absent from training is never learned, and neither shows in the accuracy.
"""

from __future__ import annotations

import math

import numpy as np


def train_per_class(n: int, test_fraction: float) -> int:
    """Training samples of a class of `n` under `per_class_split`: ceil((1 - test_fraction) n)."""
    return math.ceil(n * (1 - test_fraction))


def per_class_split(
    labels: np.ndarray,
    test_fraction: float,
    seed: int | None,
    *,
    dataset: str,
    size_key: str | None = None,
) -> np.ndarray:
    """int8 [N]: 0 train, 1 test; within each class `train_per_class` samples train.

    ValueError if a class would have no sample in train or in test; the message names the
    params.yaml keys of `dataset` that fix it (`size_key`: the key, if any, that sets how many
    samples there are, e.g. `max_samples`).
    """
    labels = np.asarray(labels)
    classes, sizes = np.unique(labels, return_counts=True)
    _check_both_sides(classes, sizes, test_fraction, dataset, size_key)
    split = np.ones(len(labels), dtype=np.int8)
    rng = np.random.default_rng(seed) if seed is not None else None
    for cls in classes:
        idx = np.flatnonzero(labels == cls)
        if rng is not None:
            idx = idx[rng.permutation(len(idx))]
        split[idx[: train_per_class(len(idx), test_fraction)]] = 0
    return split


def _check_both_sides(
    classes: np.ndarray,
    sizes: np.ndarray,
    test_fraction: float,
    dataset: str,
    size_key: str | None,
) -> None:
    """ValueError naming the first class the split would leave out of train or test."""
    for cls, n in zip(classes.tolist(), sizes.tolist()):
        train = train_per_class(n, test_fraction)
        side = "test" if train == n else "train" if train == 0 else None
        if side is None:
            continue
        key = f"datasets.{dataset}"
        fixes = [f"{key}.test_fraction"] + ([f"{key}.{size_key}"] if size_key else [])
        raise ValueError(
            f"{key}: the per-class split with test_fraction={test_fraction} leaves class {cls} "
            f"({n} sample{'s' * (n != 1)}) with no {side} sample; change "
            f"{' or raise '.join(fixes)} so that every class has samples on both sides"
        )
