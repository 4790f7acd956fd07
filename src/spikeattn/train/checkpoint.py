"""Checkpoints that carry what is needed to rebuild their model without params.yaml, and the
per-epoch resume state of a train job; both are checked when read back.

A checkpoint is a plain torch.save file: `save_checkpoint` returns its sha256, the train stage
records it in metrics.json, and readers pass it back to `load_checkpoint`, which refuses other
bytes. A resume state carries its own digest: the file holds the state's torch.save bytes and
their sha256, written whole and renamed, so a state and its digest are replaced together.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from ..data.sources import DataError
from ..io import atomic_path, file_digest


class CheckpointError(DataError):
    """A checkpoint or resume state is unreadable, or not the file that was written; the message
    names the file and the fix."""


def retrain_hint(path: Path) -> str:
    """How to replace a damaged checkpoint: re-run the one train job that writes it."""
    return f"re-run the train stage that writes it (`snakemake --cores N --forcerun {path}`)"


def save_checkpoint(
    path: Path, model: nn.Module, model_name: str, model_kwargs: dict[str, Any], **extra: Any
) -> str:
    """Write the checkpoint atomically; returns its sha256, for metrics.json to record so
    readers can tell the file is the one training wrote."""
    with atomic_path(path) as tmp:
        torch.save(
            {
                "model_name": model_name,
                "model_kwargs": model_kwargs,
                "state_dict": model.state_dict(),
                **extra,
            },
            tmp,
        )
        digest = file_digest(tmp)
    return digest


def load_checkpoint(path: Path, sha256: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode, on CPU) and the checkpoint's other entries. With `sha256` (what
    the train stage recorded), a file with other bytes is refused rather than used."""
    import spikeattn.models  # noqa: F401  (registers the backbones with timm)

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint; run the train stage for this cell first")
    if sha256 is not None and (found := file_digest(path)) != sha256:
        raise CheckpointError(
            f"{path}: not the checkpoint training wrote (sha256 {found[:16]}, its "
            f"metrics.json records {sha256[:16]}): it was damaged or replaced "
            f"since; {retrain_hint(path)}"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = timm.create_model(ckpt["model_name"], **ckpt["model_kwargs"])
        model.load_state_dict(ckpt["state_dict"])
    except MemoryError:
        raise
    except Exception as err:
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint ({type(err).__name__}: "
            f"{err}); it is damaged or truncated: {retrain_hint(path)}"
        ) from None
    return model.eval(), ckpt


def _sealed(state: dict[str, Any]) -> dict[str, Any]:
    """The state's torch.save bytes with their sha256: what a resume file holds."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    return {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(payload, dtype=torch.uint8),
    }


def read_resume_state(path: Path) -> dict[str, Any]:
    """A resume state as it was saved, once its bytes match the digest saved with them."""
    fix = f"delete {path} to train this run from the start"
    try:
        sealed = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sealed, dict) and "payload" not in sealed and "fingerprint" in sealed:
            warnings.warn(
                f"{path} was saved before resume states carried a digest; it is resumed unverified",
                stacklevel=2,
            )
            return sealed
        payload = sealed["payload"].numpy()
        if hashlib.sha256(payload).hexdigest() != sealed["sha256"]:
            raise CheckpointError(
                f"{path}: this resume state's bytes differ from the sha256 saved "
                f"with them: it was damaged after it was written; {fix}"
            )
        return torch.load(io.BytesIO(payload.tobytes()), map_location="cpu", weights_only=True)
    except (CheckpointError, MemoryError):
        raise
    except Exception as err:
        raise CheckpointError(
            f"{path}: cannot read this resume state ({type(err).__name__}: {err}); {fix}"
        ) from None


class Resume:
    """One train job's per-epoch state (`fit` fills it), so a killed job continues where it
    stopped instead of starting over.

    The state is written whole to a temporary file and renamed over the last one, so a kill
    at any moment leaves either the previous epoch's state or the new one; its sha256 is
    saved inside it, so a damaged state is refused (`read_resume_state`), never resumed.
    `fingerprint` names what the state was trained with (settings, model, data, seed): a state
    saved under other settings is ignored (with a warning) and replaced by the new run's.
    `extra` is saved with every state (the MLflow run id, so the resumed job continues that
    run: `Tracker.continue_cell_run`).
    """

    def __init__(self, path: Path, fingerprint: str):
        self.path, self.fingerprint = Path(path), fingerprint
        self.extra: dict[str, Any] = {}
        self.saved = False  # whether this run has saved an epoch yet
        self.state: dict[str, Any] | None = self._load()  # as loaded at the start

    def _load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        state = read_resume_state(self.path)
        if state.get("fingerprint") != self.fingerprint:
            warnings.warn(
                f"{self.path} was saved with other settings; training starts over and replaces it",
                stacklevel=3,
            )
            return None
        self.extra = dict(state.get("extra", {}))
        return state

    def save(self, state: dict[str, Any]) -> None:
        full = {**state, "fingerprint": self.fingerprint, "extra": self.extra}
        with atomic_path(self.path) as tmp:
            torch.save(_sealed(full), tmp)
        self.saved = True

    def last_weights(self) -> dict[str, Any] | None:
        """The model weights of the last saved epoch, read back from disk (the live model's
        tensors have moved on since), or None when no epoch was saved."""
        if not (self.saved or self.state is not None) or not self.path.exists():
            return None  # nothing saved by this run's settings (a stale file is not ours)
        return read_resume_state(self.path)["model"]

    def clear(self) -> None:
        """Drop the state once the run's final outputs are written."""
        self.path.unlink(missing_ok=True)
