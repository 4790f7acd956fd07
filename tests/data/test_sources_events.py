"""Readers of the real event datasets, on tiny copies built in each release's exact layout."""

import shutil
import sys

import numpy as np
import pytest
from layouts_events import LAYOUTS, aedat4_bytes, make_events

from spikeattn.data.archives import safe_extract
from spikeattn.data.sources import EVENT_DTYPE, DataError, get_source, read_events
from spikeattn.data.sources.atis_bin import CALTECH101_CLASSES

NAMES = list(LAYOUTS)


def build(name, tmp_path):
    raw = tmp_path / "data" / "raw" / name
    return raw, LAYOUTS[name][0](raw)


@pytest.mark.parametrize("name", NAMES)
def test_records_and_events_round_trip(name, tmp_path):
    raw, samples = build(name, tmp_path)
    source = get_source(name)
    records = source.records(raw)
    expected = sorted(samples, key=lambda s: (s[2] or 0, s[1], s[0]))
    if name == "dvs128-gesture":  # ordered by split, user folder, label
        expected = sorted(samples, key=lambda s: (s[2], s[0].split("/")[2], s[1]))
    assert [r.path for r in records] == [raw / s[0] for s in expected]
    assert [(r.label, r.split) for r in records] == [(s[1], s[2]) for s in expected]
    assert all(0 <= r.label < source.num_classes for r in records)
    assert source.official_split == all(r.split is not None for r in records)
    for record, (_, _, _, events) in zip(records, expected):
        got = read_events(source, record)
        assert got.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(got, events)  # x, y, t (µs), p: exactly
    assert source.records(raw) == records  # deterministic


def test_gesture_groups_are_user_and_lighting(tmp_path):
    raw, _ = build("dvs128-gesture", tmp_path)
    groups = [r.group for r in get_source("dvs128-gesture").records(raw)]
    assert groups == ["user01_fluorescent"] * 2 + ["user02_led", "user24_natural"]


def test_gesture_fractional_milliseconds_round_to_the_nearest_microsecond(tmp_path):
    raw, _ = build("dvs128-gesture", tmp_path)
    source = get_source("dvs128-gesture")
    record = source.records(raw)[0]
    np.save(record.path, np.array([[1, 2, 1, 1.001], [3, 4, 0, 1.005]]))  # 1.001 * 1000 < 1001
    assert read_events(source, record)["t"].tolist() == [1001, 1005]  # tonic truncates: 1000, 1004


def test_aedat4_writer_decodes_through_tonic(tmp_path):
    from tonic.io import read_aedat4

    events = make_events(0, 11, (128, 128))
    events["t"] += 2**40  # 64-bit timestamps survive
    path = tmp_path / "sample.aedat4"
    path.write_bytes(aedat4_bytes(events, packets=3))
    got = read_aedat4(str(path))
    for field, want in (("t", "t"), ("x", "x"), ("y", "y"), ("on", "p")):
        np.testing.assert_array_equal(got[field], events[want])


def test_inner_archives_are_unpacked_once(tmp_path):
    for name in ("n-caltech101", "cifar10-dvs"):
        raw, samples = build(name, tmp_path)
        marker = (raw / samples[0][0]).parent / "marker"
        marker.write_text("kept")  # unpacking again would replace the whole folder
        get_source(name).after_extract(raw)
        assert marker.read_text() == "kept"
        assert len(get_source(name).records(raw)) == len(samples)


def test_caltech_ignores_annotation_files_and_labels_by_fixed_class_list(tmp_path):
    raw, samples = build("n-caltech101", tmp_path)
    source = get_source("n-caltech101")
    outer = raw / "N-Caltech101-archive"
    safe_extract(outer / "Caltech101_annotations.zip", outer / "Caltech101_annotations")
    assert len(source.records(raw)) == len(samples)  # annotation .bin files are not samples
    assert len(CALTECH101_CLASSES) == source.num_classes == 101
    assert CALTECH101_CLASSES[0] == "BACKGROUND_Google" and list(CALTECH101_CLASSES) == sorted(
        CALTECH101_CLASSES
    )
    stray = outer / "Caltech101" / "Caltech101" / "not_a_class"
    stray.mkdir()
    (stray / "image_0001.bin").write_bytes(b"\0" * 5)
    with pytest.raises(DataError, match="not_a_class"):
        source.records(raw)


@pytest.mark.parametrize("name", NAMES)
def test_truncated_file_names_the_file(name, tmp_path):
    raw, _ = build(name, tmp_path)
    source = get_source(name)
    record = source.records(raw)[-1]
    data = record.path.read_bytes()
    record.path.write_bytes(data[:-3])
    with pytest.raises(DataError) as err:
        read_events(source, record)
    assert str(record.path) in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_event_outside_the_sensor_names_the_file(name, tmp_path):
    raw, _ = build(name, tmp_path)
    source = get_source(name)
    record = source.records(raw)[0]
    height, width = source.sensor
    events = make_events(5, 4, source.sensor, t_step=1000)
    events["x"][2] = width  # one column past the edge
    record.path.write_bytes(LAYOUTS[name][1](events))
    with pytest.raises(DataError, match="outside") as err:
        read_events(source, record)
    assert str(record.path) in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_missing_layout_raises(name, tmp_path):
    raw = tmp_path / "data" / "raw" / name
    with pytest.raises(DataError):
        get_source(name).records(raw)  # no folder at all
    raw.mkdir(parents=True)
    (raw / "unrelated").mkdir()
    with pytest.raises(DataError):
        get_source(name).records(raw)  # a folder, but not the dataset's layout


@pytest.mark.parametrize(
    "name, folder", [("dvs128-gesture", "ibmGestureTest"), ("n-mnist", "test")]
)
def test_official_split_needs_both_parts(name, folder, tmp_path):
    raw, _ = build(name, tmp_path)
    shutil.rmtree(raw / folder)
    with pytest.raises(DataError, match="Test"):
        get_source(name).records(raw)


def test_a_second_extracted_copy_is_refused(tmp_path):
    raw, _ = build("n-mnist", tmp_path)
    shutil.copytree(raw / "train", raw / "copy_of_train")
    with pytest.raises(DataError, match="two copies"):
        get_source("n-mnist").records(raw)


def test_cifar10dvs_without_aedat_says_what_to_install(tmp_path, monkeypatch):
    raw, _ = build("cifar10-dvs", tmp_path)
    source = get_source("cifar10-dvs")
    record = source.records(raw)[0]
    monkeypatch.setitem(sys.modules, "aedat", None)  # import aedat now raises ImportError
    with pytest.raises(DataError, match="aedat==2.3.0"):
        read_events(source, record)


def test_hidden_and_macos_folders_are_skipped(tmp_path):
    raw, samples = build("n-mnist", tmp_path)
    good = raw / samples[0][0]
    for junk in (
        "__MACOSX/train/Train/0/._00002.bin",
        ".train.x1y2.tmp/Train/0/00002.bin",
        "train/Train/0/._00002.bin",
    ):
        (raw / junk).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(good, raw / junk)
    assert [r.path for r in get_source("n-mnist").records(raw)] == [raw / s[0] for s in samples]


def test_empty_recording_is_refused(tmp_path):
    raw, _ = build("n-mnist", tmp_path)
    source = get_source("n-mnist")
    record = source.records(raw)[0]
    record.path.write_bytes(b"")
    with pytest.raises(DataError, match="no events"):
        read_events(source, record)
