"""The registry entry of a dataset, which is also the reader of its on-disk layout, and the
checks every read passes.

Each dataset is one class here or in a sibling module: its class attributes are the facts the
rest of the package needs before reading anything (kind, sensor, classes, which parameters only
shape the frames or the batches, where the data comes from, how many training samples it has),
and its methods read the files. `spikeattn.data.registry` derives `DatasetInfo` from these
attributes, and `frames.preprocess` frames by them, so a new dataset is one new class listed in
`sources.ENTRIES`. The parameters a dataset accepts are its part of params.schema.yaml; a class
adds only the checks a schema cannot express (`cross_check`).

A real dataset's source knows its layout after `spikeattn download` extracted its archives into
`data/raw/<name>/` (each archive `A.zip` into `data/raw/<name>/A/`; the layouts are tonic's,
torchvision's or the authors' release, so a folder fetched by those tools works as well).
Readers return events in EVENT_DTYPE, tonic's structured dtype, so tonic's transforms apply
unchanged. Every problem with a file raises `DataError` naming the file and the fix.

Modules here import heavy libraries (torch, torchvision, tonic) inside the functions that use
them: importing the registry reads no more than these class attributes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from spikeattn.data.archives import safe_extract
from spikeattn.data.errors import DataError

# tonic.io.events_struct, written out so that reading it costs no tonic import (a test checks
# the two agree): x, y in pixels, t in microseconds, p polarity (True: ON).
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])

SPLITS = ("train", "test")  # EventRecord.split and the stored split arrays: 0 train, 1 test
# Parameters read only when loading batches (augmentation, clip sampling): no cache depends on them.
LOADER_KEYS = ("train_window", "test_clips", "augment", "normalize")
# Parameters of a real event dataset read only when framing its events (not by `download`).
EVENT_FRAME_KEYS = (
    "frame_method",
    "dt_ms",
    "downsample",
    "event_count_split",
    "split",
    "test_fraction",
    "split_seed",
)


class Source:
    """One dataset: what the registry knows of it (class attributes) and how to read it.

    `frame_keys`: parameters used only when turning raw data into frames, so changing them does
    not force `download`/`prepare` again; `loader_keys`: parameters used only when loading
    batches, so no cache depends on them. `origin`: "download" (archives fetched by `spikeattn
    download`), "folder" (a folder the user provides, checked by `download`) or "embedded"
    (built locally by `spikeattn prepare`). `params_schema`: a plugin dataset's entry under
    `datasets:` in params.yaml (a JSON schema); None takes the default of its kind and origin
    (`registry.plugin_schema`). The built-ins' entries are in params.schema.yaml.
    """

    name: ClassVar[str]
    kind: ClassVar[str]  # "events" (event streams) or "static" (images)
    origin: ClassVar[str] = "download"
    num_classes: ClassVar[int]
    in_channels: ClassVar[int]
    sensor: ClassVar[tuple[int, int] | None] = None  # a real event camera's (H, W)
    size_key: ClassVar[str | None] = None  # else the parameter giving a square input size
    frame_keys: ClassVar[tuple[str, ...]] = ()
    loader_keys: ClassVar[tuple[str, ...]] = ()
    streamed: ClassVar[bool] = False  # True: the cache indexes files read while training
    # Version of what `prepare` writes (embedded datasets; None for downloaded ones), part of the
    # raw parameters and of the frames cache key, so data drawn by an older rule is not reused.
    raw_version: ClassVar[int | None] = None
    params_schema: ClassVar[Mapping[str, Any] | None] = None

    @classmethod
    def cross_check(cls, params: Mapping[str, Any]) -> None:
        """Checks of validated parameters that the schema cannot express; ValueError naming the key."""

    @classmethod
    def train_count(cls, params: Mapping[str, Any]) -> int | None:
        """Training samples per epoch under `params` before anything is built (`spikeattn
        plan`), exact or approximate as the subclass says; None when unknown."""
        return None

    def after_extract(self, raw: Path) -> None:
        """Called by `download` once every archive is extracted (e.g. to unpack inner archives)."""

    def check(self, root: Path) -> None:
        """A folder dataset's layout under `root` (`download` runs it, before any framing):
        DataError naming the folder unless it is there."""
        if not Path(root).is_dir():
            raise DataError(
                f"{root}: not a folder; set datasets.{self.name}.root in params.yaml to the "
                f"folder holding {self.name}'s files"
            )


def refetch_hint(name: str) -> str:
    return (
        f"delete data/raw/{name}/ (or just that file's archive) and run "
        f"`spikeattn download {name}` again, or place a good copy by hand"
    )


@dataclass(frozen=True)
class EventRecord:
    """One sample on disk: its file, class, and official split (0 train, 1 test; None: none).

    `span` is set when one file holds several samples (IBM's DVS128 Gesture: one recording,
    ~12 gestures): the [start, end) µs of the file's events that form this sample.
    """

    path: Path
    label: int
    split: int | None = None
    group: str = ""  # who/what recorded it (user, subject, lighting): for the record only
    span: tuple[int, int] | None = None


class EventSource(Source):
    """Reader of one event-camera dataset's layout. Subclasses set the class attributes.

    Frames are made by `event_frames.Framing` from `frame_method` and the other EVENT_FRAME_KEYS;
    the model sees the sensor divided by `downsample`. Training samples (`train_count`): the
    official split's `official_train`, or under `split: per_class` (`splits.per_class_split`:
    ceil((1 - test_fraction) * n) per class) the exact sum when every class holds
    total/classes samples (`equal_classes`), else that sum's expectation (each class rounds up
    by half a sample on average): approximate.
    """

    kind = "events"
    in_channels = 2  # OFF, ON
    sensor: ClassVar[tuple[int, int]]  # (H, W) in pixels; every event must lie inside
    frame_keys = EVENT_FRAME_KEYS + LOADER_KEYS
    loader_keys = LOADER_KEYS
    official_split: ClassVar[bool]  # True when the release fixes train/test
    official_train: ClassVar[int | None] = None  # training samples of the official split
    total: ClassVar[int | None] = None  # samples in the release (None: unknown)
    equal_classes: ClassVar[bool] = False  # every class holds total / num_classes samples
    classes_present: ClassVar[int | None] = None  # classes holding samples, if not num_classes

    @classmethod
    def train_count(cls, params: Mapping[str, Any]) -> int | None:
        if params.get("split", "official") == "official":
            return cls.official_train
        if cls.total is None:
            return None
        keep, classes = 1 - params["test_fraction"], cls.classes_present or cls.num_classes
        if cls.equal_classes:
            return classes * math.ceil(keep * (cls.total // classes))
        return round(keep * cls.total + classes / 2)

    def records(self, raw: Path) -> list[EventRecord]:
        """Every sample under `raw`, in a deterministic order; DataError if the layout is missing."""
        raise NotImplementedError

    def check(self, root: Path) -> None:
        """A folder dataset's samples are listed without error and there is at least one."""
        super().check(root)
        if not self.records(Path(root)):
            raise DataError(
                f"{root}: {type(self).__name__}.records found no samples; check "
                f"datasets.{self.name}.root in params.yaml"
            )

    def read(self, path: Path) -> np.ndarray:
        """The events of one file in EVENT_DTYPE (t in microseconds)."""
        raise NotImplementedError


def check_events(events: np.ndarray, path: Path, sensor: tuple[int, int], name: str) -> np.ndarray:
    """`events` as EVENT_DTYPE, after checking coordinates, polarity and time; DataError if not."""
    height, width = sensor
    fields = set(events.dtype.names or ())
    if not {"x", "y", "t", "p"} <= fields:
        raise DataError(
            f"{path}: events lack fields x, y, t, p (got {sorted(fields)}); " + refetch_hint(name)
        )
    if len(events) == 0:
        raise DataError(
            f"{path}: holds no events; the file is empty or truncated: " + refetch_hint(name)
        )
    x, y, t, p = (np.asarray(events[k]) for k in ("x", "y", "t", "p"))
    bad = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: event {i} at (x={x[i]}, y={y[i]}) lies outside the {width}x{height} "
            f"sensor of {name} ({int(bad.sum())} such events): the file is corrupted or "
            "belongs to another dataset; " + refetch_hint(name)
        )
    if not np.isin(p, (0, 1)).all():
        raise DataError(
            f"{path}: polarities other than 0/1 ({np.unique(p)[:5]}): " + refetch_hint(name)
        )
    if (t < 0).any():
        raise DataError(f"{path}: negative timestamps: " + refetch_hint(name))
    out = np.empty(len(events), EVENT_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p.astype(bool)
    if (np.diff(out["t"]) < 0).any():  # some releases interleave packets; frames need time order
        out = out[np.argsort(out["t"], kind="stable")]
    return out


def read_events(source: EventSource, record: EventRecord) -> np.ndarray:
    """Read and check one sample; any failure of the reader becomes a DataError naming the file."""
    try:
        events = source.read(record.path)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{record.path}: missing; " + refetch_hint(source.name)) from None
    except Exception as err:  # numpy/tonic/aedat raise many kinds on a truncated file
        raise DataError(
            f"{record.path}: unreadable {source.name} event file ({type(err).__name__}: "
            f"{err}); it is probably truncated or corrupted: " + refetch_hint(source.name)
        ) from None
    if record.span is not None and "t" in (events.dtype.names or ()):
        events = in_span(events, record, source.name)
    return check_events(events, record.path, source.sensor, source.name)


def in_span(events: np.ndarray, record: EventRecord, name: str) -> np.ndarray:
    """The events with start <= t < end of `record.span`. A mask keeps file order, so checking
    (and time-sorting) after it gives what slicing the sorted file would, at the cost of one
    sample instead of the whole recording; DataError if none lie in the span."""
    start, end = record.span
    t = np.asarray(events["t"])
    inside = (t >= start) & (t < end)
    if not inside.any():
        raise DataError(
            f"{record.path}: no events in [{start}, {end}) µs, the span of this "
            "sample; the recording is truncated or its labels belong to another file: "
            + refetch_hint(name)
        )
    return events[inside]


def sample_files(raw: Path, pattern: str) -> list[Path]:
    """Files matching `pattern` at any depth under `raw`, skipping hidden entries (unfinished
    extractions `.<name>.tmp`, macOS `._*` forks) and `__MACOSX/` folders."""
    return [
        path
        for path in raw.rglob(pattern)
        if not any(
            part.startswith(".") or part == "__MACOSX" for part in path.relative_to(raw).parts
        )
    ]


def unique(records: list[EventRecord], name: str) -> list[EventRecord]:
    """`records` unchanged; DataError if one sample (split, class folder, file, span) appears
    twice, i.e. the dataset was extracted twice under raw and would be counted (and split) twice.
    The span tells apart the samples that share one file."""
    seen: dict[tuple, Path] = {}
    for r in records:
        key = (r.split, r.path.parent.name, r.path.name, r.span)
        if key in seen:
            raise DataError(
                f"{r.path} and {seen[key]}: two copies of the same {name} sample; "
                "delete one of the two extracted folders"
            )
        seen[key] = r.path
    return records


def extract_inner(raw: Path, pattern: str, keep=lambda archive: True) -> None:
    """Unpack each archive matching `pattern` under `raw` (that `keep` accepts) next to itself,
    once: releases that pack archives inside archives (tonic's folder counts as done)."""
    for inner in sorted(sample_files(raw, pattern)):
        dest = inner.with_suffix("")
        if keep(inner) and not dest.exists():
            safe_extract(inner, dest)


def find_dirs(raw: Path, pattern: str, name: str, what: str) -> list[Path]:
    """Folders under `raw` matching a glob `pattern`, sorted; DataError naming the layout if none."""
    found = sorted(p for p in raw.glob(pattern) if p.is_dir())
    if not found:
        raise DataError(
            f"{raw}: no {what} found (looked for {pattern}); run `spikeattn download {name}` "
            f"or extract the dataset's archives there by hand"
        )
    return found


class ImageSource(Source):
    """Reader of one image dataset: uint8 [N, H, W, 3] arrays and int64 labels per split, cached
    resized to the square `image_size` (`images`); a `streamed` one lists files instead."""

    kind = "static"
    in_channels = 3  # RGB
    size_key = "image_size"
    frame_keys = ("image_size",) + LOADER_KEYS
    loader_keys = LOADER_KEYS
    train_samples: ClassVar[int | None] = None  # training samples (the release's train split)

    @classmethod
    def train_count(cls, params: Mapping[str, Any]) -> int | None:
        return cls.train_samples

    def load(self, raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [N, H, W, 3], labels int64 [N]) of split "train" or "test"."""
        raise NotImplementedError

    def images(self, raw: Path, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
        """What the cache stores of a split: uint8 [N, C, size, size] and int64 labels [N]."""
        images, labels = self.load(raw, split)
        return resize_uint8(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), size), labels


def resize_uint8(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, C, h, w] -> [N, C, size, size], bilinear with antialiasing, rounded."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    import torch
    import torch.nn.functional as F

    t = F.interpolate(
        torch.from_numpy(x).float(),
        size=(size, size),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return t.round().clamp(0, 255).to(torch.uint8).numpy()
