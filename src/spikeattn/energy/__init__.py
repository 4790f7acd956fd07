"""Energy estimates: count MACs / synaptic operations on real data, then price them.

    report = estimate(model, test_batches, EnergyConventions.from_params(params["energy"]))
    report.layers, report.energy_uj, report.caption()
"""
from .conventions import CHOICES, E_AC_PJ_45NM, E_MAC_PJ_45NM, EnergyConventions
from .hooks import OpCounter, dense_macs, exact_sops, measure, repeats_over_time
from .model import LAYER_COLUMNS, EnergyReport, estimate

__all__ = ["CHOICES", "E_AC_PJ_45NM", "E_MAC_PJ_45NM", "EnergyConventions", "OpCounter",
           "dense_macs", "exact_sops", "measure", "repeats_over_time", "LAYER_COLUMNS",
           "EnergyReport", "estimate"]
