"""One energy convention set per paper: how MA-SNN, GAC and SMA counted, and NeuroBench.

`energy.preset: <name>` (params.yaml, globally or per study) expands to `keys`; keys set
beside the preset override it. Each preset carries a paraphrase of how its source counted
(with where that is written) and, where it applies, why the published figure cannot be
matched; `EnergyConventions.caption()` writes both into every table and figure caption.

Sources were read in the authors' repositories and issue trackers (research notes of
issue 16); none of the three repositories ships energy code. Every preset sets every
convention key, so a preset means the same thing whatever the global `energy:` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Preset:
    """A named convention set: its keys, how the source counted, and the caveat."""

    name: str
    source: str  # the paper or tool, as the caption names it
    keys: Mapping[str, Any]
    counted: str  # how they counted, paraphrased, with where it is written
    caveat: str = ""  # where the published figure cannot be reached, or there is none


# Energy per operation at 45 nm, the figures the field prices MACs and ACs with.
E_MAC_PJ_45NM = 4.6
E_AC_PJ_45NM = 0.9
_45NM = {"e_mac_pj": E_MAC_PJ_45NM, "e_ac_pj": E_AC_PJ_45NM}
# The field's fr·T·FLOPs accounting (what MA-SNN's and GAC's texts describe) on our dense counts.
_FIELD = {
    **_45NM,
    "sop_count": "rate",
    "repeated_input": "once",
    "encoding_layer": "mac",
    "mac_count": "dense",
    "zero_weights": "count",
}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="ma-snn",
            source="MA-SNN (Yao et al., TPAMI 2023)",
            keys={**_FIELD, "elementwise": "mac", "attention_layers": "mac", "hidden_real": "mac"},
            counted=(
                "The paper prices the first layer's FLOPs as MACs at 4.6 pJ and every later "
                "conv/FC layer as ACs at 0.9 pJ, SOPs = T × the firing rate of the layer's input × "
                "its FLOPs (its energy formula, p. 7, as quoted in SageCao1125/EOLO #5 and "
                "Lvchangze/snn #4; BICLab/Attention-SNN has no energy code). The sources read do not "
                "say whether the attention MLPs, the SA conv and the weight products were counted; "
                "this preset counts them as MACs, and a static image's first layer once."
            ),
            caveat=(
                "MA-SNN publishes ratios against its vanilla SNN (3.4× more energy-efficient on "
                "DVS128 Gesture, 3.2× on Gait), not absolute energies: compare a cell's ratio to its "
                "vanilla twin, not the µJ."
            ),
        ),
        Preset(
            name="gac",
            source="GAC (Qiu et al., AAAI 2024)",
            keys={**_FIELD, "elementwise": "none", "attention_layers": "none", "hidden_real": "ac"},
            counted=(
                "The authors' replies (bollossom/GAC #7 and #14): take the mean of each spiking "
                "layer's 0/1 output at each time step, sum these means into the layer's firing "
                "rate, and apply the paper's Eq. (11), E_MAC × the first conv's FLOPs + E_AC × "
                "firing rate × FLOPs of the later layers (4.6 / 0.9 pJ); the code has no energy or "
                "FLOP count. Read here as: the stem once as MACs; every later conv/FC as ACs at the "
                "nonzero fraction of its input (spikes, GAC's gated spikes feeding the first block, "
                "and the real-valued shortcut convs alike, as Eq. (11) prices every layer after "
                "the first); the gated attention unit (TA and SCA layers, gating products) not "
                "counted."
            ),
            caveat=(
                "The published ImageNet energies (MS-ResNet-18 1.49 / 2.34 mJ, MS-ResNet-34 2.20 / "
                "3.38 mJ at T = 4 / 6) are reachable only with the gated attention convolutions left "
                "out: on a 224² image the SCA's two 4×4 convs (64 channels at 112²) alone are 1.64 G "
                "MACs, 7.56 mJ counted once per image, and 1.48 mJ even priced as ACs, against "
                "1.49 mJ in total. This preset "
                "leaves them out, as the published numbers require."
            ),
        ),
        Preset(
            name="sma",
            source="SMA + AZO (Shan et al., AAAI 2025)",
            keys={**_FIELD, "elementwise": "mac", "attention_layers": "mac", "hidden_real": "mac"},
            counted=(
                "The paper reports no energy (none in its abstract, its two READMEs or its appendix); "
                "the authors' code records only each LIF's firing rate on the first test batch "
                "(cal_firing_rate in Ym-Shan/Spiking_Multiscale_Attention_Arxiv, SMA VGG). This "
                "preset is the project's choice, in the MA-SNN lineage SMA's ImageNet code follows."
            ),
            caveat=(
                "There is no published energy to compare with. SMA's branch convolutions (kernels "
                "1, 3, 5, 7) act on the real-valued conv output, so they count as MACs at every "
                "time step and dominate the estimate."
            ),
        ),
        Preset(
            name="neurobench",
            source="NeuroBench SynapticOperations (neurobench 2.3.0)",
            keys={
                **_45NM,
                "sop_count": "exact",
                "repeated_input": "every_step",
                "encoding_layer": "auto",
                "elementwise": "none",
                "attention_layers": "mac",
                "hidden_real": "mac",
                "mac_count": "effective",
                "zero_weights": "skip",
            },
            counted=(
                "NeuroBench counts, at every call of every Conv/Linear, the nonzero inputs × the "
                "nonzero weights each reaches: Effective_ACs when the input is all 0/1, "
                "Effective_MACs otherwise; padding, zero weights, biases, BatchNorm, pooling, "
                "activations and elementwise products are not counted, and every time step counts "
                "(neurobench/metrics/workload/synaptic_operations.py)."
            ),
            caveat=(
                "NeuroBench reports operation counts, not energy: the pJ figures are ours. It "
                "judges spikes per call (and counts -1 as a spike); here a layer is spike-fed when "
                "its input is 0/1 on every call."
            ),
        ),
    )
}

PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
