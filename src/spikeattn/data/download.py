"""Downloaded (real) datasets: not implemented yet.

tonic's download URLs for DVS128 Gesture and others have broken or moved (see REFERENCE.md,
section 5), so a downloader must pin its own mirror and checksum; until one exists, the
embedded datasets stand in and this module says so plainly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from spikeattn.data.registry import DATASETS, get_info


def download(name: str, params: Mapping[str, Any], root: str | Path) -> Path:
    """Fetch dataset `name` into `root/data/raw/<name>/`; no downloadable dataset exists yet."""
    if get_info(name).source == "embedded":
        raise ValueError(f"dataset {name!r} is built locally, not downloaded: use "
                         f"spikeattn.data.prepare({name!r}, ...) (`spikeattn prepare {name}`)")
    embedded = ", ".join(n for n, info in DATASETS.items() if info.source == "embedded")
    raise NotImplementedError(
        "downloading real datasets (DVS128 Gesture, ...) is not implemented yet; use an embedded "
        f"dataset ({embedded}) or add a downloader with a pinned mirror and checksum to "
        "spikeattn/data/download.py (tonic's own URLs are broken, see REFERENCE.md section 5)")
