"""spikeattn: attention spiking neural networks, reproduced end to end.

`import spikeattn` registers the backbones with timm.
"""
from . import models  # noqa: F401  (registers timm entry points)

__version__ = "0.1.0"
