"""Training: losses, the loop, checkpoints, and the per-cell job that ties them to files."""
from .checkpoint import load_checkpoint, save_checkpoint
from .losses import LOSSES, build_loss, predict
from .loop import Fit, fit, run_epoch, seed_everything

__all__ = ["LOSSES", "Fit", "build_loss", "fit", "load_checkpoint", "predict", "run_epoch",
           "save_checkpoint", "seed_everything"]
