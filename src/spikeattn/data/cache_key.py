"""Where a dataset's frames are cached: the key made of everything that determines them.

Kept apart from `frames.py` (the build and load, torch) so that the workflow can name every
cache a selection needs while planning, without importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from spikeattn.data.registry import DATASETS, check_params, get_info
from spikeattn.io import short_hash
from spikeattn.plugins import loaded_digest

FRAMES_VERSION = 3  # bump when the conversion code changes what it writes


def frames_spec(name: str, params: Mapping[str, Any], T: int) -> dict[str, Any]:
    """Everything that determines the preprocessed tensors, and nothing else.

    Loader settings (training window, test clips, augmentation) act at load time and stay out.
    Static images and time-window frames do not depend on T, so one cache serves every T.
    An embedded dataset's raw data is made here too, so its `raw_version` is part of the spec;
    a plugin dataset's reader is the plugin's code, so its source digest is (an edit of the
    plugin rebuilds the frames under a new key; a comment does not).
    """
    info = get_info(name)
    params = check_params(name, params)
    params = {k: v for k, v in params.items() if k not in info.loader_keys}
    spec: dict[str, Any] = {"dataset": name, "params": params, "version": FRAMES_VERSION}
    if info.raw_version is not None:  # an embedded dataset: what `prepare` drew (the split)
        spec["raw_version"] = info.raw_version
    if (owner := DATASETS.owner(name)) is not None:
        spec["plugin"] = _plugin_digest(name, owner)
    if info.kind == "events":
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
        if params.get("frame_method", "time_bins") != "time_window":
            spec["T"] = T
    return spec


def _plugin_digest(name: str, owner: str) -> str:
    digest = loaded_digest(owner)
    if digest is None:
        raise ValueError(
            f"dataset {name!r} is registered by {owner}, which spikeattn.plugins did not load; "
            f"list {owner} under plugins: in params.yaml, so its frames are keyed on its code"
        )
    return digest


def frames_dir(name: str, params: Mapping[str, Any], T: int, root: str | Path) -> Path:
    """`root/data/frames/<name>/<readable prefix>-<hash of the spec>`."""
    spec = frames_spec(name, params, T)
    info = get_info(name)
    if info.kind == "static":
        prefix = f"s{spec['params'][info.size_key]}"
    elif "T" in spec:
        prefix = f"T{T}"
    else:
        prefix = f"dt{spec['params']['dt_ms']:g}ms"
    return Path(root) / "data" / "frames" / name / f"{prefix}-{short_hash(spec)}"
