"""Raw data -> the tensors a model trains on, cached under a key made of every parameter.

tonic's DiskCachedDataset keys its cache by file name only and cannot see a transform
change, so here the directory name is a hash of the full spec instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tonic.transforms import ToFrame

from spikeattn.data.embedded import DIGITS_MAX, load_digits_raw, load_events, read_raw, upsample
from spikeattn.data.registry import check_params, get_info
from spikeattn.io import atomic_dir, read_json, short_hash, write_json

FRAMES_VERSION = 1  # bump when the conversion code changes what it writes
EVENT_FRAME_METHOD = "tonic.transforms.ToFrame(n_time_bins=T)"  # what DVS128 Gesture will use too


def frames_spec(name: str, params: Mapping[str, Any], T: int) -> dict[str, Any]:
    """Everything that determines the preprocessed tensors, and nothing else.

    Static images do not depend on T (the model's input coding repeats them over time), so T
    is left out of their spec and one cache serves every T.
    """
    params = check_params(name, params)
    spec: dict[str, Any] = {"dataset": name, "params": params, "version": FRAMES_VERSION}
    if get_info(name).kind == "events":
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T (n_time_bins) must be a positive integer, got {T!r}")
        spec.update(T=T, frame_method=EVENT_FRAME_METHOD)
    return spec


def frames_dir(name: str, params: Mapping[str, Any], T: int, root: str | Path) -> Path:
    """`root/data/frames/<name>/<readable prefix>-<hash of the spec>`."""
    spec = frames_spec(name, params, T)
    info = get_info(name)
    prefix = f"T{T}" if info.kind == "events" else f"s{spec['params'][info.size_key]}"
    return Path(root) / "data" / "frames" / name / f"{prefix}-{short_hash(spec)}"


def _static_frames(raw: Path, params: dict) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """uint8 [N, 1, S, S] images in 0..255, bilinearly resized from the 8x8 digits."""
    images, labels, split = load_digits_raw(raw)
    x = np.round(upsample(images, params["image_size"]) * (255 / DIGITS_MAX))  # bilinear: stays in 0..255
    return {"x": x.astype(np.uint8)[:, None], "y": labels, "split": split}, {"scale": 1 / 255}


def _event_frames(raw: Path, params: dict, T: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """[N, T, 2, H, W] event counts per polarity and time bin, through tonic's ToFrame.

    Stored as uint8 when every count fits, else int16 (tonic's own dtype), never clipped.
    """
    samples, labels, split = load_events(raw)
    size = params["sensor_size"]
    to_frame = ToFrame(sensor_size=(size, size, 2), n_time_bins=T)
    x = np.stack([to_frame(samples[i]) for i in range(len(samples))])
    counted = int(x.sum(dtype=np.int64))
    dtype = np.uint8 if x.max() <= np.iinfo(np.uint8).max else np.int16
    # tonic's bins end at t0 + T * ((t_last - t0) // T) (exclusive), so the last few events
    # of a sample are not counted; recorded here so the loss is visible, not hidden.
    extra = {"scale": 1.0, "events_total": len(samples.events), "events_in_frames": counted}
    return {"x": x.astype(dtype), "y": labels, "split": split}, extra


def preprocess(name: str, params: Mapping[str, Any], T: int, root: str | Path) -> Path:
    """Write `frames_dir(...)` atomically: frames.pt (train/test x and y) and meta.json."""
    spec = frames_spec(name, params, T)
    raw, _ = read_raw(name, params, root)
    kind = get_info(name).kind
    if kind == "events":
        data, extra = _event_frames(raw, spec["params"], T)
    else:
        data, extra = _static_frames(raw, spec["params"])
    test = data["split"] == 1
    tensors = {
        "train_x": torch.from_numpy(data["x"][~test]), "train_y": torch.from_numpy(data["y"][~test]),
        "test_x": torch.from_numpy(data["x"][test]), "test_y": torch.from_numpy(data["y"][test]),
    }
    meta = {
        "spec": spec, "kind": kind,
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
        "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()},
        "counts": {"train": int((~test).sum()), "test": int(test.sum())},
        "max_value": int(data["x"].max()),
        **extra,
    }
    target = frames_dir(name, params, T, root)
    with atomic_dir(target) as tmp:
        torch.save(tensors, tmp / "frames.pt")
        write_json(tmp / "meta.json", meta)
    return target


def to_float(x: torch.Tensor, meta: Mapping[str, Any]) -> torch.Tensor:
    """A stored batch as float32 model input: images in [0, 1], event counts as they are."""
    return x.to(torch.float32) * meta["scale"]


@dataclass(frozen=True)
class Frames:
    """The preprocessed tensors of one dataset, as stored (uint8/int16 x, int64 y)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    meta: dict[str, Any]

    def as_float(self, x: torch.Tensor) -> torch.Tensor:
        return to_float(x, self.meta)


def load_frames(path: str | Path) -> Frames:
    """Load a `preprocess` output directory."""
    path = Path(path)
    if not (path / "frames.pt").exists():
        raise FileNotFoundError(f"{path / 'frames.pt'}: not found; build it with "
                                f"`spikeattn preprocess {path.parent.name} --T <T>` (or snakemake)")
    tensors = torch.load(path / "frames.pt", weights_only=True)
    return Frames(**tensors, meta=read_json(path / "meta.json"))
