"""Energy estimates: count MACs / synaptic operations on real data, then price them.

    conventions = EnergyConventions.from_params(params.energy_settings(study))
    report = estimate(model, test_batches, conventions)
    report.layers, report.energy_uj, report.caption()
"""
from .conventions import (CHOICES, CONVENTION_KEYS, E_AC_PJ_45NM, E_MAC_PJ_45NM,
                          EnergyConventions, captions_by_study, resolve_settings)
from .hooks import (OpCounter, attention_layers, coding_layers, dense_macs, exact_sops, measure,
                    repeats_over_time)
from .model import LAYER_COLUMNS, EnergyReport, estimate
from .presets import PRESET_NAMES, PRESETS, Preset

__all__ = ["CHOICES", "CONVENTION_KEYS", "E_AC_PJ_45NM", "E_MAC_PJ_45NM", "EnergyConventions",
           "resolve_settings", "OpCounter", "attention_layers", "coding_layers", "dense_macs",
           "exact_sops", "measure", "repeats_over_time", "LAYER_COLUMNS", "EnergyReport",
           "estimate", "PRESET_NAMES", "PRESETS", "Preset", "captions_by_study"]
