"""MA-SNN's time windows, cut from each sample's events on the training device.

A time-window dataset is stored as its events (`frames.py`, layout ``events``): per sample,
the times in µs from its first event, sorted, and each event's pixel address in the frame
(`address = p * H * W + y * W + x`, after downsampling). A window of T frames of dt µs is
framed on demand, exactly as the MA-SNN authors' loaders cut it
(BICLab/Attention-SNN `DVS_Gesture_dataloders.py`, `DVS128_Gait_dataloaders.py`):

- the window holds the events with start <= t < start + T * dt;
- its frames are anchored at the first of those events, e0: frame k counts the events with
  e0 + k dt <= t < e0 + (k + 1) dt (so a window starting in a gap slides to the next event,
  and its last frame can be cut short by start + T * dt);
- training (`random_starts`): start drawn uniformly among the whole µs in [0, t_last - T dt)
  (`np.random.randint`), or 0 when the sample is shorter than that; `start` mode: always 0
  (their Gait loader, which takes the first T frames);
- testing (`clip_starts`): their `sample_test` placement of n clips over the sample with its
  last timestamp's events dropped (see there).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def segment_search(t: Tensor, lo: Tensor, hi: Tensor, value: Tensor, steps: int) -> Tensor:
    """For each query, the first index i in [lo, hi) with t[i] >= value (hi if none).

    `t` is sorted within every segment [lo, hi); all arguments but `t` and `steps` broadcast
    together. A vectorised binary search of `steps` >= log2(longest segment + 1) halvings,
    so a whole batch of samples is searched at once without leaving the device.
    """
    lo, hi, value = torch.broadcast_tensors(lo, hi, value)
    last = max(len(t) - 1, 0)
    for _ in range(steps):
        active = lo < hi
        mid = torch.div(lo + hi, 2, rounding_mode="floor")
        right = t[mid.clamp(max=last)] < value
        lo, hi = torch.where(active & right, mid + 1, lo), torch.where(active & ~right, mid, hi)
    return lo


def search_steps(offsets: Tensor) -> int:
    """Halvings `segment_search` needs for the longest sample of a split."""
    longest = int((offsets[1:] - offsets[:-1]).max()) if len(offsets) > 1 else 0
    return max(1, math.ceil(math.log2(longest + 1)))


def random_starts(last: Tensor, length: int, generator: torch.Generator) -> Tensor:
    """Training window starts [B]: uniform among the whole µs in [0, last - length), the
    authors' `np.random.randint(t_first, t_last - T dt)` on times from the first event; 0 where
    the sample is not longer than the window (their code would raise there)."""
    room = (last - length).clamp(min=0)
    u = torch.rand(last.shape, generator=generator, device=last.device, dtype=torch.float64)
    start = (u * room).floor().long()
    return torch.minimum(start, (room - 1).clamp(min=0))


def clip_starts(end: Tensor, length: int, clips: int) -> Tensor:
    """Test clip starts [B, clips], the authors' `sample_test` placement.

    `end` is the time of the sample's last event once the events at its last timestamp are
    dropped (their test slice stops before t_last). With n clips of `length` µs, clip j starts
    at j * (length - overlap) where n clips overlap the sample (overlap = floor((n length -
    end) / n)), else at j * (length + gap) (gap = floor((end - n length) / n)); a clip that
    would run past `end` is pulled back to end at it (start = end - length, possibly < 0).
    """
    end = end[:, None]
    surplus = clips * length - end
    step = torch.where(
        surplus > 0,
        length - torch.div(surplus, clips, rounding_mode="floor"),
        length + torch.div(-surplus, clips, rounding_mode="floor"),
    )
    start = torch.arange(clips, device=end.device)[None] * step
    return torch.where(start + length > end, end - length, start)


def frame_windows(
    t: Tensor,
    address: Tensor,
    lo: Tensor,
    hi: Tensor,
    starts: Tensor,
    T: int,
    dt: int,
    frame_size: int,
    steps: int,
) -> Tensor:
    """Event counts [W, T, frame_size] of W windows: window w holds the events of segment
    [lo[w], hi[w]) with starts[w] <= t < starts[w] + T * dt, framed from its first event.

    One host synchronisation (the number of events in the batch's windows) sizes the gather;
    per-event arithmetic runs in int32 where the bins fit, half the bytes of int64.
    """
    first = segment_search(t, lo, hi, starts, steps)
    stop = segment_search(t, first, hi, starts + T * dt, steps)
    counts = stop - first
    windows, total = len(starts), int(counts.sum())
    bins = windows * T * frame_size
    kind = torch.int32 if bins <= torch.iinfo(torch.int32).max else torch.int64

    def per_event(values: Tensor) -> Tensor:  # each window's value, once per event it holds
        return torch.repeat_interleave(values, counts, output_size=total)

    index = per_event(first - (counts.cumsum(0) - counts)) + torch.arange(total, device=t.device)
    e0 = t[first.clamp(max=max(len(t) - 1, 0))].to(kind)  # used only where the window has events
    window_base = torch.arange(windows, device=t.device, dtype=kind) * (T * frame_size)
    frame = (t[index].to(kind) - per_event(e0)).div_(dt, rounding_mode="floor")
    cell = frame.mul_(frame_size).add_(per_event(window_base)).add_(address[index])
    return torch.bincount(cell, minlength=bins).view(windows, T, frame_size)
