"""EnergyConventions: validation against params.yaml keys, presets and their resolution, and
the caption states every choice (and a preset's source and caveat)."""

from __future__ import annotations

import copy

import pytest

from spikeattn.config import Params, ParamsError
from spikeattn.energy import (
    CHOICES,
    CONVENTION_KEYS,
    PRESETS,
    EnergyConventions,
    captions_by_study,
    resolve_settings,
)
from spikeattn.schema import params_schema


def test_defaults_are_45nm_and_caption_states_every_choice():
    conventions = EnergyConventions()
    text = conventions.caption()
    for word in (
        "4.6 pJ",
        "0.9 pJ",
        "45 nm",
        "fr·T·FLOPs",
        "computed once",
        "judged by its input",
        "count as MACs",
        "BatchNorm",
        "per sample",
        "encoding path",
        "dense MACs",
        "count like any layer",
    ):
        assert word in text, word
    assert "Preset" not in text


# zero_weights: skip needs a count that looks at the weights
_BASE = {"zero_weights": {"sop_count": "exact"}}


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_each_choice_changes_the_caption(key):
    default = EnergyConventions(**_BASE.get(key, {}))
    other = next(v for v in CHOICES[key] if v != getattr(default, key))
    changed = EnergyConventions(**{**_BASE.get(key, {}), key: other})
    assert changed.caption() != default.caption()


def test_first_choice_is_the_default():
    assert all(getattr(EnergyConventions(), k) == v[0] for k, v in CHOICES.items())


def test_user_figures_are_named_as_such():
    text = EnergyConventions(e_mac_pj=3.2, e_ac_pj=0.1).caption()
    assert "3.2 pJ" in text and "user-set" in text and "45 nm" not in text


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"sop_count": "fast"}, "energy.sop_count: 'fast' is not one of rate, exact"),
        ({"e_mac_pj": -1.0}, "energy.e_mac_pj"),
        (
            {"e_mac_pj": 0},
            "energy.e_mac_pj: 0 is less than or equal to the minimum of 0; e_mac_pj is "
            "the energy of one multiply-accumulate",
        ),
        ({"e_ac_pj": "0.9"}, "energy.e_ac_pj"),
        ({"joules": 1}, "unknown key.*joules"),
        ({"preset": "snn"}, "energy.preset: 'snn' is not one of ma-snn, gac, sma, neurobench"),
        ({"hidden_real": "acc"}, "energy.hidden_real: 'acc' is not one of mac, ac, none"),
        (
            {"zero_weights": "skip"},
            "energy.zero_weights: skip needs sop_count: exact or mac_count: effective",
        ),
    ],
)
def test_bad_values_name_the_key(bad, match):
    with pytest.raises(ValueError, match=match):
        EnergyConventions.from_params({"e_mac_pj": 4.6, "e_ac_pj": 0.9, **bad})


def test_errors_name_where_the_key_is():
    with pytest.raises(ValueError, match=r"^study\.x\.energy\.sop_count: "):
        EnergyConventions.from_params({}, {"sop_count": "fast"}, where="study.x.energy")


def test_choices_are_the_schemas_and_the_dataclass_has_a_field_per_schema_key():
    """The schema is the one home of the values; the dataclass still lists the keys as fields."""
    energy = params_schema()["$defs"]["energy"]["properties"]
    assert CHOICES["hidden_real"] == ("mac", "ac", "none") and set(CHOICES) == set(energy) - {
        "preset",
        "e_mac_pj",
        "e_ac_pj",
    }
    assert set(energy) == set(CONVENTION_KEYS)


@pytest.mark.parametrize(
    "value, problem",
    [
        (0, "0 is less than or equal to the minimum of 0"),
        (-1.0, "-1.0 is less than or equal to the minimum of 0"),
        ("0.9", "'0.9' is not of type 'number'"),
        (True, "True is not of type 'number'"),
    ],
)
@pytest.mark.parametrize("key", ["e_mac_pj", "e_ac_pj"])
def test_params_and_the_dataclass_refuse_the_same_energies(raw, key, value, problem):
    """params.yaml (the schema) and EnergyConventions (the same schema) agree, 0 included."""
    changed = copy.deepcopy(raw)
    changed["energy"][key] = value
    with pytest.raises(ParamsError) as by_params:
        Params(changed)
    with pytest.raises(ValueError) as by_code:
        EnergyConventions(**{key: value})
    assert f"\n  energy.{key}: {problem}" in str(by_params.value)
    assert str(by_code.value).startswith(f"energy.{key}: {problem}; {key} is the energy of one ")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_sets_every_convention(name):
    assert set(PRESETS[name].keys) == set(CONVENTION_KEYS) - {"preset"}
    conventions = EnergyConventions.from_params({"preset": name})
    assert conventions.preset == name and conventions.overrides() == {}


# Each preset written out, as presets.py's docstrings and issue 16's research describe them.
EXPECTED = {
    "ma-snn": dict(
        sop_count="rate",
        repeated_input="once",
        encoding_layer="mac",
        elementwise="mac",
        attention_layers="mac",
        hidden_real="mac",
        mac_count="dense",
        zero_weights="count",
    ),
    "gac": dict(
        sop_count="rate",
        repeated_input="once",
        encoding_layer="mac",
        elementwise="none",
        attention_layers="none",
        hidden_real="ac",
        mac_count="dense",
        zero_weights="count",
    ),
    "sma": dict(
        sop_count="rate",
        repeated_input="once",
        encoding_layer="mac",
        elementwise="mac",
        attention_layers="mac",
        hidden_real="mac",
        mac_count="dense",
        zero_weights="count",
    ),
    "neurobench": dict(
        sop_count="exact",
        repeated_input="every_step",
        encoding_layer="auto",
        elementwise="none",
        attention_layers="mac",
        hidden_real="mac",
        mac_count="effective",
        zero_weights="skip",
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_expansion(name):
    assert resolve_settings({"preset": name}) == {
        "e_mac_pj": 4.6,
        "e_ac_pj": 0.9,
        **EXPECTED[name],
        "preset": name,
    }


def test_resolution_order_defaults_global_preset_global_keys_study_preset_study_keys():
    assert resolve_settings({}) == {**EnergyConventions().as_dict()}
    # a key beside the preset overrides it
    assert resolve_settings({"preset": "gac", "hidden_real": "mac"})["hidden_real"] == "mac"
    # a study's keys override the global ones, the global preset stays named
    glob = {"preset": "gac", "e_ac_pj": 0.5}
    got = resolve_settings(glob, {"sop_count": "exact"})
    assert got == {
        "e_mac_pj": 4.6,
        "e_ac_pj": 0.5,
        **EXPECTED["gac"],
        "sop_count": "exact",
        "preset": "gac",
    }
    # a study's preset replaces every global key (each preset sets them all)
    got = resolve_settings(
        {"e_mac_pj": 3.0, "sop_count": "exact", "elementwise": "none"},
        {"preset": "sma", "e_ac_pj": 0.1},
    )
    assert got == {"e_mac_pj": 4.6, "e_ac_pj": 0.1, **EXPECTED["sma"], "preset": "sma"}


def test_preset_caption_names_it_with_source_caveat_and_overrides():
    text = EnergyConventions.from_params({"preset": "gac", "sop_count": "exact"}).caption()
    assert text.startswith("Preset gac, as GAC (Qiu et al., AAAI 2024) counted: ")
    assert PRESETS["gac"].counted in text and PRESETS["gac"].caveat in text
    assert "Overridden here: sop_count = exact." in text
    assert "are not counted" in text and "exact" in text  # the choices as applied follow


def test_preset_texts_state_what_each_paper_published():
    gac = PRESETS["gac"].caveat
    for fact in ("1.49", "2.34", "2.20", "3.38", "7.56 mJ", "1.48 mJ", "left out"):
        assert fact in gac, fact
    assert "bollossom/GAC #7" in PRESETS["gac"].counted
    assert "reports no energy" in PRESETS["sma"].counted
    assert (
        "3.4×" in PRESETS["ma-snn"].caveat and "not absolute energies" in PRESETS["ma-snn"].caveat
    )
    assert "4.6 pJ" in PRESETS["ma-snn"].counted
    assert "not energy" in PRESETS["neurobench"].caveat


def test_captions_by_study_joins_the_distinct_ones():
    assert captions_by_study({"a": "X.", "b": "X."}) == "X."
    assert captions_by_study({"a": "X.", "b": "Y.", "c": "X."}) == "[a, c] X. [b] Y."
    assert captions_by_study({}) == ""


@pytest.fixture(scope="module")
def raw():
    return Params.load().raw


def test_params_yaml_resolves_for_every_study(raw):
    params = Params(copy.deepcopy(raw))
    assert EnergyConventions.from_params(params.energy) == EnergyConventions.from_params(
        params.energy_settings()
    )
    for study in params.studies:
        settings = params.energy_settings(study)
        assert set(settings) == set(CONVENTION_KEYS)
        EnergyConventions.from_params(settings)


def test_study_energy_overrides_the_global_and_bad_ones_fail_at_load(raw):
    changed = copy.deepcopy(raw)
    study = next(iter(changed["study"]))
    changed["study"][study]["energy"] = {"preset": "neurobench", "e_ac_pj": 0.5}
    params = Params(changed)
    assert params.energy_settings(study) == {
        "e_mac_pj": 4.6,
        "e_ac_pj": 0.5,
        **EXPECTED["neurobench"],
        "preset": "neurobench",
    }
    others = [s for s in params.studies if s != study]
    assert params.energy_settings(others[0])["preset"] is None
    changed["study"][study]["energy"] = {"preset": "gac", "zero_weights": "skip"}
    with pytest.raises(ParamsError, match=rf"study\.{study}\.energy\.zero_weights: skip needs"):
        Params(changed)
    changed["study"][study]["energy"] = {"preset": "gc"}
    with pytest.raises(ParamsError, match=rf"study\.{study}\.energy\.preset"):
        Params(changed)
