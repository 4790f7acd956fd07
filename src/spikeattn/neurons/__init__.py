"""Spiking neurons: the multi-step LIF family (torch reference) and surrogate gradients."""

from .config import PRESETS, LIFConfig, lif_config
from .lif import BACKENDS, MultiStepLIF, lif_multistep
from .surrogate import SURROGATES, Surrogate, make_surrogate

__all__ = [
    "BACKENDS",
    "PRESETS",
    "LIFConfig",
    "MultiStepLIF",
    "lif_config",
    "lif_multistep",
    "SURROGATES",
    "Surrogate",
    "make_surrogate",
]
