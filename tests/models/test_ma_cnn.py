"""MA-SNN's DVS CNNs (ma_cnn_gesture, ma_cnn_gait): the authors' layer structure and sizes
(shapes, gradients and refusals common to every backbone: test_contract.py)."""

import pytest
import timm
import torch
from torch import nn

import spikeattn.models.ma_cnn  # noqa: F401  (registers the entry points)
from spikeattn.attention import MultiDimAttention, TemporalAttention
from spikeattn.models.ma_cnn import MACNNGait, MACNNGesture


@pytest.mark.parametrize(
    "name, size, fc_in, classes", [("ma_cnn_gesture", 32, 8192, 11), ("ma_cnn_gait", 128, 2048, 21)]
)
def test_paper_input_gives_paper_fc_sizes(name, size, fc_in, classes):
    """Each name builds at its paper's frame size and classes by default."""
    torch.manual_seed(0)
    model = timm.create_model(name, T=2)
    assert model.fc_in_features == fc_in
    widths = [(fc.linear[0].in_features, fc.linear[0].out_features) for fc in model.classifier]
    assert widths == [(fc_in, 256), (256, classes)]
    assert model(torch.rand(1, 2, 2, size, size)).shape == (2, 1, classes)


def test_layer_pattern_follows_the_authors_code():
    model = MACNNGait(attention="TCSA", T=2, img_size=64)
    # Conv biases, AvgPools 2/2/2/2/4 (layer 1's in its stage), BN on FC layers.
    assert model.coding.stem[0].bias is not None
    assert all(layer.conv[0].bias is not None for layer in model.features[1:])
    pools = [
        stage.pool[0].kernel_size
        for stage in [model.features[0], *(layer.stage for layer in model.features[1:])]
    ]
    assert pools == [2, 2, 2, 2, 4]
    assert all(isinstance(fc.linear[1], nn.BatchNorm1d) for fc in model.classifier)
    # FC layers take TA only (1-D); conv layers the full TCSA on the current.
    for fc in model.classifier:
        assert isinstance(fc.attention, MultiDimAttention) and fc.attention.dims == "T"
    assert all(layer.stage.attention.dims == "TCS" for layer in model.features[1:])
    # The authors' ratio defaults fill in: r_t 5 for Gesture, so T=10 gives 2 hidden units.
    gesture = MACNNGesture(attention="TA", T=10, img_size=16)
    ta = [m for m in gesture.modules() if isinstance(m, TemporalAttention)]
    assert ta and all(m.mlp.fc1.out_features == 2 for m in ta)


@pytest.mark.parametrize(
    "attention, fc_attention",
    [("CA", False), ("CSA", False), ("SMA", False), ("TA", True), ("TCA", True)],
)
def test_fc_layers_get_ta_only_when_the_attention_has_a_temporal_part(attention, fc_attention):
    model = MACNNGesture(attention=attention, T=2, img_size=16)
    assert all(
        isinstance(fc.attention, MultiDimAttention) == fc_attention for fc in model.classifier
    )


def test_sma_sits_between_conv_and_bn_of_every_layer_after_the_stem():
    from spikeattn.attention.sma import SMA

    model = MACNNGesture(attention="SMA", T=4, img_size=16)
    assert [type(layer.conv_attention) for layer in model.features[1:]] == [SMA, SMA]
    assert sum(isinstance(m, SMA) for m in model.modules()) == 2


def test_non_spiking_output():
    model = MACNNGesture(T=2, img_size=16, spiking_output=False, num_classes=4)
    out = model(torch.rand(3, 2, 2, 16, 16))
    assert out.shape == (2, 3, 4) and not set(out.unique().tolist()) <= {0.0, 1.0}


# Written out from the layouts: AvgPools 1*2*2 = 4 (Gesture), 2*2*2*2*4 = 64 (Gait); each side
# must keep one pixel after them, and what is left sizes the first FC layer (last width 128 / 512).
@pytest.mark.parametrize(
    "cls, too_small, smallest, fc_in",
    [
        (MACNNGesture, [3, (3, 9), (9, 3)], (4, 9), 128 * 1 * 2),
        (MACNNGait, [63, (63, 64), (64, 63)], (64, 128), 512 * 1 * 2),
    ],
)
def test_each_side_must_outlast_the_pools(cls, too_small, smallest, fc_in):
    least = smallest[0]
    for size in too_small:
        with pytest.raises(ValueError, match=f"{cls.NAME} average-pools .* at least {least}, got"):
            cls(T=2, img_size=size)
    torch.manual_seed(0)
    model = cls(T=2, img_size=smallest, num_classes=3).eval()
    assert model.fc_in_features == fc_in
    with torch.no_grad():
        assert model(torch.rand(1, 2, 2, *smallest)).shape == (2, 1, 3)
