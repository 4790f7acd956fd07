"""MA-SNN's time windows against its authors' rules, written out as their loaders apply them
(BICLab/Attention-SNN `DVS_Gesture_dataloders.py` sample_train / sample_test /
my_chunk_evs_pol_dvs and `events_timeslices.py` get_tmad_slice, with bisect as they use it)."""

from bisect import bisect_left

import numpy as np
import pytest
import torch
from conftest import DEVICE

from spikeattn.data import event_windows
from spikeattn.data.event_frames import Framing, pack_window_events
from spikeattn.data.frames import Split
from spikeattn.data.loader import TensorBatches, Windows
from spikeattn.data.sources import EVENT_DTYPE

H = W = 4
DT, T = 1000, 5  # µs per frame, frames per window: L = 5 ms


def recording(seed, duration_us, n):
    """Events with repeated timestamps, a gap in the middle, and several events at the last
    timestamp (which the authors' test slice drops), times from an arbitrary origin."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, n))
    t = np.where((t > duration_us * 0.4) & (t < duration_us * 0.55), t + duration_us // 5, t)
    t = np.sort(np.concatenate([t, np.repeat(t[::7], 2), [t.max()] * 3])) + 12_345_678
    ev = np.zeros(len(t), EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"] = t, rng.integers(0, W, len(t)), rng.integers(0, H, len(t))
    ev["p"] = rng.integers(0, 2, len(t)).astype(bool)
    return ev


RECORDINGS = [
    recording(0, 23_456, 900),
    recording(1, 4_321, 200),  # shorter than one window
    recording(2, 61_003, 2000),
    recording(3, 9_999, 50),
]


def authors_frames(ev, start):
    """get_tmad_slice(times, addrs, start, T*dt) then my_chunk_evs_pol_dvs: the events with
    start <= t < start + T*dt (times from the sample's first event), frame i holding those
    before t_first + (i + 1) dt, from where frame i - 1 stopped. Counted as [p, y, x]."""
    times = list(ev["t"] - ev["t"][0])
    beg = bisect_left(times, start)
    end = bisect_left(times[beg:], start + T * DT) + beg
    data = ev[beg:end]
    t = [times[i] for i in range(beg, end)]
    chunks = np.zeros((T, 2, H, W), np.int64)
    if not t:
        return chunks
    first, idx_start, idx_end = t[0], 0, 0
    for i in range(T):
        idx_end += bisect_left(t[idx_end:], first + i * DT + DT)
        for e in data[idx_start:idx_end]:
            chunks[i, int(e["p"]), e["y"], e["x"]] += 1
        idx_start = idx_end
    return chunks


def authors_clip_starts(ev, clips):
    """sample_test: slice [t_first, t_last) (the events at t_last go), times from the first
    event, then its start_point loop."""
    times = ev["t"][ev["t"] < ev["t"][-1]] - ev["t"][0]
    start_time, end_time = int(times[0]), int(times[-1])
    L, points = T * DT, []
    if clips * L - (end_time - start_time) > 0:
        overlap = int(np.floor((clips * L - (end_time - start_time)) / clips))
        for j in range(clips):
            points.append(j * (L - overlap))
            if points[-1] + L > end_time:
                points[-1] -= points[-1] + L - end_time
    else:
        overlap = int(np.floor(((end_time - start_time) - clips * L) / clips))
        for j in range(clips):
            points.append(j * (L + overlap))
            if points[-1] + L > end_time:
                points[-1] -= points[-1] + L - end_time
    return points


def events_split(recordings=RECORDINGS):
    framing = Framing("time_window", (H, W), dt_us=DT)
    packed = pack_window_events([framing(ev) for ev in recordings], 2 * H * W)
    return Split(
        None,
        torch.arange(len(recordings)),
        offsets=torch.from_numpy(packed["offsets"]),
        t=torch.from_numpy(packed["t"]),
        address=torch.from_numpy(packed["address"]),
    )


def loader(train=False, **kwargs):
    return TensorBatches(
        events_split(),
        1.0,
        batch_size=len(RECORDINGS),
        device=DEVICE,
        train=train,
        T=T,
        windows=Windows(DT, (2, H, W)),
        **kwargs,
    )


def test_windows_frame_exactly_the_events_the_authors_slice():
    batches = loader()
    idx = torch.arange(len(RECORDINGS), device=DEVICE)
    for start in [0, 1, 999, 1000, 2345, 4320, 9_000, 13_000, 20_000, -3000]:  # gaps, tails, before
        starts = torch.full((len(RECORDINGS), 1), start, device=DEVICE)
        got = batches.events.frames(idx, starts).cpu().numpy()
        for row, ev in enumerate(RECORDINGS):
            np.testing.assert_array_equal(got[row], authors_frames(ev, start), f"start {start}")


def test_a_short_recording_keeps_its_partial_last_frame_and_every_event():
    """The first T dt from the first event (Gait's training window): a 4.3 ms recording in a
    5 ms window loses nothing; the frames cover every event up to the last timestamp."""
    batches = loader(train=True, window="start")
    (batch,) = list(batches)
    short = RECORDINGS[1]
    row = int((batch.y == 1).nonzero())
    assert batch.x[row].sum() == len(short)
    np.testing.assert_array_equal(batch.x[row].cpu().numpy(), authors_frames(short, 0))


def test_random_training_starts_are_whole_microseconds_in_the_authors_range():
    batches = loader(train=True)
    idx = torch.arange(len(RECORDINGS), device=DEVICE).repeat(500)
    starts = batches.window_starts(idx)[:, 0].view(500, len(RECORDINGS)).cpu()
    for k, ev in enumerate(RECORDINGS):
        room = int(ev["t"][-1] - ev["t"][0]) - T * DT  # np.random.randint(0, t_last - T dt)
        if room <= 0:
            assert (starts[:, k] == 0).all()  # no room: the first window (theirs would raise)
            continue
        assert starts[:, k].min() >= 0 and starts[:, k].max() < room
        assert len(set(starts[:, k].tolist())) > 450, "not snapped to frame offsets"
        assert starts[:, k].float().mean() == pytest.approx(room / 2, rel=0.1)


def test_a_training_epoch_frames_its_drawn_windows_as_the_authors_would():
    batches = loader(train=True)
    state = batches.state_dict()
    (batch,) = list(batches)
    batches.load_state_dict(state)  # replay the same draws: order, then starts
    order = torch.randperm(len(RECORDINGS), device=DEVICE, generator=batches.generator)
    starts = batches.window_starts(order)[:, 0].tolist()
    assert batch.y.tolist() == order.tolist()
    for row, (k, start) in enumerate(zip(order.tolist(), starts)):
        np.testing.assert_array_equal(
            batch.x[row].cpu().numpy(), authors_frames(RECORDINGS[k], start)
        )


@pytest.mark.parametrize("clips", [1, 3, 10])
def test_test_clips_are_placed_and_framed_as_the_authors_test(clips):
    batches = loader(clips=clips)
    (batch,) = list(batches)
    assert batch.clips == clips and batch.x.shape == (clips * len(RECORDINGS), T, 2, H, W)
    idx = torch.arange(len(RECORDINGS), device=DEVICE)
    assert batches.window_starts(idx).tolist() == [
        authors_clip_starts(ev, clips) for ev in RECORDINGS
    ]
    for k, ev in enumerate(RECORDINGS):
        for j, start in enumerate(authors_clip_starts(ev, clips)):
            np.testing.assert_array_equal(
                batch.x[k * clips + j].cpu().numpy(), authors_frames(ev, start)
            )


def test_clip_starts_formula_on_hand_picked_durations():
    """end 23 ms, 10 clips of 5 ms: overlap floor((50 - 23) / 10 ms) = 2.7 ms, steps of 2.3 ms,
    the clips from j = 8 on pulled back to end at 23 ms; end 100 ms: gaps of 5 ms, steps 10 ms."""
    ends = torch.tensor([23_000, 100_000, 3_000])
    got = event_windows.clip_starts(ends, 5_000, 10).tolist()
    assert got[0] == [0, 2300, 4600, 6900, 9200, 11500, 13800, 16100, 18000, 18000]
    assert got[1] == [j * 10_000 for j in range(10)]
    assert got[2] == [-2000] * 10  # shorter than a clip: one window ending at the end


def test_events_split_needs_T_and_windows():
    with pytest.raises(ValueError, match="T"):
        TensorBatches(events_split(), 1.0, 2)


def test_segment_search_is_a_lower_bound_within_each_segment():
    segments = [
        torch.sort(torch.randint(0, 50, (n,), generator=torch.Generator().manual_seed(n))).values
        for n in (0, 1, 5, 17, 100)
    ]
    t = torch.cat(segments)
    offsets = torch.tensor([0, *np.cumsum([len(s) for s in segments]).tolist()])
    for value in range(-1, 52):
        got = event_windows.segment_search(
            t, offsets[:-1], offsets[1:], torch.tensor(value), event_windows.search_steps(offsets)
        )
        expected = [
            int(offsets[i]) + bisect_left(s.tolist(), value) for i, s in enumerate(segments)
        ]
        assert got.tolist() == expected
