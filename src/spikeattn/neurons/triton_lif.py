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

The recompute variant (backend "triton_recompute") moves fewer bytes. Its forward saves no
m: autograd keeps a reference to x (no write) plus the fp32 post-reset membrane v entering
every chunk of CHUNK steps but the first (N * (ceil(T / CHUNK) - 1) values; none for
T <= CHUNK, where the tensor is empty and its null pointer is never dereferenced). Its
backward walks the chunks from last to first, re-runs the forward arithmetic over the chunk's
x rows from the chunk's boundary v (fp32 in registers: the forward's exact membrane, even for
bf16/fp16 inputs), keeps the chunk's u in a [CHUNK, BLOCK_RC] register tile, then runs the
same backward recurrence through the chunk in reverse:

    forward   x -> spikes, boundaries          2 + (4/b)/CHUNK passes of T*N*b bytes, at most
    backward  dL/ds, x, boundaries -> dL/dx    3 + (4/b)/CHUNK passes   (saved m: 3 + 3)

It does CHUNK-proportional extra arithmetic per element (building and reading the u tile) to
save that traffic; whether it wins is for a GPU to measure, so "auto" keeps the saved-m
kernels.

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
# The recompute variant: time steps per saved boundary, and neurons per program. Its
# backward's [CHUNK, BLOCK_RC] tiles load 16-byte vectors per thread (4 fp32, 8 bf16/fp16);
# with rc_warps() warps of 32 threads a thread then holds every row of its columns, so reading
# and writing rows stays in registers (no shared memory: checked on sm_90 PTX, 84 registers
# fp32, 150 bf16, no spills).
CHUNK = 8
BLOCK_RC = 256


def rc_warps(element_size: int) -> int:
    """Warps per program of the recompute kernels: BLOCK_RC columns / (32 threads x 16 bytes)."""
    return max(1, BLOCK_RC * element_size // (32 * 16))


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
def _lif_forward_kernel(
    x_ptr,
    s_ptr,
    m_ptr,
    N,
    T,
    decay,
    gain,
    v_th,
    v_reset,
    SOFT: tl.constexpr,
    GE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        at = tl.cast(t, tl.int64) * N + offs
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
def _backward_step(
    m,
    gs,
    dv,
    v_th,
    v_reset,
    param,
    SOFT: tl.constexpr,
    DETACH: tl.constexpr,
    KIND: tl.constexpr,
    GE: tl.constexpr,
):
    """dL/du_t from m = u_t - V_th, dL/ds_t and dL/dv_t (the module docstring's equations);
    the spike is recomputed from the sign of m. Shared by both backward kernels."""
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
    return ds * _surrogate_grad(m, param, KIND) + dv * dv_du


@triton.jit
def _lif_backward_kernel(
    gs_ptr,
    m_ptr,
    gx_ptr,
    N,
    T,
    decay,
    gain,
    v_th,
    v_reset,
    param,
    SOFT: tl.constexpr,
    DETACH: tl.constexpr,
    KIND: tl.constexpr,
    GE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    dv = tl.zeros([BLOCK], dtype=tl.float32)  # dL/dv_t, carried back from step t + 1
    for i in range(T):
        at = tl.cast(T - 1 - i, tl.int64) * N + offs
        gs = tl.load(gs_ptr + at, mask=mask, other=0.0).to(tl.float32)
        m = tl.load(m_ptr + at, mask=mask, other=0.0).to(tl.float32)
        du = _backward_step(m, gs, dv, v_th, v_reset, param, SOFT, DETACH, KIND, GE)
        tl.store(gx_ptr + at, (gain * du).to(gx_ptr.dtype.element_ty), mask=mask)
        dv = decay * du


@triton.jit
def _recompute_step(v, x, decay, gain, v_th, v_reset, SOFT: tl.constexpr, GE: tl.constexpr):
    """One step of the recompute variant: (u, spike, post-reset v), all fp32.

    Its forward and backward kernels both take u from here as one explicit fma, so the
    backward rounds u exactly as the forward did: left to itself, the compiler could contract
    decay * v + gain * x differently in the two kernels, and a 1-ulp difference in u could
    flip a spike at the threshold. (s is 0 or 1, so the reset's products are exact.)"""
    u = tl.fma(decay, v, gain * x)
    if GE:
        s = (u >= v_th).to(tl.float32)
    else:
        s = (u > v_th).to(tl.float32)
    if SOFT:
        v = u - s * v_th
    else:
        v = s * v_reset + (1.0 - s) * u
    return u, s, v


@triton.jit
def _lif_forward_boundary_kernel(
    x_ptr,
    s_ptr,
    b_ptr,
    N,
    T,
    decay,
    gain,
    v_th,
    v_reset,
    SOFT: tl.constexpr,
    GE: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """The forward of `_lif_forward_kernel`, saving v entering each chunk after the first
    instead of m."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(tl.cdiv(T, CHUNK)):
        # Row c - 1 of the boundaries: v entering chunk c > 0 (it is 0 entering chunk 0).
        row = tl.cast(tl.maximum(c - 1, 0), tl.int64) * N
        tl.store(b_ptr + row + offs, v, mask=mask & (c > 0))
        for k in tl.static_range(CHUNK):
            t = c * CHUNK + k
            live = mask & (t < T)  # the last chunk may be ragged
            at = tl.cast(t, tl.int64) * N + offs
            x = tl.load(x_ptr + at, mask=live, other=0.0).to(tl.float32)
            _, s, v = _recompute_step(v, x, decay, gain, v_th, v_reset, SOFT, GE)
            tl.store(s_ptr + at, s.to(s_ptr.dtype.element_ty), mask=live)


@triton.jit
def _lif_backward_recompute_kernel(
    gs_ptr,
    x_ptr,
    b_ptr,
    gx_ptr,
    N,
    T,
    decay,
    gain,
    v_th,
    v_reset,
    param,
    SOFT: tl.constexpr,
    DETACH: tl.constexpr,
    KIND: tl.constexpr,
    GE: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """`_lif_backward_kernel` with m recomputed, a chunk at a time, from x and the boundaries.

    A chunk's x, dL/ds and dL/dx move as [CHUNK, BLOCK] tiles (one 2-D load or store each),
    and row k of a tile is read as sum(where(rows == k, tile, 0), axis=0): with all CHUNK rows
    of a column in one thread (`rc_warps`) that stays in registers."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    rows = tl.arange(0, CHUNK)[:, None]  # [CHUNK, 1]: row k of a tile is step c * CHUNK + k
    n_chunks = tl.cdiv(T, CHUNK)
    dv = tl.zeros([BLOCK], dtype=tl.float32)  # dL/dv_t, carried back from step t + 1
    for i in range(n_chunks):
        c = n_chunks - 1 - i
        steps = c * CHUNK + rows
        live = (steps < T) & mask[None, :]  # the last chunk may be ragged
        at = tl.cast(steps, tl.int64) * N + offs[None, :]
        # Re-run the forward through the chunk from its saved boundary, keeping each step's
        # fp32 u as a row of the u tile (steps past T read x = 0 and are never used).
        xs = tl.load(x_ptr + at, mask=live, other=0.0).to(tl.float32)
        row = tl.cast(tl.maximum(c - 1, 0), tl.int64) * N
        v = tl.load(b_ptr + row + offs, mask=mask & (c > 0), other=0.0)  # 0 entering chunk 0
        us = tl.zeros([CHUNK, BLOCK], dtype=tl.float32)
        for k in tl.static_range(CHUNK):
            x = tl.sum(tl.where(rows == k, xs, 0.0), axis=0)
            u, s, v = _recompute_step(v, x, decay, gain, v_th, v_reset, SOFT, GE)
            us = tl.where(rows == k, u[None, :], us)
        # The backward recurrence through the chunk, last step first. Steps past T load
        # dL/ds = 0 and enter with dL/dv = 0 (they come first), so they give du = 0.
        gss = tl.load(gs_ptr + at, mask=live, other=0.0).to(tl.float32)
        gxs = tl.zeros([CHUNK, BLOCK], dtype=tl.float32)
        for j in tl.static_range(CHUNK):
            k = CHUNK - 1 - j
            m = tl.sum(tl.where(rows == k, us, 0.0), axis=0) - v_th
            gs = tl.sum(tl.where(rows == k, gss, 0.0), axis=0)
            du = _backward_step(m, gs, dv, v_th, v_reset, param, SOFT, DETACH, KIND, GE)
            gxs = tl.where(rows == k, (gain * du)[None, :], gxs)
            dv = decay * du
        tl.store(gx_ptr + at, gxs.to(gx_ptr.dtype.element_ty), mask=live)


def _grid(n: int, block: int = BLOCK):
    return (triton.cdiv(n, block),)


def lif_forward(
    x: Tensor,
    spikes: Tensor,
    m: Tensor,
    decay: float,
    gain: float,
    v_th: float,
    v_reset: float,
    soft: bool,
    ge: bool,
) -> None:
    """Fill `spikes` and `m` = u - V_th ([T, N], contiguous) from `x` ([T, N], contiguous)."""
    T, N = x.shape
    _lif_forward_kernel[_grid(N)](
        x, spikes, m, N, T, decay, gain, v_th, v_reset, SOFT=soft, GE=ge, BLOCK=BLOCK
    )


def lif_backward(
    grad_spikes: Tensor,
    m: Tensor,
    grad_x: Tensor,
    decay: float,
    gain: float,
    v_th: float,
    v_reset: float,
    soft: bool,
    ge: bool,
    detach: bool,
    surrogate: str,
    param: float,
) -> None:
    """Fill `grad_x` ([T, N]) from dL/dspikes and the saved `m` = u - V_th."""
    T, N = m.shape
    _lif_backward_kernel[_grid(N)](
        grad_spikes,
        m,
        grad_x,
        N,
        T,
        decay,
        gain,
        v_th,
        v_reset,
        param,
        SOFT=soft,
        DETACH=detach,
        KIND=SURROGATE_IDS[surrogate],
        GE=ge,
        BLOCK=BLOCK,
    )


def boundary_rows(T: int) -> int:
    """Rows of the recompute variant's saved boundaries: one per chunk of CHUNK steps after
    the first (none for T <= CHUNK: the membrane entering the first chunk is 0)."""
    return triton.cdiv(T, CHUNK) - 1


def lif_forward_recompute(
    x: Tensor,
    spikes: Tensor,
    boundaries: Tensor,
    decay: float,
    gain: float,
    v_th: float,
    v_reset: float,
    soft: bool,
    ge: bool,
) -> None:
    """Fill `spikes` ([T, N]) and `boundaries` ([ceil(T / CHUNK) - 1, N], fp32: v entering
    each chunk after the first) from `x` ([T, N], contiguous)."""
    T, N = x.shape
    _lif_forward_boundary_kernel[_grid(N, BLOCK_RC)](
        x,
        spikes,
        boundaries,
        N,
        T,
        decay,
        gain,
        v_th,
        v_reset,
        SOFT=soft,
        GE=ge,
        CHUNK=CHUNK,
        BLOCK=BLOCK_RC,
        num_warps=rc_warps(x.element_size()),
    )


def lif_backward_recompute(
    grad_spikes: Tensor,
    x: Tensor,
    boundaries: Tensor,
    grad_x: Tensor,
    decay: float,
    gain: float,
    v_th: float,
    v_reset: float,
    soft: bool,
    ge: bool,
    detach: bool,
    surrogate: str,
    param: float,
) -> None:
    """Fill `grad_x` ([T, N]) from dL/dspikes, the input `x` and the saved boundaries."""
    T, N = x.shape
    _lif_backward_recompute_kernel[_grid(N, BLOCK_RC)](
        grad_spikes,
        x,
        boundaries,
        grad_x,
        N,
        T,
        decay,
        gain,
        v_th,
        v_reset,
        param,
        SOFT=soft,
        DETACH=detach,
        KIND=SURROGATE_IDS[surrogate],
        GE=ge,
        CHUNK=CHUNK,
        BLOCK=BLOCK_RC,
        num_warps=rc_warps(x.element_size()),
    )
