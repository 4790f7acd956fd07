"""`torch.ops.spikeattn.lif`: the Triton LIF as a torch custom op with autograd.

Registered through `torch.library`, with fake (meta) implementations, so it traces under
`torch.compile` and passes through autocast untouched (it accepts fp32, bf16 and fp16 and
keeps its membrane in fp32). Only m = u - V_th (u the pre-spike membrane) is saved for the
backward, in the input's dtype, and the gradient of m (an internal output) is never
materialised.

`torch.ops.spikeattn.lif_forward_recompute` is the same neuron saving x itself (a reference,
no write) and the fp32 membrane at every CHUNK-th step boundary after the first; its backward recomputes the
membrane from them (see `triton_lif`). Backend "triton_recompute" selects it; it is not the
default until a GPU measures it faster than the saved-m op (none has yet).

The ops take scalars only (the neuron's constants, the surrogate by name and its one
parameter), as SpikingJelly's kernels do: `LIFConfig.kernel_arguments()` (`config.py`)
translates a config into them, so this module knows no config or surrogate object, and
`triton_lif.SURROGATE_IDS` alone numbers the surrogates for the kernels. The kernel module
is imported inside the ops, at their first call: TRITON_INTERPRET must be set before that.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.library.custom_op("spikeattn::lif_forward", mutates_args=())
def lif_forward(
    x: Tensor,
    decay: float,
    gain: float,
    v_th: float,
    v_reset: float,
    soft: bool,
    ge: bool,
    detach: bool,
    surrogate: str,
    param: float,
) -> tuple[Tensor, Tensor]:
    """Spikes and the saved m = u - V_th for x [T, N] (contiguous); `ge`: fire at u == V_th."""
    from . import triton_lif

    spikes, u = torch.empty_like(x), torch.empty_like(x)
    triton_lif.lif_forward(x, spikes, u, decay, gain, v_th, v_reset, soft, ge)
    return spikes, u


@lif_forward.register_fake
def _(x, decay, gain, v_th, v_reset, soft, ge, detach, surrogate, param):
    return torch.empty_like(x), torch.empty_like(x)


@torch.library.custom_op("spikeattn::lif_backward", mutates_args=())
def lif_backward(
    grad_spikes: Tensor,
    u: Tensor,
    decay: float,
    gain: float,
    v_th: float,
    v_reset: float,
    soft: bool,
    ge: bool,
    detach: bool,
    surrogate: str,
    param: float,
) -> Tensor:
    """dL/dx from dL/dspikes and the saved m = u - V_th (both [T, N])."""
    from . import triton_lif

    grad_x = torch.empty_like(u)
    triton_lif.lif_backward(
        grad_spikes.contiguous(),
        u,
        grad_x,
        decay,
        gain,
        v_th,
        v_reset,
        soft,
        ge,
        detach,
        surrogate,
        param,
    )
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


@torch.library.custom_op("spikeattn::lif_forward_recompute", mutates_args=())
def lif_forward_recompute(
    x: Tensor,
    decay: float,
    gain: float,
    v_th: float,
    v_reset: float,
    soft: bool,
    ge: bool,
    detach: bool,
    surrogate: str,
    param: float,
) -> tuple[Tensor, Tensor]:
    """Spikes and the fp32 membrane entering each chunk of CHUNK steps but the first
    ([ceil(T/CHUNK) - 1, N]) for x [T, N] (contiguous); the backward recomputes the rest."""
    from . import triton_lif

    spikes = torch.empty_like(x)
    boundaries = x.new_empty(
        (triton_lif.boundary_rows(x.shape[0]), x.shape[1]), dtype=torch.float32
    )
    triton_lif.lif_forward_recompute(x, spikes, boundaries, decay, gain, v_th, v_reset, soft, ge)
    return spikes, boundaries


@lif_forward_recompute.register_fake
def _(x, decay, gain, v_th, v_reset, soft, ge, detach, surrogate, param):
    from .triton_lif import boundary_rows

    return torch.empty_like(x), x.new_empty(
        (boundary_rows(x.shape[0]), x.shape[1]), dtype=torch.float32
    )


@torch.library.custom_op("spikeattn::lif_backward_recompute", mutates_args=())
def lif_backward_recompute(
    grad_spikes: Tensor,
    x: Tensor,
    boundaries: Tensor,
    decay: float,
    gain: float,
    v_th: float,
    v_reset: float,
    soft: bool,
    ge: bool,
    detach: bool,
    surrogate: str,
    param: float,
) -> Tensor:
    """dL/dx from dL/dspikes, the input x and the saved boundaries."""
    from . import triton_lif

    grad_x = torch.empty_like(x)
    triton_lif.lif_backward_recompute(
        grad_spikes.contiguous(),
        x,
        boundaries,
        grad_x,
        decay,
        gain,
        v_th,
        v_reset,
        soft,
        ge,
        detach,
        surrogate,
        param,
    )
    return grad_x


@lif_backward_recompute.register_fake
def _(grad_spikes, x, boundaries, decay, gain, v_th, v_reset, soft, ge, detach, surrogate, param):
    return torch.empty_like(x)


def _setup_context_recompute(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0], output[1])  # x is the caller's tensor: saved, not copied
    ctx.options = inputs[1:]
    ctx.set_materialize_grads(False)


def _backward_recompute(ctx, grad_spikes, grad_boundaries):
    if grad_spikes is None:
        return (None,) * 10
    x, boundaries = ctx.saved_tensors
    grad_x = lif_backward_recompute(grad_spikes.to(x.dtype), x, boundaries, *ctx.options)
    return (grad_x,) + (None,) * 9


lif_forward_recompute.register_autograd(_backward_recompute, setup_context=_setup_context_recompute)


def lif_triton(
    x: Tensor,
    decay: float,
    gain: float,
    v_th: float,
    v_reset: float,
    soft: bool,
    ge: bool,
    detach: bool,
    surrogate: str,
    param: float,
    recompute: bool = False,
) -> Tensor:
    """Spikes [T, ...] of the LIF with these constants on x [T, ...], through the Triton
    custom op (`recompute`: the op that saves x and chunk boundaries instead of m)."""
    T = x.shape[0]
    op = lif_forward_recompute if recompute else lif_forward
    spikes, _ = op(
        x.contiguous().view(T, -1), decay, gain, v_th, v_reset, soft, ge, detach, surrogate, param
    )
    return spikes.view(x.shape)
