"""register_coding: a plugin coding builds inside a backbone, takes only the arguments it names,
keeps the coding contract, and its static-only mark comes and goes with it."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import Tensor, nn

import spikeattn.models  # noqa: F401  (registers the backbones)
from spikeattn import registry
from spikeattn.coding import CODINGS, build_coding, coding_options, register_coding, to_time_major
from spikeattn.layers import conv_bn
from spikeattn.neurons import MultiStepLIF
from spikeattn.registry import RegistrationError

FAKE = "tests/fake.py"


class Scaled(nn.Module):
    """The stem's current times a gain: Direct coding with one option."""

    emits_spikes = False

    def __init__(self, T: int, stem: nn.Module, gain: float = 1.0):
        super().__init__()
        self.T, self.stem, self.gain = T, stem, gain

    def forward(self, x: Tensor) -> Tensor:
        return self.gain * self.stem(to_time_major(x, self.T))


class Spiky(nn.Module):
    """The stem's current through its own LIF: a coding that emits spikes."""

    emits_spikes = True

    def __init__(self, T: int, stem: nn.Module, neuron: nn.Module):
        super().__init__()
        self.T, self.stem, self.neuron = T, stem, neuron

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(self.stem(to_time_major(x, self.T)))


def spiky(*, T: int, stem: nn.Module, channels: int, make_neuron) -> nn.Module:
    return Spiky(T, stem, make_neuron())


@pytest.fixture
def plugin_codings(plugin_sandbox):
    with registry.loading(FAKE):
        register_coding("scaled")(Scaled)
        register_coding("spiky", static_only=True)(spiky)


def test_builtins_register_through_the_same_call():
    assert list(CODINGS) == ["direct", "gac"]
    assert {CODINGS.owner(n) for n in CODINGS} == {None}
    assert registry.STATIC_ONLY_CODINGS >= {"gac"} and "direct" not in registry.STATIC_ONLY_CODINGS


@pytest.mark.parametrize("coding, block", [("scaled", Scaled), ("spiky", Spiky)])
def test_a_plugin_coding_trains_in_the_demo_net(plugin_codings, coding, block):
    torch.manual_seed(0)
    model = timm.create_model(
        "demo_cnn",
        coding=coding,
        attention="TA",
        T=4,
        num_classes=7,
        in_chans=1,
        img_size=16,
        neuron_kwargs={"v_threshold": 0.1},
        coding_kwargs={"gain": 2.0},
    )
    assert isinstance(model.coding, block)
    if block is Scaled:
        assert model.coding.gain == 2.0
    else:  # a coding that emits spikes takes layer 1's LIF, as GAC does
        assert not any(isinstance(m, MultiStepLIF) for m in model.stage1.modules())
    out = model(torch.rand(3, 4, 1, 16, 16))
    assert out.shape == (4, 3, 7)
    (out * torch.randn_like(out)).sum().backward()
    assert model.coding.stem[0].weight.grad.abs().sum() > 0


def test_coding_arguments_reach_only_builders_that_name_them(plugin_codings):
    seen = {}

    def spy(*, T: int, stem: nn.Module, ratio_t: int = 1) -> nn.Module:
        seen.update(T=T, ratio_t=ratio_t)
        return Scaled(T, stem)

    with registry.loading(FAKE):
        register_coding("spy")(spy)
    build_coding(
        "spy", T=3, stem=conv_bn(1, 4), channels=4, make_neuron=MultiStepLIF, ratio_t=5, gain=2
    )
    assert seen == {"T": 3, "ratio_t": 5}  # no channels, make_neuron nor gain: it names none


def test_static_only_reaches_the_planning_set_and_drop_removes_it(plugin_codings):
    assert "spiky" in registry.STATIC_ONLY_CODINGS and "scaled" not in registry.STATIC_ONLY_CODINGS
    assert CODINGS.describe() == "direct, gac, scaled (tests/fake.py), spiky (tests/fake.py)"
    registry.drop_owner(FAKE)
    assert list(CODINGS) == ["direct", "gac"]
    assert "spiky" not in registry.STATIC_ONLY_CODINGS and "gac" in registry.STATIC_ONLY_CODINGS
    with pytest.raises(ValueError, match="unknown coding 'spiky'; choose one of direct, gac"):
        build_coding("spiky", T=2, stem=conv_bn(1, 4), channels=4, make_neuron=MultiStepLIF)


def _no_stem(*, T: int, channels: int) -> nn.Module:
    raise AssertionError("never built")


def _gain_required(*, T: int, stem: nn.Module, gain: float) -> nn.Module:
    raise AssertionError("never built")


@pytest.mark.parametrize(
    "name, builder, match",
    [
        ("mine", _no_stem, r"register_coding\('mine'\): the builder must take .* stem"),
        ("mine", _gain_required, r"option\(s\) gain have no default"),
        ("gac", Scaled, r"coding 'gac' is already registered by spikeattn \(built in\)"),
    ],
)
def test_registration_refusals(plugin_sandbox, name, builder, match):
    with registry.loading(FAKE), pytest.raises(RegistrationError, match=match):
        register_coding(name, static_only=True)(builder)
    assert list(CODINGS) == ["direct", "gac"] and registry.STATIC_ONLY_CODINGS == {"gac"}


def test_a_module_without_the_coding_contract_is_refused_naming_the_coding(plugin_sandbox):
    with registry.loading(FAKE):
        register_coding("bare")(lambda *, T, stem: nn.Sequential(stem))
    with pytest.raises(
        TypeError, match=r"coding bare \(tests/fake.py\) .* lacks T, stem, emits_spikes"
    ):
        build_coding("bare", T=2, stem=conv_bn(1, 4), channels=4, make_neuron=MultiStepLIF)


def _takes_all(*, T: int, stem: nn.Module, **options) -> nn.Module:
    raise AssertionError("never built")


def test_a_builder_taking_kwargs_is_refused(plugin_sandbox):
    with registry.loading(FAKE), pytest.raises(RegistrationError, match=r"takes \*\*kwargs"):
        register_coding("loose")(_takes_all)


def test_each_coding_takes_its_own_options_of_one_coding_kwargs(plugin_codings):
    assert set(coding_options("gac")) == {"ratio_t", "sca_kernel"}
    assert set(coding_options("scaled")) == {"gain"} and coding_options("direct") == {}
    stem = conv_bn(1, 4)
    kwargs = {"gain": 3.0, "ratio_t": 1}  # one grid's coding_kwargs: scaled's gain, gac's ratio_t
    gac = build_coding("gac", T=2, stem=stem, channels=4, make_neuron=MultiStepLIF, **kwargs)
    assert gac.ta.fc1.out_features == 2  # ratio_t 1 reached GAC: T / 1 hidden units (2 gives 1)
    scaled = build_coding("scaled", T=2, stem=stem, channels=4, make_neuron=MultiStepLIF, **kwargs)
    assert scaled.gain == 3.0
    with pytest.raises(ValueError, match=r"coding_kwargs 'gian': no coding takes it"):
        build_coding("gac", T=2, stem=stem, channels=4, make_neuron=MultiStepLIF, gian=1)
