"""Readers of DVS128-Gait, CIFAR-10/100 and an ImageNet folder, on tiny copies of their layouts."""

import pickle
import shutil

import numpy as np
import pytest
import torch
from layouts_other import WNIDS, write_cifar, write_gait, write_imagenet
from torchvision.io import encode_png

from spikeattn.data.sources import DataError, EventRecord, read_events
from spikeattn.data.sources.cifar import CIFAR10, CIFAR100
from spikeattn.data.sources.gait import DVS128Gait
from spikeattn.data.sources.imagenet import ImageNetFolder, load_image

# torchvision 0.29 deprecates its image codecs (for TorchCodec); they still work while pinned.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


# --- DVS128-Gait -------------------------------------------------------------------------------


@pytest.mark.parametrize("top", ["", "DVS128-Gait-Day/"])
def test_gait_records_and_events_round_trip(tmp_path, top):
    raw = tmp_path / "raw"
    samples = write_gait(raw, top=top)
    source = DVS128Gait()
    records = source.records(raw)
    release = raw / "DVS128-Gait-Day" / top
    assert [r.path for r in records] == [
        release / rel for rel in samples
    ]  # train then test, sorted
    for record, (rel, (events, label, split)) in zip(records, samples.items()):
        assert (record.label, record.split, record.group) == (label, split, f"subject {label}")
        got = read_events(source, record)
        assert got.dtype == source.read(record.path).dtype
        for col, key in enumerate("txyp"):
            np.testing.assert_array_equal(got[key], events[:, col])
    assert source.records(raw) == records  # deterministic


def test_gait_reads_minus_one_as_off_and_sorts_time(tmp_path):
    path = tmp_path / "1.txt"
    path.write_text("20 5 6 1\n10 7 8 -1\n30 127 0 0\n")
    events = DVS128Gait().read(path)
    assert events["t"].tolist() == [10, 20, 30]
    assert events["x"].tolist() == [7, 5, 127] and events["y"].tolist() == [8, 6, 0]
    assert events["p"].tolist() == [False, True, False]


@pytest.mark.parametrize(
    "content, words",
    [
        ("10 5 6 1\n20 5 6 1\n30 5", "unreadable dvs128-gait event file"),  # cut mid-line
        ("10 5 6 1\n20 128 6 1\n", "outside the 128x128 sensor"),
        ("10 5 6 1\n20 5 -1 1\n", "outside the 128x128 sensor"),
        ("10 5 6 1\n20 5 6 2\n", "polarities other than 0/1"),
        ("10 5 6\n20 5 6\n", "expected 4 columns"),
        ("", "holds no events"),
        ("10 5 6 1\n20 5 6 1.5\n", "unreadable dvs128-gait event file"),
    ],
)
def test_gait_bad_files_raise_naming_the_file(tmp_path, content, words):
    path = tmp_path / "train" / "3" / "7.txt"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(DataError, match=words) as err:
        read_events(DVS128Gait(), EventRecord(path, 3, 0))
    assert str(path) in str(err.value) and "spikeattn download dvs128-gait" in str(err.value)


def test_gait_truncated_release_file_raises(tmp_path):
    raw = tmp_path / "raw"
    write_gait(raw)
    source = DVS128Gait()
    record = source.records(raw)[0]
    data = record.path.read_bytes()
    record.path.write_bytes(data[: data.rindex(b" ")])  # the last line loses its polarity
    with pytest.raises(DataError, match="truncated or corrupted") as err:
        read_events(source, record)
    assert str(record.path) in str(err.value)


def test_gait_missing_file_raises(tmp_path):
    path = tmp_path / "train" / "0" / "1.txt"
    with pytest.raises(DataError, match="missing") as err:
        read_events(DVS128Gait(), EventRecord(path, 0, 0))
    assert str(path) in str(err.value)


def test_gait_layout_problems_raise(tmp_path):
    source, raw = DVS128Gait(), tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(DataError, match="spikeattn download dvs128-gait"):
        source.records(raw)  # nothing extracted
    (raw / "x" / "train" / "0").mkdir(parents=True)
    with pytest.raises(DataError, match="exactly one folder"):
        source.records(raw)  # train/ without test/
    (raw / "x" / "test").mkdir()
    with pytest.raises(DataError, match="holds no .txt"):
        source.records(raw)
    (raw / "x" / "train" / "0" / "1.txt").write_text("1 2 3 1\n")
    assert [(r.label, r.split) for r in source.records(raw)] == [(0, 0)]
    (raw / "x" / "test" / "21").mkdir()
    with pytest.raises(DataError, match="named 0..20") as err:
        source.records(raw)
    assert str(raw / "x" / "test" / "21") in str(err.value)
    shutil.rmtree(raw / "x" / "test" / "21")
    shutil.copytree(raw / "x", raw / "y")
    with pytest.raises(DataError, match="exactly one folder"):
        source.records(raw)  # two releases (e.g. Day and Night) side by side


def test_gait_ignores_macos_resource_folders(tmp_path):
    raw = tmp_path / "raw"
    samples = write_gait(raw)
    shutil.copytree(raw / "DVS128-Gait-Day", raw / "DVS128-Gait-Day" / "__MACOSX")
    assert len(DVS128Gait().records(raw)) == len(samples)


# --- CIFAR -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, which", [(CIFAR10, "cifar10"), (CIFAR100, "cifar100")])
def test_cifar_round_trips_pixels_and_labels(tmp_path, cls, which):
    raw = tmp_path / "raw"
    expected = write_cifar(raw, which)
    for split in ("train", "test"):
        images, labels = cls().load(raw, split)
        assert (
            images.dtype == np.uint8
            and images.shape[1:] == (32, 32, 3)
            and labels.dtype == np.int64
        )
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])
    with pytest.raises(ValueError, match="split"):
        cls().load(raw, "val")


def test_cifar_channels_come_from_the_rgb_planes(tmp_path):
    raw = tmp_path / "raw"
    write_cifar(raw)
    folder = raw / "cifar-10-python" / "cifar-10-batches-py"
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)]).astype(np.uint8)
    row[5] = 99  # red plane, row 0 column 5
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": row[None], b"labels": [7]}, protocol=2)
    )
    images, labels = CIFAR10().load(raw, "test")
    assert images[0, 0, 0].tolist() == [10, 20, 30] and images[0, 0, 5].tolist() == [99, 20, 30]
    assert labels.tolist() == [7]


@pytest.mark.parametrize("damage", ["truncate", "garble", "delete", "shape", "label", "no_key"])
def test_cifar_bad_batches_raise_naming_the_file(tmp_path, damage):
    raw = tmp_path / "raw"
    write_cifar(raw)
    path = raw / "cifar-10-python" / "cifar-10-batches-py" / "data_batch_3"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garble":
        path.write_bytes(b"\x00" * 16 + data[16:])
    elif damage == "delete":
        path.unlink()
    else:
        batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}
        if damage == "shape":
            batch[b"data"] = np.zeros((2, 1024), np.uint8)
        elif damage == "label":
            batch[b"labels"] = [1, 10]
        else:
            del batch[b"labels"]
        path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError) as err:
        CIFAR10().load(raw, "train")
    assert str(path) in str(err.value) and "spikeattn download cifar10" in str(err.value)
    CIFAR10().load(raw, "test")  # the other split is untouched


class _Opens:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_cifar_pickle_cannot_run_code(tmp_path):
    raw = tmp_path / "raw"
    write_cifar(raw, "cifar100")
    marker = tmp_path / "ran"
    path = raw / "cifar-100-python" / "cifar-100-python" / "test"
    path.write_bytes(pickle.dumps({b"data": _Opens(marker), b"fine_labels": []}, protocol=2))
    with pytest.raises(DataError, match="refusing global io.open") as err:
        CIFAR100().load(raw, "test")
    assert str(path) in str(err.value) and not marker.exists()


def test_cifar_missing_folder_raises(tmp_path):
    with pytest.raises(DataError, match="cifar-100-python/ folder.*spikeattn download cifar100"):
        CIFAR100().load(tmp_path, "train")


# --- ImageNet folder ---------------------------------------------------------------------------


def test_imagenet_records_classes_and_pixels(tmp_path):
    root = tmp_path / "imagenet"
    written = write_imagenet(root)
    source = ImageNetFolder()
    assert source.classes(root) == sorted(WNIDS)
    for split, folder in (("train", "train"), ("test", "val")):
        records = source.records(root, split)
        expected = sorted(
            (p, label) for p, (_, label) in written.items() if p.parent.parent.name == folder
        )
        assert records == expected
    for path, (image, _) in written.items():
        got = source.load_image(path)
        assert got.dtype == torch.uint8 and got.shape == image.shape
        if path.suffix == ".png":
            assert torch.equal(got, image)
        else:  # JPEG is lossy: close, not equal
            assert (got.float() - image.float()).abs().mean() < 4
    with pytest.raises(ValueError, match="split"):
        source.records(root, "val")


def test_imagenet_load_image_resizes_crops_and_makes_rgb(tmp_path):
    gray = torch.arange(12 * 20, dtype=torch.uint8).reshape(1, 12, 20)
    path = tmp_path / "gray.png"
    path.write_bytes(encode_png(gray).numpy().tobytes())
    full = ImageNetFolder.load_image(path)
    assert full.shape == (3, 12, 20) and all(torch.equal(c, gray[0]) for c in full)
    assert ImageNetFolder.load_image(path, 8).shape == (3, 8, 8)
    flat = tmp_path / "flat.png"
    flat.write_bytes(encode_png(torch.full((3, 10, 30), 77, dtype=torch.uint8)).numpy().tobytes())
    assert torch.equal(
        ImageNetFolder.load_image(flat, 5), torch.full((3, 5, 5), 77, dtype=torch.uint8)
    )


def test_imagenet_undecodable_image_raises_naming_it(tmp_path):
    root = tmp_path / "imagenet"
    written = write_imagenet(root)
    path = next(iter(written))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="cannot be decoded") as err:
        load_image(path)
    assert str(path) in str(err.value) and "datasets.imagenet.root" in str(err.value)
    path.unlink()
    with pytest.raises(DataError, match="cannot be read") as err:
        load_image(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "damage, where",
    [
        ("no_root", ""),
        ("no_val", "val"),
        ("no_train", "train"),
        ("empty_class", "val/n01443537"),
        ("extra_class", ""),
        ("only_non_images", "train/n01484850"),
    ],
)
def test_imagenet_bad_folder_raises_naming_the_params_key(tmp_path, damage, where):
    root = tmp_path / "imagenet"
    if damage != "no_root":
        write_imagenet(root)
    if damage in ("no_val", "no_train"):
        shutil.rmtree(root / where)
    elif damage in ("empty_class", "only_non_images"):
        for f in (root / where).iterdir():
            f.unlink()
        if damage == "only_non_images":
            (root / where / "notes.txt").write_text("x")
    elif damage == "extra_class":
        (root / "train" / "n09999999").mkdir()
    with pytest.raises(DataError, match="datasets.imagenet.root") as err:
        ImageNetFolder().records(root, "train")
    message = str(err.value)
    assert (
        str(root / where if where else root) + ":" in message
        and "<root>/val/<wnid>/*.JPEG" in message
    )
    if damage == "extra_class":
        assert "n09999999" in message


def test_imagenet_is_not_cached_as_arrays(tmp_path):
    with pytest.raises(NotImplementedError, match="streamed"):
        ImageNetFolder().load(tmp_path, "train")
