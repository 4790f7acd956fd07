"""What defines a LIF neuron: `LIFConfig`, the papers' presets, and the kernel's scalars.

This is the bottom of the neurons package: the torch reference and the `MultiStepLIF`
module (`lif.py`) build from a config, and the custom op (`lif_op.py`) takes only the
scalars `LIFConfig.kernel_arguments()` translates a config into, so neither the op nor the
kernels know about configs or surrogate objects. The equations the fields parameterise are
in `lif.py`'s docstring; the presets' sources are listed there too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from ..registry import RegistrationError, Registry, built_in
from .surrogate import KERNEL_SURROGATES, make_surrogate


@dataclass(frozen=True)
class LIFConfig:
    """Everything that defines a LIF variant (see `lif.py`'s docstring for the equations)."""

    decay: float = 0.5
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = False
    detach_reset: bool = True
    surrogate: str = "atan"
    surrogate_kwargs: dict[str, float] = field(default_factory=dict)
    fire_at_threshold: bool = False  # spike when u == V_th exactly (u >= V_th), else u > V_th

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"LIF decay must be in [0, 1], got {self.decay}")
        if self.v_threshold <= 0:
            raise ValueError(f"LIF v_threshold must be > 0, got {self.v_threshold}")
        make_surrogate(self.surrogate, **self.surrogate_kwargs)  # validates name and kwargs

    @property
    def gain(self) -> float:
        """The input's weight g in u = decay * v + g * x: 1 - decay with decay_input, else 1."""
        return (1.0 - self.decay) if self.decay_input else 1.0

    def kernel_arguments(self) -> dict[str, Any]:
        """The scalar arguments of the custom op (`lif_op`) for this neuron.

        The surrogate goes by name (the kernels number it: `triton_lif.SURROGATE_IDS`) and
        its one parameter (width, gamma or alpha), defaults filled in; a soft reset is
        `soft=True` with an unused v_reset of 0. Only the built-in surrogates have kernels."""
        if self.surrogate not in KERNEL_SURROGATES:
            raise ValueError(
                f"surrogate {self.surrogate!r} has no Triton kernel (only "
                f"{', '.join(sorted(KERNEL_SURROGATES))} do); run it on the torch LIF "
                "(lif_backend 'auto' or 'torch')"
            )
        surrogate = make_surrogate(self.surrogate, **self.surrogate_kwargs)
        (param,) = dataclasses.fields(surrogate)  # each surrogate has one parameter
        return {
            "decay": float(self.decay),
            "gain": float(self.gain),
            "v_th": float(self.v_threshold),
            "v_reset": float(0.0 if self.v_reset is None else self.v_reset),
            "soft": self.v_reset is None,
            "ge": bool(self.fire_at_threshold),
            "detach": bool(self.detach_reset),
            "surrogate": self.surrogate,
            "param": float(getattr(surrogate, param.name)),
        }


PRESETS: Registry[LIFConfig] = Registry("neuron preset")


def register_neuron(name: str, config: LIFConfig) -> LIFConfig:
    """Register `config` as neuron preset `name` (a grid's `model.neuron`). Its surrogate must
    be registered already (`LIFConfig` checks it)."""
    if not isinstance(config, LIFConfig):
        raise RegistrationError(
            f"neuron preset {name!r} must be a spikeattn.plugins.LIFConfig, got "
            f"{type(config).__name__}"
        )
    return PRESETS.register(name, config)


with built_in():
    register_neuron(
        "ma_dvs",
        LIFConfig(
            decay=0.3,
            v_threshold=0.3,
            v_reset=0.3,
            detach_reset=False,
            surrogate="rectangle",
            surrogate_kwargs={"width": 0.5},
            fire_at_threshold=True,
        ),
    )
    register_neuron(
        "msresnet",
        LIFConfig(
            decay=0.25,
            v_threshold=0.5,
            v_reset=0.0,
            detach_reset=True,
            surrogate="rectangle",
            surrogate_kwargs={"width": 1.0},
        ),
    )
    register_neuron(
        "gac_cifar",
        LIFConfig(
            decay=0.5,
            v_threshold=1.0,
            v_reset=0.0,
            detach_reset=False,
            surrogate="triangle",
            surrogate_kwargs={"gamma": 1.0},
        ),
    )
    register_neuron(
        "gac_cifar_appendix",
        LIFConfig(
            decay=0.25,
            v_threshold=0.5,
            v_reset=0.0,
            detach_reset=False,
            surrogate="triangle",
            surrogate_kwargs={"gamma": 1.0},
        ),
    )
    register_neuron(
        "sj_tau2",
        LIFConfig(
            decay=0.5,
            v_threshold=1.0,
            v_reset=0.0,
            decay_input=True,
            detach_reset=True,
            surrogate="atan",
            surrogate_kwargs={"alpha": 2.0},
            fire_at_threshold=True,
        ),
    )


def lif_config(preset: str | None = None, **overrides: Any) -> LIFConfig:
    """A preset's config with `overrides` applied; unknown presets or fields name what exists."""
    if preset is None:
        base = LIFConfig()
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ValueError(f"unknown LIF preset {preset!r}; choose one of {PRESETS.describe()}")
    unknown = set(overrides) - set(LIFConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(
            f"unknown LIF option(s) {sorted(unknown)}; "
            f"allowed: {sorted(LIFConfig.__dataclass_fields__)}"
        )
    return replace(base, **overrides)
