"""MA-SNN's DVS CNNs (Yao et al., TPAMI 2023): the DVS128 Gesture and DVS128 Gait networks.

Layout read from the authors' code (BICLab/Attention-SNN, MA_SNN/DVSGestures/CNN/Networks/
Att_SNN.py, MA_SNN/DVSGait/CNN/Networks/Att_SNN.py, MA_SNN/module/LIF_Module.py):

    conv layer: Conv3x3(bias) -> [conv slot: SMA] -> BN -> AvgPool(p) -> [current slot: MA] -> LIF
    FC layer:   Linear(bias) -> BN1d -> [TA] -> LIF
    output:     the last FC layer's spikes [T, B, classes]; the authors' loss is the MSE between
                their rate (mean over T) and the one-hot label.

    Gesture: 2x32x32, convs 64/128/128, pools 1/2/2, FC 128*8*8 = 8192 -> 256 -> 11
    Gait:    2x128x128, convs 32/64/128/256/512, pools 2/2/2/2/4, FC 512*2*2 = 2048 -> 256 -> 21

The first conv-BN is the coding's stem. With a coding that emits spikes itself (GAC) the first
layer keeps only its pool, applied to the gated spikes (Gait: pool 2), as in demo.py. SMA-family attentions
go in the conv slot of layers 2.. (layer 1's conv is the stem, inside the coding).

FC layers take TA only, as in the authors' code: an MA variant containing T (TA, TCA, TSA,
TCSA) puts a 1-D TA in each FC layer; CA, SA, CSA and every SMA variant (no temporal MA part)
put none there.

Paper/code choices (defaults follow the code):
- `spiking_output=True`: the last FC layer ends in a LIF and the model returns its spikes
  (code). False drops that LIF and returns the current that would have entered it.
- `fc_bn=True`: BatchNorm1d after each FC layer's linear map (the authors' AttLIF with
  useBatchNorm=True; the paper's layer description names BN for the conv layers only).
- MA ratios: the code uses r_c=8 with r_t=5 (Gesture) or r_t=2 (Gait); these are filled into
  `attention_kwargs["ma"]` where not given.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from torch import Tensor, nn

from ..attention import MA_VARIANTS, attention_slots, build_attention, family, slot
from ..coding import build_coding
from ..layers import SpikingStage, TimeDistributed, conv_bn
from ..neurons import MultiStepLIF
from ._checkpoint import GradCheckpointing, run_blocks
from ._factory import build, frame_size, register

_FLATTEN = nn.Flatten(2)  # [T, B, C, H, W] -> [T, B, C*H*W] (stateless, shared)


class ConvLayer(nn.Module):
    """conv -> [conv slot] -> BN -> (pool) -> [current slot] -> LIF, on [T, B, C, H, W]."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        pool: int,
        conv_slot: nn.Module,
        current_slot: nn.Module,
        neuron: nn.Module,
        bias: bool = True,
    ):
        super().__init__()
        self.conv = TimeDistributed(nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=bias))
        self.conv_attention = conv_slot
        self.bn = TimeDistributed(nn.BatchNorm2d(out_chans))
        self.stage = SpikingStage(current_slot, neuron, pool=pool)

    def forward(self, x: Tensor) -> Tensor:
        return self.stage(self.bn(self.conv_attention(self.conv(x))))


class FCLayer(nn.Module):
    """Linear(bias) -> (BN1d) -> [TA] -> LIF on [T, B, F]; `neuron=None` returns the current."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        attention: nn.Module,
        neuron: nn.Module | None,
        bn: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
        if bn:
            layers.append(nn.BatchNorm1d(out_features))
        self.linear = TimeDistributed(*layers)
        self.attention = attention
        self.neuron = neuron if neuron is not None else nn.Identity()

    @property
    def in_features(self) -> int:
        return self.linear[0].in_features

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(self.attention(self.linear(x)))


class MACNN(GradCheckpointing, nn.Module):
    """A MA-SNN DVS CNN: spiking conv layers (3x3, AvgPool) then spiking FC layers.

    Input [B, T, C, H, W] event frames (or [B, C, H, W] images, repeated over T);
    output [T, B, num_classes] (spikes when `spiking_output`). The FC input size is computed
    from `img_size` so small inputs work; at the paper sizes it is the paper's.
    Each network declares its layout in the class attributes below; the defaults (T 60,
    11 classes, 2x32x32) are DVS128 Gesture's, and each timm name sets its dataset's over
    them (`register` in this file).
    With `set_grad_checkpointing()` each conv layer (the first with the coding) and the FC
    layers together are checkpoints.
    """

    NAME: str  # the timm name, for errors
    CHANNELS: tuple[int, ...]  # conv widths, the stem's first
    POOLS: tuple[int, ...]  # each conv layer's AvgPool (1: none)
    FC_HIDDEN: tuple[int, ...] = (256,)
    MA_DEFAULTS: dict[str, Any] = {}  # the authors' MA ratios, under attention_kwargs["ma"]

    def __init__(
        self,
        attention: str = "none",
        coding: str = "direct",
        T: int = 60,
        num_classes: int = 11,
        in_chans: int = 2,
        img_size: int | Sequence[int] = 32,
        neuron: str | None = "ma_dvs",
        neuron_kwargs: dict[str, Any] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        coding_kwargs: dict[str, Any] | None = None,
        lif_backend: str = "auto",
        spiking_output: bool = True,
        fc_bn: bool = True,
    ):
        super().__init__()
        channels, pools = self.CHANNELS, self.POOLS
        if len(channels) != len(pools):
            raise ValueError(
                f"{self.NAME}: one pool per conv layer, got {len(channels)} channels "
                f"and {len(pools)} pools"
            )
        h, w = (side // math.prod(pools) for side in self.check_img_size(img_size))
        family(attention)  # unknown names fail here, listing what exists
        self.T = T
        self.num_classes = num_classes
        self.spiking_output = spiking_output

        def make_neuron() -> nn.Module:
            return MultiStepLIF(neuron, backend=lif_backend, **(neuron_kwargs or {}))

        kwargs = dict(attention_kwargs or {})
        if self.MA_DEFAULTS:
            kwargs["ma"] = {**self.MA_DEFAULTS, **kwargs.get("ma", {})}
        options = {"T": T, "make_neuron": make_neuron, "attention_kwargs": kwargs}

        c1 = channels[0]
        self.coding = build_coding(
            coding,
            T=T,
            stem=conv_bn(in_chans, c1, bias=True),
            channels=c1,
            make_neuron=make_neuron,
            **(coding_kwargs or {}),
        )
        if self.coding.emits_spikes:
            # GAC's gate has its own LIF: layer 1 keeps only its pool.
            first: nn.Module = (
                TimeDistributed(nn.AvgPool2d(pools[0])) if pools[0] > 1 else nn.Identity()
            )
        else:
            current = (
                build_attention(attention, channels=c1, **options)
                if slot(attention) == "current"
                else nn.Identity()
            )
            first = SpikingStage(current, make_neuron(), pool=pools[0])
        layers = [first]
        for c_in, c_out, pool in zip(channels[:-1], channels[1:], pools[1:]):
            conv_slot, current_slot = attention_slots(attention, channels=c_out, **options)
            layers.append(ConvLayer(c_in, c_out, pool, conv_slot, current_slot, make_neuron()))
        self.features = nn.Sequential(*layers)

        # FC layers: TA where the cell's attention has a temporal MA part, else none.
        fc_ta = family(attention) == "ma" and "T" in MA_VARIANTS[attention]
        widths = [channels[-1] * h * w, *self.FC_HIDDEN, num_classes]
        fcs = []
        for i, (f_in, f_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = i == len(widths) - 2
            att = (
                build_attention("TA", channels=f_out, spatial=False, **options)
                if fc_ta
                else nn.Identity()
            )
            lif = make_neuron() if (spiking_output or not last) else None
            fcs.append(FCLayer(f_in, f_out, att, lif, bn=fc_bn))
        self.classifier = nn.Sequential(*fcs)

    @classmethod
    def check_img_size(cls, img_size: int | Sequence[int]) -> tuple[int, int]:
        """(H, W) of `img_size`, or ValueError unless each side is at least the product of the
        pools: nn.AvgPool2d floors, so pooling in turn leaves side // product pixels (the FC
        input is sized for them) and a side below the product vanishes (the pool fails). No
        multiple is needed: what a pool drops at the border is dropped. Params runs it on every
        grid cell's frame size, so a dataset this network cannot take fails before any job."""
        height, width = frame_size(img_size)
        least = math.prod(cls.POOLS)
        if min(height, width) < least:
            raise ValueError(
                f"{cls.NAME} average-pools by {list(cls.POOLS)} (x{least} in all): each "
                f"side of img_size must be at least {least}, got {height}x{width}"
            )
        return height, width

    @property
    def fc_in_features(self) -> int:
        """Width of the flattened conv output entering the first FC layer."""
        return self.classifier[0].in_features

    def forward(self, x: Tensor) -> Tensor:
        first, *rest = self.features
        blocks = [(self.coding, first), *rest, (_FLATTEN, self.classifier)]
        return run_blocks(blocks, x, self.grad_checkpointing)


class MACNNGesture(MACNN):
    """MA-SNN's DVS128 Gesture CNN: 2x32x32, Conv 64/128/128, pools 1/2/2, FC 8192-256-11.

    T=60 as in the paper (dt 15 ms); MA ratios r_c 8, r_t 5 from the authors' Config.py.
    """

    NAME = "ma_cnn_gesture"
    CHANNELS = (64, 128, 128)
    POOLS = (1, 2, 2)
    MA_DEFAULTS = {"ratio_c": 8, "ratio_t": 5}


class MACNNGait(MACNN):
    """MA-SNN's DVS128 Gait CNN: 2x128x128, Conv 32/64/128/256/512, pools 2/2/2/2/4,
    FC 2048-256-21. T=8 (dt 500 ms); MA ratios r_c 8, r_t 2 from the authors' Config.py.
    Its T, classes and frame size are the `ma_cnn_gait` entry point's variant (built as a
    class, pass them: MACNN's defaults are Gesture's).
    """

    NAME = "ma_cnn_gait"
    CHANNELS = (32, 64, 128, 256, 512)
    POOLS = (2, 2, 2, 2, 4)
    MA_DEFAULTS = {"ratio_c": 8, "ratio_t": 2}


# Each name's variant (what it sets over MACNN's defaults, which are Gesture's) is in its
# `register` line; the layout (channels, pools, MA ratios) is the class's.
@register(MACNNGesture)
def ma_cnn_gesture(pretrained: bool = False, **kwargs: Any) -> MACNNGesture:
    """MA-SNN's DVS128 Gesture CNN (see MACNN for the options)."""
    return build(MACNNGesture, pretrained, **kwargs)


@register(MACNNGait, T=8, num_classes=21, img_size=128)
def ma_cnn_gait(pretrained: bool = False, **kwargs: Any) -> MACNNGait:
    """MA-SNN's DVS128 Gait CNN (see MACNN for the options)."""
    return build(MACNNGait, pretrained, **kwargs)
