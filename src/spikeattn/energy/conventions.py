"""How operations are counted and priced: every choice the field makes differently.

None of the three papers' repositories ships energy code, and published estimates differ in
ways that move the numbers by T× or more (REFERENCE.md section 4). Each choice is therefore a
key of params.yaml's `energy:` section, and `caption()` writes all of them into the tables,
so a number is never shown without the conventions that produced it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

E_MAC_PJ_45NM = 4.6
E_AC_PJ_45NM = 0.9

CHOICES: dict[str, tuple[str, ...]] = {
    # SOPs of a layer fed by spikes: the field's fr·T·FLOPs (dense MACs x input firing rate),
    # or each input spike times the synapses it actually reaches (differs at padded borders).
    "sop_count": ("rate", "exact"),
    # A real-valued layer whose input is the same at every time step (a static image repeated
    # T times by direct or GAC coding) is computed once, or counted at every step.
    "repeated_input": ("once", "every_step"),
    # The first Conv/Linear of the forward pass: judged by its input like any layer (event
    # counts are real-valued, binary frames are spikes), or always counted as MACs.
    "encoding_layer": ("auto", "mac"),
    # The multiplications of attention/gating weights into the current (MA, SMA, GAC).
    "elementwise": ("mac", "none"),
}


@dataclass(frozen=True)
class EnergyConventions:
    """The energy per operation and the counting choices (see CHOICES for each key)."""

    e_mac_pj: float = E_MAC_PJ_45NM
    e_ac_pj: float = E_AC_PJ_45NM
    sop_count: str = "rate"
    repeated_input: str = "once"
    encoding_layer: str = "auto"
    elementwise: str = "mac"

    def __post_init__(self) -> None:
        for key in ("e_mac_pj", "e_ac_pj"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"energy.{key}: must be a number >= 0 (pJ per operation), "
                                 f"got {value!r}")
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"energy.{key}: {getattr(self, key)!r} is not one of "
                                 f"{', '.join(allowed)}")

    @classmethod
    def from_params(cls, energy: Mapping[str, Any]) -> "EnergyConventions":
        """From params.yaml's `energy:` mapping; unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(energy) - known)
        if unknown:
            raise ValueError(f"energy: unknown key(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(known))}")
        return cls(**energy)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def caption(self) -> str:
        """One paragraph stating the figures and every counting choice."""
        figures = ("45 nm" if (self.e_mac_pj, self.e_ac_pj) == (E_MAC_PJ_45NM, E_AC_PJ_45NM)
                   else "user-set")
        sops = ("SOPs = dense MACs × input firing rate (fr·T·FLOPs, T merged into the batch)"
                if self.sop_count == "rate" else
                "SOPs = each input spike × the synapses it reaches (exact, borders included)")
        repeated = ("a real-valued layer whose input is identical at every time step (a static "
                    "image repeated T times) is computed once"
                    if self.repeated_input == "once" else
                    "real-valued layers are counted at every time step, even on a repeated "
                    "static input")
        encoding = ("the encoding (first) layer counts as MACs whatever its input"
                    if self.encoding_layer == "mac" else
                    "the encoding (first) layer is judged by its input like every layer")
        elementwise = ("attention/gating multiplications count as MACs"
                       if self.elementwise == "mac" else
                       "attention/gating multiplications are not counted")
        return (f"Energy per sample = E_MAC·MACs + E_AC·SOPs ({figures}: "
                f"E_MAC = {self.e_mac_pj:g} pJ, E_AC = {self.e_ac_pj:g} pJ). "
                f"Conv/linear layers fed by binary spikes do {sops}; layers fed by real values "
                f"(encoding layer, attention MLPs and convs, GAC gate) do MACs; {repeated}; "
                f"{encoding}; {elementwise}. BatchNorm (folded into the conv), pooling, "
                "activations, LIF updates and biases are not counted.")
