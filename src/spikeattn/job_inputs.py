"""What a cell x seed job reads: its cached frames, its batches, its model and the device.

The train job (train/job.py), the energy job (energy/job.py) and the planner (plan.py) build a
cell's inputs the same way, from params.yaml and the dataset registry, so they live here, below
all three; `stages` re-exports `frames_path` and `model_spec` for the Snakefile.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import data
from .config import Cell, Params

if TYPE_CHECKING:
    import torch

ROOT = Path(".")


def frames_path(params: Params, cell: Cell) -> Path:
    """The cached frames a cell trains and is measured on (its meta.json, written with them)."""
    return data.frames_dir(cell.dataset, params.cell_data(cell), cell.T, ROOT) / "meta.json"


def training_device() -> "torch.device":
    """The GPU when there is one (frames then live there), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_spec(params: Params, cell: Cell) -> tuple[str, dict[str, Any]]:
    """timm model name and constructor arguments for a cell (the checkpoint records both)."""
    info = data.DATASETS[cell.dataset]
    height, width = info.input_size(params.cell_data(cell))
    kwargs = {
        "attention": cell.attention,
        "coding": cell.coding,
        "T": cell.T,
        "num_classes": info.num_classes,
        "in_chans": info.in_channels,
        "img_size": height if height == width else (height, width),
        **params.model_kwargs(cell.study),
    }
    return cell.backbone, kwargs


def cell_batches(
    params: Params,
    cell: Cell,
    frames: "data.Frames",
    part: str,
    batch_size: int,
    device,
    seed: int = 0,
    clips: int | None = None,
):
    """The batches of one part (train/test) of a cell's frames, framed as the cell's data says."""
    from .data.loader import batches

    return batches(frames, params.cell_data(cell), part, batch_size, cell.T, device, seed, clips)
