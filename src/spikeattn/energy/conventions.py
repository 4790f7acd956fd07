"""How operations are counted and priced: every choice the field makes differently.

None of the three papers' repositories ships energy code, and published estimates differ in
ways that move the numbers by T× or more (REFERENCE.md section 4). Each choice is therefore a
key of params.yaml's `energy:` section (globally, or per study under `study.<name>.energy:`),
`preset:` names a paper's whole set (presets.py), and `caption()` writes all of them into the
tables, so a number is never shown without the conventions that produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from ..schema import part, violations
from .presets import E_AC_PJ_45NM, E_MAC_PJ_45NM, PRESETS

# params.schema.yaml ($defs.energy) is the one home of the keys, their values (each explained
# there) and bounds; the first value of each counting choice is the default.
_SCHEMA: dict[str, Any] = part("$defs", "energy")["properties"]
CHOICES: dict[str, tuple[str, ...]] = {
    key: tuple(spec["enum"]) for key, spec in _SCHEMA.items() if "enum" in spec
}


@dataclass(frozen=True)
class EnergyConventions:
    """The energy per operation and the counting choices (params.schema.yaml says what each
    value does).

    `preset` only names where the values came from (presets.py); the values themselves are
    the fields, so `EnergyConventions(preset="gac")` alone is not GAC's set: build from
    params with `from_params`, which expands the preset.
    """

    e_mac_pj: float = E_MAC_PJ_45NM
    e_ac_pj: float = E_AC_PJ_45NM
    sop_count: str = CHOICES["sop_count"][0]
    repeated_input: str = CHOICES["repeated_input"][0]
    encoding_layer: str = CHOICES["encoding_layer"][0]
    elementwise: str = CHOICES["elementwise"][0]
    attention_layers: str = CHOICES["attention_layers"][0]
    hidden_real: str = CHOICES["hidden_real"][0]
    mac_count: str = CHOICES["mac_count"][0]
    zero_weights: str = CHOICES["zero_weights"][0]
    preset: str | None = None
    where: str = field(default="energy", compare=False, repr=False)  # params key errors name

    def __post_init__(self) -> None:
        for key in ("e_mac_pj", "e_ac_pj"):  # the schema's type and bound, as params.yaml's
            problems = violations(getattr(self, key), _SCHEMA[key], prefix=f"{self.where}.{key}")
            if problems:
                raise ValueError(f"{problems[0]}; {key} is {_SCHEMA[key]['description']}")
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"{self.where}.{key}: {getattr(self, key)!r} is not one of {', '.join(allowed)}"
                )
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(
                f"{self.where}.preset: {self.preset!r} is not one of {', '.join(PRESETS)}"
            )
        if self.zero_weights == "skip" and self.sop_count == "rate" and self.mac_count == "dense":
            raise ValueError(
                f"{self.where}.zero_weights: skip needs sop_count: exact or "
                "mac_count: effective (rate SOPs and dense MACs never look at the "
                "weights); set one of them, or zero_weights: count"
            )

    @classmethod
    def from_params(cls, *levels: Mapping[str, Any], where: str = "energy") -> "EnergyConventions":
        """From params.yaml `energy:` mappings, later ones overriding earlier ones (the global
        section, then a study's); each level's preset expands before its own keys apply.
        Unknown keys are an error, not ignored; `where` is the params key errors name."""
        return cls(**resolve_settings(*levels, where=where), where=where)

    def as_dict(self) -> dict[str, Any]:
        """Every convention and the preset name: what params.yaml resolves to."""
        out = asdict(self)
        del out["where"]
        return out

    def overrides(self) -> dict[str, Any]:
        """The keys whose value differs from the named preset's (empty without a preset)."""
        if self.preset is None:
            return {}
        values = self.as_dict()
        return {k: values[k] for k, v in PRESETS[self.preset].keys.items() if values[k] != v}

    def caption(self) -> str:
        """One paragraph: the preset (how its source counted, and the caveat), then every
        counting choice as applied."""
        return " ".join(filter(None, (self._preset_text(), self._choices_text())))

    def _preset_text(self) -> str:
        if self.preset is None:
            return ""
        p = PRESETS[self.preset]
        changed = self.overrides()
        but = (
            " Overridden here: " + ", ".join(f"{k} = {v}" for k, v in changed.items()) + "."
            if changed
            else ""
        )
        return f"Preset {p.name}, as {p.source} counted: {p.counted} {p.caveat}{but}".strip()

    def _choices_text(self) -> str:
        figures = (
            "45 nm"
            if (self.e_mac_pj, self.e_ac_pj) == (E_MAC_PJ_45NM, E_AC_PJ_45NM)
            else "user-set"
        )
        weights = " (zero weights skipped)" if self.zero_weights == "skip" else ""
        sops = (
            "SOPs = dense MACs × input firing rate (fr·T·FLOPs, T merged into the batch)"
            if self.sop_count == "rate"
            else f"SOPs = each input spike × the synapses it reaches{weights} (exact, borders "
            "included)"
        )
        macs = (
            "dense MACs (every output × its fan-in, padded positions included)"
            if self.mac_count == "dense"
            else f"effective MACs (nonzero inputs × the synapses they reach{weights}, padding "
            "excluded, as NeuroBench's Effective_MACs)"
        )
        repeated = (
            "a real-valued layer of the encoding path (inside the coding module or "
            "before the first spiking neuron) whose input is identical at every time "
            "step (a static image repeated T times) is computed once; every later layer "
            "counts at every step"
            if self.repeated_input == "once"
            else "real-valued layers are counted at every time step, even on a repeated "
            "static input"
        )
        encoding = (
            "the encoding (first) layer counts as MACs whatever its input"
            if self.encoding_layer == "mac"
            else "the encoding (first) layer is judged by its input like every layer"
        )
        attention = (
            "conv/linear layers inside attention and gating modules (MA's MLPs and SA "
            "conv, SMA's branch convs and MLPs, GAC's TA MLP and SCA convs) count like "
            "any layer"
            if self.attention_layers == "mac"
            else "conv/linear layers inside attention and gating modules (MA's MLPs and SA "
            "conv, SMA's branch convs and MLPs, GAC's TA MLP and SCA convs) are not "
            "counted"
        )
        hidden = (
            "real-valued layers after the encoding path and outside attention (e.g. "
            "MS-ResNet shortcut convs on the membrane stream, a conv fed by GAC's gated "
            "spikes) "
            + {
                "mac": "count as MACs",
                "ac": "count as SOPs under the same rule, their nonzero inputs taken for spikes",
                "none": "are not counted",
            }[self.hidden_real]
        )
        elementwise = (
            "attention/gating multiplications count as MACs"
            if self.elementwise == "mac"
            else "attention/gating multiplications are not counted"
        )
        return (
            f"Energy per sample = E_MAC·MACs + E_AC·SOPs ({figures}: "
            f"E_MAC = {self.e_mac_pj:g} pJ, E_AC = {self.e_ac_pj:g} pJ). "
            f"Conv/linear layers fed by binary spikes do {sops}; layers fed by real values "
            f"do {macs}; {repeated}; {encoding}; {attention}; {hidden}; "
            f"{elementwise}. BatchNorm (folded into the conv), pooling, activations, LIF "
            "updates and biases are not counted."
        )


CONVENTION_KEYS: tuple[str, ...] = tuple(
    f.name for f in fields(EnergyConventions) if f.name != "where"
)


def resolve_settings(*levels: Mapping[str, Any], where: str = "energy") -> dict[str, Any]:
    """The conventions `levels` of `energy:` mappings resolve to: code defaults, then each level
    in turn (its preset's keys, then its own keys). A later level's preset replaces every key
    before it: each preset sets them all. `preset` is the last level's that names one."""
    defaults = EnergyConventions().as_dict()
    settings = dict(defaults)
    for level in levels:
        own = dict(level)
        unknown = sorted(set(own) - set(CONVENTION_KEYS))
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(CONVENTION_KEYS))}"
            )
        name = own.pop("preset", None)
        if name is not None:
            if name not in PRESETS:
                raise ValueError(f"{where}.preset: {name!r} is not one of {', '.join(PRESETS)}")
            settings.update(PRESETS[name].keys, preset=name)
        settings.update(own)
    return settings


def captions_by_study(captions: Mapping[str, str]) -> str:
    """One conventions text for several studies (a paper's): the caption when they all share
    it, else each distinct caption after the studies it applies to."""
    groups: dict[str, list[str]] = {}
    for study, text in captions.items():
        groups.setdefault(text, []).append(study)
    if len(groups) <= 1:
        return next(iter(groups), "")
    return " ".join(f"[{', '.join(studies)}] {text}" for text, studies in groups.items())
