"""The new convention keys and the paper presets, on nets small enough to count by hand.

Every expected number is written out from the layer shapes (outputs x fan-in per step,
receptive fields counted by hand), never taken from the counter itself.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeattn.attention.ma import build_ma
from spikeattn.coding import DirectCoding, GACCoding
from spikeattn.energy import EnergyConventions, attention_layers, coding_layers, estimate
from spikeattn.layers import TimeDistributed
from spikeattn.neurons import MultiStepLIF

T = 2


def _row(report, name):
    return report.layers.set_index("layer").loc[name]


def _fill(model: nn.Module, value: float = 0.5) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    return model.eval()


class Net(nn.Module):
    """Static image [B, 1, 4, 4] -> direct coding (stem 3x3, 1 -> 2) -> LIF -> conv 3x3 (2 -> 2)
    -> CA attention -> + shortcut 1x1 conv on the stem current (real, after the first LIF)
    -> LIF -> linear 32 -> 3. With every weight 0.5 and the image 2.0 every current is >= 2,
    so both LIFs fire everywhere at both steps (checked): all counts follow from shapes."""

    T = T

    def __init__(self):
        super().__init__()
        self.coding = DirectCoding(T, TimeDistributed(nn.Conv2d(1, 2, 3, padding=1, bias=False)))
        self.lif1 = MultiStepLIF()
        self.conv2 = TimeDistributed(nn.Conv2d(2, 2, 3, padding=1, bias=False))
        self.attention = build_ma("CA", T=T, channels=2, ratio_c=2)  # MLP 2 -> 1 -> 2
        self.shortcut = TimeDistributed(nn.Conv2d(2, 2, 1, bias=False))
        self.lif2 = MultiStepLIF()
        self.head = TimeDistributed(nn.Flatten(), nn.Linear(32, 3, bias=False))
        _fill(self)

    def forward(self, x):
        current = self.coding(x)
        out = self.attention(self.conv2(self.lif1(current))) + self.shortcut(current)
        return self.head(self.lif2(out))


IMAGE = torch.full((1, 1, 4, 4), 2.0)  # one sample: per-sample counts are the totals

# Written out, per sample (B = 1), T = 2 steps:
STEM_DENSE = 16 * 2 * 1 * 9  # per step: 16 positions x 2 out channels x 1 in x 3x3 = 288
# in-bounds taps of a 3x3 'same' conv on a 4x4 map: 4 corners x 4 + 8 edges x 6 + 4 inner x 9
REACH_3x3_4x4 = 4 * 4 + 8 * 6 + 4 * 9  # = 100 per (input channel, output channel) pair
STEM_EFFECTIVE = REACH_3x3_4x4 * 1 * 2  # per step, every image pixel nonzero: 200
CONV2_DENSE = T * 16 * 2 * 2 * 9  # 1152; its input spikes are all ones: rate SOPs = dense
CONV2_EXACT = T * REACH_3x3_4x4 * 2 * 2  # 800
MLP = 2 * (1 * 2) + 2 * (2 * 1)  # fc1 2 -> 1 and fc2 1 -> 2, on avg and on max: 8
SHORTCUT = T * 16 * 2 * 2  # 1x1, 2 -> 2, every step: 128
PRODUCTS = T * 2 * 16  # CA: one weight product per element of the current: 64
HEAD = T * 32 * 3  # 32 spikes x fan-out 3 per step (rate = exact when all fire): 192


def test_net_fires_everywhere():
    net = Net()
    with torch.no_grad():
        current = net.coding(IMAGE)
        assert bool((net.lif1(current) == 1).all())
        out = net.attention(net.conv2(net.lif1(current))) + net.shortcut(current)
        assert bool((net.lif2(out) == 1).all())


def test_layer_roles_are_structural():
    net = Net()
    assert coding_layers(net) == {"coding.stem.0"}
    assert attention_layers(net) == {"attention.blocks.0.mlp.fc1", "attention.blocks.0.mlp.fc2"}
    gac = GACNet()
    assert attention_layers(gac) == {
        "coding.ta.fc1",
        "coding.ta.fc2",
        "coding.sca.1",
        "coding.sca.4",
    }  # the stem is GAC's, but not attention
    assert coding_layers(gac) == attention_layers(gac) | {"coding.stem.0"}
    rep = estimate(net, [IMAGE])
    roles = dict(zip(rep.layers["layer"], rep.layers["role"]))
    assert roles["coding.stem.0"] == "encoding" and roles["shortcut.0"] == "hidden"
    assert roles["conv2.0"] == "hidden" and roles["head.1"] == "hidden"
    assert roles["attention.blocks.0.mlp.fc1"] == roles["attention"] == "attention"


@pytest.mark.parametrize(
    "preset, macs, sops",
    [
        # stem once, attention MLPs, shortcut every step, products; rate SOPs
        ("ma-snn", STEM_DENSE + MLP + SHORTCUT + PRODUCTS, CONV2_DENSE + HEAD),
        ("sma", STEM_DENSE + MLP + SHORTCUT + PRODUCTS, CONV2_DENSE + HEAD),
        # stem once; attention layers and products left out; the real-valued shortcut as SOPs
        # (its input, the stem current, is nonzero everywhere: rate SOPs = its dense count)
        ("gac", STEM_DENSE, CONV2_DENSE + HEAD + SHORTCUT),
        # stem at both steps without its padding; no products; exact SOPs
        ("neurobench", T * STEM_EFFECTIVE + MLP + SHORTCUT, CONV2_EXACT + HEAD),
        # today's defaults: like ma-snn but the encoding layer judged by its (real) input
        (None, STEM_DENSE + MLP + SHORTCUT + PRODUCTS, CONV2_DENSE + HEAD),
    ],
)
def test_preset_counts_on_the_net(preset, macs, sops):
    settings = {"preset": preset} if preset else {}
    rep = estimate(Net(), [IMAGE], EnergyConventions.from_params(settings))
    assert rep.macs == macs and rep.sops == sops
    assert rep.energy_uj == pytest.approx((4.6 * macs + 0.9 * sops) * 1e-6)


def test_repeated_input_once_only_on_the_encoding_path():
    """The shortcut reads the stem current, which is the same at both steps; it comes after
    the first LIF, so it is counted at both steps (not halved as the old rule did)."""
    once = estimate(Net(), [IMAGE])
    every = estimate(Net(), [IMAGE], EnergyConventions(repeated_input="every_step"))
    assert _row(once, "coding.stem.0")["macs"] == STEM_DENSE
    assert _row(every, "coding.stem.0")["macs"] == T * STEM_DENSE
    assert _row(once, "shortcut.0")["macs"] == _row(every, "shortcut.0")["macs"] == SHORTCUT


def test_hidden_real_none_drops_the_shortcut_only():
    mac = estimate(Net(), [IMAGE])
    none = estimate(Net(), [IMAGE], EnergyConventions(hidden_real="none"))
    assert _row(none, "shortcut.0")["macs"] == 0 and _row(mac, "shortcut.0")["macs"] == SHORTCUT
    assert none.macs == mac.macs - SHORTCUT and none.sops == mac.sops


class GatedNet(nn.Module):
    """A 1x1 stem (weight 1) -> LIF -> spikes x 0.5 (real values, as GAC's gated spikes) ->
    a hidden 3x3 'same' conv 1 -> 2 on a 3x3 map."""

    T = T

    def __init__(self):
        super().__init__()
        self.stem = _fill(TimeDistributed(nn.Conv2d(1, 1, 1, bias=False)), 1.0)
        self.lif = MultiStepLIF()
        self.conv = _fill(TimeDistributed(nn.Conv2d(1, 2, 3, padding=1, bias=False)))

    def forward(self, x):
        current = self.stem(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
        return self.conv(self.lif(current) * 0.5)


def test_hidden_real_ac_prices_the_nonzero_real_inputs_as_sops():
    """Current 2.0 at the centre and two corners (0 elsewhere): the LIF (threshold 1, reset to
    0) fires there at both steps, so the conv reads 0.5 at 3 of 9 positions per step.
    Dense per step: 9 outputs x 2 channels x 9 taps = 162. Rate: 162 x 3/9 = 54 per step.
    Exact: the centre reaches 9 outputs, each corner 4 (the rest is padding), x 2 channels
    = 34 per step."""
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = x[0, 0, 0, 0] = x[0, 0, 2, 2] = 2.0
    counts = {
        hidden: {
            sop: _row(
                estimate(GatedNet(), [x], EnergyConventions(hidden_real=hidden, sop_count=sop)),
                "conv.0",
            )[["macs", "sops"]].tolist()
            for sop in ("rate", "exact")
        }
        for hidden in ("mac", "ac", "none")
    }
    assert counts["ac"] == {"rate": [0, T * 54], "exact": [0, T * 34]}
    assert counts["mac"] == {"rate": [T * 162, 0], "exact": [T * 162, 0]}
    assert counts["none"] == {"rate": [0, 0], "exact": [0, 0]}


def test_attention_layers_none_drops_the_mlp_not_the_products():
    none = estimate(Net(), [IMAGE], EnergyConventions(attention_layers="none"))
    assert _row(none, "attention.blocks.0.mlp.fc1")["macs"] == 0
    assert _row(none, "attention")["macs"] == PRODUCTS  # the elementwise key governs these
    assert none.macs == STEM_DENSE + SHORTCUT + PRODUCTS


def test_mac_count_effective_skips_zero_inputs_and_padding():
    """3x3 'same' conv on a 3x3 map with two nonzero real inputs: the centre reaches all 9
    outputs, the corner 4 (the rest of its field is padding); x 2 output channels."""
    conv = _fill(nn.Conv2d(1, 2, 3, padding=1, bias=False))
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1], x[0, 0, 0, 0] = 0.7, -1.5
    dense = estimate(conv, [x])
    effective = estimate(conv, [x], EnergyConventions(mac_count="effective"))
    assert dense.macs == 9 * 2 * 9  # every output x 9 taps, padding included
    assert effective.macs == (9 + 4) * 2


def test_zero_weights_skip_in_exact_sops():
    """One spike at the centre of a 3x3 map feeds all 9 outputs, each through a different tap;
    zeroing tap (0, 0) cuts output (2, 2). Linear: spikes on inputs 0 and 1, weights
    [[1, 0, 1], [1, 1, 0]]: input 0 reaches both outputs, input 1 only output 1."""
    conv = _fill(nn.Conv2d(1, 1, 3, padding=1, bias=False))
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = 0.0
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0
    exact = EnergyConventions(sop_count="exact")
    skip = EnergyConventions(sop_count="exact", zero_weights="skip")
    assert estimate(conv, [x], exact).sops == 9 and estimate(conv, [x], skip).sops == 8
    fc = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))
    spikes = torch.tensor([[1.0, 1.0, 0.0]])
    assert estimate(fc, [spikes], exact).sops == 2 * 2
    assert estimate(fc, [spikes], skip).sops == 2 + 1


def test_zero_weights_skip_in_effective_macs():
    conv = _fill(nn.Conv2d(1, 1, 3, padding=1, bias=False))
    with torch.no_grad():
        conv.weight[0, 0, 1, 1] = 0.0  # the centre tap: each output loses its own pixel
    x = torch.full((1, 1, 3, 3), 0.3)
    conventions_eff = EnergyConventions(mac_count="effective", zero_weights="skip")
    # in-bounds taps on a 3x3 map: 4 corners x 4 + 4 edges x 6 + centre 9 = 49, minus 9 centres
    assert estimate(conv, [x], conventions_eff).macs == 49 - 9


class GACNet(nn.Module):
    """GAC coding (stem 3x3 1 -> 2, TA MLP 2 -> 1 -> 2, SCA two 4x4 convs 2 -> 2) on a static
    image, then LIF -> linear 32 -> 3, as MS-ResNet's first block reads the gated output."""

    T = T

    def __init__(self):
        super().__init__()
        stem = TimeDistributed(nn.Conv2d(1, 2, 3, padding=1, bias=False))
        self.coding = GACCoding(T, stem, 2, MultiStepLIF, ratio_t=2, sca_kernel=4)
        self.lif = MultiStepLIF()
        self.head = TimeDistributed(nn.Flatten(), nn.Linear(32, 3, bias=False))
        _fill(self)

    def forward(self, x):
        return self.head(self.lif(self.coding(x)))


SCA = 2 * (16 * 2 * 2 * 16)  # two convs, each 16 positions x 2 out x 2 in x 4x4 taps, per step
TA = 2 * (1 * 2) + 2 * (2 * 1)  # fc1 2 -> 1, fc2 1 -> 2, on avg and on max
GATES = 2 * T * 2 * 16  # TA x SCA and gate x spikes, one product per element each


def test_gac_preset_leaves_the_gac_coding_convs_out_and_counts_the_stem_once():
    default = estimate(GACNet(), [IMAGE])
    gac = estimate(GACNet(), [IMAGE], EnergyConventions.from_params({"preset": "gac"}))
    # today's defaults: stem and SCA once (same input at both steps, inside the coding)
    assert default.macs == STEM_DENSE + SCA + TA + GATES
    assert gac.macs == STEM_DENSE
    for name in ("coding.sca.1", "coding.sca.4", "coding.ta.fc1", "coding.ta.fc2", "coding"):
        assert _row(gac, name)["macs"] == 0 and _row(gac, name)["sops"] == 0, name
    assert _row(gac, "coding.stem.0")["macs"] == STEM_DENSE
    assert gac.sops == default.sops == _row(gac, "head.1")["sops"] > 0


def test_ms_resnet_shortcuts_count_at_every_step_even_when_constant_at_init():
    """MS-ResNet with zero residual BN (GAC's init) and direct coding: at init each block
    outputs its shortcut alone, so the whole membrane stream is the stem current, the same at
    both steps. The shortcut convs still count at both steps; the old rule halved them."""
    import timm

    import spikeattn.models  # noqa: F401  (registers the backbones)

    model = timm.create_model(
        "ms_resnet18",
        depths=(1, 1),
        widths=(4, 8),
        strides=(2, 2),
        stem="3x3",
        stem_width=4,
        T=T,
        img_size=8,
        in_chans=1,
        num_classes=3,
        downsample="strided",
        residual_bn_weight_init=0.0,
        drop_rate=0.0,
    ).eval()
    rep = estimate(model, [torch.rand(2, 1, 8, 8)])
    short1 = T * (4 * 4) * 4 * 4  # 1x1 stride 2, 4 -> 4 channels, 8x8 -> 4x4
    short2 = T * (2 * 2) * 8 * 4  # 1x1 stride 2, 4 -> 8 channels, 4x4 -> 2x2
    assert _row(rep, "stages.0.0.shortcut.0")["macs"] == short1
    assert _row(rep, "stages.1.0.shortcut.0")["macs"] == short2
    assert _row(rep, "stages.0.0.shortcut.0")["role"] == "hidden"
    assert _row(rep, "coding.stem.0")["macs"] == 8 * 8 * 4 * 1 * 9  # once: 3x3 stem, 1 -> 4
    gac = estimate(
        model, [torch.rand(2, 1, 8, 8)], EnergyConventions.from_params({"preset": "gac"})
    )
    assert _row(gac, "stages.0.0.shortcut.0")["macs"] == 0 and gac.macs == 8 * 8 * 4 * 9
    # gac prices it as SOPs at its input's nonzero fraction (the stem current: nonzero, rand > 0)
    assert _row(gac, "stages.0.0.shortcut.0")["sops"] == pytest.approx(short1)
