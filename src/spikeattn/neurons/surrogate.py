"""Surrogate gradients: a Heaviside step forward, a smooth stand-in for its derivative backward.

Each surrogate is a small frozen dataclass whose `grad(x)` is the derivative used in the
backward pass, with `x = u - V_th`. The step fires on `x > 0`, or on `x >= 0` with
`fire_at_zero`: the two differ only when the membrane lands exactly on the threshold.
MA-SNN's DVS neurons (`input.ge(0.0)`) and SpikingJelly's heaviside (SMA) fire at equality;
MA-SNN's and GAC's MS-ResNet neurons (`input.gt(thresh)`) and GAC's CIFAR neuron fire strictly.

Surrogates are registered by name (`register_surrogate`), the built-ins as a plugin's are.
Only the built-ins (`KERNEL_SURROGATES`) have a Triton kernel: a plugin surrogate runs on the
torch reference LIF (`lif.py`).

Torch is imported at the first call, not with the module: `LIFConfig` (`config.py`) validates
its surrogate here, and checking a LIF preset in params.yaml should not load torch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..registry import RegistrationError, Registry, built_in

if TYPE_CHECKING:
    from torch import Tensor


@functools.cache
def _heaviside():
    """The autograd function: the step forward, the surrogate's `grad` backward."""
    import torch

    class Heaviside(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x: Tensor, surrogate: Surrogate, fire_at_zero: bool) -> Tensor:
            ctx.save_for_backward(x)
            ctx.surrogate = surrogate
            return ((x >= 0) if fire_at_zero else (x > 0)).to(x.dtype)

        @staticmethod
        def backward(ctx, grad_out: Tensor):
            (x,) = ctx.saved_tensors
            return grad_out * ctx.surrogate.grad(x), None, None

    return Heaviside


class Surrogate:
    """Base: calling a surrogate on `u - V_th` gives spikes with its surrogate gradient
    (spikes where `u - V_th > 0`, or `>= 0` when `fire_at_zero`)."""

    name: str = ""

    def grad(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: Tensor, fire_at_zero: bool = False) -> Tensor:
        return _heaviside().apply(x, self, fire_at_zero)


SURROGATES: Registry[type[Surrogate]] = Registry("surrogate")


def register_surrogate(cls: type[Surrogate]) -> type[Surrogate]:
    """Class decorator: register a frozen dataclass subclass of `Surrogate` under `cls.name`.

    Its fields are the surrogate's parameters (`surrogate_kwargs`), all with defaults; `name`
    is a plain class attribute (not a field); `grad(x)` is the derivative with x = u - V_th."""
    what = f"surrogate class {getattr(cls, '__qualname__', cls)!r}"
    if not (isinstance(cls, type) and issubclass(cls, Surrogate)):
        raise RegistrationError(f"{what} must subclass spikeattn.plugins.Surrogate")
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise RegistrationError(f"{what} must be a frozen dataclass: @dataclass(frozen=True)")
    if cls.grad is Surrogate.grad:
        raise RegistrationError(f"{what} must define grad(self, x): the surrogate derivative")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if "name" in fields:
        raise RegistrationError(
            f"{what}: `name` must be a class attribute without a type annotation "
            "(name = 'mine'), not a dataclass field"
        )
    if not isinstance(cls.name, str) or not cls.name:
        raise RegistrationError(f"{what} needs a class attribute name = '<its name>'")
    missing = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise RegistrationError(f"{what}: give parameter(s) {missing} a default")
    return SURROGATES.register(cls.name, cls)


@dataclass(frozen=True)
class Rectangle(Surrogate):
    """grad = 1[|x| < width/2] / width (MA-SNN: width 0.5 or 1; MS-ResNet: width 1)."""

    width: float = 1.0
    name = "rectangle"

    def grad(self, x: Tensor) -> Tensor:
        return (x.abs() < self.width / 2).to(x.dtype) / self.width


@dataclass(frozen=True)
class Triangle(Surrogate):
    """grad = max(0, gamma - |x|) / gamma^2 (GAC's CIFAR neuron, gamma = 1)."""

    gamma: float = 1.0
    name = "triangle"

    def grad(self, x: Tensor) -> Tensor:
        return (self.gamma - x.abs()).clamp(min=0) / self.gamma**2


@dataclass(frozen=True)
class ATan(Surrogate):
    """grad = (alpha/2) / (1 + (pi/2 * alpha * x)^2), SpikingJelly's ATan (alpha = 2)."""

    alpha: float = 2.0
    name = "atan"

    def grad(self, x: Tensor) -> Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """grad = alpha * sig(alpha x) * (1 - sig(alpha x)), SpikingJelly's Sigmoid (alpha = 4)."""

    alpha: float = 4.0
    name = "sigmoid"

    def grad(self, x: Tensor) -> Tensor:
        sg = (self.alpha * x).sigmoid()
        return self.alpha * sg * (1 - sg)


with built_in():
    for _builtin in (Rectangle, Triangle, ATan, Sigmoid):
        register_surrogate(_builtin)

# The surrogates the Triton kernels implement (`triton_lif.SURROGATE_IDS` numbers them).
KERNEL_SURROGATES = frozenset(SURROGATES)


def make_surrogate(name: str, **kwargs) -> Surrogate:
    """Build a surrogate by name; unknown names and arguments get an error listing what exists."""
    try:
        cls = SURROGATES[name]
    except KeyError:
        raise ValueError(
            f"unknown surrogate {name!r}; choose one of {SURROGATES.describe()}"
        ) from None
    try:
        return cls(**kwargs)
    except TypeError:
        fields = list(cls.__dataclass_fields__)
        raise ValueError(f"surrogate {name!r} takes {fields}, got {sorted(kwargs)}") from None
