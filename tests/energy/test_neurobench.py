"""Our counts against NeuroBench's SynapticOperations (neurobench 2.3.0, requirements-test.lock),
layer by layer, on the same small spiking nets and the same inputs.

- `sop_count: exact` SOPs of every spike-fed conv/linear = its Effective_ACs (no weight is
  exactly zero; with zero weights the `neurobench` preset, which skips them, still agrees);
- under the `neurobench` preset, the MACs of every real-valued conv/linear = its
  Effective_MACs, and the totals agree too (NeuroBench counts no elementwise products).

NeuroBench reports totals; one layer's numbers come from its own metric run on a wrapper
that hooks only that layer.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("neurobench")
from neurobench.metrics.workload import SynapticOperations  # noqa: E402
from neurobench.models import TorchModel  # noqa: E402

from spikeattn.attention.ma import build_ma  # noqa: E402
from spikeattn.energy import EnergyConventions, measure  # noqa: E402
from spikeattn.layers import TimeDistributed  # noqa: E402
from spikeattn.neurons import MultiStepLIF  # noqa: E402

T, B = 3, 4


class SpikeNet(nn.Module):
    """Frames [B, T, 2, 8, 8] -> conv 3x3 (biased) -> LIF -> conv 3x3 stride 2, groups 2 ->
    TCSA attention -> + shortcut 1x1 stride 2 on conv1's real current -> LIF ->
    conv 3x3 dilation 2, padding 2 -> LIF -> linear. T is merged into the batch by
    TimeDistributed, so every layer sees [T*B, ...]."""

    def __init__(self):
        super().__init__()
        lif = dict(v_threshold=0.2, v_reset=0.0)  # active enough for nonzero counts everywhere
        self.conv1 = TimeDistributed(nn.Conv2d(2, 4, 3, padding=1))
        self.lif1 = MultiStepLIF(**lif)
        self.conv2 = TimeDistributed(nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False))
        self.attention = build_ma("TCSA", T=T, channels=6, ratio_t=1, ratio_c=2)
        self.shortcut = TimeDistributed(nn.Conv2d(4, 6, 1, stride=2, bias=False))
        self.lif2 = MultiStepLIF(**lif)
        self.conv3 = TimeDistributed(nn.Conv2d(6, 6, 3, padding=2, dilation=2, bias=False))
        self.lif3 = MultiStepLIF(**lif)
        self.fc = TimeDistributed(nn.Flatten(), nn.Linear(6 * 4 * 4, 5))

    def forward(self, x):
        current = self.conv1(x.transpose(0, 1))
        out = self.attention(self.conv2(self.lif1(current))) + self.shortcut(current)
        return self.fc(self.lif3(self.conv3(self.lif2(out)))).mean(0)


class OneLayer(TorchModel):
    """NeuroBench's wrapper, hooking one connection layer only."""

    def __init__(self, net: nn.Module, layer: nn.Module):
        super().__init__(net)
        self._layer = layer

    def connection_layers(self):
        return [self._layer]

    def activation_layers(self):
        return []


def _neurobench(net: nn.Module, x: torch.Tensor, layer: nn.Module | None = None) -> dict:
    model = OneLayer(net, layer) if layer is not None else TorchModel(net)
    model.register_hooks()
    try:
        with torch.no_grad():
            preds = model(x)
        return SynapticOperations()(model, preds, (x, torch.zeros(len(x))))
    finally:
        model.cleanup_hooks()


def _synaptic(net: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _inputs(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind == "real":  # e.g. event counts or an image: no exact zeros
        return torch.rand(B, T, 2, 8, 8, generator=g) + 0.1
    return (torch.rand(B, T, 2, 8, 8, generator=g) < 0.3).float()  # binary event frames


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = SpikeNet().eval()
    assert all(bool((m.weight != 0).all()) for m in _synaptic(model).values())
    return model


@pytest.mark.parametrize("kind", ["real", "binary"])
def test_every_layer_agrees_with_neurobench(net, kind):
    x = _inputs(kind)
    counted = measure(net, [x], conventions=EnergyConventions(sop_count="exact"))
    exact = {l["name"]: l for l in counted["layers"]}
    preset = EnergyConventions.from_params({"preset": "neurobench"})
    nb_preset = {l["name"]: l for l in measure(net, [x], conventions=preset)["layers"]}
    spike_fed = 0
    for name, layer in _synaptic(net).items():
        theirs = _neurobench(net, x, layer)
        ours, ours_nb = exact[name], nb_preset[name]
        if ours["spiking_input"]:
            spike_fed += 1
            assert ours["sops"] > 0, name  # the comparison means something
            assert ours["sops"] == pytest.approx(theirs["Effective_ACs"], rel=1e-12), name
            assert theirs["Effective_MACs"] == 0 and ours["macs"] == 0, name
            assert ours_nb["sops"] == ours["sops"], name
        else:
            assert theirs["Effective_ACs"] == 0, name
            assert ours_nb["macs"] == pytest.approx(theirs["Effective_MACs"], rel=1e-12), name
            assert ours_nb["sops"] == 0, name
    # conv2, conv3, fc always; conv1 too on binary frames
    assert spike_fed == (3 if kind == "real" else 4)


@pytest.mark.parametrize("kind", ["real", "binary"])
def test_totals_agree_under_the_neurobench_preset(net, kind):
    x = _inputs(kind)
    theirs = _neurobench(net, x)
    ours = measure(net, [x], conventions=EnergyConventions.from_params({"preset": "neurobench"}))
    assert ours["totals"]["sops"] == pytest.approx(theirs["Effective_ACs"], rel=1e-12)
    assert ours["totals"]["macs"] == pytest.approx(theirs["Effective_MACs"], rel=1e-12)
    assert theirs["Effective_MACs"] > 0 and theirs["Effective_ACs"] > 0


def test_zero_weights_are_skipped_as_neurobench_does():
    torch.manual_seed(0)
    net = SpikeNet().eval()
    with torch.no_grad():
        for layer in _synaptic(net).values():
            layer.weight[::2] = 0.0  # every other output unit: no synapse at all
    x = _inputs("real")
    theirs = _neurobench(net, x)
    preset = measure(net, [x], conventions=EnergyConventions.from_params({"preset": "neurobench"}))
    assert preset["totals"]["sops"] == pytest.approx(theirs["Effective_ACs"], rel=1e-12)
    assert preset["totals"]["macs"] == pytest.approx(theirs["Effective_MACs"], rel=1e-12)
    counted = measure(net, [x], conventions=EnergyConventions(sop_count="exact"))
    assert counted["totals"]["sops"] > theirs["Effective_ACs"]  # zero weights counted: differs
