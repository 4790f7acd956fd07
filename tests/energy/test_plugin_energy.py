"""The energy contract of a plugin module (README "Bring your own module"): a block that
declares `elementwise_macs` has its layers counted as attention and its products as an
elementwise row; one that does not is counted as hidden layers, products uncounted. A plugin
coding's stem is the encoding layer, found by the coding contract, not by its class.

Expected counts are written out from the demo net's shapes: T=4, 16x16 frames, channels
(16, 32); layer 1's current is pooled to 8x8, layer 2's conv output pooled to 4x4.
"""

from __future__ import annotations

import pytest
import timm
import torch
from torch import Tensor, nn

import spikeattn.models  # noqa: F401  (registers the backbones)
from spikeattn import registry
from spikeattn.attention import register_attention
from spikeattn.coding import register_coding, to_time_major
from spikeattn.energy import EnergyConventions, OpCounter, attention_layers, coding_layers

FAKE = "tests/fake.py"
T, B = 4, 2
ELEMENTS = {"stage1": T * 16 * 8 * 8, "stage2": T * 32 * 4 * 4}  # per sample: 4096, 2048
KERNEL = 3  # depthwise: one input channel per output, 3 x 3 taps per output element


class Gate(nn.Module):
    """out = sigmoid(depthwise conv(x)) * x: one weight product per element."""

    def __init__(self, T: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, KERNEL, padding=KERNEL // 2, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.conv(x.flatten(0, 1))).view_as(x) * x


class DeclaredGate(Gate):
    def elementwise_macs(self, x: Tensor) -> int:
        return x.numel()


def _rows(attention: str, **conventions) -> dict[str, dict]:
    torch.manual_seed(0)
    model = timm.create_model(
        "demo_cnn", attention=attention, T=T, num_classes=3, in_chans=1, img_size=16
    ).eval()
    counter = OpCounter(model, conventions=EnergyConventions(**conventions))
    with counter, torch.no_grad():
        model(torch.rand(B, T, 1, 16, 16))
    return {row["name"]: row for row in counter.report()["layers"]}


@pytest.fixture
def gates(plugin_sandbox):
    with registry.loading(FAKE):
        register_attention("declared", slot="current", variants=["DECLARED"])(DeclaredGate)
        register_attention("undeclared", slot="current", variants=["UNDECLARED"])(Gate)


def test_a_block_with_elementwise_macs_is_attention_and_counts_its_products(gates):
    rows = _rows("DECLARED")
    for stage, elements in ELEMENTS.items():
        conv, products = rows[f"{stage}.attention.conv"], rows[f"{stage}.attention"]
        assert conv["role"] == "attention" and not conv["spiking_input"]
        assert conv["macs"] == conv["dense_macs"] == elements * KERNEL**2
        assert products["kind"] == "elementwise" and products["role"] == "attention"
        assert products["macs"] == elements
    left_out = _rows("DECLARED", attention_layers="none")
    for stage, elements in ELEMENTS.items():
        conv = left_out[f"{stage}.attention.conv"]
        assert conv["macs"] == 0 and conv["sops"] == 0  # as MA's MLPs under gac's preset
        assert left_out[f"{stage}.attention"]["macs"] == elements


ROLE = {"stage1": "encoding", "stage2": "hidden"}


def test_a_block_without_elementwise_macs_is_hidden_and_its_products_uncounted(gates):
    for conventions in ({}, {"attention_layers": "none"}):
        rows = _rows("UNDECLARED", **conventions)
        for stage, elements in ELEMENTS.items():
            conv = rows[f"{stage}.attention.conv"]
            # layer 1's block runs before any LIF: on the encoding path, as any such layer
            assert conv["role"] == ROLE[stage] and not conv["spiking_input"]
            assert conv["macs"] == elements * KERNEL**2  # still counted with attention left out
            assert f"{stage}.attention" not in rows
        assert not [r for r in rows.values() if r["kind"] == "elementwise"]


class GatedCoding(nn.Module):
    """A plugin coding: the stem's current times a 1x1-conv gate of itself."""

    emits_spikes = False

    def __init__(self, T: int, stem: nn.Module, channels: int):
        super().__init__()
        self.T, self.stem = T, stem
        self.gate = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        current = self.stem(to_time_major(x, self.T))
        return torch.sigmoid(self.gate(current.flatten(0, 1))).view_as(current) * current

    def elementwise_macs(self, x: Tensor) -> int:
        return x.numel()


def test_a_plugin_codings_stem_is_the_encoding_layer_and_its_gate_attention(plugin_sandbox):
    with registry.loading(FAKE):
        register_coding("gated")(GatedCoding)
    model = timm.create_model(
        "demo_cnn", coding="gated", T=T, num_classes=3, in_chans=1, img_size=16
    )
    assert coding_layers(model) == {"coding.stem.0", "coding.gate"}
    assert attention_layers(model) == {"coding.gate"}  # the stem stays out, as GAC's
    counter = OpCounter(model.eval())
    with counter, torch.no_grad():
        model(torch.rand(B, T, 1, 16, 16))
    rows = {row["name"]: row for row in counter.report()["layers"]}
    assert rows["coding.stem.0"]["role"] == "encoding"
    assert rows["coding.gate"]["role"] == "attention"
    assert rows["coding"]["macs"] == T * 16 * 16 * 16  # the gate's products, 16 channels
