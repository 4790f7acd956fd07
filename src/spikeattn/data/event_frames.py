"""Events -> what the cache stores, per the papers' framing methods.

- ``time_window`` (MA-SNN): the sample's events themselves, as (t in µs from its first event,
  pixel address), so that every window the authors' loaders can cut (a random T*dt window
  starting at any µs, ten test clips, the partial tail of a short recording) is framed exactly
  on the training device (`event_windows.py`). One cache serves every T.
- ``event_count`` (SMA): T frames holding equal numbers of events. `event_count_split`
  'spikingjelly' (SpikingJelly's `split_by='number'`, which the SMA authors used) gives the
  N mod T leftover events to the last frame; 'tonic' (tonic's n_event_bins) drops them.
- ``time_bins``: T frames of equal duration over the whole recording (tonic's n_time_bins).

Spatial downsampling (MA-SNN: 4x, 128 -> 32) is tonic's Downsample before framing, which
equals the authors' coordinate // 4 (a 4x4 sum pooling). Frames are [p, y, x], tonic's and
SpikingJelly's layout; MA-SNN's arrays are [p, x, y], the same images transposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from tonic.transforms import Downsample, ToFrame

METHODS = ("time_window", "event_count", "time_bins")
EVENT_COUNT_SPLITS = ("spikingjelly", "tonic")
# time_window samples as stored: µs since the sample's first event, and p * H * W + y * W + x
WINDOW_EVENT = np.dtype([("t", np.int64), ("address", np.int64)])


@dataclass(frozen=True)
class Framing:
    """How one dataset's events become what the cache holds: method, T or dt, geometry."""

    method: str
    sensor: tuple[int, int]  # (H, W) of the camera
    downsample: int = 1
    T: int | None = None  # frames per sample (event_count, time_bins)
    dt_us: int | None = None  # frame duration (time_window)
    event_count_split: str = "spikingjelly"

    @classmethod
    def from_params(cls, params: Mapping[str, Any], sensor: tuple[int, int], T: int) -> "Framing":
        method = params.get("frame_method", "time_bins")
        if method not in METHODS:
            raise ValueError(f"frame_method must be one of {METHODS}, got {method!r}")
        downsample = params.get("downsample", 1)
        if method == "time_window":
            if not params.get("dt_ms"):
                raise ValueError("frame_method time_window needs dt_ms (the duration of one frame)")
            return cls(method, sensor, downsample, dt_us=round(params["dt_ms"] * 1000))
        split = params.get("event_count_split") or "spikingjelly"
        if split not in EVENT_COUNT_SPLITS:
            raise ValueError(
                f"event_count_split must be one of {EVENT_COUNT_SPLITS}, got {split!r}"
            )
        return cls(method, sensor, downsample, T=T, event_count_split=split)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of a frame after downsampling."""
        return self.sensor[0] // self.downsample, self.sensor[1] // self.downsample

    @property
    def keeps_events(self) -> bool:
        """True when the cache holds events, framed per window by the loader (time_window)."""
        return self.method == "time_window"

    def __call__(self, events: np.ndarray) -> np.ndarray:
        """One sample: [T, 2, H, W] int16 counts (tonic's dtype), or for time_window its events
        as WINDOW_EVENT records in time order."""
        height, width = self.size
        if self.downsample > 1:
            events = Downsample(spatial_factor=1 / self.downsample)(events)
            keep = (events["x"] < width) & (events["y"] < height)  # a ragged edge of the sensor
            events = events[keep]
        if self.method == "time_window":
            out = np.empty(len(events), WINDOW_EVENT)
            out["t"] = events["t"] - (events["t"][0] if len(events) else 0)
            out["address"] = pixel_address(events, height, width)
            return out
        if self.method == "event_count" and self.event_count_split == "spikingjelly":
            return event_count_frames(events, self.T, height, width)
        sensor_size = (width, height, 2)  # tonic's (W, H, P)
        if self.method == "event_count":
            return ToFrame(sensor_size=sensor_size, n_event_bins=self.T)(events)
        return ToFrame(sensor_size=sensor_size, n_time_bins=self.T)(events)


def pixel_address(events: np.ndarray, height: int, width: int) -> np.ndarray:
    """Each event's cell in a [2, H, W] frame, p * H * W + y * W + x (int64)."""
    return (events["p"].astype(np.int64) * height + events["y"]) * width + events["x"]


def event_count_frames(events: np.ndarray, T: int, height: int, width: int) -> np.ndarray:
    """[T, 2, H, W] int16: frame i counts events [i * (N // T), (i + 1) * (N // T)), the last
    frame every event from (T - 1) * (N // T) on (SpikingJelly's split by number)."""
    n = len(events)
    per_frame = n // T
    frame = np.minimum(np.arange(n) // per_frame, T - 1) if per_frame else np.full(n, T - 1)
    bins = frame * (2 * height * width) + pixel_address(events, height, width)
    counts = np.bincount(bins, minlength=T * 2 * height * width)
    return counts.reshape(T, 2, height, width).astype(np.int16)


def compact(arrays: list[np.ndarray]) -> np.ndarray:
    """Stacked frame counts, as uint8 where they fit, else int16."""
    top = max((int(a.max()) for a in arrays if a.size), default=0)
    if top > np.iinfo(np.int16).max:
        raise ValueError(
            f"a frame holds {top} events in one pixel, more than int16 can store; use larger T"
        )
    dtype = np.uint8 if top <= np.iinfo(np.uint8).max else np.int16
    return np.stack(arrays).astype(dtype)


def pack_window_events(samples: list[np.ndarray], frame_size: int) -> dict[str, np.ndarray]:
    """time_window samples concatenated: t (int32 where it fits), address (int16 where the
    frame has at most 32767 cells, else int32), and offsets [N + 1] into them."""
    events = np.concatenate(samples) if samples else np.empty(0, WINDOW_EVENT)
    lengths = np.array([len(s) for s in samples], dtype=np.int64)
    late = int(events["t"].max()) if len(events) else 0
    return {
        "t": events["t"].astype(np.int32 if late <= np.iinfo(np.int32).max else np.int64),
        "address": events["address"].astype(
            np.int16 if frame_size <= np.iinfo(np.int16).max else np.int32
        ),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
    }
