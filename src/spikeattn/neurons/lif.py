"""The multi-step LIF neuron: one parameterised torch reference for every paper's variant.

Per time step, with post-reset membrane `v` (zero at t = 0):

    u_t = decay * v_{t-1} + g * x_t          g = 1 - decay if decay_input else 1
    s_t = H(u_t - v_threshold)               surrogate gradient in the backward pass;
                                             H(0) = 1 when fire_at_threshold, else 0
    v_t = s_t * v_reset + (1 - s_t) * u_t    hard reset (v_reset is a number)
    v_t = u_t - s_t * v_threshold            soft reset (v_reset is None)

where `s_t` in the reset is detached when `detach_reset`. The papers' neurons are presets
(`PRESETS` in `config.py`, where `LIFConfig` holds these parameters):

- ``ma_dvs``    MA-SNN DVS models: u = h + x, h = 0.3 (s Vth + (1-s) u), Vth 0.3, so a neuron
                that fired restarts at 0.3 * 0.3; reset not detached; rectangle width 0.5;
                fires at u >= Vth (`input.ge(0.0)`).
- ``msresnet``  MS-ResNet: m = 0.25 m (1 - s.detach()) + x, Vth 0.5; rectangle width 1;
                fires at m > Vth (`input.gt(thresh)`, MA-SNN's and GAC's ImageNet code).
- ``gac_cifar`` GAC CIFAR: m = 0.5 m (1 - s) + x, Vth 1, reset not detached; triangle gamma 1;
                fires at m - Vth > 0. The code's constants (bollossom/GAC "CODE/CIFAR/models/
                layers.py", `LIFSpike(thresh=1.0, tau=0.5)`, tau being the decay factor), and
                the default for GAC studies.
- ``gac_cifar_appendix`` the same neuron with the GAC appendix's (threshold, tau) = (0.5, 0.25)
                (as quoted in bollossom/GAC issue #5) read in the code's convention
                m = tau m + x: decay 0.25, Vth 0.5. The paper's numbers, one line away.
- ``sj_tau2``   SpikingJelly LIF tau = 2, decay_input, Vth 1, hard reset to 0 detached; ATan 2;
                fires at u >= Vth (SpikingJelly's heaviside).

This loop is the specification the Triton kernels must match: keep it simple and exact.
`MultiStepLIF(backend=...)` picks between it and the fused kernels, which it reaches through
the custom op (`lif_op.py`, scalars in: `LIFConfig.kernel_arguments()`), which launches the
kernels (`triton_lif.py`). Imports point one way: config <- lif -> lif_op -> triton_lif.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from .config import LIFConfig, lif_config
from .lif_op import lif_triton
from .surrogate import KERNEL_SURROGATES, make_surrogate

BACKENDS = ("auto", "torch", "triton", "triton_recompute")


def lif_multistep(x: Tensor, cfg: LIFConfig) -> Tensor:
    """Run the LIF over the leading time axis of `x` ([T, ...]) and return spikes [T, ...].

    The membrane is at least fp32 (as the Triton kernel keeps it): half-precision currents
    under autocast (`train.precision`) are not rounded into it step after step; the spikes
    come back in x's dtype."""
    surrogate = make_surrogate(cfg.surrogate, **cfg.surrogate_kwargs)
    dtype = x.dtype
    x = x.to(torch.promote_types(dtype, torch.float32))
    v = torch.zeros_like(x[0])
    spikes = []
    for x_t in x:
        u = cfg.decay * v + cfg.gain * x_t
        s = surrogate(u - cfg.v_threshold, cfg.fire_at_threshold)
        s_reset = s.detach() if cfg.detach_reset else s
        if cfg.v_reset is None:
            v = u - s_reset * cfg.v_threshold
        else:
            v = s_reset * cfg.v_reset + (1.0 - s_reset) * u
        spikes.append(s)
    return torch.stack(spikes).to(dtype)


def triton_interpreter() -> bool:
    """True when Triton runs kernels on the CPU (TRITON_INTERPRET=1, set before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


class MultiStepLIF(nn.Module):
    """Multi-step LIF layer: input currents [T, ...] -> spikes [T, ...] (no state across calls).

    Built from a preset and overrides of its fields (`MultiStepLIF("msresnet",
    v_threshold=0.4)`, as the models do), or from a whole config (`MultiStepLIF(config=cfg)`);
    `cfg` is read-only afterwards: build another neuron for another config.

    backend "torch" runs the reference loop; "triton" the fused kernels (CUDA tensors, or CPU
    tensors under TRITON_INTERPRET=1); "triton_recompute" the same forward saving x and a
    membrane every few steps instead of u - V_th, its backward recomputing the membrane (fewer
    bytes, more arithmetic; `triton_lif`); "auto" the saved-membrane kernels on CUDA tensors,
    else the reference. "auto" takes the recompute variant only once a GPU measures it faster
    (benchmarks/lif.py); none has yet. The kernels implement the built-in surrogates only
    (`KERNEL_SURROGATES`): with a plugin surrogate "auto" runs the reference, and "triton" or
    "triton_recompute" is refused here, at construction.
    """

    def __init__(
        self,
        preset: str | None = None,
        backend: str = "auto",
        *,
        config: LIFConfig | None = None,
        **overrides: Any,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown LIF backend {backend!r}; choose one of {list(BACKENDS)}")
        if config is not None and (preset is not None or overrides):
            raise ValueError(
                "MultiStepLIF takes a preset and overrides, or a config, not both; "
                "fold the overrides into the config with dataclasses.replace"
            )
        self.backend = backend
        self.preset = preset
        self._cfg = config if config is not None else lif_config(preset, **overrides)
        self._kernel = self._cfg.surrogate in KERNEL_SURROGATES
        if backend.startswith("triton") and not self._kernel:
            self._cfg.kernel_arguments()  # refuses the surrogate, naming it, at construction

    @property
    def cfg(self) -> LIFConfig:
        """The neuron's parameters (read-only)."""
        return self._cfg

    def _use_triton(self, x: Tensor) -> bool:
        if self.backend == "torch" or (self.backend == "auto" and not (x.is_cuda and self._kernel)):
            return False
        if not x.is_cuda and not triton_interpreter():
            raise RuntimeError(
                f"MultiStepLIF(backend={self.backend!r}) needs CUDA tensors, or "
                "TRITON_INTERPRET=1 set before importing spikeattn to run the "
                "kernels on the CPU; use backend='auto' or 'torch' otherwise"
            )
        return True

    def forward(self, x: Tensor) -> Tensor:
        if self._use_triton(x):
            return lif_triton(
                x, **self.cfg.kernel_arguments(), recompute=self.backend == "triton_recompute"
            )
        return lif_multistep(x, self.cfg)

    def extra_repr(self) -> str:
        fields = {
            k: v for k, v in asdict(self.cfg).items() if v not in ({}, None) or k == "v_reset"
        }
        return f"preset={self.preset!r}, backend={self.backend!r}, " + ", ".join(
            f"{k}={v}" for k, v in fields.items()
        )
