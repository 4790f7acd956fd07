"""Losses on per-time-step logits [T, B, classes], as the papers train them.

- ``ce_mean``:  cross-entropy of the mean over T (GAC, MS-ResNet).
- ``mse_mean``: MSE between the mean over T and the one-hot label (MA-SNN, SMA on DVS).
- ``tet``:      TET, the mean over T of per-step cross-entropies (SMA on N-Caltech101).
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

Loss = Callable[[Tensor, Tensor], Tensor]


def ce_mean(label_smoothing: float = 0.0) -> Loss:
    def loss(logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.mean(0), target, label_smoothing=label_smoothing)

    return loss


def mse_mean(label_smoothing: float = 0.0) -> Loss:
    def loss(logits: Tensor, target: Tensor) -> Tensor:
        onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
        if label_smoothing:
            onehot = onehot * (1 - label_smoothing) + label_smoothing / logits.shape[-1]
        return F.mse_loss(logits.mean(0), onehot)

    return loss


def tet(label_smoothing: float = 0.0) -> Loss:
    def loss(logits: Tensor, target: Tensor) -> Tensor:
        T = logits.shape[0]
        return F.cross_entropy(
            logits.flatten(0, 1), target.repeat(T), label_smoothing=label_smoothing
        )

    return loss


LOSSES: dict[str, Callable[..., Loss]] = {"ce_mean": ce_mean, "mse_mean": mse_mean, "tet": tet}


def build_loss(name: str, label_smoothing: float = 0.0) -> Loss:
    try:
        return LOSSES[name](label_smoothing)
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {list(LOSSES)}") from None


def predict(logits: Tensor) -> Tensor:
    """Class decisions: argmax of the mean over T."""
    return logits.mean(0).argmax(-1)
