"""Events -> frames by the papers' methods (the per-class split: test_splits.py)."""

import numpy as np
import pytest

from spikeattn.data.event_frames import WINDOW_EVENT, Framing, compact, pack_window_events
from spikeattn.data.sources import EVENT_DTYPE


def events(n=4000, size=(128, 128), duration_us=1_000_000, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["x"] = rng.integers(0, size[1], n)
    ev["y"] = rng.integers(0, size[0], n)
    ev["t"] = np.sort(rng.integers(0, duration_us, n))
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return ev


def test_time_window_keeps_every_event_with_its_downsampled_address():
    """MA-SNN frames are cut later, per window: the cache keeps each event, its time from the
    sample's first event and its pixel (x // 4, y // 4, as the authors' coordinate // 4)."""
    ev = events()
    framing = Framing.from_params(
        {"frame_method": "time_window", "dt_ms": 100, "downsample": 4}, (128, 128), T=8
    )
    kept = framing(ev)
    assert framing.keeps_events and framing.size == (32, 32) and framing.dt_us == 100_000
    assert len(kept) == len(ev) and kept["t"][0] == 0
    np.testing.assert_array_equal(kept["t"], ev["t"] - ev["t"][0])
    p, y, x = ev["p"].astype(int), ev["y"] // 4, ev["x"] // 4
    np.testing.assert_array_equal(kept["address"], (p * 32 + y) * 32 + x)


def spikingjelly_split(ev, T, H, W):
    """SpikingJelly's integrate_events_by_fixed_frames_number(split_by='number'), written out:
    j_l = i * (N // T), j_r = j_l + N // T, and j_r = N for the last frame."""
    n, frames = len(ev), np.zeros((T, 2, H, W), np.int64)
    di = n // T
    for i in range(T):
        j_l, j_r = i * di, (n if i == T - 1 else i * di + di)
        for e in ev[j_l:j_r]:
            frames[i, int(e["p"]), e["y"], e["x"]] += 1
    return frames


@pytest.mark.parametrize("n", [1600, 1613, 7])
def test_event_count_frames_split_as_spikingjelly_by_default(n):
    ev = events(n=n, size=(18, 24))
    frames = Framing.from_params({"frame_method": "event_count", "downsample": 1}, (18, 24), T=16)(
        ev
    )
    assert frames.shape == (16, 2, 18, 24) and frames.sum() == n  # the N mod T leftover: last frame
    np.testing.assert_array_equal(frames, spikingjelly_split(ev, 16, 18, 24))
    if n == 1613:
        assert frames[-1].sum() == 100 + 13 and (frames[:-1].reshape(15, -1).sum(1) == 100).all()


def test_event_count_tonic_split_drops_the_leftover():
    ev = events(n=1613, size=(18, 24))
    frames = Framing.from_params(
        {"frame_method": "event_count", "downsample": 1, "event_count_split": "tonic"},
        (18, 24),
        T=16,
    )(ev)
    assert (frames.reshape(16, -1).sum(1) == 100).all()
    np.testing.assert_array_equal(frames[:-1], spikingjelly_split(ev, 16, 18, 24)[:-1])
    with pytest.raises(ValueError, match="event_count_split"):
        Framing.from_params(
            {"frame_method": "event_count", "event_count_split": "sj"}, (18, 24), T=4
        )


def test_time_window_needs_dt():
    with pytest.raises(ValueError, match="dt_ms"):
        Framing.from_params({"frame_method": "time_window", "dt_ms": None}, (128, 128), T=4)


def test_compact_picks_the_smallest_integer_type():
    small, big = np.ones((3, 2, 4, 4), np.int16), np.full((3, 2, 4, 4), 300, np.int16)
    assert compact([small, small]).dtype == np.uint8 and compact([small, small]).shape == (
        2,
        3,
        2,
        4,
        4,
    )
    assert compact([small, big]).dtype == np.int16


def test_window_events_pack_into_the_smallest_types():
    a = np.zeros(3, WINDOW_EVENT)
    a["t"], a["address"] = [0, 5, 9], [1, 2, 2047]
    packed = pack_window_events([a, a[:1]], frame_size=2048)
    assert packed["t"].dtype == np.int32 and packed["address"].dtype == np.int16
    assert packed["offsets"].tolist() == [0, 3, 4]
    assert pack_window_events([a], frame_size=2 * 128 * 128)["address"].dtype == np.int32
