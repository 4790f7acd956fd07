"""MS-ResNet through timm: attention placement, the authors' head and init, parameter-count
details (shapes, gradients, refusals and the papers' counts for every backbone: test_contract.py)."""

import math

import pytest
import timm
import torch

import spikeattn.models.ms_resnet  # noqa: F401  (registers the MS-ResNets)
from spikeattn.attention.sma import SMA
from spikeattn.models.ms_resnet import DOWNSAMPLES, MSResNet


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only contend on shared cores (measured 9 s vs 15-57 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _meta(name, **kwargs):
    """Build on the meta device: no memory, no init cost; enough for counts and structure."""
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


# A narrow copy (same entry point and class, fewer channels) where only the layout matters.
NARROW = {"stem_width": 16, "widths": (16, 32, 64, 128)}


@pytest.mark.parametrize(
    "name,attention,T",
    [
        ("ms_resnet18", "SMA", 2),
        ("ms_resnet34", "CSA", 1),
        ("ms_resnet104", "CSA", 1),
        ("gac_ms_resnet18_cifar", "TCSA", 2),
    ],
)
def test_full_width_models_run(name, attention, T):
    torch.manual_seed(0)
    model = timm.create_model(
        name,
        attention=attention,
        coding="gac" if T > 1 else "direct",
        T=T,
        num_classes=5,
        img_size=32,
    ).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (T, 2, 5)


def test_parameter_count_details():
    """What separates our counts from torchvision's, and the R104 stems."""
    assert _n_params(_meta("ms_resnet18")) == 11_689_512 + 4_224  # + stage-1 stride-2 shortcut
    assert _n_params(_meta("ms_resnet34")) == 21_797_672 + 4_224
    r104 = _n_params(_meta("ms_resnet104"))
    deep = _n_params(_meta("ms_resnet104", stem="deep"))
    print("ms_resnet104", r104, "deep stem", deep)
    # three biased 3x3 convs (3->64, 64->64, 64->64) instead of one bias-free 7x7 (3->64)
    assert deep - r104 == (3 * 64 * 9 + 64 + 2 * (64 * 64 * 9 + 64)) - 3 * 64 * 49
    assert (
        _n_params(_meta("gac_ms_resnet18_cifar", coding="gac", T=6, num_classes=100))
        - _n_params(_meta("gac_ms_resnet18_cifar", coding="gac", T=6))
        == 90 * 513
    )


def test_sma_placement_follows_the_authors_imagenet_code():
    model = _meta("ms_resnet34", attention="SMA", T=4)
    for stage in model.stages:
        for i, block in enumerate(stage):
            assert isinstance(block.conv1_attention, SMA) == (i < 2)
            assert isinstance(block.conv2_attention, torch.nn.Identity)
            assert isinstance(block.attention, torch.nn.Identity)
    sma = model.stages[0][0].conv1_attention
    assert sma.branch_act == "relu" and sma.channels == 64
    model = _meta(
        "ms_resnet34",
        attention="SMA",
        T=4,
        sma_position="conv2",
        sma_blocks_per_stage="all",
        attention_kwargs={"sma": {"branch_act": "lif"}},
    )
    blocks = [b for stage in model.stages for b in stage]
    assert all(
        isinstance(b.conv2_attention, SMA) and b.conv2_attention.branch_act == "lif" for b in blocks
    )
    assert all(isinstance(b.conv1_attention, torch.nn.Identity) for b in blocks)


def test_ma_attention_goes_after_the_second_bn_in_every_block():
    model = _meta("ms_resnet18", attention="CSA", T=1)
    blocks = [b for stage in model.stages for b in stage]
    assert all(type(b.attention).__name__ == "MultiDimAttention" for b in blocks)
    assert all(isinstance(b.conv1_attention, torch.nn.Identity) for b in blocks)


def test_ta_at_one_time_step_is_refused():
    with pytest.raises(ValueError, match=r"contains TA.*T=1.*'CSA'"):
        _meta("ms_resnet18", attention="TCSA", T=1)


def test_odd_sizes():
    torch.manual_seed(0)
    for downsample in ("avgpool", "strided"):  # 36 -> 18 -> 9 -> 5: pooled shortcut must match
        model = timm.create_model("ms_resnet18", T=1, num_classes=3, downsample=downsample).eval()
        with torch.no_grad():
            assert model(torch.rand(1, 3, 36, 36)).shape == (1, 1, 3)
    with pytest.raises(ValueError, match="downsample"):
        _meta("ms_resnet18", downsample="maxpool")


def test_head_drops_out_once_after_the_mean_over_time_as_the_authors_head():
    """MA-SNN's (and SMA's) head: LIF -> GAP -> mean over T -> Dropout(0.2) -> FC, written out
    with torch's own layers; ours gives the same mean-over-T output from the same draws."""
    torch.manual_seed(0)
    model = timm.create_model("ms_resnet18", T=4, num_classes=5, **NARROW).double().train()
    features = torch.rand(4, 3, 128, 2, 2, dtype=torch.float64)  # [T, B, C, H, W] membranes
    fc = model.head[2][0]

    torch.manual_seed(7)
    ours = model.forward_head(features)
    torch.manual_seed(7)
    spikes = model.head_neuron(features)
    pooled = torch.nn.functional.adaptive_avg_pool3d(spikes, (None, 1, 1)).flatten(2)  # [T, B, C]
    theirs = fc(torch.nn.Dropout(0.2)(pooled.sum(0) / pooled.shape[0]))
    torch.testing.assert_close(ours.mean(0), theirs)

    mask = model.head[1](torch.ones_like(pooled))  # one mask for every step
    assert torch.equal(mask, mask[:1].expand_as(mask)) and (mask == 0).any()


def test_gac_imagenet_conv_init_is_kaiming_fan_out():
    """GAC's ImageNet code: kaiming_normal_(mode='fan_out', nonlinearity='relu') on every
    Conv2d, i.e. std sqrt(2 / (out_channels * k * k)); the default keeps PyTorch's init
    (uniform, std 1 / sqrt(3 * in_channels * k * k))."""
    torch.manual_seed(0)
    kaiming = timm.create_model("ms_resnet18", coding="gac", T=4, conv_init="kaiming_fan_out")
    default = timm.create_model("ms_resnet18", coding="gac", T=4)
    for model, fan, factor in ((kaiming, "out", 2.0), (default, "in", 1 / 3)):
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert (
            len(convs) == 1 + 2 * 8 + 4 + 2
        )  # stem, blocks, stride-2 shortcuts, GAC's two SCA convs
        for conv in convs:
            channels = conv.out_channels if fan == "out" else conv.in_channels
            expected = math.sqrt(factor / (channels * conv.kernel_size[0] * conv.kernel_size[1]))
            assert conv.weight.std().item() == pytest.approx(
                expected, rel=0.1 if conv.weight.numel() > 4000 else 0.3
            )
    first = kaiming.stages[0][0].conv1[0].weight  # 64 -> 64, 3x3: the 0.0585 vs 0.0241
    assert first.std().item() == pytest.approx(0.0589, abs=0.001)
    assert default.stages[0][0].conv1[0].weight.std().item() == pytest.approx(0.0241, abs=0.0005)
    with pytest.raises(ValueError, match="conv_init"):
        _meta("ms_resnet18", conv_init="xavier")


@pytest.mark.parametrize("downsample", DOWNSAMPLES)
def test_any_frame_with_a_pixel_per_side_runs(downsample):
    """Every strided layer rounds up (a 1-pixel side stays 1, 7 -> 4 -> 2 -> 1, 13 -> 7 -> 4 ->
    2 -> 1) and the head pools globally: no size limit but a pixel per side, square or not."""
    for size in (0, (0, 5), (5, 0)):
        with pytest.raises(ValueError, match="at least 1 pixel, got"):
            MSResNet(img_size=size)
    for size in ((1, 3), (7, 13)):
        model = timm.create_model(
            "ms_resnet18", T=1, num_classes=3, img_size=size, downsample=downsample, **NARROW
        ).eval()
        with torch.no_grad():
            assert model(torch.rand(1, 3, *size)).shape == (1, 1, 3)
