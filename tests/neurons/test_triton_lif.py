"""The Triton LIF kernels against the torch reference (float64), every variant.

On a machine without a GPU these run in Triton's interpreter on CPU tensors (tests/conftest.py
sets TRITON_INTERPRET=1), with sizes kept small; on a GPU the same tests run natively.
"""

import dataclasses

import pytest
import timm
import torch
from conftest import DEVICE

import spikeattn.models  # noqa: F401
from spikeattn.neurons import PRESETS, MultiStepLIF, lif_config, lif_multistep, make_surrogate
from spikeattn.neurons.triton_lif import BLOCK, BLOCK_RC, CHUNK

N_ODD = 2 * BLOCK + 37  # several blocks and a ragged tail
SURROGATES = {
    "rectangle": {"width": 0.8},
    "triangle": {"gamma": 0.7},
    "atan": {"alpha": 2.5},
    "sigmoid": {"alpha": 4.0},
}


def compare(cfg, T, N=N_ODD, dtype=torch.float32, seed=0, shape=None, backend="triton"):
    """Run kernel (in `dtype`) and reference (float64, same input values); return both."""
    g = torch.Generator().manual_seed(seed)
    shape = shape or (T, N)
    x64 = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.8 + 0.6).to(dtype).double()
    w = (
        torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).double()
    )  # same upstream grad
    x_ref = x64.clone().requires_grad_()
    ref = lif_multistep(x_ref, cfg)
    (ref * w).sum().backward()
    x = x64.to(dtype).to(DEVICE).requires_grad_()
    out = MultiStepLIF(backend=backend, config=cfg)(x)
    (out * w.to(dtype).to(DEVICE)).sum().backward()
    return out.double().cpu(), ref, x.grad.double().cpu(), x_ref.grad


def assert_matches(cfg, T, dtype=torch.float32, tol=1e-5, **kwargs):
    out, ref, grad, grad_ref = compare(cfg, T, dtype=dtype, **kwargs)
    assert out.dtype == torch.float64 and torch.equal(out, ref)
    assert 0 < ref.mean() < 1, "the input should make some, not all, neurons fire"
    scale = grad_ref.abs().max()
    torch.testing.assert_close(grad, grad_ref, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("T", [1, 2, 4, 16, 60])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_matches_the_reference(preset, T):
    assert_matches(lif_config(preset), T, N=N_ODD if T <= 16 else 300)


@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
@pytest.mark.parametrize("reset", ["hard", "soft", "hard-to-threshold"])
@pytest.mark.parametrize("detach", [True, False])
def test_every_surrogate_reset_and_detach(surrogate, reset, detach):
    v_reset = {"hard": 0.0, "soft": None, "hard-to-threshold": 0.9}[reset]
    cfg = lif_config(
        None,
        decay=0.6,
        v_threshold=0.9,
        v_reset=v_reset,
        detach_reset=detach,
        surrogate=surrogate,
        surrogate_kwargs=SURROGATES[surrogate],
    )
    assert_matches(cfg, T=6)


def test_decay_input_and_odd_shapes():
    cfg = dataclasses.replace(lif_config("sj_tau2"), v_threshold=0.5)
    assert_matches(cfg, T=5, shape=(5, 3, 7, 11, 13))


def saved_m(out):
    """The tensor the Triton op saved for backward (m = u - V_th) behind `out`."""
    node = out.grad_fn
    while node is not None and "lif" not in type(node).__name__.lower():
        node = node.next_functions[0][0] if node.next_functions else None
    assert node is not None
    (m,) = node.saved_tensors
    return m


def near_window_edge(cfg, x):
    """Neurons whose stored m comes within one storage ulp of the rectangle's window edge.

    Rounding m to a half type can carry such an m across the edge, and the surrogate gradient
    is then the neighbouring value (and flows back through earlier steps of that neuron)."""
    m = saved_m(MultiStepLIF(backend="triton", config=cfg)(x.detach().requires_grad_()))
    edge = make_surrogate(cfg.surrogate, **cfg.surrogate_kwargs).width / 2
    ulp = torch.finfo(m.dtype).eps * edge
    return ((m.float().abs() - edge).abs() <= ulp).any(0).cpu()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_half_precision_inputs_keep_an_fp32_membrane(preset, dtype):
    cfg = lif_config(preset)
    out, ref, grad, grad_ref = compare(cfg, T=8, dtype=dtype)
    # Spikes from the fp32 membrane equal the float64 reference's (ties aside).
    assert (out != ref).float().mean() < 1e-3
    # Gradients pass through half-precision storage (m and dL/dx): within 1e-2 norm-wise for a
    # continuous surrogate. The rectangle is discontinuous, so neurons whose m rounds across a
    # window edge are exempt; every other neuron must agree element-wise.
    if cfg.surrogate != "rectangle":
        assert (grad - grad_ref).norm() <= 1e-2 * grad_ref.norm()
        return
    x = torch.randn(8, N_ODD, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exempt = near_window_edge(cfg, (x * 0.8 + 0.6).to(dtype).to(DEVICE))
    assert exempt.float().mean() < 0.15, "most neurons must stay clear of the edges and be compared"
    off = ((grad - grad_ref).abs() > 1e-2 * grad_ref.abs().max()).any(0)
    assert not (off & ~exempt).any(), f"{int((off & ~exempt).sum())} neurons differ"


def test_saved_for_backward_is_the_membrane_only():
    x = torch.randn(4, 100, device=DEVICE, requires_grad=True)
    m = saved_m(MultiStepLIF("msresnet", backend="triton")(x))
    assert m.shape == (4, 100) and m.dtype == x.dtype  # m = u - V_th only: no (T+1)-sized state


def test_autocast_and_compile_compose():
    lif = MultiStepLIF("msresnet", backend="triton")
    conv = torch.nn.Conv2d(3, 8, 3, padding=1).to(DEVICE)
    x = torch.randn(4, 2, 3, 8, 8, device=DEVICE)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        current = conv(x.flatten(0, 1)).view(4, 2, 8, 8, 8)
        spikes = lif(current)
    assert spikes.dtype == torch.bfloat16
    eager = lif(current.float())
    compiled = torch.compile(lambda t: lif(t) * 2, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(current.float()), eager * 2)


def test_training_steps_match_the_torch_backend():
    """A few optimiser steps of the demo net: same losses with either backend."""
    losses = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        model = timm.create_model(
            "demo_cnn", attention="TCSA", T=4, img_size=16, lif_backend=backend
        ).to(DEVICE)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        data = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(1)).to(DEVICE)
        target = torch.arange(16, device=DEVICE) % 10
        losses[backend] = []
        for _ in range(3):
            loss = torch.nn.functional.cross_entropy(model(data).mean(0), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[backend].append(loss.item())
    assert losses["triton"] == pytest.approx(losses["torch"], rel=1e-4)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    if DEVICE == "cuda":
        pytest.skip("checks the CPU path")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        MultiStepLIF("msresnet", backend="triton")(torch.randn(2, 8))
    assert MultiStepLIF("msresnet", backend="auto")(torch.randn(2, 8)).shape == (2, 8)


@pytest.mark.parametrize("fire_at_threshold", [True, False])
@pytest.mark.parametrize("soft", [True, False])
def test_membranes_exactly_at_threshold(fire_at_threshold, soft):
    """Inputs that land u exactly on V_th (dyadic values, exact in fp32) at several steps:
    the kernel fires there as the reference does, forward and in the recomputed backward."""
    cfg = lif_config(
        None,
        decay=0.5,
        v_threshold=0.75,
        v_reset=None if soft else 0.0,
        detach_reset=False,
        surrogate="rectangle",
        surrogate_kwargs={"width": 1.0},
        fire_at_threshold=fire_at_threshold,
    )
    x = torch.tensor(
        [[0.75, 0.25, 0.5, 1.0], [0.375, 0.5, 0.25, 0.0], [0.0, 0.5, 0.75, 0.75]],
        dtype=torch.float64,
    ).repeat(1, 300)
    x_ref = x.clone().requires_grad_()
    ref = lif_multistep(x_ref, cfg)
    w = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).view_as(x)
    (ref * w).sum().backward()
    xt = x.float().to(DEVICE).requires_grad_()
    out = MultiStepLIF(backend="triton", config=cfg)(xt)
    (out * w.float().to(DEVICE)).sum().backward()
    assert torch.equal(out.double().cpu(), ref)
    assert ref[0, 0] == float(fire_at_threshold)  # u = 0.75 = V_th at the first step
    torch.testing.assert_close(xt.grad.double().cpu(), x_ref.grad, rtol=1e-6, atol=1e-6)


# The recompute backend ("triton_recompute"): saves x and the fp32 membrane entering every
# chunk of CHUNK steps after the first, and recomputes the membrane in the backward. T covers
# one partial chunk, one whole chunk, and two and three chunks with a ragged last one; N_RC
# two programs with a ragged tail.
N_RC = BLOCK_RC + 37
T_RC = [1, 3, CHUNK, CHUNK + 3, 2 * CHUNK + 3]


def recompute_and_saved(cfg, x, w):
    """Spikes and dL/dx of both Triton backends on x, with upstream gradient w."""
    results = []
    for backend in ("triton_recompute", "triton"):
        xg = x.detach().clone().requires_grad_()
        out = MultiStepLIF(backend=backend, config=cfg)(xg)
        (out * w).sum().backward()
        results += [out, xg.grad]
    return results


@pytest.mark.parametrize("T", T_RC)
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_recompute_matches_the_reference_and_the_saved_membrane_kernel(preset, T):
    cfg = lif_config(preset)
    out, ref, grad, grad_ref = compare(cfg, T, N=N_RC, backend="triton_recompute")
    assert torch.equal(out, ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5 * grad_ref.abs().max())
    # In fp32 the saved m is the recomputed fp32 u - V_th: the two backends agree (to the
    # last bit in the interpreter; natively the recompute kernels fuse u's multiply-add).
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(T, N_RC, generator=g) * 0.8 + 0.6).to(DEVICE)
    w = torch.randn(T, N_RC, generator=g).to(DEVICE)
    out_rc, grad_rc, out_m, grad_m = recompute_and_saved(cfg, x, w)
    assert torch.equal(out_rc, out_m)
    torch.testing.assert_close(grad_rc, grad_m, rtol=1e-6, atol=1e-6 * grad_m.abs().max())


@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
@pytest.mark.parametrize("reset", ["hard-to-threshold", "soft"])
@pytest.mark.parametrize("detach", [True, False])
def test_recompute_every_surrogate_reset_and_detach(surrogate, reset, detach):
    cfg = lif_config(
        None,
        decay=0.6,
        v_threshold=0.9,
        v_reset=None if reset == "soft" else 0.9,
        detach_reset=detach,
        surrogate=surrogate,
        surrogate_kwargs=SURROGATES[surrogate],
    )
    out, ref, grad, grad_ref = compare(cfg, T=CHUNK + 3, N=N_RC, backend="triton_recompute")
    assert torch.equal(out, ref) and 0 < ref.mean() < 1
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5 * grad_ref.abs().max())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("preset", ["ma_dvs", "sj_tau2"])
def test_recompute_half_inputs_see_the_exact_membrane(preset, dtype):
    """Half-precision x: the backward recomputes the fp32 membrane (nothing rounded is saved),
    so dL/dx equals the float64 reference on the same (upcast) input values element-wise, up
    to the rounding of dL/dx itself to the input dtype: under one ulp (Triton's interpreter
    truncates fp32 to bf16, a GPU rounds to nearest). Rectangle windows included: no
    window-edge exemptions, unlike the saved-m backend's test above."""
    out, ref, grad, grad_ref = compare(
        lif_config(preset), T=CHUNK + 3, N=N_RC, dtype=dtype, backend="triton_recompute"
    )
    assert torch.equal(out, ref)
    ulp = torch.finfo(dtype).eps  # relative spacing of the output dtype
    assert ((grad - grad_ref).abs() <= ulp * grad_ref.abs() * (1 + 1e-4)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_recompute_saves_x_and_the_chunk_boundaries_only(dtype):
    """Autograd keeps x itself (no copy) and the fp32 membrane entering each chunk after the
    first (v_{CHUNK-1}, post-reset, entering the second; 0 entering the first is not saved).
    Saving m would fail."""
    T, N = 2 * CHUNK + 3, 50
    cfg = lif_config("msresnet")
    x = (torch.randn(T, N, generator=torch.Generator().manual_seed(0)) + 0.6).to(dtype).to(DEVICE)
    x.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        MultiStepLIF(backend="triton_recompute", config=cfg)(x)
    assert [(tuple(t.shape), t.dtype) for t in saved] == [((T, N), dtype), ((2, N), torch.float32)]
    assert saved[0].data_ptr() == x.data_ptr()  # the input, not a membrane of the same shape
    v, entering = torch.zeros(N, dtype=torch.float64), []
    for x_t in x.detach().double().cpu()[: 2 * CHUNK]:  # the reference loop's post-reset membrane
        u = cfg.decay * v + x_t
        v = torch.where(u > cfg.v_threshold, cfg.v_reset, u)
        entering.append(v)
    expected = torch.stack([entering[CHUNK - 1], entering[2 * CHUNK - 1]])
    torch.testing.assert_close(saved[1].cpu().double(), expected, rtol=1e-6, atol=1e-6)


def test_recompute_saves_no_boundary_within_one_chunk():
    x = torch.randn(CHUNK, 30, device=DEVICE, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        MultiStepLIF("sj_tau2", backend="triton_recompute")(x)
    assert [tuple(t.shape) for t in saved] == [(CHUNK, 30), (0, 30)]


def test_recompute_op_registration_and_compile():
    """The custom op's schema and fake (meta) implementation pass torch's op checks, and the
    backend's forward and backward trace under torch.compile with fullgraph."""
    x = torch.randn(CHUNK + 3, 40, device=DEVICE) + 0.5
    args = tuple(lif_config("gac_cifar").kernel_arguments().values())
    torch.library.opcheck(
        torch.ops.spikeattn.lif_forward_recompute.default,
        (x.clone().requires_grad_(), *args),
        test_utils=("test_schema", "test_faketensor"),
    )
    lif = MultiStepLIF("gac_cifar", backend="triton_recompute")
    w = torch.linspace(-1, 1, x.numel(), device=DEVICE).view_as(x)
    grads = []
    for fn in (
        lambda t: (lif(t) * w).sum(),
        torch.compile(lambda t: (lif(t) * w).sum(), backend="aot_eager", fullgraph=True),
    ):
        xg = x.clone().requires_grad_()
        fn(xg).backward()
        grads.append(xg.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)


def test_models_take_the_recompute_backend():
    """`lif_backend="triton_recompute"` reaches every LIF of a model; one step's loss and
    gradients equal the saved-membrane backend's (the same fp32 arithmetic, up to fma)."""
    results = {}
    for backend in ("triton", "triton_recompute"):
        torch.manual_seed(0)
        model = timm.create_model(
            "demo_cnn", attention="TCSA", T=2, img_size=8, lif_backend=backend
        ).to(DEVICE)
        assert {m.backend for m in model.modules() if isinstance(m, MultiStepLIF)} == {backend}
        data = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)).to(DEVICE)
        loss = model(data).mean(0).logsumexp(1).sum()
        loss.backward()
        results[backend] = [loss.detach()] + [p.grad for p in model.parameters()]
    for a, b in zip(results["triton"], results["triton_recompute"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
