"""Batches for training and testing, cut from a frames cache on the training device.

The compact integer tensors are moved to the GPU once when they fit (half the free memory at
most), else kept in pinned CPU memory and copied per batch; every step after that (indexing,
time-window clips, conversion to float, flip and translate) runs on the device, so no Python
worker touches a sample. ImageNet (`files` layout) streams through a torch DataLoader instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor

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
    """Random horizontal flip and translation (zero fill), per sample, on the batch's device."""

    flip: bool = False
    translate_px: int = 0

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


def translate(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Shift each sample of x [B, ..., H, W] by (dx[b], dy[b]) pixels, filling with zeros."""
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    flat = x.reshape(B, -1, H, W)
    rows = torch.arange(H, device=x.device)[None] - dy[:, None]  # source row of each output row
    cols = torch.arange(W, device=x.device)[None] - dx[:, None]
    keep = (((rows >= 0) & (rows < H))[:, None, :, None] & ((cols >= 0) & (cols < W))[:, None, None, :])
    out = flat.gather(2, rows.clamp(0, H - 1)[:, None, :, None].expand(B, flat.shape[1], H, W))
    out = out.gather(3, cols.clamp(0, W - 1)[:, None, None, :].expand(B, flat.shape[1], H, W))
    return (out * keep).reshape(x.shape)


class TensorBatches:
    """Batches of one cached split (`fixed` or `clips` layout), re-shuffled every pass.

    train: shuffled, augmented; a clips-layout sample shows T consecutive frames starting at
    a random frame (`window="random"`, MA-SNN) or at its first frame (`"start"`).
    test: in order; a clips-layout sample gives `clips` evenly spaced T-frame clips, whose
    predictions the loop combines by majority vote. Samples shorter than T are zero-padded.
    """

    def __init__(self, split: Split, scale: float, batch_size: int, device: torch.device | str = "cpu",
                 train: bool = False, T: int | None = None, window: str = "random", clips: int = 1,
                 augment: Augment = Augment(), seed: int = 0):
        self.device = torch.device(device)
        self.x, self.y = place(split.x, self.device), split.y.to(self.device)
        self.offsets = split.offsets.to(self.device) if split.offsets is not None else None
        if self.offsets is not None and T is None:
            raise ValueError("time-window frames need T, the clip length in frames")
        if window not in ("random", "start"):
            raise ValueError(f"train_window must be random or start, got {window!r}")
        self.scale, self.batch_size, self.train, self.T = scale, batch_size, train, T
        self.window, self.clips, self.augment = window, (1 if train or self.offsets is None else clips), augment
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> "TensorBatches":
        """Make this the loader of one of `world` DDP processes: each global batch is split
        between them (every process draws the same order). Training drops the last global
        batch's remainder that does not split evenly, so every process draws the same number
        of random values and their generators stay in step."""
        if self.train and self.batch_size % world:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of the "
                             f"{world} processes (it is the global batch)")
        self.rank, self.world = rank, world
        return self

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to draw the same batches as an uninterrupted one."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"].to("cpu"))

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def _starts(self, idx: Tensor) -> Tensor:
        """[B, clips] first frame of each clip of each sample in idx."""
        lengths = (self.offsets[idx + 1] - self.offsets[idx])
        room = (lengths - self.T).clamp(min=0)
        if self.train and self.window == "random":
            u = torch.rand(len(idx), device=self.device, generator=self.generator)
            first = (u * (room + 1)).floor().long().clamp(max=room)[:, None]
        elif self.clips > 1:
            steps = torch.arange(self.clips, device=self.device)
            first = torch.div(room[:, None] * steps[None], self.clips - 1, rounding_mode="floor")
        else:
            first = torch.zeros_like(room)[:, None]
        return self.offsets[idx][:, None] + first, lengths

    def _gather(self, idx: Tensor) -> Tensor:
        if self.offsets is None:
            return self.x[idx.to(self.x.device)].to(self.device, non_blocking=True)
        starts, lengths = self._starts(idx)
        steps = torch.arange(self.T, device=self.device)
        frame = starts[..., None] + steps  # [B, clips, T]
        valid = (steps[None, None] < lengths[:, None, None]).expand_as(frame)
        frame = torch.where(valid, frame, 0).flatten(0, 1)  # [B * clips, T]
        x = self.x[frame.to(self.x.device)].to(self.device, non_blocking=True)
        return x * valid.flatten(0, 1)[..., None, None, None].to(x.dtype)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.y)
        order = (torch.randperm(n, device=self.device, generator=self.generator) if self.train
                 else torch.arange(n, device=self.device))
        if self.train and self.world > 1:
            order = order[:n - n % self.world]
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size][self.rank::self.world]
            if len(idx) == 0:
                continue
            x = self._gather(idx).to(torch.float32) * self.scale
            if self.train and self.augment:
                x = self.augment(x, self.generator)
            yield Batch(x, self.y[idx], self.clips)


class _ImageFiles(torch.utils.data.Dataset):
    """Decoded, cropped uint8 images of a `files` split (ImageNet)."""

    def __init__(self, root: Path, paths: list[str], labels: Tensor, size: int, train: bool, flip: bool):
        from torchvision.transforms import v2

        self.root, self.paths, self.labels = root, paths, labels
        crop = ([v2.RandomResizedCrop(size, antialias=True)] + ([v2.RandomHorizontalFlip()] if flip else [])
                if train else [v2.Resize(round(size / 0.875), antialias=True), v2.CenterCrop(size)])
        self.transform = v2.Compose(crop)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        from spikeattn.data.sources.imagenet import load_image

        return self.transform(load_image(self.root / self.paths[i])), self.labels[i]


class FileBatches:
    """Batches streamed from image files by DataLoader workers (datasets too big to cache)."""

    def __init__(self, split: Split, root: str | Path, size: int, batch_size: int,
                 device: torch.device | str = "cpu", train: bool = False, flip: bool = False,
                 workers: int = 4, seed: int = 0):
        self.device = torch.device(device)
        self.dataset, self.train, self.seed, self.epoch = (
            _ImageFiles(Path(root), split.paths, split.y, size, train, flip), train, seed, 0)
        self.generator = torch.Generator().manual_seed(seed)
        self._build(batch_size, workers, sampler=None)

    def _build(self, batch_size: int, workers: int, sampler) -> None:
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, shuffle=self.train and sampler is None,
            sampler=sampler, num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, generator=self.generator)

    def shard(self, rank: int, world: int) -> "FileBatches":
        """One of `world` DDP processes: torch's DistributedSampler splits each epoch's order
        (reshuffled per epoch from the seed); `batch_size` stays the global batch."""
        size = self.loader.batch_size
        if size % world:
            raise ValueError(f"batch_size {size} must be a multiple of the {world} processes "
                             f"(it is the global batch)")
        sampler = torch.utils.data.DistributedSampler(self.dataset, world, rank, shuffle=self.train,
                                                      seed=self.seed, drop_last=self.train)
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
            yield Batch(x, y.to(self.device, non_blocking=True))


def batches(frames: Frames, params: Mapping[str, Any], part: str, batch_size: int, T: int,
            device: torch.device | str = "cpu", seed: int = 0, clips: int | None = None,
            workers: int = 4) -> TensorBatches | FileBatches:
    """The batches of split `part` ("train"/"test") of a cache, set up from the dataset's params.

    `clips` overrides params' test_clips (the energy stage measures one clip per sample)."""
    split = frames.train if part == "train" else frames.test
    train = part == "train"
    augment = Augment.from_params(params.get("augment"))
    if frames.meta["layout"] == "files":
        return FileBatches(split, frames.meta[part]["root"], params["image_size"], batch_size, device,
                           train, augment.flip, workers, seed)
    return TensorBatches(split, frames.meta["scale"], batch_size, device, train, T,
                         params.get("train_window", "random"),
                         clips if clips is not None else params.get("test_clips", 1), augment, seed)
