"""The LIF reference against hand-written loops of each paper's equations (float64).

The hand loops get their surrogate gradient from a straight-through antiderivative,
an implementation independent of spikeattn.neurons.surrogate.
"""

import dataclasses
import math

import pytest
import torch

from spikeattn.neurons import PRESETS, MultiStepLIF, lif_config

pytestmark = pytest.mark.usefixtures("float64")


def straight_through(x, antiderivative, ge=False):
    """Heaviside forward (x >= 0 when `ge`, else x > 0), d/dx antiderivative(x) backward."""
    soft = antiderivative(x)
    return ((x >= 0) if ge else (x > 0)).to(x.dtype) + (soft - soft.detach())


ANTIDERIVATIVES = {
    ("rectangle", "width"): lambda a: lambda x: (x / a + 0.5).clamp(0, 1),
    ("triangle", "gamma"): lambda g: (
        lambda x: torch.where(
            x.abs() < g, (g * x - x * x.abs() / 2) / g**2 + 0.5, (x > 0).to(x.dtype)
        )
    ),
    ("atan", "alpha"): lambda a: lambda x: torch.atan(math.pi / 2 * a * x) / math.pi + 0.5,
    ("sigmoid", "alpha"): lambda a: lambda x: torch.sigmoid(a * x),
}


def ma_dvs_loop(x):  # u = h + x; s = (u - Vth).ge(0); h = a (s Vth + (1 - s) u), not detached
    spike = ANTIDERIVATIVES[("rectangle", "width")](0.5)
    h, out = torch.zeros_like(x[0]), []
    for x_t in x:
        u = h + x_t
        s = straight_through(u - 0.3, spike, ge=True)
        h = 0.3 * (s * 0.3 + (1 - s) * u)
        out.append(s)
    return torch.stack(out)


def msresnet_loop(x):  # m = 0.25 m (1 - s.detach()) + x; s = m.gt(0.5)
    spike = ANTIDERIVATIVES[("rectangle", "width")](1.0)
    m, s, out = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
    for x_t in x:
        m = 0.25 * m * (1 - s.detach()) + x_t
        s = straight_through(m - 0.5, spike)
        out.append(s)
    return torch.stack(out)


def gac_cifar_loop(x):  # m = 0.5 m (1 - s) + x (no detach); s = (m - 1 > 0); triangle gamma 1
    spike = ANTIDERIVATIVES[("triangle", "gamma")](1.0)
    m, s, out = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
    for x_t in x:
        m = 0.5 * m * (1 - s) + x_t
        s = straight_through(m - 1.0, spike)
        out.append(s)
    return torch.stack(out)


def gac_cifar_appendix_loop(x):  # GAC appendix (Vth, tau) = (0.5, 0.25) in the code's m = tau m + x
    spike = ANTIDERIVATIVES[("triangle", "gamma")](1.0)
    m, out = torch.zeros_like(x[0]), []
    for x_t in x:
        m = 0.25 * m + x_t
        s = straight_through(m - 0.5, spike)  # fires at m > 0.5, as gac_cifar's (mem - thresh) > 0
        m = (1 - s) * m  # hard reset to 0, not detached
        out.append(s)
    return torch.stack(out)


def sj_tau2_loop(x):  # SpikingJelly LIF: v += (x - v) / tau; s = (v - 1 >= 0); hard reset, detached
    spike = ANTIDERIVATIVES[("atan", "alpha")](2.0)
    v, out = torch.zeros_like(x[0]), []
    for x_t in x:
        v = v + (x_t - v) / 2.0
        s = straight_through(v - 1.0, spike, ge=True)
        v = v * (1 - s.detach())
        out.append(s)
    return torch.stack(out)


LOOPS = {
    "ma_dvs": ma_dvs_loop,
    "msresnet": msresnet_loop,
    "gac_cifar": gac_cifar_loop,
    "gac_cifar_appendix": gac_cifar_appendix_loop,
    "sj_tau2": sj_tau2_loop,
}


def test_every_preset_has_a_hand_loop():
    assert set(LOOPS) == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("T", [1, 4, 9])
def test_preset_matches_hand_loop(preset, T):
    torch.manual_seed(T)
    x = (torch.randn(T, 4, 64) + 1.0).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    spikes = MultiStepLIF(preset)(x)
    ref = LOOPS[preset](x_ref)
    assert torch.equal(spikes, ref)
    assert 0 < spikes.mean() < 1, "input should make some, not all, neurons fire"
    weights = torch.randn_like(ref)
    (spikes * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    assert x.grad.abs().sum() > 0


# Inputs that put the first step's membrane exactly on each preset's threshold, and whether
# its authors' code fires there: MA-SNN DVS `input.ge(0.0)`, SpikingJelly `x >= 0`,
# MS-ResNet `input.gt(thresh)`, GAC CIFAR `(mem - thresh) > 0`.
AT_THRESHOLD = {
    "ma_dvs": (0.3, True),
    "sj_tau2": (2.0, True),  # sj: v = x / tau
    "msresnet": (0.5, False),
    "gac_cifar": (1.0, False),
    "gac_cifar_appendix": (0.5, False),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_membrane_exactly_at_threshold_fires_as_its_authors_code(preset):
    assert set(AT_THRESHOLD) == set(PRESETS)
    x_at, fires = AT_THRESHOLD[preset]
    x = torch.tensor([[x_at, x_at - 1e-9, x_at + 1e-9]])
    assert MultiStepLIF(preset)(x).tolist() == [[float(fires), 0.0, 1.0]]
    assert torch.equal(MultiStepLIF(preset)(x), LOOPS[preset](x))
    assert lif_config(preset).fire_at_threshold == fires
    flipped = MultiStepLIF(preset, fire_at_threshold=not fires)(x)
    assert flipped[0, 0] == float(not fires)


@pytest.mark.parametrize(
    "name,key,value",
    [
        ("rectangle", "width", 0.7),
        ("triangle", "gamma", 0.6),
        ("atan", "alpha", 3.0),
        ("sigmoid", "alpha", 5.0),
    ],
)
def test_surrogates_and_soft_reset_match_hand_loop(name, key, value):
    torch.manual_seed(0)
    x = (torch.randn(6, 40) + 0.5).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    lif = MultiStepLIF(
        None,
        decay=0.6,
        v_threshold=0.8,
        v_reset=None,
        detach_reset=False,
        surrogate=name,
        surrogate_kwargs={key: value},
    )
    spike = ANTIDERIVATIVES[(name, key)](value)
    v, ref = torch.zeros_like(x_ref[0]), []
    for x_t in x_ref:
        u = 0.6 * v + x_t
        s = straight_through(u - 0.8, spike)
        v = u - s * 0.8
        ref.append(s)
    ref = torch.stack(ref)
    out = lif(x)
    assert torch.equal(out, ref)
    out.pow(2).mul(torch.arange(1.0, 7.0)[:, None]).sum().backward()
    ref.pow(2).mul(torch.arange(1.0, 7.0)[:, None]).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)


def test_gac_presets_differ_only_in_the_constants():
    """Code (1.0, 0.5) vs appendix (0.5, 0.25); the same neuron otherwise."""
    code, appendix = lif_config("gac_cifar"), lif_config("gac_cifar_appendix")
    assert (code.v_threshold, code.decay) == (1.0, 0.5)
    assert (appendix.v_threshold, appendix.decay) == (0.5, 0.25)
    assert appendix == dataclasses.replace(code, v_threshold=0.5, decay=0.25)


def test_bad_options_name_what_is_allowed():
    with pytest.raises(ValueError, match="choose one of"):
        MultiStepLIF("nope")
    with pytest.raises(ValueError, match="unknown LIF option"):
        lif_config("msresnet", tau=2.0)
    with pytest.raises(ValueError, match="surrogate"):
        lif_config(None, surrogate="relu")
    with pytest.raises(ValueError, match="v_threshold"):
        lif_config(None, v_threshold=0.0)
    with pytest.raises(ValueError, match="backend"):
        MultiStepLIF("msresnet", backend="cuda")


def test_kernel_arguments_are_the_configs_scalars():
    """The custom op's scalars, written out: a preset, and a soft reset with decay_input and
    the surrogate's default parameter filled in."""
    assert lif_config("ma_dvs").kernel_arguments() == {
        "decay": 0.3,
        "gain": 1.0,
        "v_th": 0.3,
        "v_reset": 0.3,
        "soft": False,
        "ge": True,
        "detach": False,
        "surrogate": "rectangle",
        "param": 0.5,
    }
    soft = lif_config(None, decay=0.25, decay_input=True, v_reset=None, surrogate="sigmoid")
    assert soft.kernel_arguments() == {
        "decay": 0.25,
        "gain": 0.75,
        "v_th": 1.0,
        "v_reset": 0.0,
        "soft": True,
        "ge": False,
        "detach": True,
        "surrogate": "sigmoid",
        "param": 4.0,
    }


def test_a_neuron_builds_from_a_config_and_keeps_it():
    cfg = dataclasses.replace(lif_config("gac_cifar"), v_threshold=0.7)
    lif = MultiStepLIF(config=cfg, backend="torch")
    assert lif.cfg is cfg and lif.backend == "torch"
    assert MultiStepLIF("gac_cifar", v_threshold=0.7).cfg == cfg
    with pytest.raises(AttributeError):
        lif.cfg = lif_config("msresnet")  # read-only: build another neuron instead
    with pytest.raises(ValueError, match="not both"):
        MultiStepLIF("gac_cifar", config=cfg)
    with pytest.raises(ValueError, match="not both"):
        MultiStepLIF(config=cfg, v_threshold=0.5)
