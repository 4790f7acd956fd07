"""Energy estimates: count MACs / synaptic operations on real data, then price them.

    report = measure(model, batches)            # per-sample counts and firing rates
    energy = energy_from_counts(report, 4.6, 0.9)   # µJ per sample + the conventions caption
"""
from .hooks import OpCounter, dense_macs, measure
from .model import CONVENTIONS, E_AC_PJ_45NM, E_MAC_PJ_45NM, conventions_text, energy_from_counts

__all__ = ["OpCounter", "dense_macs", "measure", "CONVENTIONS", "E_AC_PJ_45NM", "E_MAC_PJ_45NM",
           "conventions_text", "energy_from_counts"]
