"""DemoCNN: a small MA-style spiking CNN sized for the embedded datasets on a laptop CPU.

    direct: stem conv-BN -> pool -> attention -> LIF
    GAC:    stem conv-BN -> GAC gate (its own LIF) -> pool
    then    conv-BN -> pool -> attention -> LIF -> flatten -> linear     logits [T, B, classes]

Every layer follows MA-SNN's placement (conv -> BN -> pool -> attention -> LIF). A coding
that emits spikes itself (GAC) replaces the first layer's attention and LIF, as GAC's gated
output feeds the next block directly in the authors' ResNets; the MA attention then acts
on the second layer only.
"""
from __future__ import annotations

from typing import Any, Sequence

from timm.models import register_model
from torch import Tensor, nn

from ..attention import build_attention
from ..coding import build_coding
from ..layers import SpikingStage, TimeDistributed, conv_bn
from ..neurons import MultiStepLIF
from ._factory import build


class DemoCNN(nn.Module):
    """Two spiking conv layers and a linear read-out; input [B, C, H, W] or [B, T, C, H, W]."""

    def __init__(self, attention: str = "none", coding: str = "direct", T: int = 4,
                 num_classes: int = 10, in_chans: int = 1, img_size: int = 16,
                 channels: Sequence[int] = (16, 32), neuron: str | None = "ma_dvs",
                 neuron_kwargs: dict[str, Any] | None = None,
                 attention_kwargs: dict[str, Any] | None = None,
                 coding_kwargs: dict[str, Any] | None = None, lif_backend: str = "auto"):
        super().__init__()
        if img_size % 4:
            raise ValueError(f"DemoCNN pools twice by 2: img_size must be a multiple of 4, got {img_size}")
        c1, c2 = channels
        self.T = T
        self.num_classes = num_classes

        def make_neuron() -> nn.Module:
            return MultiStepLIF(neuron, backend=lif_backend, **(neuron_kwargs or {}))

        def make_attention(width: int) -> nn.Module:
            return build_attention(attention, T=T, channels=width, **(attention_kwargs or {}))

        self.coding = build_coding(coding, T=T, stem=conv_bn(in_chans, c1), channels=c1,
                                   make_neuron=make_neuron, **(coding_kwargs or {}))
        if self.coding.emits_spikes:
            self.stage1 = TimeDistributed(nn.AvgPool2d(2))
        else:
            self.stage1 = SpikingStage(make_attention(c1), make_neuron(), pool=2)
        self.conv2 = conv_bn(c1, c2)
        self.stage2 = SpikingStage(make_attention(c2), make_neuron(), pool=2)
        self.head = TimeDistributed(nn.Flatten(), nn.Linear(c2 * (img_size // 4) ** 2, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage1(self.coding(x))
        x = self.stage2(self.conv2(x))
        return self.head(x)


@register_model
def demo_cnn(pretrained: bool = False, **kwargs: Any) -> DemoCNN:
    """DemoCNN with 16/32 channels (embedded datasets, CPU demo)."""
    return build(DemoCNN, pretrained, **kwargs)
