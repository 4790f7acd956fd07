"""The training loop: epochs of SGD on a model that returns per-time-step logits.

Batches come from `spikeattn.data.loader` (already on the device, already float), each
carrying how many clips per sample it holds: test accuracy is then the majority vote of the
clips' predictions (MA-SNN's 10-clip test). Optimisers and schedules come from timm by name,
so params.yaml can name any of them. CutMix (`cutmix.py`) and mixed precision (`precision.py`)
wrap the training step when `train.cutmix` / `train.precision` ask for them; `speed.py` holds
the settings that change only how fast the step runs, or in how much memory (`train.deterministic`,
`train.compile`, `train.channels_last`, `train.fused_optimizer`, `train.grad_checkpointing`).
Deterministic for a given seed on CPU (fixed thread count, seeded shuffling, no workers,
deterministic algorithms unless `train.deterministic: false`).
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
from .speed import PeakMemory, StepSettings, set_deterministic
from .tally import Tally

EpochCallback = Callable[[int, dict[str, float]], None]


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed every RNG a run touches and choose deterministic algorithms or not (`speed.py`);
    returns the generator that shuffles the training data."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_deterministic(deterministic)
    return torch.Generator().manual_seed(seed)


def build_optimizer(
    model: nn.Module, settings: dict[str, Any], fused: bool = False
) -> torch.optim.Optimizer:
    """timm's optimizer by name; `fused` (`train.fused_optimizer` as resolved for the device,
    speed.resolve_fused) passes `fused=True` through timm to the torch class."""
    return create_optimizer_v2(
        model,
        opt=settings["opt"],
        lr=settings["lr"],
        weight_decay=settings["weight_decay"],
        momentum=settings["momentum"],
        **settings.get("opt_kwargs", {}),
        **({"fused": True} if fused else {}),
    )


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
            raise ValueError(
                f"sched plateau takes sched_kwargs {sorted(self.OPTIONS)} and no warmup; "
                f"got {sorted(unknown) or 'warmup_epochs'}"
            )
        self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            min_lr=settings["min_lr"],
            **{
                self.OPTIONS[k]: v
                for k, v in {"decay_rate": 0.1, "patience_epochs": 10, **options}.items()
            },
        )

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
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=settings["sched"],
        num_epochs=settings["epochs"],
        warmup_epochs=settings["warmup_epochs"],
        min_lr=settings["min_lr"],
        **settings.get("sched_kwargs", {}),
    )
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
    settings: dict[str, Any] = field(default_factory=dict)  # the step's, resolved (metrics.json)

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


POSTFIX_BATCHES = 100  # a progress bar shows the running loss this often (it costs a host sync)


def run_epoch(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Loss,
    optimizer: torch.optim.Optimizer | None = None,
    bar: tqdm | None = None,
    dist: Dist = Dist(),
    cutmix: CutMix | None = None,
    precision: Precision | None = None,
    speed: StepSettings | None = None,
) -> dict[str, float]:
    """One pass; trains when an optimizer is given, else evaluates without gradients.

    Nothing is read back from the device per batch: loss, correct count and the first
    non-finite loss are tallied on the device (`tally.py`) and read once, after the last batch
    (and every POSTFIX_BATCHES batches for a visible progress bar). So the host queues batch
    i + 1 while the device still runs batch i. (fp16's GradScaler still reads, per step,
    whether the gradients overflowed: torch's `scaler.step` decides on the host.)

    A non-finite training loss raises `Diverged` at the end of the epoch, naming the first
    batch whose loss was non-finite on any process (all processes agree first, so none waits on
    the others forever). The batches after it still step, spreading NaN into the live weights:
    that is harmless because those weights are never kept, `fit` puts back the last epoch's
    finite weights before anything is saved. Training batches are mixed by `cutmix` when it
    says so; their accuracy counts the first label (the image the box was pasted into), as
    GAC's code counts it."""
    training = optimizer is not None
    model.train(training)
    cutmix = cutmix if training else None
    precision = precision or Precision("fp32", "cpu")
    speed = speed or StepSettings(deterministic=True, compile=False, channels_last=False)
    show = bar is not None and not bar.disable
    if cutmix is not None:
        cutmix.start_epoch()
    tally = Tally()
    with torch.set_grad_enabled(training):
        for i, batch in enumerate(batches):
            y = batch.y
            mixed = cutmix(batch.x, y) if cutmix is not None else None
            x = speed.inputs(batch.x if mixed is None else mixed.x)
            with precision.autocast():
                logits = model(x)
                if mixed is not None:
                    loss = mixed.loss(loss_fn, logits)
                else:
                    loss = loss_fn(
                        logits, y.repeat_interleave(batch.clips) if batch.clips > 1 else y
                    )
            tally.add(i, loss, vote(logits, batch.clips) == y)
            if training:
                precision.step(loss, optimizer)
            if bar is not None:
                bar.update(1)
                if show and (i + 1) % POSTFIX_BATCHES == 0:
                    mean_loss, acc = tally.running()
                    bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{acc:.3f}")
    totals = tally.totals(dist)
    if training and totals.first_bad is not None:
        raise Diverged("train", *totals.first_bad)
    if not training and not math.isfinite(totals.loss_sum):
        raise Diverged("test", -1, totals.loss_sum)
    return {"loss": totals.loss_sum / totals.seen, "acc": totals.correct / totals.seen}


def fit(
    model: nn.Module,
    train_loader: Iterable,
    test_loader: Iterable,
    settings: dict[str, Any],
    seed: int,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
    resume: Resume | None = None,
    dist: Dist = Dist(),
) -> Fit:
    """Train for `settings['epochs']` epochs on `train_loader`'s batches (a re-iterable that
    reshuffles itself), evaluating on `test_loader` after each.

    With `resume`, the whole training state is saved after every epoch, and a saved state is
    restored first: a killed run continues at its next epoch and ends as an uninterrupted
    run would (on CPU, same seed). `on_epoch` runs after the state is saved. Under DDP
    (`dist`), `model` is the bare model: it is wrapped here (then compiled, with
    `train.compile`), and only rank 0 saves.

    When the training loss turns non-finite, `model` ends with the weights of the last finished
    epoch (read back from `resume`, else from a host copy kept here; the initial weights when
    no epoch finished), never with weights a non-finite step touched.
    """
    speed = StepSettings.from_settings(settings, _device_type(model))
    seed_everything(seed, speed.deterministic)
    speed.prepare(model)
    loss_fn = build_loss(settings["loss"], settings["label_smoothing"])
    eval_loss = build_loss(settings["loss"])
    optimizer = build_optimizer(model, settings, fused=speed.fused_optimizer)
    scheduler = build_scheduler(optimizer, settings)
    step = Step(
        CutMix.from_settings(settings, seed), Precision.from_settings(settings, _device_type(model))
    )
    net = speed.wrap(dist.wrap(model))
    peak = PeakMemory(_device(model))
    result = Fit(settings={**speed.record(), "precision": step.precision.name})
    if resume is not None and resume.state is not None:
        _restore(resume, model, optimizer, scheduler, train_loader, result, dist, step)
    finite = _host_copy(model)  # the weights to fall back on when no resume state has any
    progress = progress and dist.main
    start = time.perf_counter() - result.seconds
    epochs = tqdm(
        range(len(result.history), settings["epochs"]),
        desc="epochs",
        disable=not progress,
        mininterval=1.0,
        initial=len(result.history),
        total=settings["epochs"],
    )
    for epoch in epochs:
        lr = optimizer.param_groups[0]["lr"]
        try:
            with tqdm(
                total=len(train_loader),
                desc=f"epoch {epoch + 1}",
                leave=False,
                disable=not progress,
                mininterval=1.0,
            ) as bar:
                peak.start()
                tr = run_epoch(
                    net,
                    train_loader,
                    loss_fn,
                    optimizer,
                    bar,
                    dist,
                    step.cutmix,
                    step.precision,
                    speed,
                )
                peak_mb = peak.read()
            te = run_epoch(
                net, test_loader, eval_loss, dist=dist, precision=step.precision, speed=speed
            )
        except Diverged as err:
            result.diverged = {
                "epoch": epoch + 1,
                "batch": err.batch,
                "phase": err.phase,
                "loss": str(err.loss),
            }
            last = resume.last_weights() if resume is not None else None
            model.load_state_dict(last if last is not None else finite)  # the last finite weights
            break
        if scheduler is not None:
            scheduler.step(epoch + 1, tr["loss"])
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": tr["loss"],
            "train_acc": tr["acc"],
            "test_loss": te["loss"],
            "test_acc": te["acc"],
            "peak_memory_mb": peak_mb,
        }
        result.history.append(row)
        result.seconds = time.perf_counter() - start
        if resume is not None:
            _save(resume, model, optimizer, scheduler, train_loader, result, dist, step)
        if resume is None or not dist.main:  # (rank 0's resume state holds them otherwise)
            finite = _host_copy(model)
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


def _device(model: nn.Module) -> torch.device:
    """Where the model trains; the CPU for a model without weights."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _device_type(model: nn.Module) -> str:
    """Where the model trains (autocast and train.deterministic: auto need the device type)."""
    return _device(model).type


def _host_copy(model: nn.Module) -> dict[str, Tensor]:
    """The model's weights and buffers copied to host memory (not the device's: a paper shape
    may need all of it), to restore after a divergence when no resume state holds them."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
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


def _save(
    resume: Resume, model, optimizer, scheduler, loader, result: Fit, dist: Dist, step: Step
) -> None:
    """Every process's random state, data order and CutMix draws, rank 0's weights and loss
    scale (DDP keeps them equal)."""
    ranks = dist.gather(
        {
            "rng": _rng_state(),
            "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
            "cutmix": step.cutmix.state_dict() if step.cutmix is not None else None,
        }
    )
    if dist.main:
        resume.save(
            {
                "epoch": len(result.history),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": step.precision.state_dict(),
                "ranks": ranks,
                "history": result.history,
                "seconds": result.seconds,
            }
        )
    dist.barrier()  # no process runs ahead of a state that is not yet on disk


def _restore(
    resume: Resume, model, optimizer, scheduler, loader, result: Fit, dist: Dist, step: Step
) -> None:
    state = resume.state
    if len(state["ranks"]) != dist.world:
        raise CheckpointError(
            f"{resume.path} was saved by {len(state['ranks'])} processes, not "
            f"{dist.world}; delete it to train this run from the start"
        )
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
