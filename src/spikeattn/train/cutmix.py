"""CutMix on training batches, as GAC's code applies it (`train.cutmix`).

A box of the batch's images is replaced by the same box of a partner image (a permutation
within the batch), and the loss weights the two labels by the areas they keep:
lam * loss(logits, y_a) + (1 - lam) * loss(logits, y_b). The rule follows the CutMix paper's
code, which GAC copied: lam ~ Beta(beta, beta); the box's sides are the image's times
sqrt(1 - lam), truncated, its centre uniform over the pixels, its half-sides cut_r // 2 on each
side of it, clipped to the image; lam is then recomputed from the clipped box's area.

When a batch is mixed is the one choice between the authors' codes: GAC's CIFAR code draws
once per epoch (`draw: epoch`, the whole epoch is mixed or clean), its ImageNet code and the
CutMix paper once per batch (`draw: batch`). Every draw comes from one CPU generator seeded
from the run's seed, which the resume state saves, so a resumed run mixes as an uninterrupted
one. It acts on whatever the loader yields ([B, C, H, W] images, or [B, T, C, H, W] frames:
the same box in every frame), after normalisation and before the model repeats an image over T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from .losses import Loss

DRAWS = ("epoch", "batch")
STREAM = 0x63757478  # separates this generator's stream from the loaders' (seeded with the seed)


def rand_box(rows: int, cols: int, lam: float, r: int, c: int) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the box of ratio sqrt(1 - lam) centred on pixel (r, c), clipped."""
    cut = math.sqrt(1.0 - lam)
    half_r, half_c = int(rows * cut) // 2, int(cols * cut) // 2
    return (
        min(max(r - half_r, 0), rows),
        min(max(r + half_r, 0), rows),
        min(max(c - half_c, 0), cols),
        min(max(c + half_c, 0), cols),
    )


def paste(x: Tensor, partner: Tensor, box: tuple[int, int, int, int]) -> tuple[Tensor, float]:
    """x with the box cut from x[partner] (over the last two axes), and the area-corrected
    lam: the fraction of each image that stays its own."""
    r0, r1, c0, c1 = box
    mixed = x.clone()
    mixed[..., r0:r1, c0:c1] = x[partner][..., r0:r1, c0:c1]
    rows, cols = x.shape[-2:]
    return mixed, 1.0 - (r1 - r0) * (c1 - c0) / (rows * cols)


@dataclass(frozen=True)
class Mixed:
    """A mixed batch: its input, the labels of both sources, and the weight of the first."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: float

    def loss(self, loss_fn: Loss, logits: Tensor) -> Tensor:
        """Each label's loss (with its own label smoothing) weighted by the area it keeps."""
        return self.lam * loss_fn(logits, self.y_a) + (1.0 - self.lam) * loss_fn(logits, self.y_b)


class CutMix:
    """The `train.cutmix` settings with their generator: `start_epoch()` before each training
    epoch, then `__call__` on each batch (None when that batch stays clean)."""

    def __init__(self, prob: float, beta: float, draw: str, seed: int = 0):
        if not 0.0 <= prob <= 1.0 or not beta > 0 or draw not in DRAWS:
            raise ValueError(
                f"train.cutmix must be {{prob: 0..1, beta: > 0, draw: epoch | batch}}, "
                f"got prob={prob!r}, beta={beta!r}, draw={draw!r}"
            )
        self.prob, self.beta, self.draw = prob, beta, draw
        stream = np.random.SeedSequence([seed, STREAM]).generate_state(2, np.uint32)
        self.generator = torch.Generator().manual_seed(int(stream[0]) << 32 | int(stream[1]))
        self.epoch_mixes = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], seed: int) -> "CutMix | None":
        """The mixer `train.cutmix` asks for, or None when it is absent or null (off)."""
        spec = settings.get("cutmix")
        if spec is None:
            return None
        if not isinstance(spec, Mapping) or set(spec) != {"prob", "beta", "draw"}:
            raise ValueError(
                f"train.cutmix must be null or a mapping {{prob, beta, draw}}, got {spec!r}"
            )
        return cls(float(spec["prob"]), float(spec["beta"]), spec["draw"], seed)

    def _uniform(self) -> float:
        return torch.rand((), dtype=torch.float64, generator=self.generator).item()

    def _beta(self) -> float:
        """lam ~ Beta(beta, beta), as G1 / (G1 + G2) of two Gamma(beta) draws."""
        g = torch._standard_gamma(
            torch.full((2,), self.beta, dtype=torch.float64), generator=self.generator
        )
        return (g[0] / g.sum()).item()

    def start_epoch(self) -> None:
        if self.draw == "epoch":
            self.epoch_mixes = self._uniform() < self.prob

    def __call__(self, x: Tensor, y: Tensor) -> Mixed | None:
        mixes = self.epoch_mixes if self.draw == "epoch" else self._uniform() < self.prob
        if not mixes:
            return None
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"train.cutmix mixes one input per label; this batch has {x.shape[0]} "
                f"inputs for {y.shape[0]} labels (several clips per sample)"
            )
        rows, cols = x.shape[-2:]
        lam, partner, r, c = self.draws(x.shape[0], rows, cols)
        partner = partner.to(x.device)
        mixed, lam = paste(x, partner, rand_box(rows, cols, lam, r, c))
        return Mixed(mixed, y, y[partner], lam)

    def draws(self, batch: int, rows: int, cols: int) -> tuple[float, Tensor, int, int]:
        """A mixed batch's random values, in the authors' order: lam, the partners (a
        permutation of the batch), the box centre's row and column (uniform over pixels)."""
        lam = self._beta()
        partner = torch.randperm(batch, generator=self.generator)
        r = int(torch.randint(rows, (), generator=self.generator))
        c = int(torch.randint(cols, (), generator=self.generator))
        return lam, partner, r, c

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
