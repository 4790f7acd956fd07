"""An epoch's running loss, correct count and first non-finite loss, kept on the device.

Reading a number off a GPU (`loss.item()`) makes the host wait for every queued kernel, so a
loop that reads one per batch cannot queue the next batch's work while the GPU runs this one.
The tally only adds to device tensors per batch and reads them back once, at the end of the
epoch (`totals`), in one transfer, then sums them over processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .distributed import Dist


@dataclass(frozen=True)
class Totals:
    """An epoch's sums over every process; `first_bad` is (batch, loss) of the first batch whose
    loss was NaN or infinite on any process (the lowest such batch index), else None."""

    loss_sum: float
    correct: float
    seen: float
    first_bad: tuple[int, float] | None


class Tally:
    """Sums of one epoch: the loss weighted by batch size, correct decisions, samples seen (a
    host count: batch sizes are shapes, known without a sync), and the index and value of the
    first non-finite loss (-1 while there is none)."""

    def __init__(self) -> None:
        self.seen = 0
        self._loss_sum: Tensor | None = None

    def _start(self, device: torch.device) -> None:
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._correct = torch.zeros((), dtype=torch.int64, device=device)
        self._first = torch.full((), -1, dtype=torch.int64, device=device)
        self._first_loss = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, batch: int, loss: Tensor, correct: Tensor) -> None:
        """Batch number `batch`'s mean loss (0-d) and per-sample correctness (bool [B])."""
        if self._loss_sum is None:
            self._start(loss.device)
        value = loss.detach().to(torch.float64)
        new = ~torch.isfinite(value) & (self._first < 0)
        self._first = torch.where(new, batch, self._first)
        self._first_loss = torch.where(new, value, self._first_loss)
        self._loss_sum.add_(value * correct.numel())
        self._correct.add_(correct.sum())
        self.seen += correct.numel()

    def running(self) -> tuple[float, float]:
        """Mean loss and accuracy so far (a host sync: for progress bars, now and then)."""
        if self._loss_sum is None or not self.seen:
            return float("nan"), float("nan")
        loss_sum, correct = torch.stack([self._loss_sum, self._correct.double()]).tolist()
        return loss_sum / self.seen, correct / self.seen

    def totals(self, dist: Dist = Dist()) -> Totals:
        """The epoch's sums over all processes: one device-to-host read, one all-reduce, and a
        gather of each process's first non-finite batch only when some process had one (all
        processes then know it, so all stop together)."""
        if self._loss_sum is None:
            loss_sum = correct = 0.0
            first, first_loss = -1, 0.0
        else:
            loss_sum, correct, first, first_loss = torch.stack(
                [self._loss_sum, self._correct.double(), self._first.double(), self._first_loss]
            ).tolist()
            first = int(first)
        loss_sum, correct, seen, bad = dist.sum([loss_sum, correct, self.seen, float(first >= 0)])
        first_bad = None
        if bad:
            found = [rank for rank in dist.gather((first, first_loss)) if rank[0] >= 0]
            first_bad = min(found, key=lambda rank: rank[0])
        return Totals(loss_sum, correct, seen, first_bad)
