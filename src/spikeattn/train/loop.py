"""The training loop: epochs of SGD on a model that returns per-time-step logits.

Batches come from `spikeattn.data.loader` (already on the device, already float), each
carrying how many clips per sample it holds: test accuracy is then the majority vote of the
clips' predictions (MA-SNN's 10-clip test). Optimisers and schedules come from timm by name,
so params.yaml can name any of them. CutMix (`cutmix.py`) and mixed precision (`precision.py`)
wrap the training step when `train.cutmix` / `train.precision` ask for them. Deterministic for
a given seed on CPU (fixed thread count, seeded shuffling, no workers).
"""
from __future__ import annotations

import math
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

from .checkpoint import CheckpointError, Resume
from .cutmix import CutMix
from .distributed import Dist
from .losses import Loss, build_loss, predict
from .precision import Precision

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

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


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


class Diverged(Exception):
    """The loss became NaN or infinite: training stops, the run is recorded as diverged."""

    def __init__(self, phase: str, batch: int, loss: float):
        super().__init__(f"{phase} loss is {loss} at batch {batch}")
        self.phase, self.batch, self.loss = phase, batch, loss


@dataclass
class Fit:
    """What a training run produced. `diverged` (epoch, batch, loss, phase) when it stopped
    on a non-finite loss; `history` then holds the epochs completed before."""

    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    diverged: dict[str, Any] | None = None
    resumed_from: int = 0  # epochs restored from a resume state

    @property
    def final(self) -> dict[str, float] | None:
        return self.history[-1] if self.history else None

    @property
    def best(self) -> dict[str, float] | None:
        if not self.history:
            return None
        return max(self.history, key=lambda row: (row["test_acc"], -row["epoch"]))


def vote(logits: Tensor, clips: int) -> Tensor:
    """Per-sample decisions from logits [T, B * clips, K]: the most frequent clip prediction
    (ties go to the smallest class index)."""
    per_clip = predict(logits).view(-1, clips)
    return per_clip.mode(dim=1).values if clips > 1 else per_clip[:, 0]


def run_epoch(model: nn.Module, batches: Iterable, loss_fn: Loss,
              optimizer: torch.optim.Optimizer | None = None, bar: tqdm | None = None,
              dist: Dist = Dist(), cutmix: CutMix | None = None,
              precision: Precision | None = None) -> dict[str, float]:
    """One pass; trains when an optimizer is given, else evaluates without gradients.

    A non-finite training loss raises `Diverged` before the step that would spread it into
    the weights (all processes agree first, so none waits on the others forever). Training
    batches are mixed by `cutmix` when it says so; their accuracy counts the first label (the
    image the box was pasted into), as GAC's code counts it."""
    training = optimizer is not None
    model.train(training)
    cutmix = cutmix if training else None
    precision = precision or Precision("fp32", "cpu")
    if cutmix is not None:
        cutmix.start_epoch()
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for i, batch in enumerate(batches):
            y = batch.y
            mixed = cutmix(batch.x, y) if cutmix is not None else None
            with precision.autocast():
                logits = model(batch.x if mixed is None else mixed.x)
                if mixed is not None:
                    loss = mixed.loss(loss_fn, logits)
                else:
                    loss = loss_fn(logits, y.repeat_interleave(batch.clips) if batch.clips > 1 else y)
            value = loss.item()
            if training:
                everywhere = dist.sum([value])[0]  # non-finite if any process's loss is
                if not math.isfinite(everywhere):
                    raise Diverged("train", i, everywhere)
                precision.step(loss, optimizer)
            total_loss += value * len(y)
            correct += (vote(logits, batch.clips) == y).sum().item()
            seen += len(y)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
    total_loss, correct, seen = dist.sum([total_loss, correct, seen])
    if optimizer is None and not math.isfinite(total_loss):
        raise Diverged("test", -1, total_loss)
    return {"loss": total_loss / seen, "acc": correct / seen}


def fit(model: nn.Module, train_loader: Iterable, test_loader: Iterable, settings: dict[str, Any],
        seed: int, on_epoch: EpochCallback | None = None, progress: bool = True,
        resume: Resume | None = None, dist: Dist = Dist()) -> Fit:
    """Train for `settings['epochs']` epochs on `train_loader`'s batches (a re-iterable that
    reshuffles itself), evaluating on `test_loader` after each.

    With `resume`, the whole training state is saved after every epoch, and a saved state is
    restored first: a killed run continues at its next epoch and ends as an uninterrupted
    run would (on CPU, same seed). `on_epoch` runs after the state is saved. Under DDP
    (`dist`), `model` is the bare model: it is wrapped here, and only rank 0 saves.
    """
    seed_everything(seed)
    loss_fn = build_loss(settings["loss"], settings["label_smoothing"])
    eval_loss = build_loss(settings["loss"])
    optimizer = build_optimizer(model, settings)
    scheduler = build_scheduler(optimizer, settings)
    step = Step(CutMix.from_settings(settings, seed),
                Precision.from_settings(settings, _device_type(model)))
    net = dist.wrap(model)
    result = Fit()
    if resume is not None and resume.state is not None:
        _restore(resume, model, optimizer, scheduler, train_loader, result, dist, step)
    progress = progress and dist.main
    start = time.perf_counter() - result.seconds
    epochs = tqdm(range(len(result.history), settings["epochs"]), desc="epochs", disable=not progress,
                  mininterval=1.0, initial=len(result.history), total=settings["epochs"])
    for epoch in epochs:
        lr = optimizer.param_groups[0]["lr"]
        try:
            with tqdm(total=len(train_loader), desc=f"epoch {epoch + 1}", leave=False,
                      disable=not progress, mininterval=1.0) as bar:
                tr = run_epoch(net, train_loader, loss_fn, optimizer, bar, dist, step.cutmix, step.precision)
            te = run_epoch(net, test_loader, eval_loss, dist=dist, precision=step.precision)
        except Diverged as err:
            result.diverged = {"epoch": epoch + 1, "batch": err.batch, "phase": err.phase,
                               "loss": str(err.loss)}
            last = resume.last_weights() if resume is not None else None
            if last is not None:  # back to the last finite weights
                model.load_state_dict(last)
            break
        if scheduler is not None:
            scheduler.step(epoch + 1, tr["loss"])
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": tr["loss"], "train_acc": tr["acc"],
               "test_loss": te["loss"], "test_acc": te["acc"]}
        result.history.append(row)
        result.seconds = time.perf_counter() - start
        if resume is not None:
            _save(resume, model, optimizer, scheduler, train_loader, result, dist, step)
        epochs.set_postfix(train_loss=f"{tr['loss']:.4f}", test_acc=f"{te['acc']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
    result.seconds = time.perf_counter() - start
    return result


@dataclass(frozen=True)
class Step:
    """What the training step adds to the model and optimizer: CutMix (None when off) and
    the precision; both have state that a resumed run restores."""

    cutmix: CutMix | None
    precision: Precision


def _device_type(model: nn.Module) -> str:
    """Where the model trains (autocast needs the device type); cpu for a model without weights."""
    return next((p.device.type for p in model.parameters()), "cpu")


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants the nested tuples getstate gave (a round trip may make lists)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _save(resume: Resume, model, optimizer, scheduler, loader, result: Fit, dist: Dist,
          step: Step) -> None:
    """Every process's random state, data order and CutMix draws, rank 0's weights and loss
    scale (DDP keeps them equal)."""
    ranks = dist.gather({"rng": _rng_state(),
                         "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
                         "cutmix": step.cutmix.state_dict() if step.cutmix is not None else None})
    if dist.main:
        resume.save({"epoch": len(result.history), "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "scaler": step.precision.state_dict(),
                     "ranks": ranks, "history": result.history, "seconds": result.seconds})
    dist.barrier()  # no process runs ahead of a state that is not yet on disk


def _restore(resume: Resume, model, optimizer, scheduler, loader, result: Fit, dist: Dist,
             step: Step) -> None:
    state = resume.state
    if len(state["ranks"]) != dist.world:
        raise CheckpointError(f"{resume.path} was saved by {len(state['ranks'])} processes, not "
                              f"{dist.world}; delete it to train this run from the start")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    mine = state["ranks"][dist.rank]
    _set_rng_state(mine["rng"])
    if mine["loader"] is not None:
        loader.load_state_dict(mine["loader"])
    if step.cutmix is not None and mine.get("cutmix") is not None:
        step.cutmix.load_state_dict(mine["cutmix"])
    step.precision.load_state_dict(state.get("scaler"))
    result.history = [dict(row) for row in state["history"]]
    result.seconds = state["seconds"]
    result.resumed_from = state["epoch"]
