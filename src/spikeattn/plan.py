"""`spikeattn plan`: what a selection of studies costs, before any of it runs.

Per cell: training samples per epoch (the frames cache's meta.json once it is built, else the
count the data registry declares, so a study plans before its dataset is downloaded), steps
per run = ceil(samples / batch) x epochs (batch_size is the global batch, also under DDP), and
the seconds one training step takes, measured by a short probe: the cell's model at its paper
shape on random input, stepped through the training loop's own `fit` (so its precision, CutMix
and whatever else `fit` does are in the number), one warm-up step, then K timed steps. On a
GPU the probe runs the full per-process batch (halved until it fits, then scaled); on a CPU it
runs one thread, as `spikeattn train` does, from 2 samples up while steps stay cheap, and
scales the step time linearly to the full batch (the table's footer says so). A probe is
cached per device and shape under .spikeattn/probe/, so the second plan is instant and a
cache measured on a cluster can be copied to plan there from a laptop (`--device NAME`).

From these: GPU-hours = jobs x steps x step time x processes per job, and the wall time on G
GPUs with compute.jobs_per_gpu jobs per GPU (jobs started longest first on the free slots; a
DDP job takes all slots of its GPUs, as the pipeline's gpu_slots does).

The arithmetic (`CellCost`, `cell_costs`, `schedule`, `study_table`) takes step times as plain
numbers and is tested without a probe; the probe (`measure`) and its cache (`ProbeCache`) are
apart from it. Not in the estimate: the test pass after each epoch, data loading, start-up.
"""

from __future__ import annotations

import datetime
import heapq
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import pandas as pd

from . import paths
from .config import Cell, Params
from .io import read_json, short_hash, write_json

CPU_PROBE_BATCH = 2  # samples per first probe step on a CPU; the step time is scaled up linearly
# A CPU probe faster than this many seconds per step is repeated at GROW times the batch (up to
# the full one): a small model's step is mostly fixed cost, which linear scaling would multiply.
CPU_GROW_BELOW, GROW = 0.5, 8
CPU_THREADS = 1  # torch threads of a CPU probe: what `spikeattn train` runs with (--threads 1)
NOT_MEASURED = "not measured"
# Train settings that cannot change how long one step takes: a probe is reused across them.
_NOT_STEP_KEYS = frozenset(
    {
        "epochs",
        "lr",
        "min_lr",
        "warmup_epochs",
        "sched",
        "sched_kwargs",
        "label_smoothing",
        "weight_decay",
        "momentum",
        "batch_size",
    }
)


class PlanError(ValueError):
    """A plan cannot be made as asked: the message names the option and the fix."""


# -- the arithmetic ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CellCost:
    """One cell's training cost: `jobs` runs (its seeds) of `steps` steps each."""

    study: str
    cell: str
    jobs: int
    epochs: int
    samples: int | None  # training samples per epoch; None: unknown
    batch: int  # the global batch (split over `processes` under DDP)
    processes: int  # GPUs one job trains on (distributed.nproc_per_node)
    seconds_per_step: float | None  # one step of one process at batch / processes; None: unmeasured
    samples_from: str = "registry"  # cache (meta.json) | registry | unknown

    @property
    def steps(self) -> int | None:
        """Steps per run: ceil(samples / batch) per epoch (the last batch is partial)."""
        return None if self.samples is None else math.ceil(self.samples / self.batch) * self.epochs

    @property
    def job_hours(self) -> float | None:
        """Wall hours of one run."""
        if self.steps is None or self.seconds_per_step is None:
            return None
        return self.steps * self.seconds_per_step / 3600

    @property
    def gpu_hours(self) -> float | None:
        """GPU-hours of all its runs: each run holds `processes` GPUs for job_hours."""
        return None if self.job_hours is None else self.jobs * self.job_hours * self.processes


def cell_costs(
    params: Params,
    studies: Iterable[str],
    step_seconds: Callable[[Cell], float | None],
    samples: Callable[[Cell], tuple[int | None, str]],
) -> list[CellCost]:
    """Every cell of `studies` with its cost; `step_seconds` and `samples` say what one step
    takes and how many training samples the cell has (and from where)."""
    rows = []
    for study in studies:
        settings = params.train_settings(study)
        processes = params.distributed(study)["nproc_per_node"]
        for cell in params.cells(study):
            count, source = samples(cell)
            rows.append(
                CellCost(
                    study=study,
                    cell=cell.id,
                    jobs=len(params.seeds(study)),
                    epochs=settings["epochs"],
                    samples=count,
                    batch=settings["batch_size"],
                    processes=processes,
                    seconds_per_step=step_seconds(cell),
                    samples_from=source,
                )
            )
    return rows


def schedule(jobs: Iterable[tuple[float, int]], slots: int) -> float | None:
    """Hours until every job is done: `jobs` are (hours, slots it takes); whenever slots are
    free, the longest waiting job that fits starts. None when a job needs more than `slots`."""
    pending = sorted(jobs, key=lambda job: -job[0])
    if any(width > slots for _, width in pending):
        return None
    now, free, running = 0.0, slots, []  # running: heap of (end, width)
    while pending or running:
        waiting = []
        for hours, width in pending:
            if width <= free:
                heapq.heappush(running, (now + hours, width))
                free -= width
            else:
                waiting.append((hours, width))
        pending = waiting
        now, width = heapq.heappop(running)
        free += width
        while running and running[0][0] == now:
            free += heapq.heappop(running)[1]
    return now


def _job_list(rows: Iterable[CellCost], jobs_per_gpu: int) -> list[tuple[float, int]]:
    """(hours, slots) per run: a one-GPU run takes one slot, a DDP run every slot of its GPUs."""
    return [
        (row.job_hours, 1 if row.processes == 1 else row.processes * jobs_per_gpu)
        for row in rows
        for _ in range(row.jobs)
    ]


def _spread(values: list[int | None]) -> int | str | None:
    """One value when the cells agree, else 'min-max'; None when any is unknown."""
    if any(v is None for v in values):
        return None
    low, high = min(values), max(values)
    return low if low == high else f"{low}-{high}"


@dataclass(frozen=True)
class Totals:
    jobs: int
    gpu_hours: float | None  # None: some cell has no step time
    wall_hours: float | None  # None: unmeasured cells, or no job fits
    unplaced_jobs: int = 0  # runs needing more GPUs than planned for (left out of wall_hours)


def study_table(
    rows: list[CellCost], devices: int, jobs_per_gpu: int
) -> tuple[pd.DataFrame, Totals]:
    """One row per study, and the totals over all of them (their jobs run together)."""
    slots = devices * jobs_per_gpu
    records = []
    for study in dict.fromkeys(row.study for row in rows):
        own = [row for row in rows if row.study == study]
        measured = [row for row in own if row.seconds_per_step is not None]
        jobs = sum(row.jobs for row in own)
        complete = all(row.gpu_hours is not None for row in own)
        records.append(
            {
                "study": study,
                "cells": len(own),
                "seeds": own[0].jobs,
                "jobs": jobs,
                "epochs": _spread([row.epochs for row in own]),
                "samples/epoch": _spread([row.samples for row in own]),
                "steps/run": _spread([row.steps for row in own]),
                "s/step": (
                    sum(r.seconds_per_step * r.jobs for r in measured)
                    / sum(r.jobs for r in measured)
                    if measured
                    else None
                ),
                "measured": len(measured),
                "processes": own[0].processes,
                "GPU-h": sum(row.gpu_hours for row in own) if complete else None,
                "wall-h": schedule(_job_list(own, jobs_per_gpu), slots) if complete else None,
            }
        )
    table = pd.DataFrame.from_records(
        records,
        columns=[
            "study",
            "cells",
            "seeds",
            "jobs",
            "epochs",
            "samples/epoch",
            "steps/run",
            "s/step",
            "measured",
            "processes",
            "GPU-h",
            "wall-h",
        ],
    )
    complete = all(row.gpu_hours is not None for row in rows)
    runs = _job_list(rows, jobs_per_gpu) if complete else []
    placed = [job for job in runs if job[1] <= slots]
    totals = Totals(
        jobs=sum(row.jobs for row in rows),
        gpu_hours=sum(row.gpu_hours for row in rows) if complete else None,
        wall_hours=schedule(placed, slots) if complete and placed else None,
        unplaced_jobs=len(runs) - len(placed),
    )
    return table, totals


# -- sample counts -----------------------------------------------------------------------------
def train_samples(params: Params, cell: Cell) -> tuple[int | None, str]:
    """Training samples of a cell's data: the built cache's own count, else the registry's."""
    from .data import get_info
    from .job_inputs import frames_path

    meta = frames_path(params, cell)
    if meta.exists():
        return read_json(meta)["counts"]["train"], "cache"
    count = get_info(cell.dataset).train_count(params.cell_data(cell))
    return count, "registry" if count is not None else "unknown"


# -- the device --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """The device a plan is for: `name` keys the probe cache; `device` is where probes run
    (None: a device named on the command line that is not on this machine, cache only);
    `devices` is how many of it the wall time is planned for."""

    name: str
    device: str | None
    devices: int
    kind: str  # cpu | cuda

    @property
    def unit(self) -> str:
        """What the hours are hours of."""
        return "GPU" if self.kind == "cuda" else "CPU"


def _cpu_name() -> str:
    from .hardware import cpu_name

    model = cpu_name()
    return f"cpu {model}, {CPU_THREADS} thread{'s' if CPU_THREADS != 1 else ''}"


def resolve_target(device: str | None = None, gpus: int | None = None) -> Target:
    """`--device` (cpu, cuda, cuda:N, or a GPU's name as torch reports it) and `--gpus`."""
    import torch

    available = torch.cuda.is_available()
    if device is None:
        device = "cuda" if available else "cpu"
    if device == "cpu":
        return Target(_cpu_name(), "cpu", gpus or 1, "cpu")
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not available:
            raise PlanError(
                f"--device {device}: torch sees no CUDA device here; plan for a GPU "
                "elsewhere by its name (--device 'NVIDIA H100 80GB HBM3', from a "
                "probe cache copied into .spikeattn/probe/) or use --device cpu"
            )
        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return Target(
            torch.cuda.get_device_name(index),
            f"cuda:{index}",
            gpus or torch.cuda.device_count(),
            "cuda",
        )
    here = (
        [i for i in range(torch.cuda.device_count()) if torch.cuda.get_device_name(i) == device]
        if available
        else []
    )
    if here:
        return Target(device, f"cuda:{here[0]}", gpus or len(here), "cuda")
    return Target(device, None, gpus or 1, "cuda")


# -- the probe ---------------------------------------------------------------------------------
def probe_key(params: Params, cell: Cell, batch: int) -> str:
    """What a step's time depends on: backbone, frame shape, per-process batch, T, attention,
    coding, precision, and a digest of the model's other arguments and the step's settings."""
    from .data import get_info
    from .job_inputs import model_spec

    name, kwargs = model_spec(params, cell)
    settings = params.train_settings(cell.study)
    height, width = get_info(cell.dataset).input_size(params.cell_data(cell))
    rest = short_hash(
        {"model": kwargs, "train": {k: v for k, v in settings.items() if k not in _NOT_STEP_KEYS}}
    )
    return (
        f"{name}|{height}x{width}|b{batch}|T{cell.T}|{cell.attention}|{cell.coding}|"
        f"{settings.get('precision', 'fp32')}|{rest}"
    )


class ProbeCache:
    """Measured step times of one device: .spikeattn/probe/<device>.json, {key: probe}."""

    def __init__(self, device_name: str, root: Path = paths.PROBES):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", device_name).strip("-") or "device"
        self.device_name, self.path = device_name, Path(root) / f"{slug}.json"
        self.probes: dict[str, dict[str, Any]] = (
            read_json(self.path).get("probes", {}) if self.path.exists() else {}
        )

    def get(self, key: str) -> dict[str, Any] | None:
        return self.probes.get(key)

    def put(self, key: str, probe: Mapping[str, Any]) -> None:
        """Record a probe and write the file at once (a plan stopped midway keeps what it measured)."""
        self.probes[key] = dict(probe)
        write_json(self.path, {"device": self.device_name, "probes": self.probes})


class _TimedBatches:
    """The same batch `warmup + steps` times; times the last `steps` of them (each from the
    request of its batch to the request of the next: the step's whole work).

    `seconds`: per step. With a `sync` (CUDA), the total over the timed steps divided by their
    number, synchronised at both ends only, so the host queues steps ahead as in training.
    Without one (CPU, where each step ends when it returns), the median step: a machine busy
    with other work slows some steps, and the median leaves those out."""

    def __init__(self, batch, warmup: int, steps: int, sync: Callable[[], None] | None):
        self.batch, self.warmup, self.steps, self.sync = batch, warmup, steps, sync
        self.seconds: float | None = None

    def __len__(self) -> int:
        return self.warmup + self.steps

    def __iter__(self) -> Iterator:
        stamps = []
        for i in range(self.warmup + self.steps):
            if i == self.warmup and self.sync is not None:
                self.sync()
            if i >= self.warmup:
                stamps.append(time.perf_counter())
            yield self.batch
        if self.sync is not None:
            self.sync()
        stamps.append(time.perf_counter())
        if self.sync is not None:
            self.seconds = (stamps[-1] - stamps[0]) / self.steps
        else:
            self.seconds = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


def measure(
    params: Params, cell: Cell, device: str, batch: int, probe_batch: int, steps: int
) -> dict[str, Any]:
    """Seconds per training step of `cell` at per-process batch `batch` on `device`: `steps`
    steps of `fit` after one warm-up, at `probe_batch` samples (halved on CUDA out-of-memory),
    scaled linearly to `batch` when smaller."""
    import torch

    asked = probe_batch
    threads = torch.get_num_threads()
    while True:
        try:
            if torch.device(device).type == "cpu":
                torch.set_num_threads(CPU_THREADS)
            found = _measure(params, cell, torch.device(device), batch, probe_batch, steps)
        except torch.OutOfMemoryError:
            if probe_batch == 1:
                raise PlanError(f"{cell.id}: one sample does not fit on {device}") from None
            probe_batch = max(1, probe_batch // 2)
            torch.cuda.empty_cache()
            continue
        finally:
            torch.set_num_threads(threads)
        if probe_batch < asked:
            found["note"] = oom_note(
                cell.id,
                asked,
                probe_batch,
                device,
                params.train_settings(cell.study).get("grad_checkpointing", False),
            )
        return found


def oom_note(cell_id: str, asked: int, fitted: int, device: str, checkpointing: bool) -> str:
    """The footer line for a cell whose per-process batch did not fit: what was measured, and
    the remedy (the probe ran with the study's settings, train.grad_checkpointing included)."""
    remedy = (
        "even with train.grad_checkpointing: true; train it on more GPUs "
        "(distributed.nproc_per_node) to split the batch"
        if checkpointing
        else "set train.grad_checkpointing: true for the study (less activation memory, same "
        "results, about one more forward per step), or train it on more GPUs "
        "(distributed.nproc_per_node) to split the batch"
    )
    return (
        f"{cell_id}: batch {asked} does not fit on {device}; measured at {fitted} and scaled; "
        f"{remedy}"
    )


def _measure(
    params: Params, cell: Cell, device, batch: int, probe_batch: int, steps: int
) -> dict[str, Any]:
    import timm
    import torch

    import spikeattn.models  # noqa: F401  (registers the backbones with timm)

    from .data import get_info
    from .data.loader import Batch
    from .job_inputs import model_spec
    from .train import fit
    from .train.precision import Precision

    info = get_info(cell.dataset)
    height, width = info.input_size(params.cell_data(cell))
    settings = {**params.train_settings(cell.study), "epochs": 1}
    precision, note = settings.get("precision", "fp32"), None
    try:
        Precision.from_settings(settings, device.type)
    except ValueError:  # no autocast of this kind on this device: time fp32, and say so
        settings["precision"], note = (
            "fp32",
            f"{precision} has no autocast on {device.type}: fp32 timed",
        )
    name, kwargs = model_spec(params, cell)
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).to(device)
    frame = (info.in_channels, height, width)
    x = torch.rand(
        probe_batch, *(frame if info.kind == "static" else (cell.T, *frame)), device=device
    )
    y = torch.randint(info.num_classes, (probe_batch,), device=device)
    cuda = device.type == "cuda"
    timed = _TimedBatches(
        Batch(x, y),
        warmup=1,
        steps=steps,
        sync=(lambda: torch.cuda.synchronize(device)) if cuda else None,
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    fit(model, timed, [Batch(x[:1], y[:1])], settings, seed=0, progress=False)
    if timed.seconds is None:
        raise PlanError(
            f"{cell.id}: the probe's training step diverged on random input; "
            "measure this cell by training it"
        )
    return {
        "seconds_per_step": timed.seconds * batch / probe_batch,
        "batch": batch,
        "probe_batch": probe_batch,
        "steps": steps,
        "precision": settings.get("precision", "fp32"),
        **({"note": note} if note else {}),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20) if cuda else None,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }


# -- the plan ----------------------------------------------------------------------------------
@dataclass
class Plan:
    """The costed cells of a selection on a target, with the probes behind their step times;
    `render` prints the table, its totals and what the numbers assume."""

    target: Target
    jobs_per_gpu: int
    rows: list[CellCost]
    probes: dict[tuple[str, str], dict[str, Any] | None]  # (study, cell id) -> probe or None
    notes: list[str] = field(default_factory=list)

    def tables(self) -> tuple[pd.DataFrame, Totals]:
        return study_table(self.rows, self.target.devices, self.jobs_per_gpu)

    def render(self, markdown: bool = False, per_cell: bool = False) -> str:
        table, totals = self.tables()
        unit = self.target.unit
        shown = _display(table, unit)
        if per_cell:
            shown = _display_cells(self.rows, unit)
        if self.target.kind == "cuda":  # what one job holds: says how many can share a GPU
            cells = shown["cell"] if per_cell else [None] * len(shown)
            shown["peak GiB"] = [
                _peak(
                    [
                        (probe or {}).get("peak_memory_mb")
                        for (study, cell), probe in self.probes.items()
                        if study == s and c in (None, cell)
                    ]
                )
                for s, c in zip(shown["study"], cells)
            ]
        text = shown.to_markdown(index=False) if markdown else shown.to_string(index=False)
        k = self.jobs_per_gpu
        head = (
            f"Plan on {self.target.name}: {self.target.devices} {unit}"
            f"{'s' if self.target.devices != 1 else ''}"
            + (
                f", {k} job{'s' if k != 1 else ''} per GPU"
                if self.target.kind == "cuda"
                else ", one job at a time"
            )
            + "."
        )
        missing = sum(row.seconds_per_step is None for row in self.rows)
        if totals.gpu_hours is None:
            total = (
                f"Total: {totals.jobs} train jobs; {unit}-hours and wall time {NOT_MEASURED} "
                f"({missing} of {len(self.rows)} cells without a probe)."
            )
        else:
            total = (
                f"Total: {totals.jobs} train jobs, {_hours(totals.gpu_hours)} {unit}-hours, "
                f"{_wall(totals.wall_hours)} wall"
                + (
                    f" (+{totals.unplaced_jobs} jobs that need more {unit}s than planned for)"
                    if totals.unplaced_jobs
                    else ""
                )
                + "."
            )
        return "\n".join([head, "", text, "", total, *self._footer(table)]) + "\n"

    def _footer(self, table: pd.DataFrame) -> list[str]:
        lines = [
            "s/step: seconds per training step of one process at batch/processes (mean over "
            "a study's cells); jobs = cells x seeds; steps/run = ceil(samples / batch) x epochs; "
            f"{self.target.unit}-h = jobs x steps x s/step x processes; wall-h: "
            "jobs started longest first on the free slots, packed jobs assumed not to slow "
            "each other. Test passes, data loading and start-up are not counted."
        ]
        scaled = sorted(
            {
                (p["probe_batch"], p["batch"])
                for p in self.probes.values()
                if p is not None and p["probe_batch"] < p["batch"]
            }
        )
        if scaled:
            pairs = ", ".join(f"{b} of {B}" for b, B in scaled)
            lines.append(
                f"Extrapolated: step times measured at a reduced batch ({pairs} samples) "
                "and scaled linearly to the full batch; a full-batch probe on the target "
                "device (e.g. a GPU) replaces these."
            )
        if any(p is None for p in self.probes.values()):
            why = (
                "--no-probe and no cached probe"
                if self.target.device is not None
                else f"{self.target.name} is not on this machine: cached probes only"
            )
            lines.append(f"{NOT_MEASURED}: {why} (cache: {ProbeCache(self.target.name).path}).")
        for row in table.itertuples():
            if row.processes > self.target.devices:
                lines.append(
                    f"{row.study}: each job trains on {row.processes} GPUs "
                    f"(distributed.nproc_per_node); plan with --gpus {row.processes} or more "
                    "for its wall time."
                )
        sources = sorted({r.samples_from for r in self.rows})
        if sources != ["cache"]:
            lines.append(
                "samples/epoch: from the frames cache (meta.json) where built, else the "
                "counts the dataset sources declare (n-caltech101 and "
                "dvs128-gait approximate)."
            )
        return [""] + [f"- {line}" for line in lines + self.notes]


def _peak(megabytes: list[int | None]) -> str:
    """The largest peak memory of some probes, in GiB; blank when none was measured."""
    known = [m for m in megabytes if m is not None]
    return f"{max(known) / 1024:.1f}" if known else ""


def _hours(value: float | None) -> str:
    if value is None:
        return NOT_MEASURED
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _wall(value: float | None) -> str:
    if value is None:
        return NOT_MEASURED
    return f"{_hours(value)} h" + (f" ({value / 24:.1f} days)" if value >= 48 else "")


def _display(table: pd.DataFrame, unit: str) -> pd.DataFrame:
    """The study table as printed: times rounded, missing ones named."""
    shown = table.copy()
    shown["s/step"] = [
        NOT_MEASURED
        if s is None or pd.isna(s)
        else f"{s:.3g}" + (f" ({m}/{c} cells)" if m < c else "")
        for s, m, c in zip(table["s/step"], table["measured"], table["cells"])
    ]
    for column in ("samples/epoch", "steps/run"):
        shown[column] = [
            "unknown" if v is None or (isinstance(v, float) and pd.isna(v)) else v
            for v in table[column]
        ]
    shown["GPU-h"] = [_hours(None if pd.isna(v) else v) for v in table["GPU-h"]]
    shown["wall-h"] = [
        (f"needs {p} GPUs" if pd.isna(w) and not pd.isna(g) else _hours(None if pd.isna(w) else w))
        for w, g, p in zip(table["wall-h"], table["GPU-h"], table["processes"])
    ]
    shown = shown.drop(columns=["measured"]).rename(columns={"GPU-h": f"{unit}-h"})
    return shown


def _display_cells(rows: list[CellCost], unit: str) -> pd.DataFrame:
    return pd.DataFrame.from_records(
        [
            {
                "study": r.study,
                "cell": r.cell,
                "jobs": r.jobs,
                "epochs": r.epochs,
                "samples/epoch": r.samples if r.samples is not None else "unknown",
                "batch": r.batch,
                "steps/run": r.steps if r.steps is not None else "unknown",
                "s/step": f"{r.seconds_per_step:.3g}"
                if r.seconds_per_step is not None
                else NOT_MEASURED,
                f"{unit}-h": _hours(r.gpu_hours),
            }
            for r in rows
        ]
    )


def _probe(
    params: Params,
    cell: Cell,
    target: Target,
    batch: int,
    size: int,
    steps: int,
    grow: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """`measure` at `size` samples; with `grow`, again at GROW times as many while a step
    takes under CPU_GROW_BELOW seconds (the last, largest measurement is kept)."""
    while True:
        log(
            f"probing {cell.id} on {target.name}: batch {size}"
            f"{f' (of {batch})' if size < batch else ''}, 1 + {steps} steps"
        )
        found = measure(params, cell, target.device, batch, size, steps)
        measured = found["seconds_per_step"] * found["probe_batch"] / batch
        if not grow or found["probe_batch"] >= batch or measured >= CPU_GROW_BELOW:
            return found
        size = min(batch, found["probe_batch"] * GROW)


def make_plan(
    params: Params,
    studies: list[str],
    target: Target,
    probe_steps: int = 3,
    probe: bool = True,
    reprobe: bool = False,
    probe_batch: int | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> Plan:
    """Plan `studies` on `target`: probe each distinct cell shape not cached yet (unless
    `probe` is off), then cost every cell."""
    cache = ProbeCache(target.name)
    probes: dict[tuple[str, str], dict[str, Any] | None] = {}
    for study in studies:
        processes = params.distributed(study)["nproc_per_node"]
        per_process = params.train_settings(study)["batch_size"] // processes
        cap = probe_batch or (CPU_PROBE_BATCH if target.kind == "cpu" else per_process)
        for cell in params.cells(study):
            key = probe_key(params, cell, per_process)
            found = cache.get(key)
            if (found is None or reprobe) and probe and target.device is not None:
                found = _probe(
                    params,
                    cell,
                    target,
                    per_process,
                    min(cap, per_process),
                    probe_steps,
                    grow=target.kind == "cpu" and probe_batch is None,
                    log=log,
                )
                cache.put(key, found)
            probes[study, cell.id] = found
    rows = cell_costs(
        params,
        studies,
        lambda cell: (probes[cell.study, cell.id] or {}).get("seconds_per_step"),
        lambda cell: train_samples(params, cell),
    )
    notes = sorted({p["note"] for p in probes.values() if p and p.get("note")})
    return Plan(target, params.jobs_per_gpu if target.kind == "cuda" else 1, rows, probes, notes)
