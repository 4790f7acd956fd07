"""Training: losses, the loop, checkpoints, and the per-cell job that ties them to files."""

from .checkpoint import Resume, load_checkpoint, save_checkpoint
from .distributed import Dist
from .loop import Diverged, Fit, fit, run_epoch, seed_everything
from .losses import LOSSES, build_loss, predict

__all__ = [
    "LOSSES",
    "Dist",
    "Diverged",
    "Fit",
    "Resume",
    "build_loss",
    "fit",
    "load_checkpoint",
    "predict",
    "run_epoch",
    "save_checkpoint",
    "seed_everything",
]
