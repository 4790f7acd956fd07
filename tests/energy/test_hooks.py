"""OpCounter / measure against hand computation, on a toy net and on the demo backbone."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import spikeattn.models  # noqa: F401  (registers demo_cnn with timm)
from spikeattn.attention.ma import build_ma
from spikeattn.coding import to_time_major
from spikeattn.energy import OpCounter, measure
from spikeattn.layers import TimeDistributed
from spikeattn.neurons import MultiStepLIF

T, B, H = 3, 2, 4


class Toy(nn.Module):
    """Real image -> conv (MACs) -> LIF -> linear (SOPs)."""

    def __init__(self):
        super().__init__()
        self.conv = TimeDistributed(nn.Conv2d(1, 2, 3, padding=1, bias=False))
        self.lif = MultiStepLIF()  # decay 0.5, Vth 1, hard reset to 0
        self.fc = TimeDistributed(nn.Flatten(), nn.Linear(2 * H * H, 3))
        with torch.no_grad():
            w = self.conv[0].weight
            w[0].fill_(0.25)
            w[1].fill_(-0.1)
            w[1, 0, 1, 1] = 0.9

    def spikes(self, x):
        return self.lif(self.conv(to_time_major(x, T)))

    def forward(self, x):
        return self.fc(self.spikes(x))


def _toy_input():
    return torch.linspace(-0.5, 1.5, B * H * H).reshape(B, 1, H, H)


def _layer(report, name):
    return next(l for l in report["layers"] if l["name"] == name)


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_toy_counts_match_hand_formulas():
    model, x = Toy().eval(), _toy_input()
    with torch.no_grad():
        spikes = model.spikes(x)
        rate = spikes.mean().item()
    assert 0.0 < rate < 1.0  # the hand-set weights make the layer partly active
    rep = measure(model, [x])

    assert rep["samples"] == B
    conv = _layer(rep, "conv.0")
    # conv: output [T*B, 2, 4, 4] x (1 input channel) x 3x3 kernel, per sample
    conv_macs = T * 2 * H * H * 1 * 9
    assert not conv["spiking_input"] and conv["input_rate"] is None
    assert conv["macs"] == conv["dense_macs"] == conv_macs and conv["sops"] == 0

    fc = _layer(rep, "fc.1")
    fc_dense = T * 3 * (2 * H * H)  # output [T*B, 3] x 32 inputs, per sample
    assert fc["spiking_input"] and fc["macs"] == 0
    assert fc["dense_macs"] == fc_dense
    assert fc["input_rate"] == pytest.approx(rate)
    assert fc["sops"] == pytest.approx(fc_dense * rate)

    assert rep["firing_rates"] == {"lif": pytest.approx(rate)}
    assert rep["mean_firing_rate"] == pytest.approx(rate)
    assert rep["totals"]["macs"] == conv_macs
    assert rep["totals"]["sops"] == pytest.approx(fc_dense * rate)
    assert _no_hooks(model)


def test_force_mac_overrides_binary_input():
    model, x = Toy().eval(), _toy_input()
    rep = measure(model, [x], force_mac=["fc.1"])
    fc = _layer(rep, "fc.1")
    assert not fc["spiking_input"] and fc["macs"] == fc["dense_macs"] and fc["sops"] == 0
    with pytest.raises(ValueError, match="no module"):
        OpCounter(model, force_mac=["nope"])


class MAWrap(nn.Module):
    """Batch-major frames [B, T, C, H, W] -> MA attention on the time-major current."""

    def __init__(self, name, channels=4):
        super().__init__()
        self.ma = build_ma(name, T=4, channels=channels, ratio_t=2, ratio_c=2)

    def forward(self, x):
        return self.ma(x.transpose(0, 1))


def test_attention_linear_on_real_values_counts_macs_and_elementwise():
    torch.manual_seed(0)
    model = MAWrap("TA").eval()
    with torch.no_grad():  # positive weights and inputs: every value in the MLP is real
        for p in model.parameters():
            p.fill_(0.5)
    x = torch.rand(3, 4, 4, 2, 2) + 0.1  # B=3, T=4, C=4, 2x2
    rep = measure(model, [x])
    fc1 = _layer(rep, "ma.blocks.0.mlp.fc1")
    fc2 = _layer(rep, "ma.blocks.0.mlp.fc2")
    # TA MLP T=4 -> 2 -> 4, applied to avg and to max (2 calls), per sample
    assert not fc1["spiking_input"] and fc1["macs"] == 2 * (2 * 4) and fc1["sops"] == 0
    assert not fc2["spiking_input"] and fc2["macs"] == 2 * (4 * 2) and fc2["sops"] == 0
    ew = _layer(rep, "ma")
    per_sample_current = 4 * 4 * 2 * 2  # T*C*H*W
    assert ew["kind"] == "elementwise" and ew["macs"] == per_sample_current
    assert ew["macs"] == model.ma.elementwise_macs(x[:1].transpose(0, 1))
    assert rep["totals"]["macs"] == 16 + 16 + per_sample_current
    assert rep["totals"]["sops"] == 0


def test_elementwise_counts_every_block():
    model = MAWrap("TCSA").eval()
    rep = measure(model, [torch.rand(2, 4, 4, 2, 2)])
    assert _layer(rep, "ma")["macs"] == 3 * 4 * 4 * 2 * 2
    sa = _layer(rep, "ma.blocks.2.conv")  # Conv2d(2 -> 1, 3x3) on the mean/max maps
    assert not sa["spiking_input"] and sa["macs"] == 2 * 2 * 2 * 9


def _demo(coding, **kwargs):
    return timm.create_model(
        "demo_cnn", attention="TCSA", coding=coding, T=4, img_size=16, in_chans=1, **kwargs
    ).eval()


@pytest.mark.parametrize("coding", ["direct", "gac"])
def test_demo_cnn_default_neurons_classified(coding):
    """With the default preset at init (sparse spikes), every layer still gets the right kind."""
    torch.manual_seed(0)
    rep = measure(_demo(coding), [torch.rand(2, 1, 16, 16)])
    assert not _layer(rep, "coding.stem.0")["spiking_input"]
    assert _layer(rep, "head.1")["spiking_input"] and _layer(rep, "head.1")["macs"] == 0
    # direct: conv2 reads stage1's spikes; GAC: the pooled gated output, real-valued -> MACs
    assert _layer(rep, "conv2.0")["spiking_input"] == (coding == "direct")


@pytest.fixture(scope="module")
def demo():
    """A low threshold makes the untrained net active in every layer (nonzero SOPs to check)."""
    torch.manual_seed(0)
    model = _demo("direct", neuron_kwargs={"v_threshold": 0.05, "v_reset": 0.0})
    data = torch.rand(8, 1, 16, 16)
    return model, data, measure(model, [data])


def test_demo_cnn_mac_and_sop_layers(demo):
    model, data, rep = demo
    assert rep["samples"] == 8
    stem = _layer(rep, "coding.stem.0")
    assert not stem["spiking_input"] and stem["sops"] == 0
    # C1 * H * W * in_chans * 3x3, once: the static image is the same at all T=4 steps
    assert stem["macs"] == 16 * 16 * 16 * 1 * 9 and stem["dense_macs"] == 4 * stem["macs"]
    for name in ("conv2.0", "head.1"):
        layer = _layer(rep, name)
        assert layer["spiking_input"] and layer["macs"] == 0 and 0 < layer["input_rate"] < 1
        assert layer["sops"] == pytest.approx(layer["dense_macs"] * layer["input_rate"])
    # conv2 and the head read exactly the spikes of stage1's and stage2's LIFs
    assert _layer(rep, "conv2.0")["input_rate"] == pytest.approx(
        rep["firing_rates"]["stage1.neuron"]
    )
    assert _layer(rep, "head.1")["input_rate"] == pytest.approx(
        rep["firing_rates"]["stage2.neuron"]
    )
    # Every attention MLP and SA conv sees real values: MACs, never SOPs. (A 1-unit TA MLP
    # whose ReLU is dead at init feeds fc2 zeros only: flagged silent, 0 ops.)
    for layer in rep["layers"]:
        if layer["name"].startswith(("stage1.attention.", "stage2.attention.")):
            assert layer["sops"] == 0, layer["name"]
            assert not layer["spiking_input"] or layer["silent_input"], layer["name"]
            if not layer["silent_input"]:
                assert layer["macs"] == layer["dense_macs"] > 0


def test_gac_gate_counts_macs():
    torch.manual_seed(0)
    rep = measure(
        _demo("gac", neuron_kwargs={"v_threshold": 0.05, "v_reset": 0.0}),
        [torch.rand(8, 1, 16, 16)],
    )
    for layer in rep["layers"]:
        if layer["name"].startswith("coding.ta") and not layer["silent_input"]:
            assert layer["macs"] == layer["dense_macs"] > 0 and layer["sops"] == 0, layer["name"]
        if layer["name"].startswith("coding.sca"):  # on the stem current, the same at every step
            assert layer["macs"] == layer["dense_macs"] / 4 > 0 and layer["sops"] == 0, layer[
                "name"
            ]
    # GAC's two elementwise products act on the stem current [T, C1, H, W] per sample
    assert _layer(rep, "coding")["macs"] == 2 * 4 * 16 * 16 * 16
    assert set(rep["firing_rates"]) == {"coding.neuron", "stage2.neuron"}


def test_demo_cnn_firing_rates(demo):
    model, data, rep = demo
    assert set(rep["firing_rates"]) == {"stage1.neuron", "stage2.neuron"}
    assert all(0.0 <= r <= 1.0 for r in rep["firing_rates"].values())
    neurons = {n["name"]: n for n in rep["neurons"]}
    weighted = sum(n["rate"] * n["elements"] for n in neurons.values()) / sum(
        n["elements"] for n in neurons.values()
    )
    assert rep["mean_firing_rate"] == pytest.approx(weighted)
    assert rep["mean_firing_rate_unweighted"] == pytest.approx(
        sum(rep["firing_rates"].values()) / 2
    )
    assert neurons["stage1.neuron"]["elements"] == 4 * 16 * 8 * 8


def test_demo_cnn_hooks_removed_and_mode_restored(demo):
    model, data, _ = demo
    assert _no_hooks(model)
    model.train()
    measure(model, [data[:2]])
    assert model.training and _no_hooks(model)
    model.eval()
    with pytest.raises(RuntimeError, match="boom"):
        with OpCounter(model):
            assert not _no_hooks(model)
            raise RuntimeError("boom")
    assert _no_hooks(model)


def test_demo_cnn_per_sample_independent_of_batch_size(demo):
    model, data, whole = demo
    # the same 8 samples as batches of 1, 3 and 4; one given as a DataLoader-style tuple
    split = measure(model, [(data[:1], torch.zeros(1)), data[1:4], data[4:]])
    assert split["samples"] == 8
    for key in ("macs", "sops", "dense_macs"):
        assert split["totals"][key] == pytest.approx(whole["totals"][key], rel=1e-9)
    for name, rate in whole["firing_rates"].items():
        assert split["firing_rates"][name] == pytest.approx(rate, rel=1e-9)


def test_report_without_forward_raises():
    with pytest.raises(ValueError, match="no forward"):
        with OpCounter(Toy()) as c:
            pass
        c.report()


def test_repeats_over_time_needs_a_time_major_shape():
    from spikeattn.energy import repeats_over_time

    same = torch.ones(4, 2, 3)  # [T=4, B=2, F], identical steps
    assert repeats_over_time(same, 4, batch=2)
    assert repeats_over_time(same.reshape(8, 3), 4, batch=2)  # [T*B, F]
    assert not repeats_over_time(torch.zeros(8, 4), 4, batch=8)  # [B, T]: not time-major
    varying = same.clone()
    varying[3, 1, 0] = 2.0
    assert not repeats_over_time(varying, 4, batch=2)
    assert not repeats_over_time(same, None, batch=2) and not repeats_over_time(same, 1, batch=2)
