"""Preprocessed frames: cache keys, tonic's ToFrame counts, dtypes, atomicity, digests,
learnability."""

import dataclasses
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from spikeattn.data import (
    DATASETS,
    frames_dir,
    frames_spec,
    load_events,
    load_frames,
    prepare,
    preprocess,
    raw_params,
)
from spikeattn.data import frames as frames_module
from spikeattn.data.sources import DataError
from spikeattn.io import file_digest

DIGITS = {
    "source": "embedded",
    "image_size": 16,
    "test_fraction": 0.2,
    "split_seed": 0,
    "max_samples": 100,
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
    "max_samples": 100,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    prepare("digits", DIGITS, root)
    prepare("digits-dvs", DVS, root)
    return root


# --- cache keys ----------------------------------------------------------------------------


def test_event_key_follows_T_and_params_not_key_order(tmp_path):
    base = frames_dir("digits-dvs", DVS, 8, tmp_path)
    assert base.parent == tmp_path / "data" / "frames" / "digits-dvs" and base.name.startswith(
        "T8-"
    )
    reordered = dict(reversed(list(DVS.items())))
    assert frames_dir("digits-dvs", reordered, 8, tmp_path) == base
    assert frames_dir("digits-dvs", DVS, 4, tmp_path) != base
    assert frames_dir("digits-dvs", {**DVS, "threshold": 0.3}, 8, tmp_path) != base
    assert frames_dir("digits-dvs", {**DVS, "threshold_sigma": 0}, 8, tmp_path) == frames_dir(
        "digits-dvs", {**DVS, "threshold_sigma": 0.0}, 8, tmp_path
    )
    spec = frames_spec("digits-dvs", DVS, 8)
    assert spec["T"] == 8 and spec["params"]["threshold"] == 0.25


def test_static_key_ignores_T(tmp_path):
    assert "T" not in frames_spec("digits", DIGITS, 8)
    key = frames_dir("digits", DIGITS, 8, tmp_path)
    assert key.name.startswith("s16-") and key == frames_dir("digits", DIGITS, 4, tmp_path)
    assert frames_dir("digits", {**DIGITS, "image_size": 32}, 8, tmp_path) != key


def test_embedded_keys_carry_the_version_of_what_prepare_draws(tmp_path, monkeypatch):
    assert {name for name, info in DATASETS.items() if info.raw_version is not None} == {
        "digits",
        "digits-dvs",
    }
    assert frames_spec("digits", DIGITS, 8)["raw_version"] == 2
    assert raw_params("digits", DIGITS)["raw_version"] == 2
    key = frames_dir("digits", DIGITS, 8, tmp_path)
    older = dataclasses.replace(DATASETS["digits"], raw_version=1)
    monkeypatch.setitem(DATASETS, "digits", older)
    assert frames_dir("digits", DIGITS, 8, tmp_path) != key


def test_a_raw_folder_of_the_older_split_rule_is_refused(tmp_path):
    raw = prepare("digits", DIGITS, tmp_path)
    manifest = json.loads((raw / "manifest.json").read_text())
    del manifest["params"]["raw_version"]  # as version 1 (sklearn's split) wrote it
    (raw / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="run `spikeattn prepare digits` again"):
        preprocess("digits", DIGITS, 8, tmp_path)


# --- static frames -------------------------------------------------------------------------


def test_static_frames_shapes_dtypes_and_scale(root):
    frames = load_frames(preprocess("digits", DIGITS, 8, root))
    # The first 100 digits hold 11, 12, 10, 12, 8, 9, 11, 10, 8, 9 of classes 0..9; the per-class
    # split trains ceil(0.8 n) of each: 9+10+8+10+7+8+9+8+7+8 = 84, and tests 16.
    assert frames.train.x.shape == (84, 1, 16, 16) and frames.test.x.shape == (16, 1, 16, 16)
    assert frames.train.x.dtype == torch.uint8 and frames.train.y.dtype == torch.int64
    assert frames.train.x.max() > 200
    x = frames_module.to_float(frames.test.x, frames.meta)
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert frames.meta["counts"] == {"train": 84, "test": 16}


def test_static_frames_at_native_size_are_the_digits_rescaled(root):
    frames = load_frames(preprocess("digits", {**DIGITS, "image_size": 8}, 1, root))
    with np.load(root / "data" / "raw" / "digits" / "digits.npz") as f:
        images, labels, split = f["images"], f["labels"], f["split"]
    expected = np.round(images[split == 0] / 16 * 255).astype(np.uint8)
    assert np.array_equal(frames.train.x[:, 0].numpy(), expected)
    assert np.array_equal(frames.train.y.numpy(), labels[split == 0])


# --- event frames --------------------------------------------------------------------------


def _tonic_binned(ev, T):
    """Events inside tonic's n_time_bins bins: [t0, t0 + T * ((t_last - t0) // T))."""
    t0 = ev["t"][0]
    return ev[ev["t"] < t0 + T * ((ev["t"][-1] - t0) // T)]


def test_event_frames_count_the_events_by_polarity_and_pixel(root):
    T = 4
    frames = load_frames(preprocess("digits-dvs", DVS, T, root))
    # the 84 / 16 of the first 100 digits (test_static_frames_shapes_dtypes_and_scale)
    assert frames.train.x.shape == (84, T, 2, 24, 24) and frames.test.x.shape == (16, T, 2, 24, 24)
    assert frames.train.x.dtype == torch.uint8 and frames.test.y.dtype == torch.int64
    samples, labels, split = load_events(root / "data" / "raw" / "digits-dvs")
    train = np.flatnonzero(split == 0)
    for row in (0, 37, 83):
        ev = _tonic_binned(samples[train[row]], T)
        assert len(ev) > 0.999 * len(samples[train[row]])
        counts = np.zeros((2, 24, 24), dtype=np.int64)
        np.add.at(counts, (ev["p"].astype(int), ev["y"], ev["x"]), 1)
        assert np.array_equal(frames.train.x[row].sum(0).numpy(), counts)
        assert frames.train.y[row] == labels[train[row]]
    assert frames.meta["events_total"] == len(samples.events)
    assert frames.meta["events_in_frames"] == sum(
        len(_tonic_binned(samples[i], T)) for i in range(len(samples))
    )
    assert frames_module.to_float(frames.train.x, frames.meta).sum() == frames.train.x.sum()


def test_counts_too_big_for_uint8_are_kept_as_int16(tmp_path):
    params = {**DVS, "threshold": 0.01, "max_samples": 20, "test_fraction": 0.5}
    prepare("digits-dvs", params, tmp_path)
    frames = load_frames(preprocess("digits-dvs", params, 1, tmp_path))
    assert frames.train.x.dtype == torch.int16 and frames.meta["max_value"] > 255
    total = frames.train.x.to(torch.int64).sum() + frames.test.x.to(torch.int64).sum()
    assert total == frames.meta["events_in_frames"]


def test_event_frames_show_the_saccades_in_time(root):
    frames = load_frames(preprocess("digits-dvs", DVS, 3, root))
    per_bin = frames.train.x.to(torch.int64).sum(dim=(0, 2, 3, 4))
    assert torch.all(per_bin > 0.2 * per_bin.sum())


def test_missing_raw_dir_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        preprocess("digits-dvs", DVS, 4, tmp_path)
    assert str(tmp_path / "data" / "raw" / "digits-dvs") in str(err.value)
    assert "spikeattn prepare digits-dvs" in str(err.value)


def test_raw_dir_from_other_params_is_refused(root):
    with pytest.raises(ValueError, match="prepare digits-dvs"):
        preprocess("digits-dvs", {**DVS, "seed": 3}, 4, root)


def test_failure_inside_preprocess_leaves_nothing_behind(root, monkeypatch):
    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(frames_module.torch, "save", broken_save)
    target = frames_dir("digits-dvs", DVS, 5, root)
    with pytest.raises(RuntimeError, match="disk full"):
        preprocess("digits-dvs", DVS, 5, root)
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


# --- learnability --------------------------------------------------------------------------


def test_full_digits_dvs_is_learnable_by_a_linear_model(tmp_path):
    params = {**DVS, "max_samples": None}
    prepare("digits-dvs", params, tmp_path)
    frames = load_frames(preprocess("digits-dvs", params, 4, tmp_path))
    scale = float(frames.train.x.max())
    train_x = (frames_module.to_float(frames.train.x, frames.meta).flatten(1) / scale).numpy()
    test_x = (frames_module.to_float(frames.test.x, frames.meta).flatten(1) / scale).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(max_iter=200).fit(train_x, frames.train.y.numpy())
    accuracy = model.score(test_x, frames.test.y.numpy())
    print(f"digits-dvs T=4 logistic regression test accuracy: {accuracy:.3f}")
    assert accuracy > 0.8


# --- damaged caches ------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path):
    """A small digits-dvs cache of its own (84 train and 16 test samples), free to damage."""
    params = {**DVS, "max_samples": 100}
    prepare("digits-dvs", params, tmp_path)
    return preprocess("digits-dvs", params, 2, tmp_path)


def _refused(cache, *names):
    """load_frames fails with a DataError naming each of `names` and the way to rebuild."""
    with pytest.raises(DataError) as err:
        load_frames(cache)
    for name in names:
        assert str(name) in str(err.value)
    assert f"--forcerun {cache / 'meta.json'}" in str(err.value)
    return str(err.value)


def test_meta_json_records_the_digest_of_every_split(cache):
    meta = json.loads((cache / "meta.json").read_text())
    for part in ("train", "test"):
        assert meta["digests"][part] == {
            "sha256": file_digest(cache / f"{part}.pt"),
            "bytes": (cache / f"{part}.pt").stat().st_size,
        }


def test_random_bytes_over_a_split_are_refused(cache):
    file = cache / "train.pt"
    size = file.stat().st_size
    with open(file, "r+b") as f:  # most of the file, the zip directory at its end left intact
        f.seek(size // 10)
        f.write(np.random.default_rng(0).integers(0, 256, size * 8 // 10, dtype=np.uint8).tobytes())
    assert file.stat().st_size == size
    _refused(cache, file, "damaged, truncated or replaced")


def test_a_split_copied_over_the_other_is_refused(cache):
    shutil.copy(cache / "test.pt", cache / "train.pt")
    assert "it is a copy of test.pt" in _refused(cache, cache / "train.pt")


def test_a_truncated_split_is_refused(cache):
    file = cache / "test.pt"
    file.write_bytes(file.read_bytes()[:1000])
    _refused(cache, file, "1000 bytes")


def test_a_cache_without_digests_loads_with_a_warning_but_is_still_counted(cache):
    meta = json.loads((cache / "meta.json").read_text())
    del meta["digests"]
    (cache / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="records no digests"):
        assert len(load_frames(cache).train) == 84
    shutil.copy(cache / "test.pt", cache / "train.pt")
    with pytest.warns(UserWarning, match="records no digests"):
        assert "holds 16 samples but meta.json records 84" in _refused(cache, cache / "train.pt")
    (cache / "test.pt").write_bytes(b"PK" + bytes(500))  # truncated: unreadable, not a traceback
    with pytest.warns(UserWarning, match="records no digests"):
        with pytest.raises(DataError, match="test.pt: cannot be read"):
            frames_module.load_split(cache, "test")


def test_a_garbled_meta_json_names_the_file(cache):
    (cache / "meta.json").write_text("{not json")
    _refused(cache, cache / "meta.json", "not valid JSON")
