"""The dataset registry: each reader class is the entry, DatasetInfo is read off it, and the
registry imports neither torch nor the download code's network side into the readers."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeattn.data import DATASETS, EVENT_DTYPE, get_info
from spikeattn.data.sources import ENTRIES, get_source

SOURCES = Path(__file__).resolve().parents[2] / "src" / "spikeattn" / "data" / "sources"

# name: (kind, source, classes, input channels, sensor, size key, streamed), in registry order
EXPECTED = {
    "digits": ("static", "embedded", 10, 1, None, "image_size", False),
    "digits-dvs": ("events", "embedded", 10, 2, None, "sensor_size", False),
    "dvs128-gesture": ("events", "download", 11, 2, (128, 128), None, False),
    "dvs128-gait": ("events", "download", 21, 2, (128, 128), None, False),
    "cifar10-dvs": ("events", "download", 10, 2, (128, 128), None, False),
    "n-caltech101": ("events", "download", 101, 2, (180, 240), None, False),
    "n-mnist": ("events", "download", 10, 2, (34, 34), None, False),
    "cifar10": ("static", "download", 10, 3, None, "image_size", False),
    "cifar100": ("static", "download", 100, 3, None, "image_size", False),
    "imagenet": ("static", "folder", 1000, 3, None, "image_size", True),
}
OFFICIAL_SPLIT = {
    "dvs128-gesture": True,
    "dvs128-gait": True,
    "cifar10-dvs": False,
    "n-caltech101": False,
    "n-mnist": True,
}


def test_registry_facts_in_order():
    """Also what the readers' tests checked before the reader became the entry: names, classes,
    sensors (moved here from test_sources_events/test_sources_other)."""
    assert list(DATASETS) == list(EXPECTED) == [entry.name for entry in ENTRIES]
    for name, info in DATASETS.items():
        got = (
            info.kind,
            info.source,
            info.num_classes,
            info.in_channels,
            info.sensor,
            info.size_key,
            info.streamed,
        )
        assert got == EXPECTED[name], name


@pytest.mark.parametrize("name", sorted(OFFICIAL_SPLIT))
def test_event_readers_name_their_dataset_and_split(name):
    source = get_source(name)
    _, _, classes, _, sensor, _, _ = EXPECTED[name]
    assert (source.name, source.num_classes, source.sensor) == (name, classes, sensor)
    assert source.official_split is OFFICIAL_SPLIT[name]


def test_parameter_roles():
    loader = ("train_window", "test_clips", "augment", "normalize")
    dvs = (
        "frame_method",
        "dt_ms",
        "downsample",
        "event_count_split",
        "split",
        "test_fraction",
        "split_seed",
    )
    assert get_info("digits").frame_keys == ("image_size",) and get_info("digits").loader_keys == ()
    assert get_info("digits-dvs").frame_keys == () and get_info("digits-dvs").loader_keys == ()
    assert (
        get_info("n-mnist").frame_keys == dvs + loader and get_info("n-mnist").loader_keys == loader
    )
    assert get_info("cifar10").frame_keys == ("image_size",) + loader
    assert get_info("imagenet").frame_keys == ("image_size",) + loader + ("root",)


def test_per_class_training_counts():
    per_class = {"split": "per_class", "test_fraction": 0.1234}
    # round(keep * total + classes / 2); gait counts its 20 subjects, not its 21 label slots
    assert get_info("dvs128-gait").train_count(per_class) == 3516
    assert get_info("n-caltech101").train_count(per_class) == round(0.8766 * 8709 + 50.5)
    assert (
        get_info("cifar10-dvs").train_count(per_class) == 10 * 877
    )  # ceil(0.8766 * 1000) per class
    assert get_info("n-mnist").train_count({"split": "official"}) == 60000
    assert get_info("cifar10-dvs").train_count({"split": "official"}) is None


def test_one_event_dtype_and_it_is_tonics():
    import tonic.io

    assert EVENT_DTYPE == tonic.io.events_struct
    assert EVENT_DTYPE == np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])


def test_readers_do_not_import_download():
    for module in SOURCES.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "download" not in (node.module or ""), f"{module.name} imports {node.module}"


def test_registry_import_is_cheap():
    code = (
        "import sys, spikeattn.data; spikeattn.data.DATASETS; "
        "print(sorted(m for m in ('torch', 'tonic', 'sklearn', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
