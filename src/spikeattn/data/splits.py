"""Train/test splits of the real datasets: the release's own, or a seeded 90/10 per class.

`per_class` follows SpikingJelly's `split_to_train_test_set`, which the SMA code calls: within
each class the first ceil(train_ratio * n) samples go to training, after shuffling that class
with the given seed (without a seed, in file order). The exact order SpikingJelly's Python
`random` produced cannot be replayed, so the seed here drives numpy's generator instead.
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
        split[idx[:math.ceil(len(idx) * (1 - test_fraction))]] = 0
    return split
