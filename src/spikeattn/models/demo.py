"""DemoCNN: a small MA-style spiking CNN sized for the embedded datasets on a laptop CPU.

    direct: stem conv-BN -> pool -> [MA] -> LIF
    GAC:    stem conv-BN -> GAC gate (its own LIF) -> pool
    then    conv -> [SMA] -> BN -> pool -> [MA] -> LIF -> flatten -> linear   logits [T, B, classes]

MA attention sits on each layer's current (MA-SNN's conv -> BN -> pool -> attention -> LIF);
SMA replaces the second conv's output before its BN (the stem belongs to the coding, so
SMA acts on layer 2 only, as in the authors' VGG where SMA starts at block 2). A coding
that emits spikes itself (GAC) replaces the first layer's attention and LIF, as GAC's gated
output feeds the next block directly in the authors' ResNets.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from ..attention import attention_slots, build_attention, slot
from ..coding import build_coding
from ..layers import SpikingStage, TimeDistributed, conv_bn
from ..neurons import MultiStepLIF
from ._checkpoint import GradCheckpointing, run_blocks
from ._factory import build, frame_size, register


class DemoCNN(GradCheckpointing, nn.Module):
    """Two spiking conv layers and a linear read-out; input [B, C, H, W] or [B, T, C, H, W].
    With `set_grad_checkpointing()` each layer (coding + layer 1, layer 2) is a checkpoint."""

    def __init__(
        self,
        attention: str = "none",
        coding: str = "direct",
        T: int = 4,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 16,
        channels: Sequence[int] = (16, 32),
        neuron: str | None = "ma_dvs",
        neuron_kwargs: dict[str, Any] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        coding_kwargs: dict[str, Any] | None = None,
        lif_backend: str = "auto",
    ):
        super().__init__()
        height, width = self.check_img_size(img_size)
        c1, c2 = channels
        self.T = T
        self.num_classes = num_classes

        def make_neuron() -> nn.Module:
            return MultiStepLIF(neuron, backend=lif_backend, **(neuron_kwargs or {}))

        options = {"T": T, "make_neuron": make_neuron, "attention_kwargs": attention_kwargs}
        self.coding = build_coding(
            coding,
            T=T,
            stem=conv_bn(in_chans, c1),
            channels=c1,
            make_neuron=make_neuron,
            **(coding_kwargs or {}),
        )
        if self.coding.emits_spikes:
            self.stage1 = TimeDistributed(nn.AvgPool2d(2))
        else:
            current = (
                build_attention(attention, channels=c1, **options)
                if slot(attention) == "current"
                else nn.Identity()
            )
            self.stage1 = SpikingStage(current, make_neuron(), pool=2)
        conv_slot, current_slot = attention_slots(attention, channels=c2, **options)
        self.conv2 = TimeDistributed(nn.Conv2d(c1, c2, 3, padding=1, bias=False))
        self.conv2_attention = conv_slot
        self.bn2 = TimeDistributed(nn.BatchNorm2d(c2))
        self.stage2 = SpikingStage(current_slot, make_neuron(), pool=2)
        self.head = TimeDistributed(
            nn.Flatten(), nn.Linear(c2 * (height // 4) * (width // 4), num_classes)
        )

    @staticmethod
    def check_img_size(img_size: int | Sequence[int]) -> tuple[int, int]:
        """(H, W) of `img_size`, or ValueError unless both are positive multiples of 4: two
        2x2 pools and a read-out sized for what they leave. Params runs it on every grid cell's
        frame size, so a dataset this backbone cannot take fails before any job starts."""
        height, width = frame_size(img_size)
        if height % 4 or width % 4 or min(height, width) < 4:
            raise ValueError(
                f"demo_cnn pools twice by 2: each side of img_size must be a multiple "
                f"of 4 (at least 4), got {height}x{width}"
            )
        return height, width

    def forward(self, x: Tensor) -> Tensor:
        layers = [
            (self.coding, self.stage1),
            (self.conv2, self.conv2_attention, self.bn2, self.stage2),
        ]
        return self.head(run_blocks(layers, x, self.grad_checkpointing))


@register(DemoCNN)
def demo_cnn(pretrained: bool = False, **kwargs: Any) -> DemoCNN:
    """DemoCNN with 16/32 channels (embedded datasets, CPU demo)."""
    return build(DemoCNN, pretrained, **kwargs)
