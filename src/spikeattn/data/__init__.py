"""Datasets: the registry (`sources`: one class per dataset; `registry`: what stages read of it
and the parameter checks; `register_dataset`: a plugin's own), local builds (`prepare`),
downloads, and cached frames.

The registry, the frames cache key, `download` and `prepare` import numpy only; the frames names (torch) load on
first use, so a stage that only asks which datasets exist does not import torch.
"""

from spikeattn.data.cache_key import frames_dir, frames_spec
from spikeattn.data.download import download
from spikeattn.data.embedded import prepare
from spikeattn.data.registry import (
    DATASETS,
    DatasetInfo,
    check_params,
    files_dir,
    get_info,
    raw_dir,
    raw_params,
    register_dataset,
)
from spikeattn.data.sources.base import EVENT_DTYPE
from spikeattn.data.sources.digits import EventSamples, load_events

_FRAMES = ("Frames", "load_frames", "preprocess", "to_float")


def __getattr__(name: str):
    """The names of `frames` (which imports torch), imported when first asked for."""
    if name in _FRAMES:
        from spikeattn.data import frames

        return getattr(frames, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "DatasetInfo",
    "EVENT_DTYPE",
    "EventSamples",
    "Frames",
    "check_params",
    "download",
    "files_dir",
    "frames_dir",
    "frames_spec",
    "get_info",
    "load_events",
    "load_frames",
    "prepare",
    "preprocess",
    "raw_dir",
    "raw_params",
    "register_dataset",
    "to_float",
]
