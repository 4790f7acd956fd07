"""Energy from operation counts, as the field commonly estimates it (REFERENCE.md section 4).

    report = estimate(model, test_inputs, EnergyConventions.from_params(params.energy_settings(study)))
    report.layers       # one row per layer: kind, firing rate, spikes, SOPs, MACs, energy (pJ)
    report.energy_uj    # per sample; report.caption() states how it was counted

Energy per sample = E_MAC * MACs + E_AC * SOPs. Every choice is a field of
`EnergyConventions` (params.yaml `energy:`, a study's own `energy:`, or a paper's `preset:`),
and its caption travels with the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import pandas as pd
import torch
from torch import nn

from .conventions import EnergyConventions
from .hooks import measure

LAYER_COLUMNS = (
    "layer",
    "kind",
    "type",
    "role",
    "input",
    "firing_rate",
    "spike_count",
    "sops",
    "macs",
    "energy_pj",
)
PJ_PER_UJ = 1e6


def _layer_rows(counts: dict[str, Any], conventions: EnergyConventions) -> list[dict[str, Any]]:
    """Synaptic/elementwise layers and spiking neurons, interleaved in forward order.

    For a LIF row, firing_rate/spike_count are what it emits; for a layer fed by spikes, what
    reaches it; a layer fed by real values has neither (NaN). `role` (encoding, attention,
    hidden; none for a LIF) is what the attention_layers / hidden_real conventions act on.
    """
    rows = []
    for layer in counts["layers"]:
        spikes_in = layer["spiking_input"] and layer["kind"] != "elementwise"
        rows.append(
            (
                layer.get("order", 0),
                {
                    "layer": layer["name"],
                    "kind": layer["kind"],
                    "type": layer["type"],
                    "role": layer.get("role"),
                    "input": "spikes" if spikes_in else "real",
                    "firing_rate": layer["input_rate"]
                    if spikes_in and layer["input_rate"] is not None
                    else math.nan,
                    "spike_count": layer["input_spikes"]
                    if spikes_in and layer.get("input_spikes") is not None
                    else math.nan,
                    "sops": layer["sops"],
                    "macs": layer["macs"],
                    "energy_pj": conventions.e_mac_pj * layer["macs"]
                    + conventions.e_ac_pj * layer["sops"],
                },
            )
        )
    for neuron in counts["neurons"]:
        rows.append(
            (
                neuron.get("order", 0),
                {
                    "layer": neuron["name"],
                    "kind": "lif",
                    "type": "MultiStepLIF",
                    "role": None,
                    "input": "real",
                    "firing_rate": neuron["rate"],
                    "spike_count": neuron["spikes"],
                    "sops": 0.0,
                    "macs": 0.0,
                    "energy_pj": 0.0,
                },
            )
        )
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


@dataclass(frozen=True)
class EnergyReport:
    """Per-sample counts and energy of a model on some inputs, per layer and in total."""

    layers: pd.DataFrame
    samples: int
    conventions: EnergyConventions
    firing_rates: dict[str, float] = field(default_factory=dict)
    mean_firing_rate: float | None = None

    @classmethod
    def from_counts(cls, counts: dict[str, Any], conventions: EnergyConventions) -> "EnergyReport":
        """Price an `OpCounter.report()` / `measure()` result."""
        for key in ("layers", "neurons", "samples"):
            if key not in counts:
                raise ValueError(f"counts lack {key!r}: pass what OpCounter.report() returns")
        table = pd.DataFrame(_layer_rows(counts, conventions), columns=list(LAYER_COLUMNS))
        return cls(
            table,
            int(counts["samples"]),
            conventions,
            dict(counts["firing_rates"]),
            counts["mean_firing_rate"],
        )

    @property
    def macs(self) -> float:
        return float(self.layers["macs"].sum())

    @property
    def sops(self) -> float:
        return float(self.layers["sops"].sum())

    @property
    def spikes(self) -> float:
        """Spikes emitted per sample by all spiking neurons."""
        return float(self.layers.loc[self.layers["kind"] == "lif", "spike_count"].sum())

    @property
    def energy_mac_uj(self) -> float:
        return self.conventions.e_mac_pj * self.macs / PJ_PER_UJ

    @property
    def energy_ac_uj(self) -> float:
        return self.conventions.e_ac_pj * self.sops / PJ_PER_UJ

    @property
    def energy_uj(self) -> float:
        return self.energy_mac_uj + self.energy_ac_uj

    def caption(self) -> str:
        return self.conventions.caption()

    def totals(self) -> dict[str, float]:
        return {
            "energy_uj": self.energy_uj,
            "energy_mac_uj": self.energy_mac_uj,
            "energy_ac_uj": self.energy_ac_uj,
            "macs": self.macs,
            "sops": self.sops,
            "spikes": self.spikes,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: totals, firing rates, the layer table as records, the conventions."""
        records = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in self.layers.to_dict(orient="records")
        ]
        return {
            **self.totals(),
            "samples": self.samples,
            "mean_firing_rate": self.mean_firing_rate,
            "firing_rates": self.firing_rates,
            "layers": records,
            "conventions": self.caption(),
            "convention": self.conventions.as_dict(),
        }


def estimate(
    model: nn.Module,
    inputs: Iterable[Any],
    conventions: EnergyConventions | None = None,
    device: str | torch.device = "cpu",
    T: int | None = None,
    max_batches: int | None = None,
) -> EnergyReport:
    """Count what `model` does on `inputs` (batches [B, ...] or (x, y, ...) tuples, e.g. the
    test set) in eval mode, and price it. `T` defaults to the model's `T` attribute."""
    conventions = conventions or EnergyConventions()
    counts = measure(
        model, inputs, device=device, max_batches=max_batches, conventions=conventions, T=T
    )
    return EnergyReport.from_counts(counts, conventions)
