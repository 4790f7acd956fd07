"""The training loop: epochs of SGD on a model that returns per-time-step logits.

Batches come from `spikeattn.data.loader` (already on the device, already float), each
carrying how many clips per sample it holds: test accuracy is then the majority vote of the
clips' predictions (MA-SNN's 10-clip test). Optimisers and schedules come from timm by name,
so params.yaml can name any of them. Deterministic for a given seed on CPU (fixed thread count,
seeded shuffling, no workers).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import Tensor, nn
from tqdm.auto import tqdm

from .losses import Loss, build_loss, predict

EpochCallback = Callable[[int, dict[str, float]], None]


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG a run touches; returns the generator that shuffles the training data."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def build_optimizer(model: nn.Module, settings: dict[str, Any]) -> torch.optim.Optimizer:
    return create_optimizer_v2(model, opt=settings["opt"], lr=settings["lr"],
                               weight_decay=settings["weight_decay"], momentum=settings["momentum"],
                               **settings.get("opt_kwargs", {}))


class PlateauOnTrainLoss:
    """ReduceLROnPlateau on the epoch's training loss, as MA-SNN trains on Gesture.

    torch's scheduler behind timm's `step(epoch, metric)` call (timm's own plateau wrapper
    is deprecated); its options keep timm's names: decay_rate, patience_epochs, cooldown_epochs.
    """

    OPTIONS = {"decay_rate": "factor", "patience_epochs": "patience", "cooldown_epochs": "cooldown"}

    def __init__(self, optimizer: torch.optim.Optimizer, settings: dict[str, Any]):
        options = settings.get("sched_kwargs", {})
        unknown = set(options) - set(self.OPTIONS)
        if unknown or settings["warmup_epochs"]:
            raise ValueError(f"sched plateau takes sched_kwargs {sorted(self.OPTIONS)} and no warmup; "
                             f"got {sorted(unknown) or 'warmup_epochs'}")
        self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", min_lr=settings["min_lr"],
            **{self.OPTIONS[k]: v for k, v in {"decay_rate": 0.1, "patience_epochs": 10, **options}.items()})

    def step(self, epoch: int, metric: float) -> None:
        self.inner.step(metric)


def build_scheduler(optimizer: torch.optim.Optimizer, settings: dict[str, Any]):
    """An epoch scheduler by name (timm's, or plateau on the train loss), None for constant."""
    if settings["sched"] == "none":
        return None
    if settings["sched"] == "plateau":
        return PlateauOnTrainLoss(optimizer, settings)
    scheduler, _ = create_scheduler_v2(optimizer, sched=settings["sched"], num_epochs=settings["epochs"],
                                       warmup_epochs=settings["warmup_epochs"],
                                       min_lr=settings["min_lr"], **settings.get("sched_kwargs", {}))
    return scheduler


@dataclass
class Fit:
    """What a training run produced."""

    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1]

    @property
    def best(self) -> dict[str, float]:
        return max(self.history, key=lambda row: (row["test_acc"], -row["epoch"]))


def vote(logits: Tensor, clips: int) -> Tensor:
    """Per-sample decisions from logits [T, B * clips, K]: the most frequent clip prediction
    (ties go to the smallest class index)."""
    per_clip = predict(logits).view(-1, clips)
    return per_clip.mode(dim=1).values if clips > 1 else per_clip[:, 0]


def run_epoch(model: nn.Module, batches: Iterable, loss_fn: Loss,
              optimizer: torch.optim.Optimizer | None = None, bar: tqdm | None = None) -> dict[str, float]:
    """One pass; trains when an optimizer is given, else evaluates without gradients."""
    model.train(optimizer is not None)
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for batch in batches:
            logits = model(batch.x)
            y = batch.y
            loss = loss_fn(logits, y.repeat_interleave(batch.clips) if batch.clips > 1 else y)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(y)
            correct += (vote(logits, batch.clips) == y).sum().item()
            seen += len(y)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
    return {"loss": total_loss / seen, "acc": correct / seen}


def fit(model: nn.Module, train_loader: Iterable, test_loader: Iterable, settings: dict[str, Any],
        seed: int, on_epoch: EpochCallback | None = None, progress: bool = True) -> Fit:
    """Train for `settings['epochs']` epochs on `train_loader`'s batches (a re-iterable that
    reshuffles itself), evaluating on `test_loader` after each."""
    seed_everything(seed)
    loss_fn = build_loss(settings["loss"], settings["label_smoothing"])
    eval_loss = build_loss(settings["loss"])
    optimizer = build_optimizer(model, settings)
    scheduler = build_scheduler(optimizer, settings)
    result = Fit()
    start = time.perf_counter()
    epochs = tqdm(range(settings["epochs"]), desc="epochs", disable=not progress, mininterval=1.0)
    for epoch in epochs:
        lr = optimizer.param_groups[0]["lr"]
        with tqdm(total=len(train_loader), desc=f"epoch {epoch + 1}", leave=False,
                  disable=not progress, mininterval=1.0) as bar:
            tr = run_epoch(model, train_loader, loss_fn, optimizer, bar)
        te = run_epoch(model, test_loader, eval_loss)
        if scheduler is not None:
            scheduler.step(epoch + 1, tr["loss"])
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": tr["loss"], "train_acc": tr["acc"],
               "test_loss": te["loss"], "test_acc": te["acc"]}
        result.history.append(row)
        epochs.set_postfix(train_loss=f"{tr['loss']:.4f}", test_acc=f"{te['acc']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
    result.seconds = time.perf_counter() - start
    return result
