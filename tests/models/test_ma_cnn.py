"""MA-SNN's DVS CNNs (ma_cnn_gesture, ma_cnn_gait): shapes, gradients, layer structure."""
import pytest
import timm
import torch
from torch import nn

from gradcheck import assert_gradients_reach_every_parameter
import spikeattn.models.ma_cnn  # noqa: F401  (registers the entry points)
from spikeattn.attention import MultiDimAttention, TemporalAttention
from spikeattn.models.ma_cnn import MACNNGait, MACNNGesture

ATTENTIONS = ("none", "TA", "CA", "SA", "TCSA", "SMA", "SMA-L", "SMA-C", "SMA+AZO")
# Small inputs (Gesture pools x4 in all, Gait x64, its minimum).
SMALL = {"ma_cnn_gesture": 8, "ma_cnn_gait": 64}
# Gait's SMA has 4 layers of up to 512 channels: two kernels keep the test fast; Gesture keeps
# the paper's four (1, 3, 5, 7).
SMA_OPTIONS = {"ma_cnn_gesture": {}, "ma_cnn_gait": {"kernels": (1, 3)}}
T = 8  # with ratio_t 1, 8-unit time MLPs: none is dead for the whole batch at init


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("coding", ("direct", "gac"))
@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_and_gradients_reach_every_parameter(name, coding, attention):
    torch.manual_seed(0)
    size, B = SMALL[name], 1  # B = 3 in test_non_spiking_output_and_clear_errors
    # Lower threshold (reset to it, as ma_dvs does): deep layers behind three sigmoid-weighted
    # attentions are silent at init otherwise. ratio_t 1: a time MLP of one or two units can be
    # dead (ReLU) for the whole batch at init, which says nothing about the wiring.
    # 10 classes: enough output entries fall in the rectangle surrogate's window.
    model = timm.create_model(name, attention=attention, coding=coding, T=T, num_classes=10,
                              img_size=size, neuron_kwargs={"v_threshold": 0.1, "v_reset": 0.1},
                              attention_kwargs={"ma": {"ratio_t": 1},
                                                "sma": {"ratio_t": 1, **SMA_OPTIONS[name]}})
    x = torch.rand(B, T, 2, size, size) if coding == "direct" else torch.rand(B, 2, size, size)
    out = model(x)
    assert out.shape == (T, B, 10)
    assert set(out.unique().tolist()) <= {0.0, 1.0}, "spiking_output returns spikes"
    assert_gradients_reach_every_parameter(model, out)


@pytest.mark.parametrize("cls, size, fc_in, classes", [(MACNNGesture, 32, 8192, 11),
                                                        (MACNNGait, 128, 2048, 21)])
def test_paper_input_gives_paper_fc_sizes(cls, size, fc_in, classes):
    torch.manual_seed(0)
    model = cls(T=2)
    assert model.fc_in_features == fc_in
    widths = [(fc.linear[0].in_features, fc.linear[0].out_features) for fc in model.classifier]
    assert widths == [(fc_in, 256), (256, classes)]
    assert model(torch.rand(1, 2, 2, size, size)).shape == (2, 1, classes)


def test_layer_pattern_follows_the_authors_code():
    model = MACNNGait(attention="TCSA", T=2, img_size=64)
    # Conv biases, AvgPools 2/2/2/2/4 (layer 1's in its stage), BN on FC layers.
    assert model.coding.stem[0].bias is not None
    assert all(layer.conv[0].bias is not None for layer in model.features[1:])
    pools = [stage.pool[0].kernel_size for stage in
             [model.features[0], *(layer.stage for layer in model.features[1:])]]
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


@pytest.mark.parametrize("attention, fc_attention", [("CA", False), ("CSA", False), ("SMA", False),
                                                     ("TA", True), ("TCA", True)])
def test_fc_layers_get_ta_only_when_the_attention_has_a_temporal_part(attention, fc_attention):
    model = MACNNGesture(attention=attention, T=2, img_size=16)
    assert all(isinstance(fc.attention, MultiDimAttention) == fc_attention for fc in model.classifier)


def test_sma_sits_between_conv_and_bn_of_every_layer_after_the_stem():
    from spikeattn.attention.sma import SMA

    model = MACNNGesture(attention="SMA", T=4, img_size=16)
    assert [type(layer.conv_attention) for layer in model.features[1:]] == [SMA, SMA]
    assert sum(isinstance(m, SMA) for m in model.modules()) == 2


def test_non_spiking_output_and_clear_errors():
    model = MACNNGesture(T=2, img_size=16, spiking_output=False, num_classes=4)
    out = model(torch.rand(3, 2, 2, 16, 16))
    assert out.shape == (2, 3, 4) and not set(out.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="choose one of"):
        MACNNGesture(attention="XA")
    with pytest.raises(ValueError, match="pretrained"):
        timm.create_model("ma_cnn_gesture", pretrained=True)


# Written out from the layouts: AvgPools 1*2*2 = 4 (Gesture), 2*2*2*2*4 = 64 (Gait); each side
# must keep one pixel after them, and what is left sizes the first FC layer (last width 128 / 512).
@pytest.mark.parametrize("cls, too_small, smallest, fc_in", [
    (MACNNGesture, [3, (3, 9), (9, 3)], (4, 9), 128 * 1 * 2),
    (MACNNGait, [63, (63, 64), (64, 63)], (64, 128), 512 * 1 * 2),
])
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
