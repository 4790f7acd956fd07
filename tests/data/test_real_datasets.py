"""Each real dataset end to end, offline: tiny archives in its released layout, served from a
file:// mirror -> download (md5) -> extract -> preprocess -> a training batch."""

import hashlib
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from layouts_events import build_cifar10dvs, build_gesture, build_ncaltech101, build_nmnist
from layouts_other import write_cifar, write_gait, write_imagenet

from spikeattn.data import download, load_frames, preprocess
from spikeattn.data.loader import batches
from spikeattn.data.sources import DataError

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())["datasets"]
T = 4

# name: (writes the archives into a folder, overrides of params.yaml for these tiny samples)
CASES = {
    "dvs128-gesture": (build_gesture, {"dt_ms": 40, "test_clips": 2}),
    "n-mnist": (build_nmnist, {}),
    "n-caltech101": (build_ncaltech101, {"test_fraction": 0.5}),
    "cifar10-dvs": (build_cifar10dvs, {"test_fraction": 0.5}),
    "dvs128-gait": (write_gait, {"dt_ms": 2}),
    "cifar10": (write_cifar, {}),
}


def mirrored(name, tmp_path):
    """params for `name` whose archives come from a local file:// mirror of tiny archives."""
    build, overrides = CASES[name]
    mirror = tmp_path / "mirror"
    build(mirror)
    params = {**PARAMS[name], **overrides}
    files = sorted(p for p in mirror.iterdir() if p.is_file())
    params["archives"] = [
        {"file": p.name, "md5": hashlib.md5(p.read_bytes()).hexdigest(), "urls": [p.as_uri()]}
        for p in files
    ]
    return params


@pytest.mark.parametrize("name", sorted(CASES))
def test_download_preprocess_and_batch(name, tmp_path):
    params = mirrored(name, tmp_path)
    root = tmp_path / "root"
    raw = download(name, params, root)
    assert (raw / "manifest.json").is_file()
    cache = preprocess(name, params, T, root)
    assert sorted(p.name for p in cache.iterdir()) == ["meta.json", "test.pt", "train.pt"]
    frames = load_frames(cache)
    if frames.meta["layout"] == "events":  # time windows: the events, framed per window
        assert frames.train.x is None and frames.train.address.dtype in (torch.int16, torch.int32)
        assert (
            frames.train.t.dtype == torch.int32
            and len(frames.train.offsets) == len(frames.train.y) + 1
        )
    else:
        assert frames.train.x.dtype in (torch.uint8, torch.int16)
    assert frames.train.y.dtype == torch.int64
    batch = next(iter(batches(frames, params, "train", 2, T, seed=0)))
    test = next(iter(batches(frames, params, "test", 2, T)))
    assert batch.x.dtype == torch.float32 and batch.y.dtype == torch.int64
    if name == "cifar10":  # [0, 1] pixels normalised with params' mean/std (GAC's values)
        mean, std = (torch.tensor(params["normalize"][k]).view(3, 1, 1) for k in ("mean", "std"))
        assert batch.x.shape[1:] == (3, 32, 32)
        assert (-mean / std <= test.x + 1e-6).all() and (test.x <= (1 - mean) / std + 1e-6).all()
        pixels = test.x * std + mean
        assert torch.allclose(pixels * 255, (pixels * 255).round(), atol=1e-3)
        return
    size = (
        (128 // params["downsample"],) * 2
        if name.startswith("dvs128")
        else {"n-mnist": (34, 34), "n-caltech101": (180, 240), "cifar10-dvs": (128, 128)}[name]
    )
    assert batch.x.shape[1:] == (T, 2, *size)
    clips = params.get("test_clips", 1) if params["frame_method"] == "time_window" else 1
    assert test.clips == clips and test.x.shape[0] == clips * len(test.y)
    # frames hold whole event counts, and the epoch's clips see events
    every = torch.cat([b.x for b in batches(frames, params, "train", 2, T, seed=0)])
    assert every.sum() > 0 and torch.equal(every, every.round())


def test_truncated_event_file_fails_naming_it_and_leaves_no_cache(tmp_path):
    params = mirrored("dvs128-gesture", tmp_path)
    root = tmp_path / "root"
    raw = download("dvs128-gesture", params, root)
    victim = sorted(raw.rglob("*.npy"))[0]
    victim.write_bytes(victim.read_bytes()[:-7])
    with pytest.raises(DataError, match=str(victim)):
        preprocess("dvs128-gesture", params, T, root)
    assert not (root / "data" / "frames" / "dvs128-gesture").exists() or not any(
        (root / "data" / "frames" / "dvs128-gesture").iterdir()
    )


def test_wrong_md5_on_the_mirror_names_the_file_and_where_to_put_it(tmp_path):
    params = mirrored("n-mnist", tmp_path)
    params["archives"][0]["md5"] = "0" * 32
    root = tmp_path / "root"
    with pytest.raises(Exception, match="place it at") as err:
        download("n-mnist", params, root)
    assert params["archives"][0]["file"] in str(err.value) and "0" * 32 in str(err.value)
    assert not (root / "data" / "raw" / "n-mnist" / "manifest.json").exists()


def test_imagenet_folder_is_checked_indexed_and_streamed(tmp_path):
    folder = tmp_path / "imagenet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_imagenet(folder)
    params = {**PARAMS["imagenet"], "root": str(folder), "image_size": 16}
    root = tmp_path / "root"
    download("imagenet", params, root)
    frames = load_frames(preprocess("imagenet", params, T, root))
    assert frames.meta["layout"] == "files" and len(frames.train.paths) == len(frames.train.y) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = next(iter(batches(frames, params, "train", 2, T, workers=0)))
    assert batch.x.shape == (2, 3, 16, 16) and batch.x.dtype == torch.float32


def test_missing_imagenet_folder_names_the_key(tmp_path):
    params = {**PARAMS["imagenet"], "root": str(tmp_path / "nowhere")}
    with pytest.raises(DataError, match="datasets.imagenet.root"):
        download("imagenet", params, tmp_path / "root")


def test_worker_processes_build_the_same_cache(tmp_path):
    params = mirrored("n-mnist", tmp_path)
    root = tmp_path / "root"
    download("n-mnist", params, root)
    serial = load_frames(preprocess("n-mnist", params, T, root))
    parallel = load_frames(preprocess("n-mnist", params, T, root, workers=2))
    for part in ("train", "test"):
        a, b = getattr(serial, part), getattr(parallel, part)
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
