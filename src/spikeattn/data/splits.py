"""Seeded train/test splits stratified by class, as int8 arrays (0 train, 1 test).

Two rules, each fixed by results already recorded with it, so neither can stand in for the other
without changing the data a cell trains on:

- `per_class_split`, the real datasets' `split: per_class` (applied by `preprocess`), follows
  SpikingJelly's `split_to_train_test_set`, which the SMA code calls: within each class the
  first ceil(train_ratio * n) samples go to training, after shuffling that class with the given
  seed (without a seed, in file order). The exact order SpikingJelly's Python `random` produced
  cannot be replayed, so the seed here drives numpy's generator instead.
- `stratified_split`, the embedded datasets' split (drawn once by `prepare` and stored in the
  raw folder), is scikit-learn's `train_test_split(stratify=labels)`: ceil(test_fraction * n)
  samples in test overall, each class within one sample of its share.
"""

from __future__ import annotations

import math

import numpy as np


def per_class_split(labels: np.ndarray, test_fraction: float, seed: int | None) -> np.ndarray:
    """int8 [N]: 0 train, 1 test; within each class ceil((1 - test_fraction) * n) train."""
    labels = np.asarray(labels)
    split = np.ones(len(labels), dtype=np.int8)
    rng = np.random.default_rng(seed) if seed is not None else None
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        if rng is not None:
            idx = idx[rng.permutation(len(idx))]
        split[idx[: math.ceil(len(idx) * (1 - test_fraction))]] = 0
    return split


def stratified_split(labels: np.ndarray, test_fraction: float, split_seed: int) -> np.ndarray:
    """int8 [N]: 0 train, 1 test; fixed by the seed and stratified so every class is in both."""
    from sklearn.model_selection import train_test_split

    n, n_classes = len(labels), len(np.unique(labels))
    n_test = int(np.ceil(test_fraction * n))
    if min(n_test, n - n_test) < n_classes:
        raise ValueError(
            f"a stratified split of {n} samples with test_fraction={test_fraction} leaves "
            f"fewer than one sample per class on one side; raise max_samples or adjust test_fraction"
        )
    _, test_idx = train_test_split(
        np.arange(n), stratify=labels, random_state=split_seed, test_size=test_fraction
    )
    split = np.zeros(n, dtype=np.int8)
    split[test_idx] = 1
    return split
