"""A plugin's neuron preset and surrogate: registered like the built-ins, run on the torch LIF.

The reference is a written-out loop of the plugin neuron's equations with its surrogate from a
straight-through antiderivative, independent of spikeattn's LIF and Heaviside.
"""

import types
from dataclasses import dataclass

import pytest
import torch

from spikeattn import registry
from spikeattn.neurons import (
    PRESETS,
    SURROGATES,
    LIFConfig,
    MultiStepLIF,
    Surrogate,
    lif_config,
    register_neuron,
    register_surrogate,
)

pytestmark = pytest.mark.usefixtures("plugin_sandbox", "float64")

PLUGIN = "tests/fake.py"


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """SuperSpike's grad = scale / (1 + slope |x|)^2: two parameters, which no kernel takes."""

    slope: float = 10.0
    scale: float = 1.0
    name = "fast_sigmoid"

    def grad(self, x):
        return self.scale / (1 + self.slope * x.abs()) ** 2


def load_plugin() -> LIFConfig:
    """What a plugin file does: its surrogate first (a LIFConfig checks its surrogate exists)."""
    with registry.loading(PLUGIN):
        register_surrogate(FastSigmoid)
        return register_neuron(
            "soft_fast",
            LIFConfig(
                decay=0.4,
                v_threshold=0.6,
                v_reset=None,
                detach_reset=False,
                surrogate="fast_sigmoid",
                surrogate_kwargs={"slope": 5.0},
            ),
        )


def soft_fast_loop(x):  # u = 0.4 v + x; s = (u - 0.6 > 0); v = u - 0.6 s (soft, not detached)
    v, out = torch.zeros_like(x[0]), []
    for x_t in x:
        u = 0.4 * v + x_t
        soft = (u - 0.6) / (1 + 5.0 * (u - 0.6).abs())  # antiderivative of 1 / (1 + 5|x|)^2
        s = (u > 0.6).to(x.dtype) + (soft - soft.detach())
        v = u - 0.6 * s
        out.append(s)
    return torch.stack(out)


def test_the_plugin_names_are_owned_by_its_file():
    load_plugin()
    assert PRESETS.owner("soft_fast") == PLUGIN and SURROGATES.owner("fast_sigmoid") == PLUGIN
    assert PRESETS.owner("msresnet") is None
    with pytest.raises(ValueError, match=r"soft_fast \(tests/fake.py\)"):
        lif_config("no_such_preset")


def test_a_plugin_neuron_matches_its_written_out_loop():
    load_plugin()
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 5) * 0.8).requires_grad_()
    lif = MultiStepLIF("soft_fast")  # backend auto
    got = lif(x)
    want = soft_fast_loop(x)
    assert got.sum() > 0 and (got == want).all()
    weights = torch.randn_like(x)
    (g_got,) = torch.autograd.grad((got * weights).sum(), x)
    (g_want,) = torch.autograd.grad((want * weights).sum(), x)
    torch.testing.assert_close(g_got, g_want)


def test_auto_runs_a_plugin_surrogate_on_the_torch_lif_even_on_cuda():
    load_plugin()
    on_cuda = types.SimpleNamespace(is_cuda=True)  # what _use_triton reads of its input
    assert not MultiStepLIF("soft_fast")._use_triton(on_cuda)
    assert MultiStepLIF("msresnet")._use_triton(on_cuda)  # built-in: the kernels
    assert not MultiStepLIF("msresnet", surrogate="fast_sigmoid", surrogate_kwargs={})._use_triton(
        on_cuda
    )
    if torch.cuda.is_available():
        x = torch.randn(4, 2, 3, device="cuda")
        torch.testing.assert_close(MultiStepLIF("soft_fast")(x).cpu(), soft_fast_loop(x.cpu()))


@pytest.mark.parametrize("backend", ["triton", "triton_recompute"])
def test_an_explicit_kernel_backend_refuses_a_plugin_surrogate(backend):
    config = load_plugin()
    with pytest.raises(ValueError, match=r"surrogate 'fast_sigmoid' has no Triton kernel"):
        MultiStepLIF("soft_fast", backend=backend)
    with pytest.raises(ValueError, match="fast_sigmoid"):
        config.kernel_arguments()


def test_a_built_in_name_is_refused():
    with registry.loading(PLUGIN):
        with pytest.raises(registry.RegistrationError, match=r"'msresnet'.*spikeattn \(built in\)"):
            register_neuron("msresnet", lif_config("msresnet"))
        with pytest.raises(registry.RegistrationError, match=r"'atan'.*built in"):

            @register_surrogate
            @dataclass(frozen=True)
            class MyATan(Surrogate):
                name = "atan"

                def grad(self, x):
                    return x

    assert PRESETS["msresnet"] == lif_config("msresnet") and SURROGATES.owner("atan") is None


def test_a_preset_must_be_a_lif_config():
    with registry.loading(PLUGIN), pytest.raises(registry.RegistrationError, match="LIFConfig"):
        register_neuron("mine", {"decay": 0.5})


@dataclass
class Unfrozen(Surrogate):
    name = "unfrozen"

    def grad(self, x):
        return x


@dataclass(frozen=True)
class NoGrad(Surrogate):
    name = "no_grad"


@dataclass(frozen=True)
class NameField(Surrogate):
    name: str = "named"

    def grad(self, x):
        return x


@dataclass(frozen=True)
class NoDefault(Surrogate):
    width: float
    name = "no_default"

    def grad(self, x):
        return x


@pytest.mark.parametrize(
    "cls, message",
    [
        (Unfrozen, "frozen dataclass"),
        (NoGrad, "define grad"),
        (NameField, "class attribute"),
        (NoDefault, r"\['width'\] a default"),
        (int, "subclass"),
    ],
)
def test_a_malformed_surrogate_is_refused(cls, message):
    with registry.loading(PLUGIN), pytest.raises(registry.RegistrationError, match=message):
        register_surrogate(cls)
    assert set(SURROGATES) == {"rectangle", "triangle", "atan", "sigmoid"}
