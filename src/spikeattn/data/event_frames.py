"""Events -> integer frames with tonic's transforms, per the papers' settings.

- ``time_window`` (MA-SNN): every frame covers dt ms, and the whole recording is kept (a
  variable number of frames per sample); training later picks a random window of T frames and
  testing votes over several clips (see `loader.py`). One cache serves every T.
- ``event_count`` (SMA): T frames holding equal numbers of events (tonic's n_event_bins).
- ``time_bins``: T frames of equal duration over the whole recording (tonic's n_time_bins).
Spatial downsampling (MA-SNN: 4x, 128 -> 32) is tonic's Downsample before framing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from tonic.transforms import Downsample, ToFrame

METHODS = ("time_window", "event_count", "time_bins")


@dataclass(frozen=True)
class Framing:
    """How one dataset's events become frames: method, T or dt, and the output geometry."""

    method: str
    sensor: tuple[int, int]  # (H, W) of the camera
    downsample: int = 1
    T: int | None = None  # frames per sample (event_count, time_bins)
    dt_us: int | None = None  # frame duration (time_window)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], sensor: tuple[int, int], T: int) -> "Framing":
        method = params.get("frame_method", "time_bins")
        if method not in METHODS:
            raise ValueError(f"frame_method must be one of {METHODS}, got {method!r}")
        if method == "time_window":
            if not params.get("dt_ms"):
                raise ValueError("frame_method time_window needs dt_ms (the duration of one frame)")
            return cls(method, sensor, params.get("downsample", 1), dt_us=round(params["dt_ms"] * 1000))
        return cls(method, sensor, params.get("downsample", 1), T=T)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of a frame after downsampling."""
        return self.sensor[0] // self.downsample, self.sensor[1] // self.downsample

    @property
    def variable_length(self) -> bool:
        return self.method == "time_window"

    def __call__(self, events: np.ndarray) -> np.ndarray:
        """[frames, 2, H, W] int16 counts of one sample's events (tonic's dtype)."""
        height, width = self.size
        if self.downsample > 1:
            events = Downsample(spatial_factor=1 / self.downsample)(events)
            keep = (events["x"] < width) & (events["y"] < height)  # a ragged edge of the sensor
            events = events[keep]
        sensor_size = (width, height, 2)  # tonic's (W, H, P)
        if self.method == "time_window":
            frames = ToFrame(sensor_size=sensor_size, time_window=self.dt_us)(events)
        elif self.method == "event_count":
            frames = ToFrame(sensor_size=sensor_size, n_event_bins=self.T)(events)
        else:
            frames = ToFrame(sensor_size=sensor_size, n_time_bins=self.T)(events)
        return frames


def compact(arrays: list[np.ndarray], variable_length: bool) -> np.ndarray:
    """Stack (variable-length samples: concatenate) counts, as uint8 where they fit, else int16."""
    top = max((int(a.max()) for a in arrays if a.size), default=0)
    if top > np.iinfo(np.int16).max:
        raise ValueError(f"a frame holds {top} events in one pixel, more than int16 can store; "
                         "use shorter frames (smaller dt_ms or larger T)")
    dtype = np.uint8 if top <= np.iinfo(np.uint8).max else np.int16
    return (np.concatenate if variable_length else np.stack)(arrays).astype(dtype)
