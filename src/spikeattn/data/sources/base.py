"""What a reader of a real dataset's on-disk layout provides, and the checks every read passes.

A source knows one dataset's layout after `spikeattn download` extracted its archives into
`data/raw/<name>/` (each archive `A.zip` into `data/raw/<name>/A/`; the layouts are tonic's,
torchvision's or the authors' release, so a folder fetched by those tools works as well).
Readers return events in tonic's structured dtype so tonic's transforms apply unchanged.
Every problem with a file raises `DataError` naming the file and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tonic.io import events_struct

EVENT_DTYPE = events_struct  # x int16, y int16, t int64 (µs), p bool


class DataError(ValueError):
    """A raw data file is missing, unreadable or out of range; the message says what to do."""


def refetch_hint(name: str) -> str:
    return (f"delete data/raw/{name}/ (or just that file's archive) and run "
            f"`spikeattn download {name}` again, or place a good copy by hand")


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


class EventSource:
    """Reader of one event-camera dataset's layout. Subclasses set the class attributes."""

    name: ClassVar[str]
    sensor: ClassVar[tuple[int, int]]  # (H, W) in pixels; every event must lie inside
    num_classes: ClassVar[int]
    official_split: ClassVar[bool]  # True when the release fixes train/test

    def after_extract(self, raw: Path) -> None:
        """Called by `download` once every archive is extracted (e.g. to unpack inner archives)."""

    def records(self, raw: Path) -> list[EventRecord]:
        """Every sample under `raw`, in a deterministic order; DataError if the layout is missing."""
        raise NotImplementedError

    def read(self, path: Path) -> np.ndarray:
        """The events of one file in EVENT_DTYPE (t in microseconds)."""
        raise NotImplementedError


def check_events(events: np.ndarray, path: Path, sensor: tuple[int, int], name: str) -> np.ndarray:
    """`events` as EVENT_DTYPE, after checking coordinates, polarity and time; DataError if not."""
    height, width = sensor
    fields = set(events.dtype.names or ())
    if not {"x", "y", "t", "p"} <= fields:
        raise DataError(f"{path}: events lack fields x, y, t, p (got {sorted(fields)}); "
                        + refetch_hint(name))
    if len(events) == 0:
        raise DataError(f"{path}: holds no events; the file is empty or truncated: " + refetch_hint(name))
    x, y, t, p = (np.asarray(events[k]) for k in ("x", "y", "t", "p"))
    bad = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: event {i} at (x={x[i]}, y={y[i]}) lies outside the {width}x{height} "
                        f"sensor of {name} ({int(bad.sum())} such events): the file is corrupted or "
                        "belongs to another dataset; " + refetch_hint(name))
    if not np.isin(p, (0, 1)).all():
        raise DataError(f"{path}: polarities other than 0/1 ({np.unique(p)[:5]}): " + refetch_hint(name))
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
        raise DataError(f"{record.path}: unreadable {source.name} event file ({type(err).__name__}: "
                        f"{err}); it is probably truncated or corrupted: " + refetch_hint(source.name)) from None
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
        raise DataError(f"{record.path}: no events in [{start}, {end}) µs, the span of this "
                        "sample; the recording is truncated or its labels belong to another file: "
                        + refetch_hint(name))
    return events[inside]


def sample_files(raw: Path, pattern: str) -> list[Path]:
    """Files matching `pattern` at any depth under `raw`, skipping hidden entries (unfinished
    extractions `.<name>.tmp`, macOS `._*` forks) and `__MACOSX/` folders."""
    return [path for path in raw.rglob(pattern)
            if not any(part.startswith(".") or part == "__MACOSX" for part in path.relative_to(raw).parts)]


def unique(records: list[EventRecord], name: str) -> list[EventRecord]:
    """`records` unchanged; DataError if one sample (split, class folder, file, span) appears
    twice, i.e. the dataset was extracted twice under raw and would be counted (and split) twice.
    The span tells apart the samples that share one file."""
    seen: dict[tuple, Path] = {}
    for r in records:
        key = (r.split, r.path.parent.name, r.path.name, r.span)
        if key in seen:
            raise DataError(f"{r.path} and {seen[key]}: two copies of the same {name} sample; "
                            "delete one of the two extracted folders")
        seen[key] = r.path
    return records


def extract_inner(raw: Path, pattern: str, keep=lambda archive: True) -> None:
    """Unpack each archive matching `pattern` under `raw` (that `keep` accepts) next to itself,
    once: releases that pack archives inside archives (tonic's folder counts as done)."""
    from spikeattn.data.download import safe_extract

    for inner in sorted(sample_files(raw, pattern)):
        dest = inner.with_suffix("")
        if keep(inner) and not dest.exists():
            safe_extract(inner, dest)


def find_dirs(raw: Path, pattern: str, name: str, what: str) -> list[Path]:
    """Folders under `raw` matching a glob `pattern`, sorted; DataError naming the layout if none."""
    found = sorted(p for p in raw.glob(pattern) if p.is_dir())
    if not found:
        raise DataError(f"{raw}: no {what} found (looked for {pattern}); run `spikeattn download {name}` "
                        f"or extract the dataset's archives there by hand")
    return found


class ImageSource:
    """Reader of one image dataset: uint8 [N, H, W, 3] arrays and int64 labels per split."""

    name: ClassVar[str]
    num_classes: ClassVar[int]

    def after_extract(self, raw: Path) -> None:
        """As EventSource.after_extract."""

    def load(self, raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [N, H, W, 3], labels int64 [N]) of split "train" or "test"."""
        raise NotImplementedError
