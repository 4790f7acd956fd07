"""DVS128 Gesture in either of its two releases; the reader finds which one lies under raw.

- IBM's original release (`DvsGesture.tar.gz`, what SpikingJelly and the MA-SNN authors read,
  and what users get since tonic's copy fails to download, tonic #330): a folder `DvsGesture/`
  with one AEDAT 3.1 recording per user and lighting, `userNN_<lighting>.aedat`, holding ~12
  gestures each; `userNN_<lighting>_labels.csv` gives each gesture's class (1-11) and its
  [startTime_usec, endTime_usec); `trials_to_train.txt` / `trials_to_test.txt` list the
  recordings of the official split. Each labels row is one sample: the recording's events with
  start <= t < end, class - 1 as label, as both SpikingJelly and the authors slice it; like
  them, every polarity event is kept (the validity bit is ignored).
- tonic's preprocessed copy (`ibmGestureTrain.tar.gz` / `ibmGestureTest.tar.gz`):
  `ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy`, one gesture per file, an [N, 4] array
  of x, y, p, t with t in milliseconds.

AEDAT 3.1: ASCII header lines starting with '#' up to `#!END-HEADER\\r\\n`, then packets until
EOF: a 28-byte little-endian header (eventType u16, eventSource u16, eventSize u32,
eventTSOffset u32, eventTSOverflow u32, eventCapacity u32, eventNumber u32, eventValid u32) and
eventCapacity * eventSize bytes of events. Polarity packets (type 1) hold 8-byte events: a data
word (x = bits 17-29, y = bits 2-14, polarity = bit 1) and a µs timestamp word, extended by
tsOverflow << 31. Other packet types are skipped.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path

import numpy as np

from .base import (
    EVENT_DTYPE,
    DataError,
    EventRecord,
    EventSource,
    check_events,
    find_dirs,
    refetch_hint,
    sample_files,
    unique,
)

FOLDERS = ("ibmGestureTrain", "ibmGestureTest")  # tonic's layout: split 0, 1
TRIAL_LISTS = ("trials_to_train.txt", "trials_to_test.txt")  # IBM's layout: split 0, 1
LABELS_HEADER = "class,startTime_usec,endTime_usec"
NAME = "dvs128-gesture"
PACKET = struct.Struct("<HHIIIIII")  # the 28-byte AEDAT 3.1 packet header
POLARITY = 1  # eventType of polarity packets


class DVSGesture(EventSource):
    """IBM DVS128 Gesture (Amir et al. 2017): 11 gestures, 29 users, official train/test users."""

    name = NAME
    sensor = (128, 128)
    num_classes = 11
    official_split = True
    # The labelled gestures of the 98 recordings in trials_to_train.txt, 1,176 as SpikingJelly
    # counts them (1,464 in all, 288 test; README "Gesture release").
    official_train, total = 1176, 1464

    def records(self, raw: Path) -> list[EventRecord]:
        """The samples of whichever release lies under `raw`; DataError if none or both do."""
        ibm = sorted({p.parent for name in TRIAL_LISTS for p in sample_files(raw, name)})
        tonic = sorted(p for folder in FOLDERS for p in raw.glob(f"**/{folder}") if p.is_dir())
        if ibm and tonic:
            raise DataError(
                f"{raw}: two releases of DVS128 Gesture are there, IBM's ({ibm[0]}) and "
                f"tonic's ({tonic[0]}); keep one: delete the other's folder and archive"
            )
        if len(ibm) > 1:
            raise DataError(
                f"{ibm[0]} and {ibm[1]}: two copies of IBM's DvsGesture/ folder; "
                "delete one of the two extracted folders"
            )
        if ibm:
            return self._ibm_records(ibm[0])
        if not tonic:
            raise DataError(
                f"{raw}: no DVS128 Gesture release found (looked for IBM's DvsGesture/"
                f"{TRIAL_LISTS[0]} and tonic's {FOLDERS[0]}/ and {FOLDERS[1]}/ folders); "
                f"run `spikeattn download {self.name}` or extract DvsGesture.tar.gz there by hand"
            )
        return self._tonic_records(raw)

    def read(self, path: Path) -> np.ndarray:
        """All events of one file: a tonic .npy (one sample) or an IBM .aedat (~12 samples)."""
        if path.suffix == ".aedat":
            return read_aedat(path)
        if path.suffix == ".npy":
            return self._read_npy(path)
        raise DataError(f"{path}: not a DVS128 Gesture file (expected .aedat or .npy)")

    # ---- IBM's release ---------------------------------------------------------------------

    def _ibm_records(self, folder: Path) -> list[EventRecord]:
        """One record per labels row of each listed recording, ordered by split, file, row."""
        trials = [read_trials(folder / listing) for listing in TRIAL_LISTS]
        both = sorted(set(trials[0]) & set(trials[1]))
        if both:
            raise DataError(
                f"{folder}: {both[0]} is listed in both {TRIAL_LISTS[0]} and "
                f"{TRIAL_LISTS[1]}: " + refetch_hint(self.name)
            )
        found = []
        for split, names in enumerate(trials):
            for file in sorted(names):
                aedat = folder / file
                if not aedat.is_file():
                    raise DataError(
                        f"{aedat}: listed in {folder / TRIAL_LISTS[split]} but missing; "
                        + refetch_hint(self.name)
                    )
                found += [
                    EventRecord(aedat, cls - 1, split, aedat.stem, (start, end))
                    for cls, start, end in read_labels(aedat)
                ]
        return unique(found, self.name)

    # ---- tonic's release -------------------------------------------------------------------

    def _tonic_records(self, raw: Path) -> list[EventRecord]:
        for folder in FOLDERS:
            find_dirs(raw, f"**/{folder}", self.name, f"{folder}/ folder")
        found = []
        for path in sample_files(raw, "user*_*/*.npy"):
            if path.parent.parent.name in FOLDERS and path.stem.isdigit():
                label = int(path.stem)
                if label >= self.num_classes:
                    raise DataError(
                        f"{path}: label {label} is not one of the 11 gestures; "
                        "the folder belongs to another dataset"
                    )
                found.append(
                    EventRecord(
                        path, label, FOLDERS.index(path.parent.parent.name), path.parent.name
                    )
                )
        for split, folder in enumerate(FOLDERS):
            if not any(r.split == split for r in found):
                raise DataError(
                    f"{raw}: no {folder}/userNN_<lighting>/<label>.npy files; "
                    + refetch_hint(self.name)
                )
        return unique(
            sorted(found, key=lambda r: (r.split, r.group, r.label, str(r.path))), self.name
        )

    def _read_npy(self, path: Path) -> np.ndarray:
        """Columns x, y, p, t(ms) -> fields x, y, p, t(µs), as tonic does."""
        data = np.load(path, allow_pickle=False)
        if data.ndim != 2 or data.shape[1] != 4:
            raise DataError(
                f"{path}: expected an [N, 4] array of x, y, p, t, got shape {data.shape}; "
                + refetch_hint(self.name)
            )
        t = data[:, 3]
        if np.issubdtype(t.dtype, np.floating):  # ms stored as floats: round, do not truncate
            t = np.rint(t.astype(np.float64) * 1000)
        else:
            t = t.astype(np.int64) * 1000
        return np.rec.fromarrays(
            [data[:, 0], data[:, 1], data[:, 2], t.astype(np.int64)], names=("x", "y", "p", "t")
        )


def read_trials(listing: Path) -> list[str]:
    """The recordings (file names) an official split list names; blank lines are allowed."""
    if not listing.is_file():
        raise DataError(
            f"{listing}: missing (the official split of IBM's DvsGesture/); " + refetch_hint(NAME)
        )
    names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"{listing}: lists no recordings; " + refetch_hint(NAME))
    if len(set(names)) != len(names):
        raise DataError(f"{listing}: lists a recording twice; " + refetch_hint(NAME))
    return names


def labels_path(aedat: Path) -> Path:
    return aedat.with_name(aedat.stem + "_labels.csv")


def read_labels(aedat: Path) -> list[tuple[int, int, int]]:
    """(class 1-11, start µs, end µs) per gesture of one recording, checked."""
    csv = labels_path(aedat)
    if not csv.is_file():
        raise DataError(
            f"{csv}: missing, so the gestures of {aedat.name} are unknown; " + refetch_hint(NAME)
        )
    lines = [line.strip() for line in csv.read_text().splitlines() if line.strip()]
    if not lines or lines[0].lstrip("\ufeff").replace(" ", "") != LABELS_HEADER:
        raise DataError(f"{csv}: expected the header line {LABELS_HEADER!r}; " + refetch_hint(NAME))
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        try:
            cls, start, end = (int(v) for v in line.split(","))
        except ValueError:
            raise DataError(
                f"{csv}: line {i} ({line!r}) is not three integers class, start, end; "
                + refetch_hint(NAME)
            ) from None
        if not 1 <= cls <= 11:
            raise DataError(
                f"{csv}: line {i}: class {cls} is not one of the gestures 1-11; "
                + refetch_hint(NAME)
            )
        if not 0 <= start < end:
            raise DataError(
                f"{csv}: line {i}: start {start} µs is not before end {end} µs; "
                + refetch_hint(NAME)
            )
        rows.append((cls, start, end))
    if not rows:
        raise DataError(f"{csv}: no gestures listed; " + refetch_hint(NAME))
    return rows


def read_aedat(path: Path) -> np.ndarray:
    """Every polarity event of one recording, checked and time-sorted (read-only), after checking
    that each labelled gesture ends within it: a recording cut at a packet boundary shows only there."""
    stat = path.stat()
    events = _parse_cached(str(path), stat.st_mtime_ns, stat.st_size)
    last = int(events["t"][-1])
    for cls, start, end in read_labels(path):
        if end - 1 > last:
            raise DataError(
                f"{labels_path(path)}: the gesture [{start}, {end}) µs ends after the "
                f"last event of {path} ({last} µs): the recording is truncated; "
                + refetch_hint(NAME)
            )
    return events


@functools.lru_cache(maxsize=1)
def _parse_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """One parse serves the ~12 samples of a recording, whose records come one after another;
    the key holds mtime and size so that a replaced file is parsed again. The whole recording
    is checked (and time-sorted) once here; read_events then checks only each sample."""
    events = check_events(parse_aedat31(Path(path)), Path(path), DVSGesture.sensor, NAME)
    events.flags.writeable = False  # shared by every sample of the file
    return events


def parse_aedat31(path: Path) -> np.ndarray:
    """The polarity events of an AEDAT 3.1 file in EVENT_DTYPE, in file order."""
    data = path.read_bytes()
    if not data.startswith(b"#!AER-DAT3"):
        raise DataError(
            f"{path}: not an AEDAT 3.x file (its first line is {data[:20]!r}); "
            + refetch_hint(NAME)
        )
    pos = 0
    while True:  # header lines, each starting with '#', the last one #!END-HEADER
        eol = data.find(b"\n", pos)
        if eol < 0 or data[pos : pos + 1] != b"#":
            raise DataError(f"{path}: the header has no #!END-HEADER line; " + refetch_hint(NAME))
        line, pos = data[pos : eol + 1], eol + 1
        if line.rstrip(b"\r\n") == b"#!END-HEADER":
            break
    chunks = []
    while pos < len(data):
        if len(data) - pos < PACKET.size:
            raise DataError(
                f"{path}: truncated: a packet header at byte {pos} has "
                f"{len(data) - pos} of {PACKET.size} bytes; " + refetch_hint(NAME)
            )
        kind, _, size, _, overflow, capacity, _, _ = PACKET.unpack_from(data, pos)
        body, pos = pos + PACKET.size, pos + PACKET.size + capacity * size
        if pos > len(data):
            raise DataError(
                f"{path}: truncated: the packet at byte {body - PACKET.size} announces "
                f"{capacity * size} bytes of events, {len(data) - body} remain; "
                + refetch_hint(NAME)
            )
        if kind != POLARITY:
            continue
        if size != 8:
            raise DataError(
                f"{path}: a polarity packet at byte {body - PACKET.size} has "
                f"{size}-byte events, not 8; " + refetch_hint(NAME)
            )
        words = np.frombuffer(data, "<u4", count=2 * capacity, offset=body).reshape(-1, 2)
        chunks.append((words, overflow))
    events = np.empty(sum(len(w) for w, _ in chunks), EVENT_DTYPE)
    i = 0
    for words, overflow in chunks:
        part = events[i : i + len(words)]
        address = words[:, 0]
        part["x"] = (address >> 17) & 0x1FFF
        part["y"] = (address >> 2) & 0x1FFF
        part["p"] = (address >> 1) & 1
        part["t"] = words[:, 1].astype(np.int64) | (overflow << 31)
        i += len(words)
    return events
