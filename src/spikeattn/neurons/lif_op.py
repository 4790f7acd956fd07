"""`torch.ops.spikeattn.lif`: the Triton LIF as a torch custom op with autograd.

Registered through `torch.library`, with fake (meta) implementations, so it traces under
`torch.compile` and passes through autocast untouched (it accepts fp32, bf16 and fp16 and
keeps its membrane in fp32). Only m = u - V_th (u the pre-spike membrane) is saved for the
backward, in the input's dtype, and the gradient of m (an internal output) is never
materialised.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from .lif import LIFConfig
from .surrogate import make_surrogate


@torch.library.custom_op("spikeattn::lif_forward", mutates_args=())
def lif_forward(x: Tensor, decay: float, gain: float, v_th: float, v_reset: float, soft: bool,
                ge: bool, detach: bool, surrogate: str, param: float) -> tuple[Tensor, Tensor]:
    """Spikes and the saved m = u - V_th for x [T, N] (contiguous); `ge`: fire at u == V_th."""
    from . import triton_lif

    spikes, u = torch.empty_like(x), torch.empty_like(x)
    triton_lif.lif_forward(x, spikes, u, decay, gain, v_th, v_reset, soft, ge)
    return spikes, u


@lif_forward.register_fake
def _(x, decay, gain, v_th, v_reset, soft, ge, detach, surrogate, param):
    return torch.empty_like(x), torch.empty_like(x)


@torch.library.custom_op("spikeattn::lif_backward", mutates_args=())
def lif_backward(grad_spikes: Tensor, u: Tensor, decay: float, gain: float, v_th: float,
                 v_reset: float, soft: bool, ge: bool, detach: bool, surrogate: str,
                 param: float) -> Tensor:
    """dL/dx from dL/dspikes and the saved m = u - V_th (both [T, N])."""
    from . import triton_lif

    grad_x = torch.empty_like(u)
    triton_lif.lif_backward(grad_spikes.contiguous(), u, grad_x, decay, gain, v_th, v_reset,
                            soft, ge, detach, surrogate, param)
    return grad_x


@lif_backward.register_fake
def _(grad_spikes, u, decay, gain, v_th, v_reset, soft, ge, detach, surrogate, param):
    return torch.empty_like(u)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[1])
    ctx.options = inputs[1:]
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_spikes, grad_u):
    if grad_spikes is None:
        return (None,) * 10
    (u,) = ctx.saved_tensors
    grad_x = lif_backward(grad_spikes.to(u.dtype), u, *ctx.options)
    return (grad_x,) + (None,) * 9


lif_forward.register_autograd(_backward, setup_context=_setup_context)


def op_arguments(cfg: LIFConfig) -> dict:
    """The custom op's scalar arguments for a LIF config."""
    surrogate = make_surrogate(cfg.surrogate, **cfg.surrogate_kwargs)
    (field,) = dataclasses.fields(surrogate)  # each surrogate has one parameter
    return {"decay": float(cfg.decay), "gain": float(1.0 - cfg.decay if cfg.decay_input else 1.0),
            "v_th": float(cfg.v_threshold),
            "v_reset": float(0.0 if cfg.v_reset is None else cfg.v_reset),
            "soft": cfg.v_reset is None, "ge": bool(cfg.fire_at_threshold),
            "detach": bool(cfg.detach_reset),
            "surrogate": cfg.surrogate, "param": float(getattr(surrogate, field.name))}


def lif_triton(x: Tensor, cfg: LIFConfig) -> Tensor:
    """Spikes [T, ...] of the LIF `cfg` on x [T, ...], through the Triton custom op."""
    T = x.shape[0]
    spikes, _ = lif_forward(x.contiguous().view(T, -1), **op_arguments(cfg))
    return spikes.view(x.shape)
