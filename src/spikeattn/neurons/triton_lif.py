"""Triton kernels for the multi-step LIF family, fused over T.

Each program owns BLOCK neurons and loops over the time steps with the membrane in
registers (fp32 whatever the input dtype), so the forward reads every input once and the
backward reads every saved value once:

    forward   x [T, N] -> spikes [T, N], m [T, N]      m = u - V_th, saved for backward
              spikes where u > V_th, or u >= V_th (GE: MA-SNN's DVS neurons, SpikingJelly)
    backward  dL/ds [T, N], m [T, N] -> dL/dx [T, N]   one pass from t = T-1 down to 0

The equations are those of `spikeattn.neurons.lif` (the reference these kernels are tested
against). With v the post-reset membrane, the backward carries dL/dv_t through time:

    du_t = (dL/ds_t + [not detach] dL/dv_t * dv/ds) * sg'(u_t - Vth) + dL/dv_t * dv/du
    dL/dx_t = g * du_t        dL/dv_{t-1} = decay * du_t
    hard reset: dv/du = 1 - s_t, dv/ds = v_reset - u_t;   soft reset: dv/du = 1, dv/ds = -Vth

Only m = u - V_th is saved, in the input's dtype (as SpikingJelly saves its membrane). The
backward recomputes the spikes as m > 0 (m >= 0 with GE): rounding m to bf16/fp16 never changes its sign, so
they are exactly the forward's spikes, whereas a rounded u could cross V_th. (A rounded m can
still land on the other side of a rectangle surrogate's window edge: inherent to half storage.)

Under TRITON_INTERPRET=1 (set before this module is imported) the same kernels run on CPU
tensors; that is how CI tests them.
"""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

# Surrogate kinds, as compile-time constants of the backward kernel.
SURROGATE_IDS = {"rectangle": 0, "triangle": 1, "atan": 2, "sigmoid": 3}
BLOCK = 1024


@triton.jit
def _surrogate_grad(x, param, KIND: tl.constexpr):
    """d/dx of the smooth stand-in for H(x); `param` is the width, gamma or alpha."""
    if KIND == 0:  # rectangle: 1[|x| < w/2] / w
        g = tl.where(tl.abs(x) < param * 0.5, 1.0 / param, 0.0)
    elif KIND == 1:  # triangle: max(0, gamma - |x|) / gamma^2
        g = tl.maximum(param - tl.abs(x), 0.0) / (param * param)
    elif KIND == 2:  # atan: (alpha/2) / (1 + (pi/2 alpha x)^2)
        z = 1.5707963267948966 * param * x
        g = (param * 0.5) / (1.0 + z * z)
    else:  # sigmoid: alpha sig(alpha x) (1 - sig(alpha x))
        sg = tl.sigmoid(param * x)
        g = param * sg * (1.0 - sg)
    return g


@triton.jit
def _lif_forward_kernel(x_ptr, s_ptr, m_ptr, N, T, decay, gain, v_th, v_reset,
                        SOFT: tl.constexpr, GE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        at = t * N + offs
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        u = decay * v + gain * x
        if GE:
            s = (u >= v_th).to(tl.float32)
        else:
            s = (u > v_th).to(tl.float32)
        if SOFT:
            v = u - s * v_th
        else:
            v = s * v_reset + (1.0 - s) * u
        tl.store(s_ptr + at, s.to(s_ptr.dtype.element_ty), mask=mask)
        tl.store(m_ptr + at, (u - v_th).to(m_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _lif_backward_kernel(gs_ptr, m_ptr, gx_ptr, N, T, decay, gain, v_th, v_reset, param,
                         SOFT: tl.constexpr, DETACH: tl.constexpr, KIND: tl.constexpr,
                         GE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    dv = tl.zeros([BLOCK], dtype=tl.float32)  # dL/dv_t, carried back from step t + 1
    for i in range(T):
        at = (T - 1 - i) * N + offs
        gs = tl.load(gs_ptr + at, mask=mask, other=0.0).to(tl.float32)
        m = tl.load(m_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if GE:
            s = (m >= 0.0).to(tl.float32)
        else:
            s = (m > 0.0).to(tl.float32)
        if SOFT:
            dv_du = 1.0
            dv_ds = -v_th
        else:
            dv_du = 1.0 - s
            dv_ds = v_reset - v_th - m
        ds = gs
        if not DETACH:
            ds = ds + dv * dv_ds
        du = ds * _surrogate_grad(m, param, KIND) + dv * dv_du
        tl.store(gx_ptr + at, (gain * du).to(gx_ptr.dtype.element_ty), mask=mask)
        dv = decay * du


def _grid(n: int):
    return (triton.cdiv(n, BLOCK),)


def lif_forward(x: Tensor, spikes: Tensor, m: Tensor, decay: float, gain: float, v_th: float,
                v_reset: float, soft: bool, ge: bool) -> None:
    """Fill `spikes` and `m` = u - V_th ([T, N], contiguous) from `x` ([T, N], contiguous)."""
    T, N = x.shape
    _lif_forward_kernel[_grid(N)](x, spikes, m, N, T, decay, gain, v_th, v_reset,
                                  SOFT=soft, GE=ge, BLOCK=BLOCK)


def lif_backward(grad_spikes: Tensor, m: Tensor, grad_x: Tensor, decay: float, gain: float,
                 v_th: float, v_reset: float, soft: bool, ge: bool, detach: bool, surrogate: str,
                 param: float) -> None:
    """Fill `grad_x` ([T, N]) from dL/dspikes and the saved `m` = u - V_th."""
    T, N = m.shape
    _lif_backward_kernel[_grid(N)](grad_spikes, m, grad_x, N, T, decay, gain, v_th, v_reset,
                                   param, SOFT=soft, DETACH=detach,
                                   KIND=SURROGATE_IDS[surrogate], GE=ge, BLOCK=BLOCK)
