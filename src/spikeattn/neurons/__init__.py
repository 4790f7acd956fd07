"""Spiking neurons: the multi-step LIF family (torch reference) and surrogate gradients.

Presets and surrogates are registries (`register_neuron`, `register_surrogate`): a plugin
adds its own with the calls the built-ins use."""

from .config import PRESETS, LIFConfig, lif_config, register_neuron
from .lif import BACKENDS, MultiStepLIF, lif_multistep
from .surrogate import (
    KERNEL_SURROGATES,
    SURROGATES,
    Surrogate,
    make_surrogate,
    register_surrogate,
)

__all__ = [
    "BACKENDS",
    "KERNEL_SURROGATES",
    "PRESETS",
    "LIFConfig",
    "MultiStepLIF",
    "lif_config",
    "lif_multistep",
    "SURROGATES",
    "Surrogate",
    "make_surrogate",
    "register_neuron",
    "register_surrogate",
]
