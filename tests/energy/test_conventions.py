"""EnergyConventions: validation against params.yaml keys, and the caption states every choice."""
from __future__ import annotations

import pytest

from spikeattn.config import Params
from spikeattn.energy import CHOICES, EnergyConventions


def test_defaults_are_45nm_and_caption_states_every_choice():
    conv = EnergyConventions()
    text = conv.caption()
    for word in ("4.6 pJ", "0.9 pJ", "45 nm", "fr·T·FLOPs", "computed once",
                 "judged by its input", "count as MACs", "BatchNorm", "per sample"):
        assert word in text, word


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_each_choice_changes_the_caption(key):
    default = EnergyConventions()
    other = next(v for v in CHOICES[key] if v != getattr(default, key))
    assert EnergyConventions(**{key: other}).caption() != default.caption()


def test_user_figures_are_named_as_such():
    text = EnergyConventions(e_mac_pj=3.2, e_ac_pj=0.1).caption()
    assert "3.2 pJ" in text and "user-set" in text and "45 nm" not in text


@pytest.mark.parametrize("bad, match", [
    ({"sop_count": "fast"}, "energy.sop_count: 'fast' is not one of rate, exact"),
    ({"e_mac_pj": -1.0}, "energy.e_mac_pj"),
    ({"e_ac_pj": "0.9"}, "energy.e_ac_pj"),
    ({"joules": 1}, "unknown key.*joules"),
])
def test_bad_values_name_the_key(bad, match):
    with pytest.raises(ValueError, match=match):
        EnergyConventions.from_params({"e_mac_pj": 4.6, "e_ac_pj": 0.9, **bad})


def test_params_yaml_energy_section_is_complete():
    """Every convention is declared in params.yaml, not left to a code default."""
    energy = Params.load().energy
    assert set(energy) == set(EnergyConventions().as_dict())
    assert EnergyConventions.from_params(energy) == EnergyConventions()
