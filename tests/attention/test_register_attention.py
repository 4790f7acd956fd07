"""register_attention: the built-ins go through it, each refusal names the family and the fix,
and a plugin block in either slot builds, runs and trains in every backbone that has the slot."""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch
from torch import Tensor, nn

from spikeattn import attention, registry
from spikeattn.attention import (
    ATTENTIONS,
    FAMILIES,
    MA_VARIANTS,
    SMA_VARIANTS,
    build_attention,
    family_options,
    register_attention,
)
from spikeattn.models import backbone_defaults
from spikeattn.neurons import MultiStepLIF
from spikeattn.registry import RegistrationError

FAKE = "tests/fake.py"


class Gate(nn.Module):
    """out = sigmoid(depthwise conv(x)) * x on a [T, B, C, H, W] current."""

    def __init__(self, T: int, channels: int, kernel: int = 3):
        super().__init__()
        self.T = T
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.conv(x.flatten(0, 1))).view_as(x) * x

    def elementwise_macs(self, x: Tensor) -> int:
        return x.numel()


class SpikingMix(nn.Module):
    """out = x + 1x1 conv(LIF(x)) on a conv output: a block that needs `make_neuron`."""

    def __init__(self, channels: int, neuron: nn.Module):
        super().__init__()
        self.neuron = neuron
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(self.neuron(x).flatten(0, 1)).view_as(x)


def spiking_mix(*, T: int, channels: int, make_neuron, scale: float = 1.0) -> nn.Module:
    return SpikingMix(channels, make_neuron())


@pytest.fixture
def plugin_blocks(plugin_sandbox):
    """GATE in the current slot (a class, no spatial/make_neuron), MIX in the conv slot."""
    with registry.loading(FAKE):
        register_attention("gate", slot="current", variants=["GATE"])(Gate)
        register_attention("mix", slot="conv", variants=["MIX"])(spiking_mix)


# -- the built-ins ---------------------------------------------------------------------------


def test_builtins_are_registered_in_todays_order_with_their_options():
    assert list(ATTENTIONS) == ["none", *MA_VARIANTS, *SMA_VARIANTS]
    assert list(FAMILIES) == ["ma", "sma"]
    assert {ATTENTIONS.owner(n) for n in ATTENTIONS} == {None}
    assert attention.family("none") is None and attention.slot("none") is None
    assert {attention.slot(n) for n in MA_VARIANTS} == {"current"}
    assert {attention.slot(n) for n in SMA_VARIANTS} == {"conv"}
    assert set(family_options("ma")) == {"ratio_t", "ratio_c", "sa_kernel"}
    assert set(family_options("sma")) == {
        "kernels",
        "ratio_c",
        "ratio_t",
        "azo_rtr",
        "azo_rcr",
        "branch_act",
        "azo_copy",
    }  # light, azo, temporal: implied by the names; make_neuron: given by the backbone
    assert family_options("ma")["ratio_c"].default == 8


def test_unknown_names_list_what_exists(plugin_blocks):
    with pytest.raises(ValueError, match=r"choose one of none, TA, .*GATE \(tests/fake.py\)"):
        attention.family("XA")
    with pytest.raises(ValueError, match="unknown attention family 'xa'"):
        family_options("xa")


# -- refusals --------------------------------------------------------------------------------


def _ok(*, T: int, channels: int, kernel: int = 3) -> nn.Module:
    return Gate(T, channels, kernel)


def _no_channels(*, T: int, kernel: int = 3) -> nn.Module:
    raise AssertionError("never built")


def _kwargs(*, T: int, channels: int, **options: Any) -> nn.Module:
    raise AssertionError("never built")


def _kernel_required(*, T: int, channels: int, kernel: int) -> nn.Module:
    raise AssertionError("never built")


@pytest.mark.parametrize(
    "family, builder, how, match",
    [
        ("tdg", _ok, dict(slot="before"), r"slot must be one of \['current', 'conv'\]"),
        ("tdg", _no_channels, {}, "must take keyword parameter.* channels"),
        ("tdg", _kwargs, {}, r"takes \*\*kwargs; name each option"),
        ("tdg", _ok, dict(variants={"TDG": {"size": 3}}), "sets size, which the builder does not"),
        ("tdg", _ok, dict(variants={"TDG": {"T": 3}}), "sets T, which build_attention sets"),
        (
            "tdg",
            _kernel_required,
            {},
            "option 'kernel' has no default: a cell without attention_kwargs.tdg.kernel",
        ),
        (
            "tdg",
            _kernel_required,
            dict(variants={"TDG3": {"kernel": 3}, "TDG": {}}),
            "option 'kernel' has no default",
        ),  # set by one variant only
        ("tdg", _ok, dict(variants=[]), "variants is empty"),
        ("tdg", _ok, dict(variants=["A", "A"]), "name one grid name twice"),
        ("ma", _ok, {}, r"attention family 'ma' is already registered by spikeattn \(built in\)"),
        (
            "tdg",
            _ok,
            dict(variants=["TDG", "TCSA"]),
            r"attention 'TCSA' is already registered by spikeattn \(built in\); register yours",
        ),
    ],
)
def test_registration_refusals_name_the_family_and_register_nothing(
    plugin_sandbox, family, builder, how, match
):
    before = (dict(ATTENTIONS), dict(FAMILIES))
    with registry.loading(FAKE), pytest.raises(RegistrationError, match=match) as err:
        register_attention(family, **{"slot": "current", **how})(builder)
    assert f"register_attention({family!r})" in str(err.value)
    assert (dict(ATTENTIONS), dict(FAMILIES)) == before


def test_a_name_another_plugin_holds_is_refused_naming_it_and_drop_frees_it(plugin_sandbox):
    with registry.loading("plugins/a.py"):
        register_attention("tdg", slot="current", variants=["TDG"])(_ok)
    with registry.loading("plugins/b.py"), pytest.raises(RegistrationError, match="plugins/a.py"):
        register_attention("tdg2", slot="current", variants=["TDG"])(_ok)
    assert "tdg2" not in FAMILIES
    with registry.loading("plugins/a.py"), pytest.raises(RegistrationError, match="itself"):
        register_attention("tdg3", slot="current", variants=["TDG"])(_ok)  # one name, twice
    registry.drop_owner("plugins/a.py")  # what the loader does before it imports an edit
    assert "TDG" not in ATTENTIONS and "tdg" not in FAMILIES
    with registry.loading("plugins/a.py"):
        register_attention("tdg", slot="conv", variants=["TDG"])(_ok)
    assert attention.slot("TDG") == "conv" and ATTENTIONS.owner("TDG") == "plugins/a.py"


def test_an_option_every_variant_sets_needs_no_default_and_is_no_option(plugin_sandbox):
    def banded(*, T: int, channels: int, band: int, kernel: int = 3) -> nn.Module:
        return Gate(T, channels, kernel)

    with registry.loading(FAKE):
        register_attention("band", slot="current", variants={"B1": {"band": 1}, "B2": {"band": 2}})(
            banded
        )
    assert set(family_options("band")) == {"kernel"}
    assert [n for n in ATTENTIONS if attention.family(n) == "band"] == ["B1", "B2"]
    assert ATTENTIONS["B2"].variant == {"band": 2}


# -- the calling convention ------------------------------------------------------------------


def test_spatial_and_make_neuron_reach_only_builders_that_name_them(plugin_sandbox):
    calls: list[dict[str, Any]] = []

    def takes_both(*, T: int, channels: int, spatial: bool, make_neuron, k: int = 1):
        calls.append(dict(T=T, channels=channels, spatial=spatial, make_neuron=make_neuron, k=k))
        return nn.Identity()

    def takes_neither(*, T: int, channels: int, k: int = 1):
        calls.append(dict(T=T, channels=channels, k=k))
        return nn.Identity()

    with registry.loading(FAKE):
        register_attention("both", slot="current", variants={"BOTH": {"k": 2}})(takes_both)
        register_attention("neither", slot="conv", variants=["NEITHER"])(takes_neither)
    assert set(family_options("both")) == set()  # k: implied by its only variant
    assert set(family_options("neither")) == {"k"}

    def make_neuron():
        return MultiStepLIF("ma_dvs")

    for name in ("BOTH", "NEITHER"):
        build_attention(
            name,
            T=3,
            channels=5,
            make_neuron=make_neuron,
            attention_kwargs={"neither": {"k": 7}},
        )
    build_attention("BOTH", T=3, channels=5, spatial=False)
    assert calls == [
        dict(T=3, channels=5, spatial=True, make_neuron=make_neuron, k=2),
        dict(T=3, channels=5, k=7),
        dict(T=3, channels=5, spatial=False, make_neuron=None, k=2),
    ]
    with pytest.raises(ValueError, match=r"'NEITHER' needs \[T, B, C, H, W\] input"):
        build_attention("NEITHER", T=3, channels=5, spatial=False)
    with pytest.raises(ValueError, match="one mapping per family"):
        build_attention("NEITHER", T=3, channels=5, attention_kwargs={"tdg": {}})


def test_slots_put_a_plugin_block_where_its_family_says(plugin_blocks):
    conv, current = attention.attention_slots("GATE", T=2, channels=4)
    assert isinstance(conv, nn.Identity) and isinstance(current, Gate)
    conv, current = attention.attention_slots(
        "MIX", T=2, channels=4, make_neuron=lambda: MultiStepLIF("ma_dvs")
    )
    assert isinstance(conv, SpikingMix) and isinstance(current, nn.Identity)


# -- in the backbones ------------------------------------------------------------------------

# tests/models/test_contract.py's SMALL shapes (direct coding, event frames).
SPIKY_MA = {"v_threshold": 0.1, "v_reset": 0.1}
BACKBONES = {
    "demo_cnn": (dict(T=4, num_classes=7, in_chans=1, img_size=16), 16),
    "ma_cnn_gesture": (dict(T=8, num_classes=10, img_size=8, neuron_kwargs=SPIKY_MA), 1),
    "sma_vgg8": (dict(T=8, num_classes=5, img_size=32, neuron_kwargs={"v_threshold": 0.25}), 1),
    "ms_resnet18": (
        dict(
            T=2,
            num_classes=5,
            img_size=16,
            neuron_kwargs={"v_threshold": 0.1},
            stem_width=16,
            widths=(16, 32, 64, 128),
        ),
        2,
    ),
}


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("attention_name, block", [("GATE", Gate), ("MIX", SpikingMix)])
def test_a_plugin_block_trains_in_every_backbone(plugin_blocks, name, attention_name, block):
    """Forward [T, B, classes], backward into the plugin's own weights, with options given
    per family as for MA and SMA."""
    kwargs, batch = BACKBONES[name]
    torch.manual_seed(0)
    model = timm.create_model(
        name,
        attention=attention_name,
        coding="direct",
        attention_kwargs={"gate": {"kernel": 1}, "mix": {"scale": 0.5}},
        **kwargs,
    )
    blocks = [m for m in model.modules() if isinstance(m, block)]
    assert blocks, f"{name} put no {attention_name} block anywhere"
    if block is Gate:
        assert all(b.conv.kernel_size == (1, 1) for b in blocks)  # the option reached it
    T, classes, side = kwargs["T"], kwargs["num_classes"], kwargs["img_size"]
    in_chans = kwargs.get("in_chans", backbone_defaults(name)["in_chans"])
    out = model(torch.rand(batch, T, in_chans, side, side))
    assert out.shape == (T, batch, classes)
    (out * torch.randn_like(out)).sum().backward()
    for b in blocks:
        assert b.conv.weight.grad is not None and b.conv.bias.grad.abs().sum() > 0
