"""MS-ResNet: the membrane-shortcut residual SNN behind MA-SNN, GAC and SMA on ImageNet/CIFAR.

    stem conv-BN (inside the coding: direct feeds its current, GAC its gated spikes)
    blocks:  LIF -> conv3x3 -> [SMA] -> BN -> LIF -> conv3x3 -> BN -> [MA, e.g. CSA]  + shortcut
    head:    LIF -> global average pool -> Dropout (one mask for all T) -> FC -> logits [T, B, classes]

The shortcut adds membrane potentials (real values), not spikes: each block starts with a
LIF, so the residual stream stays real-valued. Downsampling shortcuts are AvgPool(2) ->
conv1x1 -> BN (MS-ResNet-104 / MA-SNN code) or a strided conv1x1 -> BN (MS-ResNet-18/34
and GAC code); both have the same parameters.

Read in the authors' code (no code copied):
- BICLab/Attention-SNN Att_Res_SNN/models/resnet_2.py (MA-SNN ImageNet, all depths): 7x7 s2
  stem + BN, no LIF after it, the max-pool built but never used, every stage (the first too)
  strides 2; AvgPool shortcut; BN weights start at 0.5 (Vth), the block's last BN at 0.1
  (0.2 Vth); CSA (r_c 8) after the second BN; LIF -> GAP -> mean T -> Dropout 0.2 -> FC.
  Its resnet104 uses this same 7x7 stem: the three-3x3 stem is commented out there.
- Ariande1/MS-ResNet models/MS_ResNet.py: resnet104 has the "deep" stem (3x3 s2 -> 3x3 ->
  3x3, convs with bias, one BN after them) and AvgPool shortcuts; resnet18/34 the 7x7 stem,
  strided-conv shortcuts, last BN at 0 and no dropout.
- bollossom/GAC CODE/ImageNet/models/MS_ResNet.py: as MS-ResNet-18/34, GAC after the stem.
  Its 11.82M / 21.93M parameters are torchvision's 11.69M / 21.80M plus the first stage's
  downsampling shortcut (stride 2 there: 4,224) plus GAC's SCA convs (2 x 64*64*4*4 =
  131,072) and TA MLP (16 at T=4). (Its comment says R34 used SCA kernel 8, which would
  give 22.33M; the reported count matches kernel 4.)
- bollossom/GAC CODE/CIFAR/models/MS_ResNet.py: 3x3 s1 stem 64 + BN, stages 128/256/512 at
  strides 1/2/2, depths [3, 3, 2], strided-conv shortcuts, PyTorch-default BN, no dropout;
  12.63M parameters = this net with 10 classes and GAC (100 classes gives 12.68M).
- Ym-Shan/Spiking_Multiscale_Attention_Arxiv "SMA Resnet/train_amp.py": inserts SMA at index
  2 of `residual_function`, i.e. after the block's *first* conv, before its BN, in blocks 0
  and 1 of every stage, with ReLU branches.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from ..attention import MA_VARIANTS, attention_slots, family
from ..coding import build_coding
from ..layers import TimeDistributed, TimeSharedDropout
from ..neurons import MultiStepLIF
from ._checkpoint import GradCheckpointing, run_blocks
from ._factory import build, frame_size, register

STEMS = ("7x7", "deep", "3x3")
CONV_INITS = ("pytorch", "kaiming_fan_out")
DOWNSAMPLES = ("avgpool", "strided")
SMA_POSITIONS = ("conv1", "conv2")


def _bn(channels: int, weight_init: float) -> nn.BatchNorm2d:
    """BatchNorm2d whose weight starts at `weight_init` (PyTorch's default is 1)."""
    bn = nn.BatchNorm2d(channels)
    nn.init.constant_(bn.weight, weight_init)
    return bn


def make_stem(kind: str, in_chans: int, width: int, bn_weight_init: float) -> TimeDistributed:
    """The conv-BN the coding wraps: '7x7' (stride 2), 'deep' (3x3 s2 -> 3x3 -> 3x3, biased
    convs, one BN, as MS-ResNet-104's code) or '3x3' (stride 1, CIFAR)."""
    if kind == "7x7":
        convs = [nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)]
    elif kind == "deep":
        convs = [
            nn.Conv2d(in_chans, width, 3, stride=2, padding=1),
            nn.Conv2d(width, width, 3, padding=1),
            nn.Conv2d(width, width, 3, padding=1),
        ]
    elif kind == "3x3":
        convs = [nn.Conv2d(in_chans, width, 3, padding=1, bias=False)]
    else:
        raise ValueError(f"unknown stem {kind!r}; choose one of {list(STEMS)}")
    return TimeDistributed(*convs, _bn(width, bn_weight_init))


class MSBlock(nn.Module):
    """One membrane-shortcut basic block on real-valued input [T, B, C, H, W].

    `conv1_attention` / `conv2_attention` sit between a conv and its BN (SMA family),
    `attention` on the residual branch's current after the second BN (MA family).
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        stride: int,
        make_neuron,
        conv1_attention: nn.Module,
        conv2_attention: nn.Module,
        attention: nn.Module,
        downsample: str = "avgpool",
        bn_weight_init: float = 0.5,
        residual_bn_weight_init: float = 0.1,
    ):
        super().__init__()
        self.lif1 = make_neuron()
        self.conv1 = TimeDistributed(
            nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)
        )
        self.conv1_attention = conv1_attention
        self.bn1 = TimeDistributed(_bn(out_chans, bn_weight_init))
        self.lif2 = make_neuron()
        self.conv2 = TimeDistributed(nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False))
        self.conv2_attention = conv2_attention
        self.bn2 = TimeDistributed(_bn(out_chans, residual_bn_weight_init))
        self.attention = attention
        if stride == 1 and in_chans == out_chans:
            self.shortcut = nn.Identity()
        elif downsample == "avgpool":
            # ceil_mode: same as the authors' floor pooling on even sizes, and odd sizes keep
            # matching the strided conv of the residual branch instead of failing at the add.
            pool = [nn.AvgPool2d(stride, ceil_mode=True)] if stride > 1 else []
            self.shortcut = TimeDistributed(
                *pool, nn.Conv2d(in_chans, out_chans, 1, bias=False), _bn(out_chans, bn_weight_init)
            )
        elif downsample == "strided":
            self.shortcut = TimeDistributed(
                nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False),
                _bn(out_chans, bn_weight_init),
            )
        else:
            raise ValueError(
                f"unknown downsample {downsample!r}; choose one of {list(DOWNSAMPLES)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1_attention(self.conv1(self.lif1(x))))
        out = self.bn2(self.conv2_attention(self.conv2(self.lif2(out))))
        return self.attention(out) + self.shortcut(x)


class MSResNet(GradCheckpointing, nn.Module):
    """MS-ResNet on images [B, C, H, W] (repeated over T) or frames [B, T, C, H, W].

    Defaults follow MA-SNN's ImageNet code (Att_Res_SNN/models/resnet_2.py), which SMA's
    ImageNet code builds on. Choices where the authors' codes differ:

    - `stem`: '7x7' (MA-SNN code, every depth), 'deep' (MS-ResNet-104 code), '3x3' (CIFAR).
    - `downsample`: 'avgpool' (MA-SNN, MS-ResNet-104) or 'strided' (GAC, MS-ResNet-18/34).
    - `bn_weight_init` 0.5 = Vth for every BN of ours (stem, first BN, shortcut);
      `residual_bn_weight_init` 0.1 = 0.2 Vth for the block's last BN (MA-SNN code; GAC and
      MS-ResNet-18/34 use 0, so at init no gradient reaches the branch's convs, only BN2;
      GAC's CIFAR code keeps PyTorch's 1 for both).
    - `conv_init` 'pytorch': conv weights keep PyTorch's init (MA-SNN code);
      'kaiming_fan_out': every Conv2d (stem, blocks, shortcuts, GAC's SCA) drawn from
      kaiming_normal_(mode='fan_out', nonlinearity='relu'), biases 0 (GAC's ImageNet code).
    - `drop_rate` 0.2 before the FC (MA-SNN, MS-ResNet-104); GAC's code has none. The
      authors average the features over T, apply Dropout once, then the FC; here the FC runs
      per step behind one dropout mask shared by all steps, which is the same map once the
      loss averages the outputs over T (`TimeSharedDropout`).
    - `sma_position` 'conv1': SMA follows the block's first conv (SMA's ImageNet code inserts
      it there); 'conv2' puts it in the generic conv slot before the residual branch's BN.
      `sma_blocks_per_stage` 2: only the first two blocks of a stage get SMA, as that code
      does ('all': every block). MA attention goes in every block (MA-SNN code).
    - `sma_branch_act` 'relu' (SMA's ImageNet code; the paper's text says 'lif'): filled into
      `attention_kwargs['sma']['branch_act']` unless given there.

    (The choices above take no None: timm's create_model drops None-valued keyword arguments,
    which would silently restore the default.)

    With T=1 (MA-SNN's ImageNet setting) attentions containing TA are refused: one time step
    has nothing to weigh against.

    With `set_grad_checkpointing()` the coding (stem), each residual block and the head (its
    dropout draw replayed) are checkpoints.
    """

    def __init__(
        self,
        depths: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (2, 2, 2, 2),
        stem: str = "7x7",
        stem_width: int = 64,
        attention: str = "none",
        coding: str = "direct",
        T: int = 4,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int | Sequence[int] = 224,
        neuron: str | None = "msresnet",
        neuron_kwargs: dict[str, Any] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        coding_kwargs: dict[str, Any] | None = None,
        lif_backend: str = "auto",
        drop_rate: float = 0.2,
        downsample: str = "avgpool",
        bn_weight_init: float = 0.5,
        residual_bn_weight_init: float = 0.1,
        sma_position: str = "conv1",
        sma_blocks_per_stage: int | str = 2,
        sma_branch_act: str = "relu",
        conv_init: str = "pytorch",
    ):
        super().__init__()
        if not len(depths) == len(widths) == len(strides):
            raise ValueError(
                f"depths, widths and strides need one entry per stage, got "
                f"{list(depths)}, {list(widths)}, {list(strides)}"
            )
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        img_size = self.check_img_size(img_size)
        if downsample not in DOWNSAMPLES:
            raise ValueError(
                f"unknown downsample {downsample!r}; choose one of {list(DOWNSAMPLES)}"
            )
        if conv_init not in CONV_INITS:
            raise ValueError(f"unknown conv_init {conv_init!r}; choose one of {list(CONV_INITS)}")
        if sma_position not in SMA_POSITIONS:
            raise ValueError(
                f"unknown sma_position {sma_position!r}; choose one of {list(SMA_POSITIONS)}"
            )
        if not (
            sma_blocks_per_stage == "all"
            or (isinstance(sma_blocks_per_stage, int) and sma_blocks_per_stage >= 0)
        ):
            raise ValueError(
                f"sma_blocks_per_stage must be an int >= 0 or 'all', got {sma_blocks_per_stage!r}"
            )
        fam = family(attention)  # validates the name
        if T == 1 and fam == "ma" and "T" in MA_VARIANTS[attention]:
            allowed = [n for n, dims in MA_VARIANTS.items() if "T" not in dims]
            raise ValueError(
                f"attention {attention!r} contains TA, which weighs time steps against "
                f"each other and means nothing at T=1; with T=1 use 'none', one of "
                f"{allowed} (MA-SNN's ImageNet models use CSA) or SMA, or build with T > 1"
            )
        self.T, self.num_classes, self.img_size = T, num_classes, img_size
        self.attention_name, self.coding_name = attention, coding
        self.num_features = widths[-1]
        self.drop_rate = drop_rate

        def make_neuron() -> nn.Module:
            return MultiStepLIF(neuron, backend=lif_backend, **(neuron_kwargs or {}))

        attention_kwargs = dict(attention_kwargs or {})
        if fam == "sma":
            attention_kwargs["sma"] = {
                "branch_act": sma_branch_act,
                **attention_kwargs.get("sma", {}),
            }

        self.coding = build_coding(
            coding,
            T=T,
            stem=make_stem(stem, in_chans, stem_width, bn_weight_init),
            channels=stem_width,
            make_neuron=make_neuron,
            **(coding_kwargs or {}),
        )
        stages, channels = [], stem_width
        for depth, width, stride in zip(depths, widths, strides):
            blocks = []
            for i in range(depth):
                if fam == "sma" and sma_blocks_per_stage != "all" and i >= sma_blocks_per_stage:
                    conv_slot, current_slot = nn.Identity(), nn.Identity()  # no SMA in this block
                else:
                    conv_slot, current_slot = attention_slots(
                        attention,
                        T=T,
                        channels=width,
                        make_neuron=make_neuron,
                        attention_kwargs=attention_kwargs,
                    )
                conv1_att, conv2_att = (
                    (conv_slot, nn.Identity())
                    if sma_position == "conv1"
                    else (nn.Identity(), conv_slot)
                )
                blocks.append(
                    MSBlock(
                        channels,
                        width,
                        stride if i == 0 else 1,
                        make_neuron,
                        conv1_att,
                        conv2_att,
                        current_slot,
                        downsample=downsample,
                        bn_weight_init=bn_weight_init,
                        residual_bn_weight_init=residual_bn_weight_init,
                    )
                )
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head_neuron = make_neuron()
        self.head = nn.Sequential(
            TimeDistributed(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            TimeSharedDropout(drop_rate),
            TimeDistributed(nn.Linear(channels, num_classes)),
        )
        if conv_init == "kaiming_fan_out":
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    @staticmethod
    def check_img_size(img_size: int | Sequence[int]) -> tuple[int, int]:
        """(H, W) of `img_size`, or ValueError unless each side is at least 1. Nothing more is
        needed: every strided layer rounds up (stem, a stage's first conv and its shortcut, a
        1x1 strided conv or a ceil_mode AvgPool: ceil(side / stride) on both paths, so the add
        matches), so no side reaches 0, and the head's global average pool takes any H x W,
        square or not. Params runs it on every grid cell's frame size (a downsample larger
        than the sensor leaves no pixel)."""
        height, width = frame_size(img_size)
        if min(height, width) < 1:
            raise ValueError(
                f"MS-ResNet needs each side of img_size to be at least 1 pixel, "
                f"got {height}x{width}"
            )
        return height, width

    def forward_features(self, x: Tensor) -> Tensor:
        """Membrane potentials after the last stage, [T, B, C, H, W]."""
        blocks = [self.coding, *(block for stage in self.stages for block in stage)]
        return run_blocks(blocks, x, self.grad_checkpointing)

    def forward_head(self, x: Tensor) -> Tensor:
        return run_blocks([(self.head_neuron, self.head)], x, self.grad_checkpointing)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# Each name's variant (what it sets over MSResNet's own defaults) is in its `register` line.
@register(MSResNet, depths=(2, 2, 2, 2))
def ms_resnet18(pretrained: bool = False, **kwargs: Any) -> MSResNet:
    """MS-ResNet-18, ImageNet (GAC reports 11.82M parameters with GAC coding)."""
    return build(MSResNet, pretrained, **kwargs)


@register(MSResNet, depths=(3, 4, 6, 3))
def ms_resnet34(pretrained: bool = False, **kwargs: Any) -> MSResNet:
    """MS-ResNet-34, ImageNet (GAC reports 21.93M parameters with GAC coding)."""
    return build(MSResNet, pretrained, **kwargs)


@register(MSResNet, depths=(3, 8, 32, 8))
def ms_resnet104(pretrained: bool = False, **kwargs: Any) -> MSResNet:
    """MS-ResNet-104 (MA-SNN's Res-SNN-104, SMA-AZO-ResNet104). Stem '7x7' as MA-SNN's code
    builds it; stem='deep' gives MS-ResNet-104's own three-3x3 stem."""
    return build(MSResNet, pretrained, **kwargs)


@register(
    MSResNet,
    depths=(3, 3, 2),
    widths=(128, 256, 512),
    strides=(1, 2, 2),
    stem="3x3",
    num_classes=10,
    img_size=32,
    neuron="gac_cifar",
    drop_rate=0.0,
    downsample="strided",
    bn_weight_init=1.0,
    residual_bn_weight_init=1.0,
)
def gac_ms_resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> MSResNet:
    """GAC's CIFAR "MS-ResNet-18": 3x3 stem 64, [3, 3, 2] blocks at 128/256/512, strides 1/2/2,
    as GAC's CIFAR code (strided shortcuts, PyTorch-default BN, no dropout); 12.63M parameters
    with GAC coding and 10 classes."""
    return build(MSResNet, pretrained, **kwargs)
