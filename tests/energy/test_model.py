"""estimate() / EnergyReport on nets small enough to count by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from spikeattn.attention.ma import build_ma
from spikeattn.coding import to_time_major
from spikeattn.energy import LAYER_COLUMNS, EnergyConventions, EnergyReport, estimate
from spikeattn.layers import TimeDistributed
from spikeattn.neurons import MultiStepLIF


def _row(report: EnergyReport, name: str) -> pd.Series:
    return report.layers.set_index("layer").loc[name]


def _spikes_4x4() -> torch.Tensor:
    """One sample, one channel: a spike in the corner (0, 0) and one inside at (1, 1)."""
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 1.0
    return x


def _conv() -> nn.Conv2d:
    return nn.Conv2d(1, 2, 3, padding=1, bias=False)


def test_conv_on_known_spikes_rate_convention():
    rep = estimate(_conv(), [_spikes_4x4()])
    row = _row(rep, "")  # the model itself is the conv
    dense = 2 * 4 * 4 * 9  # outputs x 3x3 x 1 input channel
    assert row["kind"] == "conv" and row["input"] == "spikes"
    assert row["firing_rate"] == 2 / 16 and row["spike_count"] == 2
    assert row["sops"] == dense * 2 / 16 == 36 and row["macs"] == 0
    assert row["energy_pj"] == pytest.approx(36 * 0.9)
    assert rep.energy_uj == pytest.approx(36 * 0.9e-6)


def test_conv_on_known_spikes_exact_convention():
    """The corner spike reaches 4 output positions, the inner one 9; x 2 output channels."""
    rep = estimate(_conv(), [_spikes_4x4()], EnergyConventions(sop_count="exact"))
    assert _row(rep, "")["sops"] == 2 * (4 + 9)


def test_exact_sops_with_stride_and_groups():
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, bias=False)
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 1, 1] = 1.0  # group 0: reaches outputs (0,0),(0,1),(1,0),(1,1) -> 4 x 2 channels
    x[0, 1, 3, 3] = 1.0  # group 1: reaches output (1,1) only -> 1 x 2 channels
    rep = estimate(conv, [x], EnergyConventions(sop_count="exact"))
    assert _row(rep, "")["sops"] == 4 * 2 + 1 * 2


def test_fc_layer_on_spikes():
    fc = nn.Linear(4, 3, bias=False)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])  # 2 samples, 4 spikes
    for sop_count in ("rate", "exact"):
        rep = estimate(fc, [x], EnergyConventions(sop_count=sop_count))
        row = _row(rep, "")
        assert row["sops"] == 4 * 3 / 2  # per sample: 4 spikes x fan-out 3, over 2 samples
        assert row["spike_count"] == 2 and row["firing_rate"] == 0.5 and row["macs"] == 0
    assert rep.samples == 2


class Encoder(nn.Module):
    """Static image repeated over T -> conv (real input) -> LIF -> linear on spikes."""

    T = 3

    def __init__(self):
        super().__init__()
        self.conv = TimeDistributed(nn.Conv2d(1, 2, 3, padding=1, bias=False))
        self.lif = MultiStepLIF()
        self.fc = TimeDistributed(nn.Flatten(), nn.Linear(2 * 16, 5, bias=False))
        with torch.no_grad():
            self.conv[0].weight.fill_(0.5)

    def forward(self, x):
        return self.fc(self.lif(self.conv(to_time_major(x, self.T))))


def test_repeated_static_input_counted_once_or_every_step():
    model, x = Encoder().eval(), torch.rand(2, 1, 4, 4) + 0.5
    once = estimate(model, [x])
    every = estimate(model, [x], EnergyConventions(repeated_input="every_step"))
    dense = 2 * 16 * 9  # per time step
    assert _row(once, "conv.0")["macs"] == dense
    assert _row(every, "conv.0")["macs"] == 3 * dense
    assert _row(once, "conv.0")["input"] == "real" and math.isnan(
        _row(once, "conv.0")["firing_rate"]
    )
    # the linear layer reads different spikes at each step: never divided by T
    assert _row(once, "fc.1")["sops"] == _row(every, "fc.1")["sops"]


def test_layer_table_is_in_forward_order_with_lif_rows():
    model = Encoder().eval()
    rep = estimate(model, [torch.rand(2, 1, 4, 4) + 0.5])
    assert tuple(rep.layers.columns) == LAYER_COLUMNS
    assert list(rep.layers["layer"]) == ["conv.0", "lif", "fc.1"]
    lif = _row(rep, "lif")
    assert lif["kind"] == "lif" and lif["sops"] == lif["macs"] == lif["energy_pj"] == 0
    # the spikes the LIF emits are exactly those the linear layer receives
    assert lif["spike_count"] == pytest.approx(_row(rep, "fc.1")["spike_count"])
    assert rep.spikes == pytest.approx(lif["spike_count"])
    assert lif["firing_rate"] == pytest.approx(rep.firing_rates["lif"])


def test_encoding_layer_mac_forces_the_first_layer_only():
    spikes = (torch.rand(2, 3, 1, 4, 4) > 0.5).float()  # binary event frames [B, T, ...]

    class Events(Encoder):
        def forward(self, x):
            return self.fc(self.lif(self.conv(x.transpose(0, 1))))

    model = Events().eval()
    auto = estimate(model, [spikes])
    mac = estimate(model, [spikes], EnergyConventions(encoding_layer="mac"))
    assert _row(auto, "conv.0")["input"] == "spikes" and _row(auto, "conv.0")["macs"] == 0
    assert _row(mac, "conv.0")["input"] == "real" and _row(mac, "conv.0")["macs"] == 3 * 2 * 16 * 9
    assert _row(mac, "fc.1")["input"] == "spikes"


def test_attention_block_macs():
    """CA on a current [T=4, B, C=4, 2, 2]: shared MLP 4 -> 2 -> 4 on avg and max, then
    one product per element of the current."""
    ma = build_ma("CA", T=4, channels=4, ratio_c=2)
    with torch.no_grad():
        for p in ma.parameters():
            p.fill_(0.5)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.ma = ma

        def forward(self, x):
            return self.ma(x.transpose(0, 1))

    x = torch.rand(3, 4, 4, 2, 2) + 0.1
    rep = estimate(Wrap(), [x])
    mlp = rep.layers[rep.layers["layer"].str.startswith("ma.blocks.0")]
    assert list(mlp["macs"]) == [2 * 4 * 2, 2 * 2 * 4]  # fc1, fc2; avg and max each
    assert _row(rep, "ma")["macs"] == 4 * 4 * 2 * 2
    assert rep.macs == 16 + 16 + 64 and rep.sops == 0
    assert rep.energy_uj == pytest.approx(96 * 4.6e-6)
    none = estimate(Wrap(), [x], EnergyConventions(elementwise="none"))
    assert _row(none, "ma")["macs"] == 0 and none.macs == 32


def test_to_dict_is_json_ready_and_carries_conventions():
    import json

    conventions = EnergyConventions(e_mac_pj=3.0, e_ac_pj=0.5)
    rep = estimate(Encoder().eval(), [torch.rand(2, 1, 4, 4) + 0.5], conventions)
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["energy_uj"] == pytest.approx(rep.energy_uj)
    assert data["energy_uj"] == pytest.approx((3.0 * rep.macs + 0.5 * rep.sops) * 1e-6)
    assert data["conventions"] == conventions.caption() and data["convention"]["e_mac_pj"] == 3.0
    assert [l["layer"] for l in data["layers"]] == ["conv.0", "lif", "fc.1"]
    assert data["layers"][0]["firing_rate"] is None  # NaN -> null


def test_from_counts_rejects_other_dicts():
    with pytest.raises(ValueError, match="OpCounter"):
        EnergyReport.from_counts({"totals": {}}, EnergyConventions())
