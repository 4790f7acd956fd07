"""SMA's DVS VGG8 (Shan et al., "Advancing SNNs towards Multiscale Spatiotemporal Interaction
Learning"; code: Ym-Shan/Spiking_Multiscale_Attention_Arxiv, SMA VGG/vgg8_dvs128_SMA.py).

    block b (1..5): Conv3x3(bias) -> [conv slot: SMA] -> BN -> [current slot: MA] -> LIF -> MaxPool(2)
                    channels 64, 128, 256, 512, 512
    head:           AdaptiveAvgPool(3) -> flatten (512*3*3 = 4608)
                    -> Linear 2048 -> LIF -> Dropout(0.5) -> Linear 1024 -> LIF -> Dropout(0.5)
                    -> Linear classes                               real-valued [T, B, classes]

The authors train on the MSE between the output's mean over T and the one-hot label. The
AdaptiveAvgPool(3) makes the FC input 4608 for any input the five MaxPools take (each side at
least 32, `SMAVGG8.check_img_size`).

Block 1's conv-BN is the coding's stem; with a coding that emits spikes itself (GAC) block 1
keeps only its MaxPool. Attention goes in the blocks named by `sma_blocks`:
- "code" (default): blocks 2-3, as in the authors' VGG8 files;
- "paper": blocks 2-5, as the AAAI 2025 appendix describes.
SMA-family attentions go in the conv slot of those blocks; MA-family attentions (TA, CA, ...)
go in the current slot (after BN, before the LIF) of the same blocks. The FC layers get none
(the authors' VGG has no attention there).

Code choices kept as defaults:
- conv biases (PyTorch's default bias=True) although BN follows;
- `dropout_shared_over_time=True`: SpikingJelly's multi-step Dropout draws one mask per sample
  and keeps it over all T steps; False uses an independent mask per step.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from ..attention import attention_slots, family
from ..coding import build_coding
from ..layers import TimeDistributed, TimeSharedDropout, conv_bn
from ..neurons import MultiStepLIF
from ._checkpoint import GradCheckpointing, run_blocks
from ._factory import build, frame_size, register

SMA_BLOCKS: dict[str, tuple[int, ...]] = {"code": (2, 3), "paper": (2, 3, 4, 5)}
VGG8_CHANNELS = (64, 128, 256, 512, 512)


class VGGBlock(nn.Module):
    """conv -> [conv slot] -> BN -> [current slot] -> LIF -> MaxPool(2), on [T, B, C, H, W]."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        conv_slot: nn.Module,
        current_slot: nn.Module,
        neuron: nn.Module,
    ):
        super().__init__()
        self.conv = TimeDistributed(nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=True))
        self.conv_attention = conv_slot
        self.bn = TimeDistributed(nn.BatchNorm2d(out_chans))
        self.attention = current_slot
        self.neuron = neuron
        self.pool = TimeDistributed(nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv_attention(self.conv(x)))
        return self.pool(self.neuron(self.attention(x)))


class SMAVGG8(GradCheckpointing, nn.Module):
    """SMA's DVS VGG8; input [B, T, C, H, W] frames (or [B, C, H, W] images), output
    [T, B, num_classes]. Defaults: DVS128 Gesture (2x128x128, T=16, 11 classes).
    With `set_grad_checkpointing()` each block (the first with the coding) and the pooled
    head (its dropout draws replayed) are checkpoints."""

    def __init__(
        self,
        attention: str = "none",
        coding: str = "direct",
        T: int = 16,
        num_classes: int = 11,
        in_chans: int = 2,
        img_size: int | Sequence[int] = 128,
        neuron: str | None = "sj_tau2",
        neuron_kwargs: dict[str, Any] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        coding_kwargs: dict[str, Any] | None = None,
        lif_backend: str = "auto",
        sma_blocks: str = "code",
        dropout: float = 0.5,
        dropout_shared_over_time: bool = True,
    ):
        super().__init__()
        if sma_blocks not in SMA_BLOCKS:
            raise ValueError(
                f"sma_blocks must be one of {list(SMA_BLOCKS)} ('code': blocks 2-3 as "
                f"in the authors' code, 'paper': blocks 2-5 as in the appendix), "
                f"got {sma_blocks!r}"
            )
        self.check_img_size(img_size)
        family(attention)  # unknown names fail here, listing what exists
        self.T = T
        self.num_classes = num_classes
        self.sma_blocks = sma_blocks
        self.attention_blocks = SMA_BLOCKS[sma_blocks]

        def make_neuron() -> nn.Module:
            return MultiStepLIF(neuron, backend=lif_backend, **(neuron_kwargs or {}))

        options = {"T": T, "make_neuron": make_neuron, "attention_kwargs": attention_kwargs}
        c1 = VGG8_CHANNELS[0]
        self.coding = build_coding(
            coding,
            T=T,
            stem=conv_bn(in_chans, c1, bias=True),
            channels=c1,
            make_neuron=make_neuron,
            **(coding_kwargs or {}),
        )
        pool1 = TimeDistributed(nn.MaxPool2d(2))
        # Block 1 never has attention (both "code" and "paper" start at block 2).
        first = pool1 if self.coding.emits_spikes else nn.Sequential(make_neuron(), pool1)
        blocks = [first]
        for b, (c_in, c_out) in enumerate(zip(VGG8_CHANNELS[:-1], VGG8_CHANNELS[1:]), start=2):
            if b in self.attention_blocks:
                conv_slot, current_slot = attention_slots(attention, channels=c_out, **options)
            else:
                conv_slot, current_slot = nn.Identity(), nn.Identity()
            blocks.append(VGGBlock(c_in, c_out, conv_slot, current_slot, make_neuron()))
        self.features = nn.Sequential(*blocks)
        self.pool = TimeDistributed(nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.classifier = nn.Sequential(
            TimeDistributed(nn.Linear(VGG8_CHANNELS[-1] * 9, 2048)),
            make_neuron(),
            TimeSharedDropout(dropout, dropout_shared_over_time),
            TimeDistributed(nn.Linear(2048, 1024)),
            make_neuron(),
            TimeSharedDropout(dropout, dropout_shared_over_time),
            TimeDistributed(nn.Linear(1024, num_classes)),
        )

    @staticmethod
    def check_img_size(img_size: int | Sequence[int]) -> tuple[int, int]:
        """(H, W) of `img_size`, or ValueError unless each side is at least 32: each of the five
        blocks ends in a flooring MaxPool2d(2), which fails on a 1-pixel side, so the fifth
        needs 2 pixels, 2 * 2**4 = 32 at the input. No multiple is needed: the AdaptiveAvgPool(3)
        makes 3x3 of whatever the pools leave, 1x1 included. Params runs it on every grid
        cell's frame size, so a dataset this network cannot take fails before any job."""
        height, width = frame_size(img_size)
        least = 2 ** len(VGG8_CHANNELS)
        if min(height, width) < least:
            raise ValueError(
                f"sma_vgg8 max-pools by 2 in each of its {len(VGG8_CHANNELS)} blocks: "
                f"each side of img_size must be at least {least}, got {height}x{width}"
            )
        return height, width

    @property
    def fc_in_features(self) -> int:
        """Width of the pooled, flattened conv output entering the first FC layer (4608)."""
        return self.classifier[0][0].in_features

    def forward(self, x: Tensor) -> Tensor:
        first, *rest = self.features
        blocks = [(self.coding, first), *rest, (self.pool, self.classifier)]
        return run_blocks(blocks, x, self.grad_checkpointing)


@register(SMAVGG8)
def sma_vgg8(pretrained: bool = False, **kwargs: Any) -> SMAVGG8:
    """SMA's DVS VGG8 (see SMAVGG8 for the options; `sma_blocks` 'code' or 'paper')."""
    return build(SMAVGG8, pretrained, **kwargs)
