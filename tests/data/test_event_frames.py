"""Events -> frames by the papers' methods, and the per-class split."""
import numpy as np
import pytest

from spikeattn.data.event_frames import Framing, compact
from spikeattn.data.sources import EVENT_DTYPE
from spikeattn.data.splits import per_class_split


def events(n=4000, size=(128, 128), duration_us=1_000_000, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["x"] = rng.integers(0, size[1], n)
    ev["y"] = rng.integers(0, size[0], n)
    ev["t"] = np.sort(rng.integers(0, duration_us, n))
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return ev


def test_time_window_frames_cover_dt_each_and_count_every_event():
    ev = events()
    framing = Framing.from_params({"frame_method": "time_window", "dt_ms": 100, "downsample": 4},
                                  (128, 128), T=8)
    frames = framing(ev)
    assert framing.variable_length and framing.size == (32, 32)
    assert frames.shape[1:] == (2, 32, 32) and 9 <= len(frames) <= 10
    first = ev[ev["t"] < ev["t"][0] + 100_000]
    assert frames[0].sum() == len(first)
    # 4x downsampling: pixel (x // 4, y // 4) of polarity p counts the events there
    for e in first[:20]:
        assert frames[0, int(e["p"]), e["y"] // 4, e["x"] // 4] >= 1


def test_event_count_frames_hold_equal_event_numbers():
    ev = events(n=1600, size=(180, 240))
    frames = Framing.from_params({"frame_method": "event_count", "downsample": 1}, (180, 240), T=16)(ev)
    assert frames.shape == (16, 2, 180, 240)
    assert (frames.reshape(16, -1).sum(1) == 100).all()


def test_time_window_needs_dt():
    with pytest.raises(ValueError, match="dt_ms"):
        Framing.from_params({"frame_method": "time_window", "dt_ms": None}, (128, 128), T=4)


def test_compact_picks_the_smallest_integer_type():
    small, big = np.ones((3, 2, 4, 4), np.int16), np.full((3, 2, 4, 4), 300, np.int16)
    assert compact([small, small], variable_length=False).dtype == np.uint8
    assert compact([small, big], variable_length=False).dtype == np.int16
    assert compact([small, small[:1]], variable_length=True).shape == (4, 2, 4, 4)


def test_per_class_split_is_ninety_ten_within_every_class_and_seeded():
    labels = np.repeat(np.arange(5), [10, 20, 11, 9, 30])
    split = per_class_split(labels, 0.1, seed=3404)
    for cls, n in zip(range(5), [10, 20, 11, 9, 30]):
        assert (split[labels == cls] == 0).sum() == int(np.ceil(0.9 * n))
    assert np.array_equal(split, per_class_split(labels, 0.1, seed=3404))
    assert not np.array_equal(split, per_class_split(labels, 0.1, seed=1))
    in_order = per_class_split(labels, 0.1, seed=None)
    assert in_order[:9].tolist() == [0] * 9 and in_order[9] == 1
