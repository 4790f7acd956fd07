"""Datasets: registry and parameter checks, local builds (`prepare`), and cached frames."""
from spikeattn.data.download import download
from spikeattn.data.embedded import EVENT_DTYPE, EventSamples, load_events, prepare
from spikeattn.data.frames import Frames, frames_dir, frames_spec, load_frames, preprocess, to_float
from spikeattn.data.registry import DATASETS, DatasetInfo, check_params, get_info, raw_dir, raw_params

__all__ = [
    "DATASETS", "DatasetInfo", "EVENT_DTYPE", "EventSamples", "Frames", "check_params", "download",
    "frames_dir", "frames_spec", "get_info", "load_events", "load_frames", "prepare", "preprocess",
    "raw_dir", "raw_params", "to_float",
]
