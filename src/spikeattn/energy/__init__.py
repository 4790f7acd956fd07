"""Energy estimates: count MACs / synaptic operations on real data, then price them.

    conventions = EnergyConventions.from_params(params.energy_settings(study))
    report = estimate(model, test_batches, conventions)
    report.layers, report.energy_uj, report.caption()

The conventions and presets (what Params validates, what captions say) import without torch;
the counters (hooks) and the report (model) import torch and pandas, so they load on first use
of one of their names: validating params.yaml or planning a dry run never pays for them.
"""

from __future__ import annotations

import importlib
from typing import Any

from .conventions import (
    CHOICES,
    CONVENTION_KEYS,
    E_AC_PJ_45NM,
    E_MAC_PJ_45NM,
    EnergyConventions,
    captions_by_study,
    resolve_settings,
)
from .presets import PRESET_NAMES, PRESETS, Preset

# Name -> the submodule that defines it, imported when the name is first asked for.
_LAZY = {
    **dict.fromkeys(
        [
            "OpCounter",
            "attention_layers",
            "coding_layers",
            "dense_macs",
            "exact_sops",
            "measure",
            "repeats_over_time",
        ],
        "hooks",
    ),
    **dict.fromkeys(["LAYER_COLUMNS", "EnergyReport", "estimate"], "model"),
}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "CHOICES",
    "CONVENTION_KEYS",
    "E_AC_PJ_45NM",
    "E_MAC_PJ_45NM",
    "EnergyConventions",
    "resolve_settings",
    "OpCounter",
    "attention_layers",
    "coding_layers",
    "dense_macs",
    "exact_sops",
    "measure",
    "repeats_over_time",
    "LAYER_COLUMNS",
    "EnergyReport",
    "estimate",
    "PRESET_NAMES",
    "PRESETS",
    "Preset",
    "captions_by_study",
]
