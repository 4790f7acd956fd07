"""Tiny copies of the real event datasets, in their exact release formats and archive layouts.

Each `build_*` writes the dataset's archives into `raw` and unpacks them as `spikeattn download`
does (`raw/A.zip` -> `raw/A/`, then the source's `after_extract`), and returns the samples it
wrote as (path relative to raw, label, split, events in EVENT_DTYPE). The file writers are the
inverse of the readers: .npy of x, y, p, t(ms); ATIS 40-bit .bin; AEDAT 4.0 (hand-packed
FlatBuffers, no compression), so the tests need no extra dependency.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from spikeattn.data.archives import safe_extract
from spikeattn.data.sources import EVENT_DTYPE, get_source

Sample = tuple[str, int, "int | None", np.ndarray]


def make_events(seed: int, n: int, sensor: tuple[int, int], t_step: int = 1) -> np.ndarray:
    """`n` events inside an (H, W) sensor, strictly increasing t (a multiple of `t_step` µs)."""
    rng = np.random.default_rng(seed)
    events = np.empty(n, EVENT_DTYPE)
    events["x"] = rng.integers(0, sensor[1], n)
    events["y"] = rng.integers(0, sensor[0], n)
    events["t"] = np.cumsum(rng.integers(1, 50, n)) * t_step
    events["p"] = rng.integers(0, 2, n).astype(bool)
    events["x"][0], events["y"][0] = sensor[1] - 1, sensor[0] - 1  # the far corner is inside
    return events


# ---- file formats -------------------------------------------------------------------------


def npy_bytes(events: np.ndarray, dtype=np.float64) -> bytes:
    """tonic's DVSGesture .npy: [N, 4] columns x, y, p, t in milliseconds."""
    table = np.stack([events["x"], events["y"], events["p"], events["t"] // 1000], axis=1).astype(
        dtype
    )
    buf = io.BytesIO()
    np.save(buf, table)
    return buf.getvalue()


def atis_bytes(events: np.ndarray) -> bytes:
    """N-MNIST/N-Caltech101 .bin: 5 bytes per event, x, y, p<<7 | t[22:16], t[15:8], t[7:0]."""
    t = events["t"].astype(np.int64)
    assert (t < 2**23).all() and (events["y"] != 240).all()  # no timestamp-overflow records
    rows = np.stack(
        [
            events["x"],
            events["y"],
            (events["p"].astype(np.int64) << 7) | (t >> 16),
            (t >> 8) & 0xFF,
            t & 0xFF,
        ],
        axis=1,
    )
    return rows.astype(np.uint8).tobytes()


def _pad(buf: bytearray, align: int) -> None:
    buf.extend(b"\0" * (-len(buf) % align))


def _ioheader(description: str) -> bytes:
    """FlatBuffers `Ioheader {compression: int32 = None; file_data_position: int64 = -1;
    description: string}` with only the description set (defaults: no compression, and -1 so
    readers stop at the end of the file), identifier "IOHE"."""
    buf = bytearray(b"\0\0\0\0IOHE")  # root uoffset (patched), file identifier
    vtable = len(buf)
    buf += struct.pack("<5H", 10, 8, 0, 0, 4)  # vtable bytes, table bytes, field offsets 0, 1, 2
    _pad(buf, 8)
    table = len(buf)
    buf += struct.pack("<iI", table - vtable, 0)  # soffset to the vtable, description uoffset
    text = description.encode()
    string = len(buf)
    buf += struct.pack("<I", len(text)) + text + b"\0"
    _pad(buf, 8)
    struct.pack_into("<I", buf, 0, table)
    struct.pack_into("<I", buf, table + 4, string - (table + 4))
    return bytes(buf)


def _event_packet(events: np.ndarray) -> bytes:
    """Size-prefixed FlatBuffers `EventPacket {elements: [Event]}`, identifier "EVTS"; Event is
    a 16-byte struct {t int64, x int16, y int16, on bool, 3 bytes padding}."""
    buf = bytearray(b"\0\0\0\0\0\0\0\0EVTS")  # size prefix, root uoffset (patched), identifier
    vtable = len(buf)
    buf += struct.pack("<3H", 6, 8, 4)
    _pad(buf, 4)
    table = len(buf)
    buf += struct.pack("<iI", table - vtable, 0)  # soffset, elements uoffset (patched)
    buf += b"\0" * (-(len(buf) + 4) % 8)  # the vector's elements start 8-aligned
    vector = len(buf)
    buf += struct.pack("<I", len(events))
    for e in events:
        buf += struct.pack("<qhh?3x", int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"]))
    struct.pack_into("<I", buf, 0, len(buf) - 4)
    struct.pack_into("<I", buf, 4, table - 4)
    struct.pack_into("<I", buf, table + 4, vector - (table + 4))
    return bytes(buf)


DV_DESCRIPTION = (
    '<dv version="2.0"><node name="outInfo" path="/mainloop/output_file/outInfo/">'
    '<node name="0" path="/mainloop/output_file/outInfo/0/">'
    '<attr key="compression" type="string">NONE</attr>'
    '<attr key="originalModuleName" type="string">capture</attr>'
    '<attr key="originalOutputName" type="string">events</attr>'
    '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
    '<attr key="typeIdentifier" type="string">EVTS</attr>'
    '<node name="info" path="/mainloop/output_file/outInfo/0/info/">'
    '<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
    '<attr key="source" type="string">DVS128</attr></node></node></node></dv>'
)


def aedat4_bytes(events: np.ndarray, sensor=(128, 128), packets: int = 2) -> bytes:
    """AEDAT 4.0: magic line, int32 IOHeader size, IOHeader, then per packet int32 stream id,
    int32 size, EventPacket (one events stream, id 0, uncompressed)."""
    header = _ioheader(DV_DESCRIPTION.format(width=sensor[1], height=sensor[0]))
    out = bytearray(b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header)
    for chunk in np.array_split(events, packets):
        body = _event_packet(chunk)
        out += struct.pack("<iI", 0, len(body)) + body
    return bytes(out)


# ---- archives -----------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_gz_bytes(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    """A .tar.gz of `members`; `symlink` adds a link of that name to /etc/passwd (a hostile archive)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
    return buf.getvalue()


def install(raw: Path, name: str, archives: dict[str, bytes]) -> None:
    """What `spikeattn download` does with verified archives: keep, unpack, after_extract."""
    raw.mkdir(parents=True, exist_ok=True)
    for file, data in archives.items():
        (raw / file).write_bytes(data)
        stem = file.removesuffix(".tar.gz").removesuffix(".zip")
        safe_extract(raw / file, raw / stem)
    get_source(name).after_extract(raw)


# ---- datasets -----------------------------------------------------------------------------


def build_gesture(raw: Path) -> list[Sample]:
    """ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz -> ibmGesture*/userNN_<lighting>/<label>.npy."""
    files = {  # (archive folder, user folder, label): written as float64 or int64 arrays
        ("ibmGestureTrain", "user01_fluorescent", 0): np.float64,
        ("ibmGestureTrain", "user01_fluorescent", 10): np.int64,
        ("ibmGestureTrain", "user02_led", 3): np.float64,
        ("ibmGestureTest", "user24_natural", 7): np.float32,
    }
    samples, archives = [], {"ibmGestureTrain.tar.gz": {}, "ibmGestureTest.tar.gz": {}}
    for i, ((folder, user, label), dtype) in enumerate(files.items()):
        events = make_events(i, 6 + i, (128, 128), t_step=1000)  # whole milliseconds
        member = f"{folder}/{user}/{label}.npy"
        archives[f"{folder}.tar.gz"][member] = npy_bytes(events, dtype)
        samples.append((f"{folder}/{member}", label, int(folder == "ibmGestureTest"), events))
    install(raw, "dvs128-gesture", {f: tar_gz_bytes(m) for f, m in archives.items()})
    return samples


def build_nmnist(raw: Path) -> list[Sample]:
    """train.zip / test.zip -> Train/<digit>/NNNNN.bin and Test/<digit>/NNNNN.bin."""
    files = [
        ("Train", 0, "00002.bin"),
        ("Train", 0, "00010.bin"),
        ("Train", 9, "00001.bin"),
        ("Test", 4, "00003.bin"),
        ("Test", 5, "00004.bin"),
    ]
    samples, archives = [], {"train.zip": {}, "test.zip": {}}
    for i, (folder, digit, file) in enumerate(files):
        events = make_events(10 + i, 5 + i, (34, 34))
        member = f"{folder}/{digit}/{file}"
        archives[f"{folder.lower()}.zip"][member] = atis_bytes(events)
        samples.append((f"{folder.lower()}/{member}", digit, int(folder == "Test"), events))
    install(raw, "n-mnist", {f: zip_bytes(m) for f, m in archives.items()})
    return samples


def build_ncaltech101(raw: Path) -> list[Sample]:
    """N-Caltech101-archive.zip holding Caltech101.zip (Caltech101/<class>/image_NNNN.bin) and
    Caltech101_annotations.zip (also .bin files, which are not samples)."""
    files = [  # two of each class, so a per-class split can test one (splits.per_class_split)
        ("BACKGROUND_Google", 0, "image_0001.bin"),
        ("BACKGROUND_Google", 0, "image_0002.bin"),
        ("Faces_easy", 1, "image_0002.bin"),
        ("Faces_easy", 1, "image_0004.bin"),
        ("yin_yang", 100, "image_0001.bin"),
        ("yin_yang", 100, "image_0003.bin"),
    ]
    samples, inner, notes = [], {}, {}
    for i, (cls, label, file) in enumerate(files):
        events = make_events(20 + i, 7 + i, (180, 240))
        inner[f"Caltech101/{cls}/{file}"] = atis_bytes(events)
        notes[f"Caltech101_annotations/{cls}/{file.replace('image', 'annotation')}"] = b"\x01" * 12
        samples.append(
            (f"N-Caltech101-archive/Caltech101/Caltech101/{cls}/{file}", label, None, events)
        )
    outer = zip_bytes(
        {"Caltech101.zip": zip_bytes(inner), "Caltech101_annotations.zip": zip_bytes(notes)}
    )
    install(raw, "n-caltech101", {"N-Caltech101-archive.zip": outer})
    return samples


def build_cifar10dvs(raw: Path) -> list[Sample]:
    """CIFAR10DVS.zip holding <class>.zip, each with <class>/cifar10_<class>_<i>.aedat4."""
    files = [  # two of each class, so a per-class split can test one (splits.per_class_split)
        ("airplane", 0, 0),
        ("airplane", 0, 1),
        ("cat", 3, 0),
        ("cat", 3, 2),
        ("truck", 9, 5),
        ("truck", 9, 6),
    ]
    samples, inner = [], {}
    for i, (cls, label, k) in enumerate(files):
        events = make_events(30 + i, 8 + i, (128, 128))
        member = f"{cls}/cifar10_{cls}_{k}.aedat4"
        inner.setdefault(f"{cls}.zip", {})[member] = aedat4_bytes(events)
        samples.append((f"CIFAR10DVS/{cls}/{member}", label, None, events))
    outer = zip_bytes({file: zip_bytes(members) for file, members in inner.items()})
    install(raw, "cifar10-dvs", {"CIFAR10DVS.zip": outer})
    return samples


# dataset name -> (builder, writer of one file's bytes from events)
LAYOUTS = {
    "dvs128-gesture": (build_gesture, npy_bytes),
    "n-mnist": (build_nmnist, atis_bytes),
    "n-caltech101": (build_ncaltech101, atis_bytes),
    "cifar10-dvs": (build_cifar10dvs, aedat4_bytes),
}


# ---- IBM's original DVS128 Gesture release (AEDAT 3.1) -------------------------------------

AEDAT31_HEADER = (
    b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
    b"#Start-Time: 2017-01-01 12:00:00 (TZ+0000)\r\n#!END-HEADER\r\n"
)


def _aedat31_packet(kind: int, size: int, overflow: int, body: bytes, count: int) -> bytes:
    """28-byte header (type, source, size, ts offset, ts overflow, capacity, number, valid) + body."""
    return struct.pack("<HHIIIIII", kind, 1, size, 4, overflow, count, count, count) + body


def aedat31_bytes(events: np.ndarray, packets: int = 2, extra_packet_types: bool = True) -> bytes:
    """AEDAT 3.1 as jAER/cAER write it: '#' header lines, then packets (tsOverflow 0). Polarity
    events (type 1, 8 bytes): data word x << 17 | y << 2 | p << 1 | valid, then t (µs, u32).
    `extra_packet_types` adds a special-event packet (type 0) first and an IMU6 packet (type 3,
    36-byte events) between polarity packets: readers must skip both."""
    assert (events["t"] < 2**31).all()
    out = bytearray(AEDAT31_HEADER)
    if extra_packet_types:
        out += _aedat31_packet(0, 8, 0, struct.pack("<II", 1 << 1 | 1, 0), 1)  # a timestamp reset
    for k, chunk in enumerate(np.array_split(events, packets)):
        body = b"".join(
            struct.pack(
                "<II", int(e["x"]) << 17 | int(e["y"]) << 2 | int(e["p"]) << 1 | 1, int(e["t"])
            )
            for e in chunk
        )
        out += _aedat31_packet(1, 8, 0, body, len(chunk))
        if extra_packet_types and k == 0:
            out += _aedat31_packet(3, 36, 0, bytes(range(72)), 2)
    return bytes(out)


def labels_csv_bytes(rows: list[tuple[int, int, int]]) -> bytes:
    """userNN_<lighting>_labels.csv: header, then class (1-11), startTime_usec, endTime_usec."""
    return (
        "class,startTime_usec,endTime_usec\r\n" + "".join(f"{c},{s},{e}\r\n" for c, s, e in rows)
    ).encode()


# recording -> (split, labels of its gestures in recording order); groups sort like tonic's
GESTURE_TRIALS = {
    "user01_fluorescent": (0, [0, 3, 10]),
    "user02_led": (0, [1, 2]),
    "user24_natural": (1, [4, 7]),
}


def gesture_trials(
    trials=GESTURE_TRIALS,
) -> dict[str, tuple[int, list[tuple[int, np.ndarray]], np.ndarray]]:
    """Per recording: split, [(label, the gesture's events)], and the whole recording (gestures
    with unlabelled events before, between and after them). Timestamps are whole milliseconds,
    so tonic's .npy (ms) holds the very same events."""
    out = {}
    for i, (trial, (split, labels)) in enumerate(trials.items()):
        parts, gestures, t = [], [], 0
        for k, label in enumerate([None, *labels]):
            events = make_events(
                100 * i + k, 3 if label is None else 12 + k, (128, 128), t_step=1000
            )
            events["t"] += t
            t = int(events["t"][-1]) + 20_000
            parts.append(events)
            if label is not None:
                gestures.append((label, events))
        tail = make_events(100 * i + 99, 3, (128, 128), t_step=1000)
        tail["t"] += t
        out[trial] = (split, gestures, np.concatenate([*parts, tail]))
    return out


def gesture_ibm_members(trials=GESTURE_TRIALS) -> dict[str, bytes]:
    """The members of IBM's DvsGesture.tar.gz for `trials`: spans [first t, last t + 1) µs."""
    members = {}
    lists = {0: "", 1: "\r\n"}  # blank lines are allowed
    for trial, (split, gestures, recording) in gesture_trials(trials).items():
        members[f"DvsGesture/{trial}.aedat"] = aedat31_bytes(recording)
        rows = [(label + 1, int(ev["t"][0]), int(ev["t"][-1]) + 1) for label, ev in gestures]
        members[f"DvsGesture/{trial}_labels.csv"] = labels_csv_bytes(rows)
        lists[split] += f"{trial}.aedat\r\n"
    members["DvsGesture/trials_to_train.txt"] = lists[0].encode()
    members["DvsGesture/trials_to_test.txt"] = lists[1].encode()
    members["DvsGesture/gesture_mapping.csv"] = b"action,label\n" + b"".join(
        f"gesture {k},{k}\n".encode() for k in range(1, 12)
    )  # in the release; not a labels file
    return members


def gesture_tonic_members(trials=GESTURE_TRIALS) -> dict[str, dict[str, bytes]]:
    """The same gestures as tonic's ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz."""
    archives = {f"{folder}.tar.gz": {} for folder in ("ibmGestureTrain", "ibmGestureTest")}
    for trial, (split, gestures, _) in gesture_trials(trials).items():
        folder = ("ibmGestureTrain", "ibmGestureTest")[split]
        for label, events in gestures:
            archives[f"{folder}.tar.gz"][f"{folder}/{trial}/{label}.npy"] = npy_bytes(events)
    return archives


def build_gesture_ibm(
    raw: Path, trials=GESTURE_TRIALS
) -> list[tuple[str, int, int, np.ndarray, tuple[int, int]]]:
    """DvsGesture.tar.gz -> raw/DvsGesture/DvsGesture/...; returns (path relative to raw, label,
    split, events, span) per gesture in the reader's order (split, recording, row)."""
    install(raw, "dvs128-gesture", {"DvsGesture.tar.gz": tar_gz_bytes(gesture_ibm_members(trials))})
    samples = []
    for trial, (split, gestures, _) in sorted(
        gesture_trials(trials).items(), key=lambda kv: (kv[1][0], kv[0])
    ):
        for label, events in gestures:
            span = (int(events["t"][0]), int(events["t"][-1]) + 1)
            samples.append((f"DvsGesture/DvsGesture/{trial}.aedat", label, split, events, span))
    return samples
