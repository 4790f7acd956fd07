"""SMA's DVS VGG8 (sma_vgg8): layer structure, sma_blocks code vs paper (shapes, gradients and
refusals common to every backbone: test_contract.py)."""

import pytest
import torch
from torch import nn

from spikeattn.attention import MultiDimAttention
from spikeattn.layers import TimeSharedDropout
from spikeattn.models.sma_vgg import SMAVGG8

SIZE = 32  # the smallest input five MaxPools allow


def sma_count(model: nn.Module) -> int:
    from spikeattn.attention.sma import SMA

    return sum(isinstance(m, SMA) for m in model.modules())


def test_layer_structure_and_fc_size():
    model = SMAVGG8(T=4)  # paper input 2x128x128; built only (a forward at 128x128 is slow)
    assert model.fc_in_features == 4608
    linears = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (4608, 2048),
        (2048, 1024),
        (1024, 11),
    ]
    # FC order: Linear -> LIF -> Dropout(0.5), twice, then the read-out Linear.
    kinds = [type(m).__name__ for m in model.classifier]
    assert kinds == ["TimeDistributed", "MultiStepLIF", "TimeSharedDropout"] * 2 + [
        "TimeDistributed"
    ]
    convs = [model.coding.stem[0]] + [block.conv[0] for block in model.features[1:]]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 512]
    assert all(c.bias is not None for c in convs)
    # The adaptive pool makes the FC input 4608 for small inputs too.
    small = SMAVGG8(T=2, img_size=SIZE, num_classes=3).eval()
    assert small(torch.rand(3, 2, 2, SIZE, SIZE)).shape == (2, 3, 3)


@pytest.mark.parametrize("sma_blocks, blocks", [("code", (2, 3)), ("paper", (2, 3, 4, 5))])
def test_sma_blocks_code_vs_paper(sma_blocks, blocks):
    from spikeattn.attention.sma import SMA

    model = SMAVGG8(attention="SMA+AZO", T=4, sma_blocks=sma_blocks)
    assert sma_count(model) == len(blocks)
    with_sma = tuple(
        b
        for b, block in enumerate(model.features, start=1)
        if isinstance(getattr(block, "conv_attention", None), SMA)
    )
    assert with_sma == blocks
    assert [model.features[b - 1].conv_attention.channels for b in blocks] == [128, 256, 512, 512][
        : len(blocks)
    ]
    # MA attentions take the current slot of the same blocks; the FC layers get none.
    ma = SMAVGG8(attention="TCSA", T=4, img_size=SIZE, sma_blocks=sma_blocks)
    with_ma = tuple(
        b
        for b, block in enumerate(ma.features, start=1)
        if isinstance(getattr(block, "attention", None), MultiDimAttention)
    )
    assert with_ma == blocks
    assert not any(isinstance(m, MultiDimAttention) for m in ma.classifier.modules())


def test_default_is_the_code_choice():
    assert SMAVGG8(attention="SMA", T=4, img_size=SIZE).attention_blocks == (2, 3)


def test_dropout_mask_is_shared_over_time():
    torch.manual_seed(0)
    x = torch.ones(6, 4, 100)
    shared = TimeSharedDropout(0.5).train()(x)
    assert torch.equal(shared, shared[:1].expand_as(shared))
    assert set(shared.unique().tolist()) == {0.0, 2.0}
    independent = TimeSharedDropout(0.5, shared=False).train()(x)
    assert not torch.equal(independent, independent[:1].expand_as(independent))
    assert torch.equal(TimeSharedDropout(0.5).eval()(x), x)


def test_unknown_sma_blocks_is_refused():
    with pytest.raises(ValueError, match="sma_blocks"):
        SMAVGG8(sma_blocks="all")


def test_each_side_must_be_at_least_32():
    """Five flooring MaxPool2d(2): a side of 31 is 1 pixel before the fifth (31 // 16), which
    fails; 32 leaves 1x1, which the AdaptiveAvgPool(3) takes, so any side from 32 up works."""
    for size in (31, (31, 64), (64, 31)):
        with pytest.raises(ValueError, match="at least 32, got"):
            SMAVGG8(T=1, img_size=size)
    torch.manual_seed(0)
    model = SMAVGG8(T=1, img_size=(32, 45), num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 2, 32, 45)).shape == (1, 1, 3)
