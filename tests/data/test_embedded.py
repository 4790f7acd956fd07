"""The embedded datasets: parameter checks, the simulated event camera, raw files and split."""

import hashlib
import json

import numpy as np
import pytest
import tonic
from sklearn.datasets import load_digits

from spikeattn.data import DATASETS, check_params, download, get_info, load_events, prepare
from spikeattn.data.embedded import (
    digit_images,
    pad_digits,
    render,
    saccade_offsets,
    simulate_events,
    upsample,
)
from spikeattn.data.splits import per_class_split

DIGITS = {
    "source": "embedded",
    "image_size": 16,
    "test_fraction": 0.2,
    "split_seed": 0,
    "max_samples": None,
}
DVS = {
    "source": "embedded",
    "digit_size": 16,
    "sensor_size": 24,
    "saccade_px": 3,
    "saccade_ms": 100,
    "step_us": 1000,
    "threshold": 0.25,
    "threshold_sigma": 0.03,
    "seed": 0,
    "test_fraction": 0.2,
    "split_seed": 0,
    "max_samples": 120,
}
DURATION_US = 3 * DVS["saccade_ms"] * 1000


@pytest.fixture(scope="module")
def dvs_raw(tmp_path_factory):
    return prepare("digits-dvs", DVS, tmp_path_factory.mktemp("root"))


@pytest.fixture(scope="module")
def dvs_samples(dvs_raw):
    samples, labels, split = load_events(dvs_raw)
    return samples, labels, split


def _simulate(n, **changes):
    params = {**DVS, **changes}
    images, _ = digit_images(n)
    return simulate_events(upsample(images, params["digit_size"]) / 16, params)


# --- registry and parameters ---------------------------------------------------------------


def test_registry_describes_both_datasets():
    assert DATASETS["digits"].kind == "static" and DATASETS["digits"].in_channels == 1
    assert DATASETS["digits-dvs"].kind == "events" and DATASETS["digits-dvs"].in_channels == 2
    assert DATASETS["digits"].input_size(DIGITS) == (16, 16)
    assert DATASETS["digits-dvs"].input_size(DVS) == (24, 24)
    assert set(DATASETS["digits-dvs"].schema["required"]) == set(DVS)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(KeyError, match="digits, digits-dvs"):
        get_info("mnist")


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"threshold": 0},
            r"datasets\.digits-dvs\.threshold: 0 is less than or equal to the minimum",
        ),
        ({"seed": 1.5}, r"datasets\.digits-dvs\.seed: 1\.5 is not of type 'integer'"),
        ({"source": "download"}, r"datasets\.digits-dvs\.source: 'embedded' was expected"),
        ({"colour": 1}, r"datasets\.digits-dvs: unknown key\(s\) 'colour'; allowed: digit_size"),
        (
            {"sensor_size": 18},
            r"datasets\.digits-dvs\.sensor_size must be >= digit_size \+ saccade_px",
        ),
        ({"step_us": 3000}, r"datasets\.digits-dvs\.step_us must divide"),
        (
            {"test_fraction": 1.0},
            r"datasets\.digits-dvs\.test_fraction: 1\.0 is greater than or equal",
        ),
    ],
)
def test_bad_params_name_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        check_params("digits-dvs", {**DVS, **change})


def test_missing_param_names_the_key():
    params = dict(DIGITS)
    del params["split_seed"]
    with pytest.raises(ValueError, match=r"datasets\.digits: 'split_seed' is a required property"):
        check_params("digits", params)


def test_check_params_normalises_numbers():
    assert check_params("digits-dvs", {**DVS, "threshold_sigma": 0})["threshold_sigma"] == 0.0
    assert isinstance(
        check_params("digits-dvs", {**DVS, "threshold_sigma": 0})["threshold_sigma"], float
    )


def test_download_says_what_to_do_instead(tmp_path):
    with pytest.raises(ValueError, match="prepare"):
        download("digits-dvs", DVS, tmp_path)


# --- the event camera ----------------------------------------------------------------------


def test_events_use_tonics_dtype_and_work_with_its_transforms(dvs_samples):
    samples, _, _ = dvs_samples
    assert samples.events.dtype == tonic.io.events_struct
    ev = samples[0]
    down = tonic.transforms.Downsample(spatial_factor=0.5)(ev)
    assert len(down) == len(ev) and down["x"].max() < DVS["sensor_size"] // 2
    assert len(tonic.transforms.TimeJitter(std=10, clip_negative=True)(ev)) == len(ev)


def test_events_are_sorted_on_the_sensor_and_in_the_saccades(dvs_samples):
    samples, labels, _ = dvs_samples
    assert len(samples) == len(labels) == DVS["max_samples"]
    for i in range(len(samples)):
        ev = samples[i]
        assert len(ev) > 500
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["t"].min() >= 0 and ev["t"].max() <= DURATION_US
        assert ev["x"].min() >= 0 and ev["x"].max() < DVS["sensor_size"]
        assert ev["y"].min() >= 0 and ev["y"].max() < DVS["sensor_size"]
        assert 0.3 < ev["p"].mean() < 0.7  # both polarities, roughly balanced


def test_each_saccade_produces_events(dvs_samples):
    samples, _, _ = dvs_samples
    saccade = np.minimum(samples.events["t"] // (DURATION_US // 3), 2)
    assert np.all(np.bincount(saccade, minlength=3) > 0.2 * len(samples.events))


def test_simulation_is_deterministic_and_seeded():
    events, offsets = _simulate(12)
    again, again_offsets = _simulate(12)
    assert np.array_equal(events, again) and np.array_equal(offsets, again_offsets)
    other, _ = _simulate(12, seed=1)
    assert len(other) != len(events) or not np.array_equal(other, events)


def test_simulation_does_not_depend_on_batching():
    events, offsets = _simulate(12)
    alone, alone_offsets = _simulate(1)
    assert np.array_equal(alone, events[: offsets[1]])


def test_events_fall_on_the_moving_digits_edges():
    n = 40
    images, _ = digit_images(n)
    digits = upsample(images, DVS["digit_size"]) / 16
    events, offsets = simulate_events(digits, DVS)
    padded = pad_digits(digits, DVS["sensor_size"])
    swept = np.zeros((n, DVS["sensor_size"], DVS["sensor_size"]))
    for offset in saccade_offsets(DVS)[::10]:
        gy, gx = np.gradient(render(padded, offset, DVS["sensor_size"]), axis=(1, 2))
        swept += np.hypot(gy, gx)
    own, other = [], []
    for i in range(n):
        ev = events[offsets[i] : offsets[i + 1]]
        counts = np.zeros_like(swept[i])
        np.add.at(counts, (ev["y"], ev["x"]), 1)
        assert counts[swept[i] > 0.05 * swept[i].max()].sum() > 0.95 * len(ev)
        own.append(np.corrcoef(counts.ravel(), swept[i].ravel())[0, 1])
        other.append(np.corrcoef(counts.ravel(), swept[(i + 1) % n].ravel())[0, 1])
    assert min(own) > 0.7
    assert np.mean(own) > np.mean(other) + 0.1


# --- raw files and split -------------------------------------------------------------------


def test_manifest_records_params_counts_and_checksum(dvs_raw):
    manifest = json.loads((dvs_raw / "manifest.json").read_text())
    assert manifest["dataset"] == "digits-dvs"
    assert manifest["params"] == {**check_params("digits-dvs", DVS), "raw_version": 2}
    # The first 120 digits hold 12, 13, 13, 13, 11, 12, 13, 13, 9, 11 of classes 0..9 and the
    # per-class split trains ceil(0.8 n) of each: 10+11+11+11+9+10+11+11+8+9 = 101.
    assert manifest["counts"] == {"train": 101, "test": 19}
    data = (dvs_raw / "events.npz").read_bytes()
    assert manifest["sha256"] == {"events.npz": hashlib.sha256(data).hexdigest()}
    assert sorted(p.name for p in dvs_raw.iterdir()) == ["events.npz", "manifest.json"]


def test_digits_raw_holds_the_real_images(tmp_path):
    raw = prepare("digits", DIGITS, tmp_path)
    with np.load(raw / "digits.npz") as f:
        images, labels, split = f["images"], f["labels"], f["split"]
    reference = load_digits()
    assert images.dtype == np.uint8 and images.shape == (1797, 8, 8)
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    # 178, 182, 177, 183, 181, 182, 181, 179, 174, 180 digits of classes 0..9; ceil(0.8 n) train
    train = [143, 146, 142, 147, 145, 146, 145, 144, 140, 144]
    assert np.bincount(labels[split == 0]).tolist() == train
    assert (split == 0).sum() == sum(train) == 1442 and (split == 1).sum() == 355


def test_split_is_stratified_fixed_and_seeded(tmp_path):
    first = prepare("digits", DIGITS, tmp_path / "a")
    second = prepare("digits", DIGITS, tmp_path / "b")
    reseeded = prepare("digits", {**DIGITS, "split_seed": 1}, tmp_path / "c")

    def load(raw):
        return np.load(raw / "digits.npz")["labels"], np.load(raw / "digits.npz")["split"]

    labels, split = load(first)
    assert np.array_equal(split, load(second)[1])
    assert not np.array_equal(split, load(reseeded)[1])
    assert np.array_equal(split, per_class_split(labels, 0.2, 0, dataset="digits"))
    assert np.array_equal(load(reseeded)[1], per_class_split(labels, 0.2, 1, dataset="digits"))


def test_too_few_samples_for_a_stratified_split_is_explained(tmp_path):
    # The first 30 digits are 0..9 three times: ceil(0.8 * 3) = 3 leaves no class a test sample.
    expected = (
        r"datasets\.digits: the per-class split with test_fraction=0\.2 leaves class 0 "
        r"\(3 samples\) with no test sample; change datasets\.digits\.test_fraction or raise "
        r"datasets\.digits\.max_samples"
    )
    with pytest.raises(ValueError, match=expected):
        prepare("digits", {**DIGITS, "max_samples": 30}, tmp_path)


def test_the_registry_counts_the_training_samples_prepare_draws(tmp_path, dvs_raw):
    for name, params, raw in (
        ("digits", DIGITS, prepare("digits", DIGITS, tmp_path)),
        ("digits-dvs", DVS, dvs_raw),
    ):
        manifest = json.loads((raw / "manifest.json").read_text())
        assert get_info(name).train_count(params) == manifest["counts"]["train"]
    for max_samples, fraction in ((None, 0.2), (333, 0.25), (20, 0.5)):
        _, labels = digit_images(max_samples)
        split = per_class_split(labels, fraction, 0, dataset="digits")
        params = {"max_samples": max_samples, "test_fraction": fraction}
        assert get_info("digits").train_count(params) == (split == 0).sum()
    assert get_info("digits").train_count({"max_samples": None, "test_fraction": 0.2}) == 1442


def test_prepare_replaces_an_old_build(tmp_path):
    raw = prepare("digits", {**DIGITS, "max_samples": 100}, tmp_path)
    (raw / "stale.txt").write_text("from an older build")
    prepare("digits", {**DIGITS, "max_samples": 100}, tmp_path)
    assert not (raw / "stale.txt").exists()
    assert [p.name for p in raw.parent.iterdir()] == ["digits"]  # no temporary leftovers
