"""Raw data -> the compact tensors a model trains on, cached under a key made of their parameters.

tonic's DiskCachedDataset keys its cache by file name only and cannot see a transform
change, so here the directory name is a hash of the full spec instead. Each cache directory
holds one file per split (`train.pt`, `test.pt`) and `meta.json`, and appears atomically:
a failed or interrupted build leaves nothing a later run could trust. meta.json records each
split file's sha256 and size (`digests`), and every load checks them first, so a split that was
damaged, truncated or replaced after the build is refused instead of trained on.

Layouts (meta["layout"]):
- ``fixed``: x [N, ...] (images [N, C, H, W] uint8; event frames [N, T, 2, H, W] counts).
- ``events``: the events of time-window datasets (MA-SNN), t [E] (µs since each sample's first
  event) and address [E] (p * H * W + y * W + x) with `offsets` [N + 1]: the loader frames the
  authors' windows from them on the device (`event_windows.py`); meta["window"] gives dt and
  the frame shape.
- ``files``: an index of image files (ImageNet), read from disk while training.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from spikeattn.data import sources
from spikeattn.data.cache_key import frames_dir, frames_spec
from spikeattn.data.errors import DataError
from spikeattn.data.event_frames import Framing, compact, pack_window_events
from spikeattn.data.registry import check_params, files_dir, get_info, raw_dir, raw_params
from spikeattn.data.sources.base import SPLITS
from spikeattn.data.splits import per_class_split
from spikeattn.io import atomic_dir, file_digest, read_json, write_json


def read_raw(name: str, params: Mapping[str, Any], root: str | Path) -> tuple[Path, dict]:
    """The raw dir and its manifest, checked to match `params`; the error says how to fix it."""
    info = get_info(name)
    stage = "prepare" if info.source == "embedded" else "download"
    target = raw_dir(name, root)
    if not (target / "manifest.json").exists():
        raise FileNotFoundError(
            f"{target}: raw data not found; run `spikeattn {stage} {name}` first"
        )
    manifest = read_json(target / "manifest.json")
    if manifest["params"] != raw_params(name, params):
        raise ValueError(
            f"{target} was built with other parameters ({manifest['params']}); "
            f"run `spikeattn {stage} {name}` again"
        )
    return target, manifest


# --- building each kind ----------------------------------------------------------------------


@dataclass
class Built:
    """One split's arrays (or file index) before saving."""

    tensors: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def _frame_chunk(args) -> list[np.ndarray]:
    """Worker: read and frame a chunk of records (in a subprocess when workers > 1)."""
    name, framing, records = args
    source = sources.get_source(name)
    return [framing(sources.read_events(source, record)) for record in records]


def _frame_all(name: str, framing: Framing, records: list, workers: int) -> list[np.ndarray]:
    """Frames of every record, in order; spread over `workers` processes in ~4 chunks each."""
    if workers <= 1 or len(records) <= 1:
        return _frame_chunk((name, framing, records))
    size = math.ceil(len(records) / (4 * workers))
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    with ProcessPoolExecutor(workers) as pool:
        return [
            f for part in pool.map(_frame_chunk, [(name, framing, c) for c in chunks]) for f in part
        ]


def _pack_events(framed: list[np.ndarray], labels: np.ndarray, framing: Framing) -> dict[str, Any]:
    if framing.keeps_events:
        height, width = framing.size
        out = {
            k: torch.from_numpy(v)
            for k, v in pack_window_events(framed, 2 * height * width).items()
        }
    else:
        out = {"x": torch.from_numpy(compact(framed))}
    return {**out, "y": torch.as_tensor(labels, dtype=torch.int64)}


def _real_events(
    name: str, params: dict, framing: Framing, root: Path, workers: int
) -> dict[str, Built]:
    source = sources.get_source(name)
    records = source.records(files_dir(name, params, root))
    labels = np.array([r.label for r in records], dtype=np.int64)
    if params["split"] == "official":
        if any(r.split is None for r in records):
            raise ValueError(f"datasets.{name}.split: {name} has no official split; use per_class")
        split = np.array([r.split for r in records], dtype=np.int8)
    else:
        split = per_class_split(labels, params["test_fraction"], params["split_seed"], dataset=name)
    every = _frame_all(name, framing, records, workers)  # one pool for both splits
    built = {}
    for k, part in enumerate(SPLITS):
        chosen = [r for r, s in zip(records, split) if s == k]
        frames = [f for f, s in zip(every, split) if s == k]
        built[part] = Built(
            _pack_events(frames, labels[split == k], framing),
            {"files": len(chosen), "groups": sorted({r.group for r in chosen} - {""})},
        )
    return built


def _embedded_events(source: sources.DigitsDVS, framing: Framing, raw: Path) -> dict[str, Built]:
    samples, labels, split = source.samples(raw)
    built = {}
    for k, part in enumerate(SPLITS):
        idx = np.flatnonzero(split == k)
        frames = [framing(samples[i]) for i in idx]
        counted = int(sum(int(f.sum(dtype=np.int64)) for f in frames))
        events = int(sum(len(samples[i]) for i in idx))
        # tonic's bins end at t0 + T * ((t_last - t0) // T) (exclusive), so the last few events
        # of a sample are not counted; recorded here so the loss is visible, not hidden.
        built[part] = Built(
            _pack_events(frames, labels[idx], framing),
            {"events_total": events, "events_in_frames": counted},
        )
    return built


def _images(source: sources.ImageSource, params: dict, raw: Path) -> dict[str, Built]:
    built = {}
    for part in SPLITS:
        x, labels = source.images(raw, part, params["image_size"])
        built[part] = Built(
            {"x": torch.from_numpy(x), "y": torch.as_tensor(labels, dtype=torch.int64)}
        )
    return built


def _image_files(source: sources.ImageNetFolder, params: dict) -> dict[str, Built]:
    root = Path(params["root"]).expanduser()
    source.check(root)
    built = {}
    for part in SPLITS:
        records = source.records(root, part)
        built[part] = Built(
            {
                "paths": [str(p.relative_to(root)) for p, _ in records],
                "y": torch.tensor([label for _, label in records], dtype=torch.int64),
            },
            {"root": str(root)},
        )
    return built


def preprocess(
    name: str, params: Mapping[str, Any], T: int, root: str | Path, workers: int = 1
) -> Path:
    """Build `frames_dir(...)` atomically: train.pt, test.pt and meta.json."""
    root = Path(root)
    spec = frames_spec(name, params, T)
    info = get_info(name)
    checked = check_params(name, params)
    raw, _ = read_raw(name, checked, root)
    source = sources.get_source(name)
    framing = None
    if info.streamed:
        built, layout = _image_files(source, checked), "files"
    elif info.kind == "static":
        built, layout = _images(source, checked, files_dir(name, checked, root)), "fixed"
    else:  # events: a real camera's sensor, or the embedded camera's square `sensor_size`
        framing = Framing.from_params(checked, info.sensor or info.input_size(checked), T)
        if info.source == "embedded":
            built = _embedded_events(source, framing, raw)
        else:
            built = _real_events(name, checked, framing, root, workers)
        layout = "events" if framing.keeps_events else "fixed"
    for part, b in built.items():
        if len(b.tensors["y"]) == 0:
            raise ValueError(
                f"{name}: the {part} split is empty; check datasets.{name}.split and test_fraction"
            )
    meta = {
        "spec": spec,
        "kind": info.kind,
        "layout": layout,
        "scale": 1 / 255 if info.kind == "static" else 1.0,
        "counts": {part: len(b.tensors["y"]) for part, b in built.items()},
        "class_counts": {
            part: torch.bincount(b.tensors["y"], minlength=info.num_classes).tolist()
            for part, b in built.items()
        },
        "shapes": {
            part: {k: list(v.shape) for k, v in b.tensors.items() if torch.is_tensor(v)}
            for part, b in built.items()
        },
        "dtypes": {
            part: {
                k: str(v.dtype).removeprefix("torch.")
                for k, v in b.tensors.items()
                if torch.is_tensor(v)
            }
            for part, b in built.items()
        },
        "max_value": (
            max(int(b.tensors["x"].max()) for b in built.values())
            if layout == "fixed"
            else 255
            if layout == "files"
            else None
        ),
        **{part: b.extra for part, b in built.items() if b.extra},
    }
    if layout == "events":
        meta["window"] = {"dt_us": framing.dt_us, "frame_shape": [2, *framing.size]}
    if info.source == "embedded" and info.kind == "events":
        meta["events_total"] = sum(b.extra["events_total"] for b in built.values())
        meta["events_in_frames"] = sum(b.extra["events_in_frames"] for b in built.values())
    target = frames_dir(name, params, T, root)
    with atomic_dir(target) as tmp:
        for part, b in built.items():
            torch.save(b.tensors, tmp / f"{part}.pt")
        meta["digests"] = {part: split_digest(tmp / f"{part}.pt") for part in built}
        write_json(tmp / "meta.json", meta)
    return target


def split_digest(file: Path) -> dict[str, Any]:
    """What meta.json records of a split file, so every reader can tell it is the file
    `preprocess` wrote."""
    return {"sha256": file_digest(file), "bytes": file.stat().st_size}


# --- reading a cache back --------------------------------------------------------------------


def to_float(x: torch.Tensor, meta: Mapping[str, Any]) -> torch.Tensor:
    """A stored batch as float32 model input: images in [0, 1], event counts as they are."""
    return x.to(torch.float32) * meta["scale"]


@dataclass(frozen=True)
class Split:
    """One split as stored: x (uint8/int16) or events (t, address, offsets) or file paths by
    layout, and y (int64)."""

    x: torch.Tensor | None
    y: torch.Tensor
    offsets: torch.Tensor | None = None
    paths: list[str] | None = None
    t: torch.Tensor | None = None
    address: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Frames:
    """The preprocessed splits of one dataset and their meta.json."""

    train: Split
    test: Split
    meta: dict[str, Any]


def rebuild_hint(cache: Path) -> str:
    """How to rebuild a damaged cache: its Snakemake job, or the stage by hand."""
    return (
        f"rebuild the cache with `snakemake --cores N --forcerun {cache / 'meta.json'}` (or "
        f"`spikeattn preprocess {cache.parent.name} --T <T>`, with --study S for a study's "
        "overrides)"
    )


def read_meta(cache: str | Path) -> dict[str, Any]:
    """A cache's meta.json; warns when it records no digests (a cache built before they were
    recorded loads unverified rather than being thrown away)."""
    cache = Path(cache)
    try:
        meta = read_json(cache / "meta.json")
    except ValueError:
        raise DataError(f"{cache / 'meta.json'}: not valid JSON; {rebuild_hint(cache)}") from None
    if "digests" not in meta:
        warnings.warn(
            f"{cache / 'meta.json'} records no digests (the cache predates them), so its "
            f"split files cannot be verified; {rebuild_hint(cache)} to record them",
            stacklevel=2,
        )
    return meta


def _verify_digest(file: Path, meta: Mapping[str, Any], part: str) -> None:
    """Refuse a split whose bytes are not those `preprocess` wrote. One sha256 pass over the
    file (about 1 GB/s on one core), once per job that loads the cache."""
    digests = meta.get("digests")
    if digests is None:
        return  # an older cache: read_meta warned
    found, recorded = split_digest(file), digests.get(part) or {}
    if found["sha256"] == recorded.get("sha256"):
        return
    twins = [f"{other}.pt" for other, d in digests.items() if d["sha256"] == found["sha256"]]
    copy = f"; it is a copy of {twins[0]}" if twins else ""
    raise DataError(
        f"{file}: not the file `preprocess` wrote ({found['bytes']} bytes, sha256 "
        f"{found['sha256'][:16]}; meta.json records {recorded.get('bytes')} bytes, sha256 "
        f"{str(recorded.get('sha256'))[:16]}){copy}: it was damaged, truncated or replaced after "
        f"the cache was built; {rebuild_hint(file.parent)}"
    )


def _check_contents(file: Path, stored: Any, meta: Mapping[str, Any], part: str) -> None:
    """Samples, shapes and dtypes as meta.json records them: free, and the only check a cache
    without digests gets."""
    hint = rebuild_hint(file.parent)
    if not isinstance(stored, dict) or not torch.is_tensor(stored.get("y")):
        raise DataError(f"{file}: holds no split (no label tensor y); {hint}")
    count = meta.get("counts", {}).get(part)
    if count is not None and len(stored["y"]) != count:
        raise DataError(
            f"{file}: holds {len(stored['y'])} samples but meta.json records {count}; {hint}"
        )
    dtypes = meta.get("dtypes", {}).get(part, {})
    for key, shape in meta.get("shapes", {}).get(part, {}).items():
        value, want = stored.get(key), [shape, dtypes.get(key)]
        found = (
            [list(value.shape), str(value.dtype).removeprefix("torch.")]
            if torch.is_tensor(value)
            else None
        )
        if found != want:
            raise DataError(
                f"{file}: {key} is {found or 'missing'} (shape, dtype) but meta.json "
                f"records {want}; {hint}"
            )


def load_split(path: str | Path, part: str, meta: Mapping[str, Any] | None = None) -> Split:
    """Read one split file of a cache directory, once it is known to be the file `preprocess`
    wrote (meta.json's digest) and to hold what meta.json says."""
    cache = Path(path)
    file = cache / f"{part}.pt"
    if not file.exists():
        raise FileNotFoundError(
            f"{file}: not found; build it with `spikeattn preprocess "
            f"{cache.parent.name} --T <T>` (or snakemake)"
        )
    meta = read_meta(cache) if meta is None else meta
    _verify_digest(file, meta, part)
    try:
        stored = torch.load(file, weights_only=True)
    except MemoryError:
        raise
    except Exception as err:
        raise DataError(
            f"{file}: cannot be read ({type(err).__name__}: {err}); {rebuild_hint(cache)}"
        ) from None
    _check_contents(file, stored, meta, part)
    return Split(
        x=stored.get("x"),
        y=stored["y"],
        offsets=stored.get("offsets"),
        paths=stored.get("paths"),
        t=stored.get("t"),
        address=stored.get("address"),
    )


def load_frames(path: str | Path) -> Frames:
    """Load a `preprocess` output directory, every split verified against its meta.json."""
    path = Path(path)
    meta = read_meta(path)
    return Frames(load_split(path, "train", meta), load_split(path, "test", meta), meta)
