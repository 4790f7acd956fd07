"""DVS128 Gesture from IBM's original release (AEDAT 3.1 recordings + labels csv + trial lists),
on tiny recordings written byte by byte by layouts_events, next to tonic's layout."""

import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from layouts_events import (
    aedat31_bytes,
    build_gesture,
    build_gesture_ibm,
    gesture_ibm_members,
    gesture_tonic_members,
    labels_csv_bytes,
    make_events,
    tar_gz_bytes,
)

from spikeattn.data import download, load_frames, preprocess
from spikeattn.data.loader import batches
from spikeattn.data.sources import EVENT_DTYPE, DataError, gesture, get_source, read_events

NAME = "dvs128-gesture"
REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())["datasets"][NAME]


@pytest.fixture
def ibm(tmp_path):
    """(raw, samples, source) with IBM's release extracted as `spikeattn download` does."""
    raw = tmp_path / "data" / "raw" / NAME
    return raw, build_gesture_ibm(raw), get_source(NAME)


def folder(raw: Path) -> Path:
    return raw / "DvsGesture" / "DvsGesture"


def test_records_follow_the_labels_and_the_trial_lists(ibm):
    raw, samples, source = ibm
    records = source.records(raw)
    assert [(r.path, r.label, r.split, r.span) for r in records] == [
        (raw / path, label, split, span) for path, label, split, _, span in samples
    ]
    assert [r.group for r in records] == ["user01_fluorescent"] * 3 + ["user02_led"] * 2 + [
        "user24_natural"
    ] * 2
    assert [r.label for r in records] == [0, 3, 10, 1, 2, 4, 7]  # classes 1..11 -> 0..10
    assert [r.split for r in records] == [0] * 5 + [1] * 2
    assert source.records(raw) == records  # deterministic


def test_each_gesture_round_trips_exactly(ibm):
    raw, samples, source = ibm
    for record, (*_, events, span) in zip(source.records(raw), samples):
        got = read_events(source, record)
        assert got.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(got, events)  # x, y, t (µs), p; nothing before or after


def test_a_sample_is_the_events_with_start_le_t_lt_end(ibm):
    raw, _, source = ibm
    events = make_events(7, 8, (128, 128))
    events["t"] = [10, 999, 1000, 1001, 1999, 2000, 2001, 5000]
    (folder(raw) / "user01_fluorescent.aedat").write_bytes(aedat31_bytes(events, packets=3))
    (folder(raw) / "user01_fluorescent_labels.csv").write_bytes(
        labels_csv_bytes([(1, 1000, 2000), (2, 999, 1000)])
    )
    first, second = source.records(raw)[:2]
    assert read_events(source, first)["t"].tolist() == [1000, 1001, 1999]
    np.testing.assert_array_equal(read_events(source, second), events[1:2])


def test_events_across_packets_and_the_timestamp_overflow(tmp_path):
    events = make_events(3, 9, (128, 128))
    for packets, extra in ((1, False), (4, True)):
        path = tmp_path / f"r{packets}.aedat"
        path.write_bytes(aedat31_bytes(events, packets=packets, extra_packet_types=extra))
        np.testing.assert_array_equal(gesture.parse_aedat31(path), events)
    late = struct.pack("<HHIIIIII", 1, 1, 8, 4, 1, 1, 1, 1) + struct.pack(
        "<II", 5 << 17 | 6 << 2 | 1, 7
    )
    path.write_bytes(aedat31_bytes(events) + late)  # tsOverflow 1: t = 7 | 1 << 31
    got = gesture.parse_aedat31(path)
    assert got[-1].tolist() == (5, 6, 2**31 + 7, False) and len(got) == len(events) + 1


def test_one_parse_serves_every_gesture_of_a_recording(ibm):
    raw, _, source = ibm
    gesture._parse_cached.cache_clear()
    records = source.records(raw)
    for record in records:
        read_events(source, record)
    assert gesture._parse_cached.cache_info().misses == len({r.path for r in records}) == 3
    path = records[-1].path  # a replaced file is parsed again
    path.write_bytes(path.read_bytes() + struct.pack("<HHIIIIII", 2, 1, 8, 4, 0, 0, 0, 0))
    read_events(source, records[-1])
    assert gesture._parse_cached.cache_info().misses == 4


def test_tonic_layout_is_still_read_and_both_layouts_are_refused(tmp_path):
    raw = tmp_path / "raw"
    samples = build_gesture(raw)
    records = get_source(NAME).records(raw)
    assert [r.path.suffix for r in records] == [".npy"] * len(samples) and all(
        r.span is None for r in records
    )
    build_gesture_ibm(raw)
    with pytest.raises(DataError, match="two releases") as err:
        get_source(NAME).records(raw)
    assert "keep one" in str(err.value)


def test_no_release_at_all_names_both(tmp_path):
    (tmp_path / "raw" / "DvsGesture").mkdir(parents=True)
    with pytest.raises(DataError, match="DvsGesture/trials_to_train.txt.*ibmGestureTrain"):
        get_source(NAME).records(tmp_path / "raw")


def test_a_second_extracted_copy_is_refused(ibm):
    raw, _, source = ibm
    shutil.copytree(folder(raw), raw / "copy" / "DvsGesture")
    with pytest.raises(DataError, match="two copies"):
        source.records(raw)


def _truncated_header(f: Path) -> str:
    f.write_bytes(f.read_bytes() + struct.pack("<HHI", 1, 1, 8))
    return f.name


def _truncated_body(f: Path) -> str:
    f.write_bytes(f.read_bytes()[:-5])
    return f.name


def _event_size(f: Path) -> str:
    f.write_bytes(f.read_bytes() + struct.pack("<HHIIIIII", 1, 1, 12, 4, 0, 1, 1, 1) + bytes(12))
    return f.name


def _outside(f: Path) -> str:  # between two gestures: the whole recording is checked
    f.write_bytes(
        f.read_bytes()
        + struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, 1, 1, 1)
        + struct.pack("<II", 128 << 17 | 1, 5)
    )
    return f.name


def _header(old: bytes, new: bytes):
    def edit(f: Path) -> str:
        f.write_bytes(f.read_bytes().replace(old, new, 1))
        return f.name

    return edit


def _labels(row: str):
    def edit(f: Path) -> str:
        csv = f.with_name(f.stem + "_labels.csv")
        csv.write_text(csv.read_text() + row + "\r\n")
        return csv.name

    return edit


def _past_the_end(f: Path) -> str:
    last = int(gesture.parse_aedat31(f)["t"].max())
    return _labels(f"3,{last - 10},{last + 2}")(f)


def _missing(suffix: str):
    def edit(f: Path) -> str:
        victim = f.with_name(f.stem + suffix)
        victim.unlink()
        return victim.name

    return edit


BAD_READS = {
    "truncated packet header": _truncated_header,
    "truncated packet body": _truncated_body,
    "polarity events not 8 bytes": _event_size,
    "gesture ends after the recording": _past_the_end,
    "event outside the sensor": _outside,
    "AEDAT 2.0": _header(b"#!AER-DAT3.1", b"#!AER-DAT2.0"),
    "no end of header": _header(b"#!END-HEADER", b"#!END-HEADEX"),
}
BAD_RECORDS = {
    "class 0": _labels("0,1,2"),
    "class 12": _labels("12,1,2"),
    "start = end": _labels("3,5,5"),
    "start > end": _labels("3,9,5"),
    "not integers": _labels("3,a,5"),
    "labels csv missing": _missing("_labels.csv"),
    "aedat missing": _missing(".aedat"),
}


@pytest.mark.parametrize("case", sorted(BAD_READS))
def test_a_bad_recording_fails_its_read_naming_the_file(case, ibm):
    raw, _, source = ibm
    victim = BAD_READS[case](folder(raw) / "user24_natural.aedat")
    record = source.records(raw)[-1]
    with pytest.raises(DataError, match="spikeattn download") as err:
        read_events(source, record)
    assert str(folder(raw) / victim) in str(err.value)


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_bad_labels_file_or_listing_fails_naming_the_file(case, ibm):
    raw, _, source = ibm
    victim = BAD_RECORDS[case](folder(raw) / "user02_led.aedat")
    with pytest.raises(DataError, match="spikeattn download") as err:
        source.records(raw)
    assert str(folder(raw) / victim) in str(err.value)


def test_a_recording_in_both_trial_lists_is_refused(ibm):
    raw, _, source = ibm
    listing = folder(raw) / "trials_to_test.txt"
    listing.write_text(listing.read_text() + "user01_fluorescent.aedat\n")
    with pytest.raises(DataError, match="user01_fluorescent.aedat is listed in both"):
        source.records(raw)


def test_a_gesture_without_events_names_the_file_and_span(ibm):
    raw, samples, source = ibm
    csv = folder(raw) / "user02_led_labels.csv"
    end = samples[3][4][0]  # the gap before user02's first gesture holds no events
    csv.write_bytes(labels_csv_bytes([(2, end - 15_000, end)]))
    record = source.records(raw)[3]
    with pytest.raises(DataError, match=rf"no events in \[{end - 15_000}, {end}\)") as err:
        read_events(source, record)
    assert str(record.path) in str(err.value)


def _download(tmp_path: Path, archives: dict[str, bytes], params: dict) -> Path:
    """`root` after downloading `archives` from a file:// mirror."""
    mirror, root = tmp_path / "mirror", tmp_path / "root"
    mirror.mkdir(parents=True)
    for file, data in archives.items():
        (mirror / file).write_bytes(data)
    params["archives"] = [
        {"file": f, "md5": hashlib.md5(d).hexdigest(), "urls": [(mirror / f).as_uri()]}
        for f, d in archives.items()
    ]
    download(NAME, params, root)
    return root


def test_same_events_give_identical_frames_in_both_releases(tmp_path):
    tonic = {f: tar_gz_bytes(m) for f, m in gesture_tonic_members().items()}
    ibm = {"DvsGesture.tar.gz": tar_gz_bytes(gesture_ibm_members())}
    frames = {}
    for release, archives, workers in (("tonic", tonic, 1), ("ibm", ibm, 2)):
        params = dict(PARAMS)
        root = _download(tmp_path / release, archives, params)
        frames[release] = load_frames(preprocess(NAME, params, 4, root, workers=workers))
    a, b = frames["tonic"], frames["ibm"]
    for part in ("train", "test"):
        x, y = getattr(a, part), getattr(b, part)
        for field in ("t", "address", "offsets", "y"):  # MA-SNN's time windows keep the events
            assert torch.equal(getattr(x, field), getattr(y, field)), field
        assert a.meta[part] == b.meta[part]  # files and groups
        framed = [
            torch.cat([batch.x for batch in batches(f, PARAMS, part, 3, 4, seed=0)]) for f in (a, b)
        ]
        assert framed[0].sum() > 0 and torch.equal(*framed)
    assert a.meta["counts"] == b.meta["counts"] == {"train": 5, "test": 2}
