"""Checkpoints that carry what is needed to rebuild their model without params.yaml."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from ..io import atomic_path


def save_checkpoint(path: Path, model: nn.Module, model_name: str, model_kwargs: dict[str, Any],
                    **extra: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model_name": model_name, "model_kwargs": model_kwargs,
                    "state_dict": model.state_dict(), **extra}, tmp)


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode, on CPU) and the checkpoint's other entries."""
    import spikeattn  # noqa: F401  (registers the backbones with timm)

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no checkpoint; run the train stage for this cell first") from None
    model = timm.create_model(ckpt["model_name"], **ckpt["model_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt
