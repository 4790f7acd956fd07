"""Benchmark the data stages: preprocessing against tonic's DiskCachedDataset, loading against a DataLoader.

Table 1, preprocessing throughput (samples/s, events/s), on the CPU. Our side is
`spikeattn.data.frames.preprocess` itself, timed end to end (read each raw sample, frame it
with `Framing`, pack and save the cache), with workers = 1 and = the number of cores, and
`load_frames` (reading the cache back). tonic's side is `tonic.DiskCachedDataset` over a small
Dataset that reads the SAME raw samples with the SAME reader and frames them with the same
`tonic.transforms` (Downsample, ToFrame) settings: its first pass (frames and writes one hdf5
file per sample; in one process and through a DataLoader with one worker per core) and its
second pass (cache hits), timed separately. Both sides start from raw files in the page cache;
every number is the median of --reps runs, each from an empty cache. Cases:
- digits-dvs: the embedded simulated-DVS digits (params.yaml `datasets.digits-dvs`), T 8
  time bins (the demo-dvs study);
- DVS128 Gesture-sized synthetic recordings (128x128 sensor, ~300k sorted random events over
  ~6 s per sample, in the dataset's on-disk layout), as MA-SNN uses them (time_window dt 15 ms,
  downsample 4: the cache keeps the downsampled events, tonic's side caches them after its
  Downsample) and as SMA does (event_count T 16, full resolution).

Table 2, loading during training (samples/s): `TensorBatches` (train=True, flip + translate
5 px; for MA-SNN it frames a random T x 15 ms window per sample from the cached events, as the
authors' loader cuts it) over the caches built above, against a plain
`torch.utils.data.DataLoader` over a dataset whose items are framed (MA-SNN: the same window
rule, with numpy's searchsorted and bincount) and augmented one by one on the CPU
(num_workers 0 and 2, persistent workers). On the CPU always; on CUDA too
when available, with the cache GPU-resident (as `place` puts it when it fits) and forced into
pinned host memory. CPU rows run at 1 torch thread and at one per core (--threads): on a
shared machine the default thread count can oversubscribe the cores and slow batched ops a lot.

    python benchmarks/data.py                                   # full run (a few minutes)
    python benchmarks/data.py --append benchmarks/RESULTS.md
    python benchmarks/data.py --only preprocessing --gesture-samples 352   # let the pool engage
    python benchmarks/data.py --smoke                           # tiny sizes, seconds (a test runs it)
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
import tonic  # noqa: E402
from tonic.transforms import Compose, Downsample, ToFrame  # noqa: E402

from spikeattn.config import Params  # noqa: E402
from spikeattn.data import (  # noqa: E402
    load_events,
    prepare,
    sources,  # noqa: E402
)
from spikeattn.data import loader as loader_mod  # noqa: E402
from spikeattn.data.event_frames import Framing, event_count_frames, pixel_address  # noqa: E402
from spikeattn.data.frames import Split, frames_dir, load_frames, preprocess  # noqa: E402
from spikeattn.data.loader import Augment, TensorBatches, Windows  # noqa: E402
from spikeattn.data.registry import raw_dir, raw_params  # noqa: E402
from spikeattn.hardware import cpu_name  # noqa: E402
from spikeattn.io import write_json  # noqa: E402

GESTURE = "dvs128-gesture"
POOL_CHUNK = 64  # records per task in frames._frame_all: the pool engages only above this per split


# --- machine and timing ------------------------------------------------------------------------


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def median_s(
    fn: Callable[[], object], reps: int, setup: Callable[[], object] = lambda: None
) -> float:
    """Median wall-clock seconds of `fn` over `reps` runs, `setup` (untimed) before each."""
    times = []
    for _ in range(reps):
        setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in Path(path).rglob(pattern) if f.is_file())


# --- the cases -----------------------------------------------------------------------------------


@dataclass
class Case:
    """One dataset + framing: how our stage is called, and the same work for tonic's side."""

    label: str
    name: str  # dataset name for preprocess
    params: dict
    T: int
    samples: int
    events: int
    first_train: int  # index (in `read` order) of the first train sample, to compare frames
    make_reader: Callable[
        [], tuple[Callable[[int], np.ndarray], np.ndarray]
    ]  # -> (read(i), labels)
    transform: Callable[[np.ndarray], np.ndarray]  # tonic's transforms, as Framing calls them
    uses_pool: bool  # whether preprocess(workers > 1) can use processes for this dataset
    largest_split: int = 0  # samples in the larger split (the pool needs > POOL_CHUNK in one)


def tonic_transform(framing: Framing) -> Compose:
    """The tonic transforms `Framing` applies, written out with tonic's classes."""
    height, width = framing.size
    steps = [Downsample(spatial_factor=1 / framing.downsample)] if framing.downsample > 1 else []
    sensor_size = (width, height, 2)
    if framing.method == "time_window":
        pass  # both sides keep the downsampled events; windows are framed while training
    elif framing.method == "event_count" and framing.event_count_split == "spikingjelly":
        # tonic has no split that keeps the N mod T leftover (SpikingJelly's, SMA's): ours
        steps.append(lambda events: event_count_frames(events, framing.T, height, width))
    elif framing.method == "event_count":
        steps.append(ToFrame(sensor_size=sensor_size, n_event_bins=framing.T))
    else:
        steps.append(ToFrame(sensor_size=sensor_size, n_time_bins=framing.T))
    return Compose(steps)


def digits_case(params: dict, T: int, root: Path) -> Case:
    raw = prepare("digits-dvs", params, root)  # the simulation itself is not timed
    samples, _, split = load_events(raw)
    size = params["sensor_size"]
    framing = Framing("time_bins", (size, size), T=T)

    def make_reader():
        loaded, labels, _ = load_events(raw)  # what _embedded_events reads: one npz
        return loaded.__getitem__, labels

    return Case(
        f"digits-dvs ({size}x{size}, time_bins T {T})",
        "digits-dvs",
        params,
        T,
        len(samples),
        len(samples.events),
        int(np.flatnonzero(split == 0)[0]),
        make_reader,
        tonic_transform(framing),
        uses_pool=False,
    )


def write_gesture_raw(
    root: Path, params: dict, n: int, events: int, seconds: float, seed: int = 0
) -> int:
    """Synthetic DVS128 Gesture recordings in tonic's layout (userNN_<light>/<label>.npy of
    x, y, p, t[ms]) with a manifest, so `preprocess` reads them as the real release.

    About a quarter of the users go to ibmGestureTest (at least one). Returns the event count."""
    raw = raw_dir(GESTURE, root)
    per_user = min(11, max(1, n // 2))
    users = math.ceil(n / per_user)
    test_users = max(1, users // 4)
    rng = np.random.default_rng(seed)
    total = 0
    for k in range(n):
        user, label = divmod(k, per_user)
        folder = "ibmGestureTest" if user >= users - test_users else "ibmGestureTrain"
        path = raw / folder / f"user{user + 1:02d}_fluorescent" / f"{label}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        m = int(events * rng.uniform(0.8, 1.2))
        t_us = np.sort(rng.integers(0, int(seconds * 1e6), m))
        columns = [
            rng.integers(0, 128, m),
            rng.integers(0, 128, m),
            rng.integers(0, 2, m),
            t_us / 1000,
        ]
        np.save(path, np.stack(columns, axis=1).astype(np.float64))
        total += m
    write_json(raw / "manifest.json", {"dataset": GESTURE, "params": raw_params(GESTURE, params)})
    return total


def gesture_case(label: str, params: dict, T: int, root: Path, events: int) -> Case:
    source = sources.get_source(GESTURE)
    records = source.records(raw_dir(GESTURE, root))  # preprocess's order: train, then test
    framing = Framing.from_params(params, source.sensor, T)

    def make_reader():
        return (lambda i: sources.read_events(source, records[i])), np.array(
            [r.label for r in records]
        )

    first_train = next(i for i, r in enumerate(records) if r.split == 0)
    largest = max(sum(r.split == k for r in records) for k in (0, 1))
    return Case(
        label,
        GESTURE,
        params,
        T,
        len(records),
        events,
        first_train,
        make_reader,
        tonic_transform(framing),
        uses_pool=True,
        largest_split=largest,
    )


# --- table 1: preprocessing -------------------------------------------------------------------


class RawEvents(Dataset):
    """tonic-style dataset: (frames, label) of sample i, read as our stage reads it."""

    def __init__(self, read: Callable[[int], np.ndarray], labels: np.ndarray, transform):
        self.read, self.labels, self.transform = read, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.read(i)), int(self.labels[i])


def tonic_cached(case: Case, cache: Path) -> tonic.DiskCachedDataset:
    read, labels = case.make_reader()
    return tonic.DiskCachedDataset(RawEvents(read, labels, case.transform), cache_path=str(cache))


def one_pass(dataset, workers: int) -> None:
    if workers <= 1:
        for i in range(len(dataset)):
            dataset[i]
        return
    for _ in DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=as_is):
        pass


def as_is(item):
    """No conversion: the time-window cases yield structured event arrays, which torch's
    default conversion refuses."""
    return item


def our_sample(case: Case, out: Path) -> np.ndarray:
    """Our first train sample: frames, or for time windows its events as [t, address] rows."""
    frames = load_frames(out)
    train = frames.train
    if train.t is None:
        return train.x[0].numpy()
    first, stop = int(train.offsets[0]), int(train.offsets[1])
    return np.stack([train.t[first:stop].numpy(), train.address[first:stop].numpy()], axis=1)


def tonic_sample(case: Case, cached) -> np.ndarray:
    """tonic's first train sample in `our_sample`'s form (its events keep absolute times)."""
    out = np.asarray(cached[case.first_train][0])
    if out.dtype.names is None:
        return out
    height, width = Framing.from_params(
        case.params, sources.get_source(case.name).sensor, case.T
    ).size
    return np.stack([out["t"] - out["t"][0], pixel_address(out, height, width)], axis=1)


def preprocessing_rows(
    case: Case, root: Path, reps: int, ncores: int, scratch: Path
) -> tuple[list[str], Path]:
    out = frames_dir(case.name, case.params, case.T, root)
    cache = scratch / f"tonic-{out.name}"

    def clear_ours():
        shutil.rmtree(out, ignore_errors=True)

    def clear_tonic():
        shutil.rmtree(cache, ignore_errors=True)

    results: list[tuple[str, str, str, float, int]] = []
    worker_counts = [1, ncores] if ncores > 1 else [1]
    for w in worker_counts:
        s = median_s(
            lambda: preprocess(case.name, case.params, case.T, root, workers=w), reps, clear_ours
        )
        note = str(w)
        if w > 1 and not case.uses_pool:
            note += " (ignored: embedded data is framed serially)"
        elif w > 1 and case.largest_split <= POOL_CHUNK:
            note += f" (pool unused: ≤{POOL_CHUNK} samples per split)"
        results.append(
            ("spikeattn `preprocess`", "build cache: read, frame, save", note, s, dir_bytes(out))
        )
    ours_bytes = dir_bytes(out)
    s = median_s(lambda: load_frames(out), reps)
    results.append(("spikeattn `load_frames`", "read whole cache", "1", s, ours_bytes))

    for w in worker_counts:
        s = median_s(lambda: one_pass(tonic_cached(case, cache), w), reps, clear_tonic)
        how = "1" if w == 1 else f"{w} (DataLoader workers)"
        results.append(
            (
                "tonic `DiskCachedDataset`",
                "1st pass: read, frame, write hdf5",
                how,
                s,
                dir_bytes(cache, "*.hdf5"),
            )
        )
    cached = tonic_cached(case, cache)  # the last first pass left the cache full
    s = median_s(lambda: one_pass(cached, 1), reps)
    results.append(
        ("tonic `DiskCachedDataset`", "2nd pass: cache hits", "1", s, dir_bytes(cache, "*.hdf5"))
    )

    theirs = tonic_sample(case, cached)
    mine = our_sample(case, out)
    same = theirs.shape == mine.shape and np.array_equal(
        theirs.astype(np.int64), mine.astype(np.int64)
    )
    rows = []
    for pipeline, what, workers, s, nbytes in results:
        rows.append(
            f"| {case.label} | {pipeline} | {what} | {workers} | {s:.3f} | "
            f"{case.samples / s:,.0f} | {case.events / s / 1e6:,.2f} | {nbytes / 2**20:,.1f} |"
        )
    if not same:
        rows.append(
            f"| {case.label} | **frames differ** | first train sample: ours {mine.shape}, "
            f"tonic {theirs.shape} | | | | | |"
        )
    return rows, out


# --- table 2: loading ----------------------------------------------------------------------------


def tile(split: Split, n: int) -> Split:
    """`split` repeated to at least n samples (loading speed does not depend on the values)."""
    if len(split) >= n:
        return split
    idx = torch.arange(len(split)).repeat(math.ceil(n / len(split)))[:n]
    if split.offsets is None:
        return Split(split.x[idx], split.y[idx])
    off = split.offsets
    lengths = off[1:] - off[:-1]
    t, address = (
        torch.cat([v[off[i] : off[i + 1]] for i in idx.tolist()]) for v in (split.t, split.address)
    )
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lengths[idx], 0)])
    return Split(None, split.y[idx], offsets, t=t, address=address)


def augment_one(x: torch.Tensor, augment: Augment) -> torch.Tensor:
    """Random flip and zero-filled translation of one sample [..., H, W] (as loader.Augment)."""
    if augment.flip and torch.rand(()) < 0.5:
        x = x.flip(-1)
    k = augment.translate_px
    if k:
        dx, dy = torch.randint(-k, k + 1, (2,)).tolist()
        H, W = x.shape[-2:]
        out = torch.zeros_like(x)
        out[..., max(dy, 0) : H + min(dy, 0), max(dx, 0) : W + min(dx, 0)] = x[
            ..., max(-dy, 0) : H + min(-dy, 0), max(-dx, 0) : W + min(-dx, 0)
        ]
        x = out
    return x


class AugmentedTensors(TensorDataset):
    """TensorDataset(x, y) whose items are converted to float and augmented one at a time."""

    def __init__(self, x, y, scale: float, augment: Augment):
        super().__init__(x, y)
        self.scale, self.augment = scale, augment

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return augment_one(x.to(torch.float32) * self.scale, self.augment), y


class AugmentedWindows(Dataset):
    """Per sample: a random T x dt window of an events-layout split, framed on the CPU with
    numpy by the same rule as `TensorBatches` (start uniform in [0, t_last - T dt), frames from
    the first event after it), then float + augmentation."""

    def __init__(self, split: Split, T: int, windows: Windows, scale: float, augment: Augment):
        self.t, self.address = split.t.numpy(), split.address.numpy().astype(np.int64)
        self.y, self.offsets = split.y, split.offsets.tolist()
        self.T, self.dt, self.shape = T, windows.dt_us, tuple(windows.frame_shape)
        self.scale, self.augment = scale, augment

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        t = self.t[self.offsets[i] : self.offsets[i + 1]]
        length = self.T * self.dt
        room = int(t[-1]) - length
        start = int(np.random.randint(0, room)) if room > 0 else 0
        lo, hi = np.searchsorted(t, start), np.searchsorted(t, start + length)
        frame = (t[lo:hi].astype(np.int64) - (t[lo] if hi > lo else 0)) // self.dt
        size = self.shape[0] * self.shape[1] * self.shape[2]
        address = self.address[self.offsets[i] + lo : self.offsets[i] + hi]
        counts = np.bincount(frame * size + address, minlength=self.T * size)
        x = torch.from_numpy(counts.reshape(self.T, *self.shape)).to(torch.float32) * self.scale
        return augment_one(x, self.augment), self.y[i]


def epoch_s(iterate: Callable[[], None], device: torch.device, reps: int) -> float:
    """Median seconds per epoch after one warm-up epoch."""

    def run():
        iterate()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run()
    return median_s(run, reps)


@dataclass
class LoadCase:
    label: str
    split: Split
    scale: float
    T: int | None
    batch_size: int
    windows: Windows | None = None


def loading_rows(
    case: LoadCase,
    device: torch.device,
    reps: int,
    workers: list[int],
    augment: Augment,
    threads: int,
) -> list[str]:
    """One row per loader, all run with `threads` torch intra-op threads in this process."""
    n = len(case.split)
    rows = []
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        measured = _measure_loaders(case, device, reps, workers, augment)
    finally:
        torch.set_num_threads(saved_threads)
    base = next(s for name, _, w, s in measured if name.startswith("`DataLoader") and w == "0")
    for name, placement, w, s in measured:
        rows.append(
            f"| {case.label} | {n} | {case.batch_size} | {device.type} | {threads} | {name} | "
            f"{placement} | {w} | {n / s:,.0f} | {base / s:.2f} |"
        )
    return rows


def _measure_loaders(
    case: LoadCase, device: torch.device, reps: int, workers: list[int], augment: Augment
) -> list[tuple[str, str, str, float]]:

    def tensor_batches(fit: float | None) -> tuple[float, str]:
        saved = loader_mod.FIT_FRACTION
        if fit is not None:
            loader_mod.FIT_FRACTION = fit
        try:
            tb = TensorBatches(
                case.split,
                case.scale,
                case.batch_size,
                device,
                train=True,
                T=case.T,
                augment=augment,
                seed=0,
                windows=case.windows,
            )
        finally:
            loader_mod.FIT_FRACTION = saved
        stored = tb.x if tb.events is None else tb.events.t
        placement = (
            ("GPU-resident" if stored.is_cuda else "pinned host")
            if device.type == "cuda"
            else "CPU"
        )

        def iterate():
            for _ in tb:
                pass

        return epoch_s(iterate, device, reps), placement

    measured: list[tuple[str, str, str, float]] = []
    if device.type == "cuda":
        for fit in (None, 0.0):
            s, placement = tensor_batches(fit)
            measured.append(("`TensorBatches`", placement, "–", s))
    else:
        s, placement = tensor_batches(None)
        measured.append(("`TensorBatches`", placement, "–", s))

    if case.split.offsets is None:
        dataset: Dataset = AugmentedTensors(case.split.x, case.split.y, case.scale, augment)
    else:
        dataset = AugmentedWindows(case.split, case.T, case.windows, case.scale, augment)
    cuda = device.type == "cuda"
    for w in workers:
        dl = DataLoader(
            dataset,
            batch_size=case.batch_size,
            shuffle=True,
            num_workers=w,
            persistent_workers=w > 0,
            pin_memory=cuda,
            generator=torch.Generator().manual_seed(0),
        )

        def iterate(dl=dl):
            for x, y in dl:
                x.to(device, non_blocking=True), y.to(device, non_blocking=True)

        measured.append(
            (
                "`DataLoader(TensorDataset)`, per-sample augmentation",
                "pinned host → GPU" if cuda else "CPU",
                str(w),
                epoch_s(iterate, device, reps),
            )
        )
        del dl
    return measured


# --- the run -----------------------------------------------------------------------------------


def header(title: str, device_name: str, ncores: int, extra: str) -> str:
    return (
        f"### {title}: {device_name}, {ncores} cores, {datetime.date.today().isoformat()}\n\n"
        f"{extra}\n"
    )


def run(args: argparse.Namespace) -> str:
    ncores = cores()
    params = Params.load(ROOT / "params.yaml")
    digits = {**params.dataset("digits-dvs"), "max_samples": args.digits_max_samples}
    gesture_ma = params.dataset(GESTURE)  # MA-SNN: time_window dt 15 ms, downsample 4
    gesture_sma = params.dataset(GESTURE, "sma-gesture")  # SMA: event_count, full resolution
    augment = Augment(flip=True, translate_px=5)

    with tempfile.TemporaryDirectory(prefix="spikeattn-bench-data-") as tmp:
        root, scratch = Path(tmp) / "root", Path(tmp) / "scratch"
        root.mkdir(), scratch.mkdir()
        events = write_gesture_raw(
            root, gesture_ma, args.gesture_samples, args.gesture_events, args.gesture_seconds
        )
        cases = [
            digits_case(digits, args.digits_T, root),
            gesture_case(
                f"Gesture-sized synthetic, MA-SNN (dt {gesture_ma['dt_ms']:g} ms, "
                f"downsample {gesture_ma['downsample']})",
                gesture_ma,
                args.ma_T,
                root,
                events,
            ),
            gesture_case(
                f"Gesture-sized synthetic, SMA (event_count T {args.sma_T}, 128x128)",
                gesture_sma,
                args.sma_T,
                root,
                events,
            ),
        ]
        # warm the page cache for both sides alike (the raw files are read before any timing)
        for case in cases:
            read, _ = case.make_reader()
            for i in range(case.samples):
                read(i)

        rows1, outs = [], []
        prep_before = os.getloadavg()[0]
        for case in cases:
            if args.only == "loading":  # the caches are still needed: built once, untimed
                outs.append(preprocess(case.name, case.params, case.T, root, workers=ncores))
                continue
            print(f"preprocessing: {case.label} ...", file=sys.stderr, flush=True)
            rows, out = preprocessing_rows(case, root, args.reps, ncores, scratch)
            rows1 += rows
            outs.append(out)
        prep_after = os.getloadavg()[0]
        sizes = (
            f"digits-dvs: {cases[0].samples} samples, {cases[0].events:,} events; Gesture-sized "
            f"synthetic: {cases[1].samples} samples ({cases[1].largest_split} in the larger split), "
            f"{cases[1].events:,} events over {args.gesture_seconds:g} s each"
        )
        table1 = (
            header(
                "Preprocessing",
                cpu_name(),
                ncores,
                f"{sizes} (the same recordings framed both ways). tonic {tonic.__version__}, torch "
                f"{torch.__version__}, median of {args.reps} runs from an empty cache, raw files in the page "
                f"cache. `preprocess` frames with a process pool in chunks of {POOL_CHUNK} records per split. "
                f"1-min load average {prep_before:.1f} before, {prep_after:.1f} after.\n"
                "\n| case | pipeline | pass | workers | s | samples/s | M events/s | cache MiB |\n"
                "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows1),
            )
            if rows1
            else ""
        )
        if args.only == "preprocessing":
            return table1

        load_before = os.getloadavg()[0]
        load_cases = []
        for case, out in zip(cases, outs):
            frames = load_frames(out)
            split = tile(frames.train, args.load_samples)
            windows = (
                Windows(**frames.meta["window"]) if frames.meta["layout"] == "events" else None
            )
            T = args.ma_T if windows else None
            kind = (
                f"events, random {T} x {windows.dt_us / 1000:g} ms window"
                if windows
                else "fixed [" + ", ".join(str(d) for d in split.x.shape[1:]) + "]"
            )
            label = f"{case.label.split(' (')[0]} ({kind})"
            batch = args.digits_batch if case.name == "digits-dvs" else args.gesture_batch
            load_cases.append(LoadCase(label, split, frames.meta["scale"], T, batch, windows))
        devices = [torch.device("cpu")]
        if torch.cuda.is_available() and not args.cpu_only:
            devices.append(torch.device("cuda"))
        rows2 = []
        for device in devices:
            for lc in load_cases:
                for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
                    print(
                        f"loading: {lc.label} on {device}, {threads} threads ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    rows2 += loading_rows(
                        lc, device, args.reps, args.loader_workers, augment, threads
                    )
        load_after = os.getloadavg()[0]
        names = cpu_name() + (f" + {torch.cuda.get_device_name()}" if len(devices) > 1 else "")
        table2 = header(
            "Loading during training",
            names,
            ncores,
            f"train=True, flip + translate {augment.translate_px} px on every case; samples/s over a "
            f"whole epoch (median of {args.reps} after one warm-up epoch), batches as float32 on the "
            f"device. Gesture-sized caches: the {cases[1].samples}-sample build's train split, "
            f"repeated to {args.load_samples} samples. Threads: torch intra-op threads of the main "
            f"process (DataLoader workers use one each). 1-min load average {load_before:.1f} before, "
            f"{load_after:.1f} after.\n"
            "\n| case | samples | batch | device | threads | loader | data placement | workers | samples/s | "
            "× DataLoader (0 workers) |\n|---|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows2),
        )
    return table1 + "\n" + table2 if table1 else table2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--reps", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument(
        "--digits-max-samples",
        type=int,
        default=None,
        help="datasets.digits-dvs.max_samples (default: params.yaml's, all 1,797)",
    )
    p.add_argument("--digits-T", type=int, default=8)
    p.add_argument("--gesture-samples", type=int, default=48)
    p.add_argument("--gesture-events", type=int, default=300_000, help="mean events per sample")
    p.add_argument("--gesture-seconds", type=float, default=6.0)
    p.add_argument(
        "--ma-T", type=int, default=60, help="clip length (frames) for the MA-SNN loading case"
    )
    p.add_argument("--sma-T", type=int, default=16)
    p.add_argument(
        "--load-samples", type=int, default=256, help="gesture caches repeated to this size"
    )
    p.add_argument("--digits-batch", type=int, default=64)
    p.add_argument("--gesture-batch", type=int, default=32)
    p.add_argument("--loader-workers", type=int, nargs="+", default=[0, 2])
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch threads for the CPU loading rows (default: 1 and the number of cores)",
    )
    p.add_argument("--only", choices=("preprocessing", "loading"), help="run one of the two tables")
    p.add_argument("--cpu-only", action="store_true", help="skip the CUDA loading rows")
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: checks the script runs"
    )
    p.add_argument("--append", type=Path, help="append the tables to this Markdown file")
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = sorted({1, cores()})
    if args.smoke:
        args.reps, args.digits_max_samples = 1, 80  # each class keeps a test sample
        args.gesture_samples, args.gesture_events, args.gesture_seconds = 4, 20_000, 1.0
        args.ma_T, args.load_samples, args.gesture_batch, args.digits_batch = 8, 8, 4, 16
        args.loader_workers, args.threads = [0], [1]
    tables = run(args)
    print(tables)
    if args.append:
        with args.append.open("a") as f:
            f.write("\n" + tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
