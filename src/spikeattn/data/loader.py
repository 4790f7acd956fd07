"""Batches for training and testing, cut from a frames cache on the training device.

The compact integer tensors are moved to the GPU once when they fit (half the free memory at
most), else kept in pinned CPU memory and copied per batch; every step after that (indexing,
framing MA-SNN's time windows from the stored events, conversion to float, flip and translate,
per-channel normalisation) runs on the device, so no Python worker touches a sample. ImageNet
(`files` layout) streams through a torch DataLoader instead: its workers decode, crop and
AutoAugment the uint8 images, and the device converts and normalises the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor

from spikeattn.data import event_windows
from spikeattn.data.frames import Frames, Split

FIT_FRACTION = 0.5  # of the free GPU memory a dataset may take


@dataclass(frozen=True)
class Batch:
    """Model input (float), labels, and how many clips of each sample x holds (vote over them)."""

    x: Tensor
    y: Tensor
    clips: int = 1


def place(t: Tensor | None, device: torch.device) -> Tensor | None:
    """`t` on `device` when it fits there, else in pinned CPU memory for fast copies."""
    if t is None or device.type != "cuda":
        return t
    free, _ = torch.cuda.mem_get_info(device)
    if t.numel() * t.element_size() <= FIT_FRACTION * free:
        return t.to(device)
    return t.pin_memory()


@dataclass(frozen=True)
class Augment:
    """Random horizontal flip and translation (zero fill), per sample, on the batch's device.

    `autoaugment` (torchvision's ImageNet policy) acts in the workers of a streamed image folder
    (FileBatches), on uint8 images as torchvision's AutoAugment expects; cached datasets refuse it.
    """

    flip: bool = False
    translate_px: int = 0
    autoaugment: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> "Augment":
        return cls(**(params or {}))

    def __bool__(self) -> bool:
        return self.flip or self.translate_px > 0

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """x [B, ..., H, W] -> the same shape, each sample flipped/shifted independently."""
        B = x.shape[0]
        if self.flip:
            flip = torch.rand(B, device=x.device, generator=generator) < 0.5
            x = torch.where(flip.view(B, *([1] * (x.dim() - 1))), x.flip(-1), x)
        if self.translate_px:
            k = self.translate_px
            shift = torch.randint(-k, k + 1, (2, B), device=x.device, generator=generator)
            x = translate(x, shift[0], shift[1])
        return x


@dataclass(frozen=True)
class Normalize:
    """Per-channel (x - mean) / std of images in [0, 1], torchvision's Normalize after ToTensor
    as the authors' codes apply it. It runs after flip/translate, so translate's zero fill is
    normalised like their RandomCrop padding, and before CutMix (the training loop's)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> "Normalize | None":
        if params is None:
            return None
        return cls(tuple(map(float, params["mean"])), tuple(map(float, params["std"])))

    def __call__(self, x: Tensor) -> Tensor:
        """x [B, ..., C, H, W] float -> the same shape, channel c as (x - mean[c]) / std[c]."""
        C = len(self.mean)
        if x.shape[-3] != C:
            raise ValueError(
                f"normalize has {C} channel values but the images have {x.shape[-3]} channels"
            )
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(C, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(C, 1, 1)
        return (x - mean) / std


def translate(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Shift each sample of x [B, ..., H, W] by (dx[b], dy[b]) pixels, filling with zeros."""
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    flat = x.reshape(B, -1, H, W)
    rows = torch.arange(H, device=x.device)[None] - dy[:, None]  # source row of each output row
    cols = torch.arange(W, device=x.device)[None] - dx[:, None]
    keep = ((rows >= 0) & (rows < H))[:, None, :, None] & ((cols >= 0) & (cols < W))[
        :, None, None, :
    ]
    out = flat.gather(2, rows.clamp(0, H - 1)[:, None, :, None].expand(B, flat.shape[1], H, W))
    out = out.gather(3, cols.clamp(0, W - 1)[:, None, None, :].expand(B, flat.shape[1], H, W))
    return (out * keep).reshape(x.shape)


@dataclass(frozen=True)
class Windows:
    """How an `events`-layout split becomes T-frame windows (meta["window"] of the cache)."""

    dt_us: int
    frame_shape: tuple[int, int, int]  # (2, H, W)


class TensorBatches:
    """Batches of one cached split (`fixed` or `events` layout), re-shuffled every pass.

    train: shuffled, augmented; an events-layout sample shows one window of T frames of dt,
    starting at a random µs (`window="random"`, MA-SNN's Gesture) or at its first event
    (`"start"`, MA-SNN's Gait), framed as the authors' loaders frame it (`event_windows.py`).
    test: in order; an events-layout sample gives `clips` windows placed as the authors' test
    does, whose predictions the loop combines by majority vote.
    Both: scaled to float, then `normalize` (per channel) if given.
    """

    def __init__(
        self,
        split: Split,
        scale: float,
        batch_size: int,
        device: torch.device | str = "cpu",
        train: bool = False,
        T: int | None = None,
        window: str = "random",
        clips: int = 1,
        augment: Augment = Augment(),
        seed: int = 0,
        windows: Windows | None = None,
        normalize: Normalize | None = None,
    ):
        if augment.autoaugment:
            raise ValueError(
                "augment.autoaugment acts on streamed image folders (ImageNet) only; a "
                "cached dataset is augmented on the device by flip and translate_px"
            )
        self.device = torch.device(device)
        self.x, self.y = place(split.x, self.device), split.y.to(self.device)
        events = split.t is not None
        if events and (T is None or windows is None):
            raise ValueError(
                "an events-layout split needs T (frames per window) and its Windows "
                "(dt and frame shape, meta['window'] of the cache)"
            )
        if window not in ("random", "start"):
            raise ValueError(f"train_window must be random or start, got {window!r}")
        self.scale, self.batch_size, self.train, self.T = scale, batch_size, train, T
        self.window, self.clips, self.augment = (
            window,
            (1 if train or not events else clips),
            augment,
        )
        self.normalize = normalize
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.rank, self.world = 0, 1
        self.events = _EventWindows(split, windows, T, self.device) if events else None

    def shard(self, rank: int, world: int) -> "TensorBatches":
        """Make this the loader of one of `world` DDP processes: each global batch is split
        between them (every process draws the same order). Training drops the last global
        batch's remainder that does not split evenly, so every process draws the same number
        of random values and their generators stay in step."""
        if self.train and self.batch_size % world:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of the "
                f"{world} processes (it is the global batch)"
            )
        self.rank, self.world = rank, world
        return self

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to draw the same batches as an uninterrupted one."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"].to("cpu"))

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def window_starts(self, idx: Tensor) -> Tensor:
        """[B, clips] start (µs from the sample's first event) of each window of the samples idx."""
        if not self.train:
            return event_windows.clip_starts(self.events.end[idx], self.events.length, self.clips)
        if self.window == "start":
            return torch.zeros(len(idx), 1, dtype=torch.long, device=self.device)
        return event_windows.random_starts(
            self.events.last[idx], self.events.length, self.generator
        )[:, None]

    def _gather(self, idx: Tensor) -> Tensor:
        if self.events is None:
            return self.x[idx.to(self.x.device)].to(self.device, non_blocking=True)
        return self.events.frames(idx, self.window_starts(idx))

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.y)
        order = (
            torch.randperm(n, device=self.device, generator=self.generator)
            if self.train
            else torch.arange(n, device=self.device)
        )
        if self.train and self.world > 1:
            order = order[: n - n % self.world]
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size][self.rank :: self.world]
            if len(idx) == 0:
                continue
            x = self._gather(idx).to(torch.float32) * self.scale
            if self.train and self.augment:
                x = self.augment(x, self.generator)
            if self.normalize is not None:
                x = self.normalize(x)
            yield Batch(x, self.y[idx], self.clips)


class _EventWindows:
    """An events-layout split on the device, framed into the authors' windows on request."""

    def __init__(self, split: Split, windows: Windows, T: int, device: torch.device):
        self.device = device
        self.t, self.address = place(split.t, device), place(split.address, device)
        self.on = self.t.device  # framing runs where the events are (CPU if they did not fit)
        self.offsets = split.offsets.to(self.on)
        self.T, self.dt, self.shape = T, windows.dt_us, tuple(windows.frame_shape)
        self.length = T * windows.dt_us
        self.steps = event_windows.search_steps(self.offsets)
        lo, hi = self.offsets[:-1], self.offsets[1:]
        self.last = self.t[hi - 1].long()  # each sample's last timestamp
        # Its last event before that timestamp: where the authors' test slice ends.
        before = event_windows.segment_search(self.t, lo, hi, self.last, self.steps) - 1
        self.end = torch.where(before >= lo, self.t[before.clamp(min=0)].long(), 0)
        self.last, self.end = self.last.to(device), self.end.to(device)

    def frames(self, idx: Tensor, starts: Tensor) -> Tensor:
        """Event counts [B * clips, T, 2, H, W] (int64) of the windows starting at `starts` [B, clips]."""
        clips = starts.shape[1]
        idx, starts = idx.to(self.on), starts.to(self.on)
        lo = self.offsets[idx].repeat_interleave(clips)
        hi = self.offsets[idx + 1].repeat_interleave(clips)
        size = self.shape[0] * self.shape[1] * self.shape[2]
        counts = event_windows.frame_windows(
            self.t, self.address, lo, hi, starts.flatten(), self.T, self.dt, size, self.steps
        )
        return counts.view(-1, self.T, *self.shape).to(self.device, non_blocking=True)


def image_transform(size: int, train: bool, augment: Augment = Augment()):
    """The per-image uint8 transform of a streamed split, the authors' ImageNet one by default:
    train RandomResizedCrop(size) with torchvision's default scale (0.08, 1) and ratio (3/4, 4/3),
    a horizontal flip if `augment.flip`, then AutoAugment (ImageNet policy) if
    `augment.autoaugment` (all three codes: AutoAugment, no flip); test Resize(size / 0.875)
    (256 for 224) then CenterCrop(size). Random draws use torch's RNG, seeded per worker."""
    from torchvision.transforms import v2

    if not train:
        return v2.Compose([v2.Resize(round(size / 0.875), antialias=True), v2.CenterCrop(size)])
    steps = [v2.RandomResizedCrop(size, antialias=True)]
    steps += [v2.RandomHorizontalFlip()] if augment.flip else []  # torchvision's reference order
    steps += [v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)] if augment.autoaugment else []
    return v2.Compose(steps)


class _ImageFiles(torch.utils.data.Dataset):
    """Decoded, cropped (and AutoAugmented) uint8 images of a `files` split (ImageNet)."""

    def __init__(
        self, root: Path, paths: list[str], labels: Tensor, size: int, train: bool, augment: Augment
    ):
        self.root, self.paths, self.labels = root, paths, labels
        self.transform = image_transform(size, train, augment)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        from spikeattn.data.sources.imagenet import load_image

        return self.transform(load_image(self.root / self.paths[i])), self.labels[i]


class FileBatches:
    """Batches streamed from image files by DataLoader workers (datasets too big to cache):
    uint8 crops from the workers, then float in [0, 1] and `normalize` on the device."""

    def __init__(
        self,
        split: Split,
        root: str | Path,
        size: int,
        batch_size: int,
        device: torch.device | str = "cpu",
        train: bool = False,
        augment: Augment = Augment(),
        workers: int = 4,
        seed: int = 0,
        normalize: Normalize | None = None,
    ):
        if augment.translate_px:
            raise ValueError(
                "augment.translate_px is not applied to streamed image folders "
                "(RandomResizedCrop crops them); remove it"
            )
        self.device, self.normalize = torch.device(device), normalize
        self.dataset, self.train, self.seed, self.epoch = (
            _ImageFiles(Path(root), split.paths, split.y, size, train, augment),
            train,
            seed,
            0,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self._build(batch_size, workers, sampler=None)

    def _build(self, batch_size: int, workers: int, sampler) -> None:
        # Workers start afresh each pass, seeded from `generator` (as is the shuffle): persistent
        # workers would carry their RNG over epochs, which a resumed run cannot restore.
        self.loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=batch_size,
            shuffle=self.train and sampler is None,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            generator=self.generator,
        )

    def shard(self, rank: int, world: int) -> "FileBatches":
        """One of `world` DDP processes: torch's DistributedSampler splits each epoch's order
        (reshuffled per epoch from the seed); `batch_size` stays the global batch."""
        size = self.loader.batch_size
        if size % world:
            raise ValueError(
                f"batch_size {size} must be a multiple of the {world} processes "
                f"(it is the global batch)"
            )
        sampler = torch.utils.data.DistributedSampler(
            self.dataset, world, rank, shuffle=self.train, seed=self.seed, drop_last=self.train
        )
        self._build(size // world, self.loader.num_workers, sampler)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.epoch = state["epoch"]

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        if isinstance(self.loader.sampler, torch.utils.data.DistributedSampler):
            self.loader.sampler.set_epoch(self.epoch)
        self.epoch += self.train
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True).to(torch.float32) / 255
            if self.normalize is not None:
                x = self.normalize(x)
            yield Batch(x, y.to(self.device, non_blocking=True))


def batches(
    frames: Frames,
    params: Mapping[str, Any],
    part: str,
    batch_size: int,
    T: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
    clips: int | None = None,
    workers: int = 4,
) -> TensorBatches | FileBatches:
    """The batches of split `part` ("train"/"test") of a cache, set up from the dataset's params.

    `clips` overrides params' test_clips (the energy stage measures one clip per sample)."""
    split = frames.train if part == "train" else frames.test
    train = part == "train"
    augment = Augment.from_params(params.get("augment"))
    normalize = Normalize.from_params(params.get("normalize"))
    if frames.meta["layout"] == "files":
        return FileBatches(
            split,
            frames.meta[part]["root"],
            params["image_size"],
            batch_size,
            device,
            train,
            augment,
            workers,
            seed,
            normalize,
        )
    windows = Windows(**frames.meta["window"]) if frames.meta["layout"] == "events" else None
    return TensorBatches(
        split,
        frames.meta["scale"],
        batch_size,
        device,
        train,
        T,
        params.get("train_window", "random"),
        clips if clips is not None else params.get("test_clips", 1),
        augment,
        seed,
        windows,
        normalize,
    )
