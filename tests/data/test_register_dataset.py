"""A plugin's dataset: a folder of event files the user points `root:` at, read by the plugin's
own EventSource, through the registry, the schema, `download` (the folder check), `preprocess`
and the frames key, which carries the plugin's source digest."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeattn import plugins, registry
from spikeattn.data import (
    DATASETS,
    download,
    frames_dir,
    frames_spec,
    get_info,
    preprocess,
    register_dataset,
)
from spikeattn.data.sources import READERS, EventRecord, EventSource, get_source
from spikeattn.schema import DATASET_SCHEMAS, part, violations

pytestmark = pytest.mark.usefixtures("plugin_sandbox")

LABEL = "my_dvs.py"
NAME = "my-dvs"

# A reader of <root>/<class>/<n>.npy, each a [4, n] int64 array of t, x, y, p rows.
PLUGIN = textwrap.dedent('''
    """Our own event camera's recordings: <root>/<class>/<n>.npy, rows t x y p."""
    from pathlib import Path

    import numpy as np

    from spikeattn.data.sources.base import EVENT_DTYPE, EventRecord
    from spikeattn.plugins import EventSource, register_dataset


    @register_dataset
    class MyDVS(EventSource):
        name = "my-dvs"
        origin = "folder"
        sensor = (8, 8)
        num_classes = 2
        official_split = False
        total = 8

        def records(self, raw):
            return [
                EventRecord(path, int(path.parent.name))
                for path in sorted(Path(raw).glob("*/*.npy"))
            ]

        def read(self, path):
            t, x, y, p = np.load(path)
            events = np.empty(len(t), EVENT_DTYPE)
            events["t"], events["x"], events["y"], events["p"] = t, x, y, p
            return events
    ''')


def params(root: Path) -> dict:
    return {
        "source": "folder",
        "root": str(root),
        "frame_method": "time_bins",
        "dt_ms": None,
        "downsample": 1,
        "split": "per_class",
        "test_fraction": 0.5,
        "split_seed": 0,
    }


def recordings(root: Path) -> Path:
    """Four recordings per class: class 0 fires at pixel (1, 2), class 1 at (5, 6)."""
    rng = np.random.default_rng(0)
    for label, (x, y) in enumerate([(1, 2), (5, 6)]):
        (root / str(label)).mkdir(parents=True)
        for n in range(4):
            t = np.sort(rng.integers(0, 1000, 20))
            rows = np.stack([t, np.full(20, x), np.full(20, y), rng.integers(0, 2, 20)])
            np.save(root / str(label) / f"{n}.npy", rows.astype(np.int64))
    return root


def unknown(name: str) -> str:
    """What the schema says of a `datasets:` entry no dataset is registered for."""
    return f"(top level): unknown key(s) '{name}'; allowed: " + ", ".join(sorted(DATASETS))


def load(tmp_path: Path, source: str = PLUGIN) -> None:
    (tmp_path / LABEL).write_text(source)
    plugins.load_plugins([LABEL], root=tmp_path)


def test_a_folder_event_dataset_runs_from_registry_to_frames(tmp_path):
    folder = recordings(tmp_path / "recordings")
    entry = {NAME: params(folder)}
    assert violations(entry, part("properties", "datasets")) == [unknown(NAME)]

    load(tmp_path)
    assert NAME in DATASETS and DATASETS.owner(NAME) == LABEL
    assert violations(entry, part("properties", "datasets")) == []
    missing_root = {k: v for k, v in params(folder).items() if k != "root"}
    assert any(
        "root" in v for v in violations({NAME: missing_root}, part("properties", "datasets"))
    )
    info = get_info(NAME)
    assert (info.kind, info.source, info.num_classes, info.input_size(params(folder))) == (
        "events",
        "folder",
        2,
        (8, 8),
    )
    assert type(get_source(NAME)).__name__ == "MyDVS"

    spec = frames_spec(NAME, params(folder), T=2)
    assert spec["plugin"] == plugins.loaded_digest(LABEL) is not None

    work = tmp_path / "work"
    download(NAME, params(folder), work)  # a folder dataset: its layout checked, recorded
    frames = preprocess(NAME, params(folder), 2, work)
    assert frames == frames_dir(NAME, params(folder), 2, work)
    test = torch.load(frames / "test.pt")
    assert test["x"].shape == (4, 2, 2, 8, 8) and sorted(test["y"].tolist()) == [0, 0, 1, 1]
    for frames_of, label in zip(test["x"], test["y"]):  # every event at its class's pixel
        col, row = (1, 2) if label == 0 else (5, 6)
        assert frames_of.sum() == frames_of[:, :, row, col].sum() > 0


def test_an_edit_of_the_reader_moves_the_frames_key_a_comment_does_not(tmp_path):
    folder = recordings(tmp_path / "recordings")
    load(tmp_path)
    key = frames_dir(NAME, params(folder), 2, tmp_path)
    load(tmp_path, PLUGIN + "\n# a comment\n")
    assert frames_dir(NAME, params(folder), 2, tmp_path) == key
    load(tmp_path, PLUGIN.replace("total = 8", "total = 9"))
    assert frames_dir(NAME, params(folder), 2, tmp_path) != key


def test_a_dropped_plugin_takes_its_dataset_and_schema_entry_with_it(tmp_path):
    folder = recordings(tmp_path / "recordings")
    state = registry.snapshot()
    load(tmp_path)
    assert NAME in READERS and NAME in DATASET_SCHEMAS
    registry.restore(state)
    assert NAME not in DATASETS and NAME not in READERS and NAME not in DATASET_SCHEMAS
    assert violations({NAME: params(folder)}, part("properties", "datasets")) == [unknown(NAME)]
    with pytest.raises(KeyError, match="no reader"):
        get_source(NAME)


def test_a_dataset_registered_outside_the_loader_has_no_frames_key(tmp_path):
    with registry.loading("tests/fake.py"):
        register_dataset(type("Loose", (MyEvents,), {"name": "loose"}))
    with pytest.raises(ValueError, match="tests/fake.py under plugins:"):
        frames_spec("loose", params(tmp_path), T=2)


class MyEvents(EventSource):
    name = "my-events"
    origin = "folder"
    sensor = (4, 4)
    num_classes = 2

    def records(self, raw):
        return [EventRecord(Path(raw) / "a.npy", 0)]

    def read(self, path):
        return np.load(path)


def variant(**attrs) -> type:
    return type("Variant", (MyEvents,), attrs)


@pytest.mark.parametrize(
    "cls, message",
    [
        (variant(origin="embedded"), "origin 'embedded'.*'folder'"),
        (variant(name="n-mnist"), r"'n-mnist' is already registered by spikeattn \(built in\)"),
        (variant(name="my_events"), "single hyphens"),
        (variant(sensor=None), r"sensor = \(height, width\)"),
        (variant(num_classes=0), "num_classes"),
        (variant(records=EventSource.records), "define records"),
        (variant(params_schema={"type": "object"}), "properties"),
        (variant(params_schema={"type": "object", "properties": {"a": {"type": 3}}}), "invalid"),
        (EventRecord, "subclass"),
    ],
)
def test_a_dataset_outside_the_contract_is_refused(cls, message):
    before = (dict(DATASETS), dict(READERS), dict(DATASET_SCHEMAS))
    with (
        registry.loading("tests/fake.py"),
        pytest.raises(registry.RegistrationError, match=message),
    ):
        register_dataset(cls)
    assert (dict(DATASETS), dict(READERS), dict(DATASET_SCHEMAS)) == before


def test_a_download_dataset_takes_the_built_in_entry_of_its_kind():
    with registry.loading("tests/fake.py"):
        register_dataset(variant(name="my-download", origin="download"))
    assert DATASET_SCHEMAS["my-download"] == {"$ref": "#/$defs/dvs_download"}
    assert get_info("my-download").schema["required"] == get_info("n-mnist").schema["required"]


IMAGES = textwrap.dedent('''
    """Our own images: <root>/<split>.npz holding images [N, H, W, 3] uint8 and labels [N]."""
    from pathlib import Path

    import numpy as np

    from spikeattn.plugins import ImageSource, register_dataset


    @register_dataset
    class MyImages(ImageSource):
        name = "my-images"
        origin = "folder"
        num_classes = 3

        def load(self, raw, split):
            data = np.load(Path(raw) / f"{split}.npz")
            return data["images"], data["labels"]
    ''')


def test_a_folder_image_dataset_is_cached_at_its_image_size(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        images = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
        np.savez(folder / f"{split}.npz", images=images, labels=np.arange(n) % 3)
    (tmp_path / "my_images.py").write_text(IMAGES)
    plugins.load_plugins(["my_images.py"], root=tmp_path)
    entry = {"source": "folder", "root": str(folder), "image_size": 8}
    assert violations({"my-images": entry}, part("properties", "datasets")) == []
    work = tmp_path / "work"
    download("my-images", entry, work)
    frames = preprocess("my-images", entry, 1, work)
    train = torch.load(frames / "train.pt")
    assert train["x"].shape == (6, 3, 8, 8) and train["y"].tolist() == [0, 1, 2, 0, 1, 2]
    assert frames_spec("my-images", entry, 1)["plugin"] == plugins.loaded_digest("my_images.py")
