"""energy_from_counts: arithmetic and the conventions caption."""
from __future__ import annotations

import pytest

from spikeattn.energy import CONVENTIONS, energy_from_counts


def _report():
    return {"totals": {"macs": 1e6, "sops": 2e6},
            "layers": [{"name": "stem", "macs": 1e6, "sops": 0.0},
                       {"name": "fc", "macs": 0.0, "sops": 2e6}]}


def test_energy_arithmetic():
    e = energy_from_counts(_report(), e_mac_pj=4.6, e_ac_pj=0.9)
    assert e["energy_mac_uj"] == pytest.approx(4.6)
    assert e["energy_ac_uj"] == pytest.approx(1.8)
    assert e["energy_uj"] == pytest.approx(6.4)
    assert (e["macs"], e["sops"], e["e_mac_pj"], e["e_ac_pj"]) == (1e6, 2e6, 4.6, 0.9)
    assert [l["energy_uj"] for l in e["layers"]] == pytest.approx([4.6, 1.8])


def test_defaults_are_45nm_and_caption_states_them():
    e = energy_from_counts(_report())
    assert e["energy_uj"] == pytest.approx(6.4)
    assert e["conventions"] == CONVENTIONS
    for word in ("4.6 pJ", "0.9 pJ", "45 nm", "SOP", "MAC", "BatchNorm", "pooling", "per sample"):
        assert word in CONVENTIONS


def test_custom_figures_change_caption_and_energy():
    e = energy_from_counts({"totals": {"macs": 10.0, "sops": 0.0}}, e_mac_pj=3.2, e_ac_pj=0.1)
    assert e["energy_uj"] == pytest.approx(32e-6)
    assert "3.2 pJ" in e["conventions"] and "45 nm" not in e["conventions"]
    assert "layers" not in e


def test_bad_inputs():
    with pytest.raises(ValueError, match="totals"):
        energy_from_counts({}, 4.6, 0.9)
    with pytest.raises(ValueError, match=">= 0"):
        energy_from_counts(_report(), -1.0, 0.9)
