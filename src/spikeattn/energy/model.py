"""Energy from operation counts, as the field commonly estimates it (REFERENCE.md section 4).

Energy per sample = E_MAC * MACs + E_AC * SOPs, with the 45 nm figures E_MAC = 4.6 pJ and
E_AC = 0.9 pJ by default. Every choice is a parameter and the text that states them travels
with the numbers (`conventions`), so a table never shows energies without their caption.
"""
from __future__ import annotations

from typing import Any

E_MAC_PJ_45NM = 4.6
E_AC_PJ_45NM = 0.9


def conventions_text(e_mac_pj: float = E_MAC_PJ_45NM, e_ac_pj: float = E_AC_PJ_45NM) -> str:
    """The caption that states how the energies were counted, with the figures used."""
    figures = ("45 nm" if (e_mac_pj, e_ac_pj) == (E_MAC_PJ_45NM, E_AC_PJ_45NM)
               else "user-set")
    return (f"Energy per sample = E_MAC·MACs + E_AC·SOPs ({figures}: E_MAC = {e_mac_pj:g} pJ, "
            f"E_AC = {e_ac_pj:g} pJ); conv/linear layers fed by binary "
            "spikes do SOPs = dense MACs × input firing rate (T merged into the batch, i.e. "
            "fr·T·FLOPs), while layers fed by real values (encoding layer, attention MLPs and "
            "convs, GAC gate) and the attention/gating multiplications count as MACs; "
            "BatchNorm (folded into the conv), pooling, activations, LIF updates and biases "
            "are not counted.")


CONVENTIONS = conventions_text()


def energy_from_counts(report: dict[str, Any], e_mac_pj: float = E_MAC_PJ_45NM,
                       e_ac_pj: float = E_AC_PJ_45NM) -> dict[str, Any]:
    """Per-sample energy (µJ) of an `OpCounter.report()` / `measure()` result.

    Reads report["totals"]["macs"|"sops"] (per sample); per-layer energies are added when
    the report has "layers".
    """
    if e_mac_pj < 0 or e_ac_pj < 0:
        raise ValueError(f"energies per operation must be >= 0, got E_MAC={e_mac_pj}, E_AC={e_ac_pj}")
    try:
        macs = float(report["totals"]["macs"])
        sops = float(report["totals"]["sops"])
    except (KeyError, TypeError):
        raise ValueError("report needs totals {macs, sops} per sample, as OpCounter.report() "
                         "returns") from None
    pj_to_uj = 1e-6
    e_mac = e_mac_pj * macs * pj_to_uj
    e_ac = e_ac_pj * sops * pj_to_uj
    out: dict[str, Any] = {
        "energy_uj": e_mac + e_ac,
        "energy_mac_uj": e_mac,
        "energy_ac_uj": e_ac,
        "macs": macs,
        "sops": sops,
        "e_mac_pj": e_mac_pj,
        "e_ac_pj": e_ac_pj,
        "conventions": conventions_text(e_mac_pj, e_ac_pj),
    }
    if "layers" in report:
        out["layers"] = [{"name": l["name"],
                          "energy_uj": (e_mac_pj * l["macs"] + e_ac_pj * l["sops"]) * pj_to_uj}
                         for l in report["layers"]]
    return out
