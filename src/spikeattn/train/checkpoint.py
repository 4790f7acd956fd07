"""Checkpoints that carry what is needed to rebuild their model without params.yaml."""
from __future__ import annotations

import warnings
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


class Resume:
    """One train job's per-epoch state (`fit` fills it), so a killed job continues where it
    stopped instead of starting over.

    The state is written whole to a temporary file and renamed over the last one, so a kill
    at any moment leaves either the previous epoch's state or the new one. `fingerprint`
    names what the state was trained with (settings, model, data, seed): a state saved
    under other settings is ignored (with a warning) and replaced by the new run's.
    `extra` is saved with every state (the MLflow run id, so the resumed job continues it).
    """

    def __init__(self, path: Path, fingerprint: str):
        self.path, self.fingerprint = Path(path), fingerprint
        self.extra: dict[str, Any] = {}
        self.saved = False  # whether this run has saved an epoch yet
        self.state: dict[str, Any] | None = self._load()  # as loaded at the start

    def _load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise RuntimeError(f"{self.path}: cannot read this resume state ({err}); delete it to "
                               f"train this run from the start") from None
        if state.get("fingerprint") != self.fingerprint:
            warnings.warn(f"{self.path} was saved with other settings; training starts over and "
                          f"replaces it", stacklevel=3)
            return None
        self.extra = dict(state.get("extra", {}))
        return state

    def save(self, state: dict[str, Any]) -> None:
        full = {**state, "fingerprint": self.fingerprint, "extra": self.extra}
        with atomic_path(self.path) as tmp:
            torch.save(full, tmp)
        self.saved = True

    def last_weights(self) -> dict[str, Any] | None:
        """The model weights of the last saved epoch, read back from disk (the live model's
        tensors have moved on since), or None when no epoch was saved."""
        if not (self.saved or self.state is not None) or not self.path.exists():
            return None  # nothing saved by this run's settings (a stale file is not ours)
        return torch.load(self.path, map_location="cpu", weights_only=True)["model"]

    def clear(self) -> None:
        """Drop the state once the run's final outputs are written."""
        self.path.unlink(missing_ok=True)
