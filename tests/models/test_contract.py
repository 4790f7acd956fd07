"""The contract every registered backbone keeps, checked over `models.BACKBONES` (so a new
backbone is checked by registering it and adding its row to SMALL): timm builds each name as
its class, it refuses what it cannot do with errors that say so, its output is [T, B, classes],
a gradient reaches every parameter, and its parameter count is the paper's where a paper
states one. What is particular to one network (layouts, the authors' placement rules) is in
its own test file."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import pytest
import timm
import torch
from torch import nn

import spikeattn.models  # noqa: F401  (registers the models)
from spikeattn.attention import ATTENTIONS
from spikeattn.attention.ma import SharedMLP
from spikeattn.attention.sma import SMA
from spikeattn.coding import CODINGS
from spikeattn.models import BACKBONES, backbone_defaults, model_class


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only contend on shared cores (measured 9 s vs 15-57 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _meta(name: str, **kwargs: Any) -> nn.Module:
    """Build on the meta device: no memory, no init cost; enough for types, counts, errors."""
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


# -- registration ----------------------------------------------------------------------------


def test_registry_matches_timm():
    ours = {
        name
        for name in timm.list_models()
        if timm.models.get_pretrained_cfg(name) is None
        and inspect.getmodule(timm.models.model_entrypoint(name)).__name__.startswith("spikeattn.")
    }
    assert ours == set(BACKBONES)
    assert set(BACKBONES) == set(SMALL), "give each registered backbone a row in SMALL"
    for name, cls in BACKBONES.items():
        assert isinstance(_meta(name), cls)
    with pytest.raises(ValueError, match="choose one of"):
        model_class("resnet_nope")
    with pytest.raises(ValueError, match="choose one of"):
        backbone_defaults("resnet_nope")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_declares_the_frame_sizes_it_takes(name):
    """Params checks each grid cell's frames with the class's check_img_size, no fallback;
    the size a name builds with by default (an int: square frames) passes it as (H, W)."""
    default = backbone_defaults(name)["img_size"]
    assert model_class(name).check_img_size(default) == (default, default)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_unknown_attention_and_pretrained_weights_are_refused(name):
    with pytest.raises(ValueError, match="choose one of"):
        _meta(name, attention="XA")
    with pytest.raises(ValueError, match="pretrained"):
        timm.create_model(name, pretrained=True)


# -- shapes and gradients --------------------------------------------------------------------


@dataclass(frozen=True)
class Small:
    """A backbone at a size that runs in a second: its keyword arguments, batch size, the
    attentions the test crosses with every coding, whether it outputs spikes, and whether its
    time MLPs are too narrow to trust a seed with (`wake_narrow_mlps`)."""

    kwargs: dict[str, Any]
    batch: int
    attentions: tuple[str, ...]
    spikes: bool = False
    wake: bool = False


# The nine attentions that cover each family and SMA's variants (every one for the demo net).
NINE = ("none", "TA", "CA", "SA", "TCSA", "SMA", "SMA-L", "SMA-C", "SMA+AZO")
# Low thresholds make an untrained net spike in every layer: a silent LIF passes no gradient
# to the weights before it. ratio_t 1-2: a time MLP of one or two hidden units can be dead
# (ReLU) for the whole batch at init, which says nothing about the wiring.
SPIKY_MA = {"v_threshold": 0.1, "v_reset": 0.1}  # reset to the threshold, as ma_dvs does
# MS-ResNet at narrow widths (same entry points and classes, fewer channels): SMA at 512
# channels alone has 22M parameters per block.
NARROW_RESNET = {"stem_width": 16, "widths": (16, 32, 64, 128)}
RESNET = dict(T=2, num_classes=5, img_size=16, neuron_kwargs={"v_threshold": 0.1})
RESNET_ATTENTIONS = ("none", "CSA", "TCSA", "SMA", "SMA-C", "SMA+AZO")

SMALL: dict[str, Small] = {
    # MA attention scales currents by up to three sigmoid weights, so a much smaller net can
    # be silent at init (no spikes, no gradient), as in the paper's models.
    "demo_cnn": Small(
        dict(
            T=4,
            num_classes=7,
            in_chans=1,
            img_size=16,
            attention_kwargs={"ma": {"ratio_t": 2}, "sma": {"ratio_t": 1}},
        ),
        batch=16,
        attentions=ATTENTIONS,
    ),
    # Gesture pools x4 in all (side 8 leaves 2x2), Gait x64, its minimum. 10 classes: enough
    # output entries fall in the rectangle surrogate's window. Gait's SMA has 4 layers of up to
    # 512 channels: two kernels keep the test fast; Gesture keeps the paper's four (1, 3, 5, 7).
    "ma_cnn_gesture": Small(
        dict(
            T=8,
            num_classes=10,
            img_size=8,
            neuron_kwargs=SPIKY_MA,
            attention_kwargs={"ma": {"ratio_t": 1}, "sma": {"ratio_t": 1}},
        ),
        batch=1,
        attentions=NINE,
        spikes=True,
    ),
    "ma_cnn_gait": Small(
        dict(
            T=8,
            num_classes=10,
            img_size=64,
            neuron_kwargs=SPIKY_MA,
            attention_kwargs={"ma": {"ratio_t": 1}, "sma": {"ratio_t": 1, "kernels": (1, 3)}},
        ),
        batch=1,
        attentions=NINE,
        spikes=True,
    ),
    # 32: the smallest input five MaxPools allow. Threshold 0.25 (sj_tau2 has 1): the FC layers
    # and the blocks behind MA's sigmoid weights are silent at init otherwise.
    "sma_vgg8": Small(
        dict(
            T=8,
            num_classes=5,
            img_size=32,
            neuron_kwargs={"v_threshold": 0.25},
            attention_kwargs={"ma": {"ratio_t": 1}, "sma": {"ratio_t": 1, "kernels": (1, 3)}},
        ),
        batch=1,
        attentions=NINE,
    ),
    "ms_resnet18": Small(
        {**RESNET, **NARROW_RESNET}, batch=2, attentions=RESNET_ATTENTIONS, wake=True
    ),
    "gac_ms_resnet18_cifar": Small(
        {**RESNET, "stem_width": 16, "widths": (32, 64, 128)},
        batch=2,
        attentions=RESNET_ATTENTIONS,
        wake=True,
    ),
    # Deeper copies of ms_resnet18's blocks: one attention of each family.
    "ms_resnet34": Small(
        {**RESNET, **NARROW_RESNET}, batch=2, attentions=("CSA", "SMA"), wake=True
    ),
    "ms_resnet104": Small(
        {**RESNET, **NARROW_RESNET}, batch=2, attentions=("CSA", "SMA"), wake=True
    ),
}


def wake_narrow_mlps(model: nn.Module) -> None:
    """At T=2 the time MLPs (MA's TA, GAC's TA, SMA's time squeeze) have one hidden unit
    behind a ReLU (CA few, at narrow widths), dead at init for about half the seeds (the
    max-pooled inputs are positive). Positive squeeze weights keep them alive: the test checks
    wiring, not the seed."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SharedMLP):
                m.fc1.weight.abs_()
            if isinstance(m, SMA) and m.temporal:  # SMA-C has no time MLP
                m.time_squeeze.weight.abs_()
                m.time_squeeze.bias.abs_()


def bias_before_bn(model: nn.Module) -> set[int]:
    """Ids of conv/linear biases whose output goes straight into a BatchNorm: in training mode
    BN removes any per-channel constant, so their gradient is zero by construction."""

    def leaves(m: nn.Module) -> list[nn.Module]:
        kids = [k for k in m.children() if not isinstance(k, nn.Identity)]
        return [m] if not kids else [leaf for k in kids for leaf in leaves(k)]

    found = set()
    for module in model.modules():
        kids = [k for k in module.children() if not isinstance(k, nn.Identity)]
        for a, b in zip(kids, kids[1:]):
            last, first = leaves(a)[-1], leaves(b)[0]
            if (
                isinstance(last, (nn.Conv2d, nn.Linear))
                and last.bias is not None
                and isinstance(first, nn.modules.batchnorm._BatchNorm)
            ):
                found.add(id(last.bias))
    return found


def dead_parameters(model: nn.Module) -> list[str]:
    """Parameters with no gradient, or an all-zero one (biases right before a BN excepted)."""
    exempt = bias_before_bn(model)
    return [
        name
        for name, p in model.named_parameters()
        if p.grad is None or (id(p) not in exempt and not p.grad.abs().sum() > 0)
    ]


def test_dead_parameters_sees_a_parameter_without_gradient():
    """The check below can fail: an unused layer and a bias-free zero gradient are reported,
    a bias feeding a BN is not."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    unused = nn.Linear(2, 2)
    model.add_module("unused", unused)
    torch.manual_seed(0)
    out = model[:3](torch.rand(5, 3))
    (out * torch.randn_like(out)).sum().backward()
    assert dead_parameters(model) == ["unused.weight", "unused.bias"]
    model[2].weight.grad.zero_()
    assert dead_parameters(model) == ["2.weight", "unused.weight", "unused.bias"]


CASES = [
    (name, coding, attention)
    for name, small in SMALL.items()
    for coding in CODINGS
    for attention in small.attentions
]


@pytest.mark.parametrize("name, coding, attention", CASES, ids=["-".join(c) for c in CASES])
def test_shapes_and_gradients_reach_every_parameter(name, coding, attention):
    """Direct coding takes event frames [B, T, C, H, W], GAC static images [B, C, H, W]; both
    give [T, B, classes]. A random projection of the output is backpropagated (every output
    gets a non-zero gradient; a loss built from spikes alone would not)."""
    small = SMALL[name]
    torch.manual_seed(0)
    model = timm.create_model(name, attention=attention, coding=coding, **small.kwargs)
    if small.wake:
        wake_narrow_mlps(model)
    T, B, classes = small.kwargs["T"], small.batch, small.kwargs["num_classes"]
    in_chans = small.kwargs.get("in_chans", backbone_defaults(name)["in_chans"])
    size = small.kwargs["img_size"]
    frame = (in_chans, size, size)
    out = model(torch.rand(B, T, *frame) if coding == "direct" else torch.rand(B, *frame))
    assert out.shape == (T, B, classes)
    if small.spikes:
        assert set(out.unique().tolist()) <= {0.0, 1.0}, "spiking_output returns spikes"
    (out * torch.randn_like(out)).sum().backward()
    dead = dead_parameters(model)
    assert not dead, f"no gradient reaches {dead}"


# -- parameter counts the papers state -------------------------------------------------------

# (backbone, kwargs, count, source). GAC's counts include its coding (SCA convs 131,072 +
# TA 16 at T=4); its CIFAR net with 10 classes.
PAPER_PARAMETERS = [
    ("ms_resnet18", dict(coding="gac", T=4, num_classes=1000), 11.82e6, "GAC, ImageNet"),
    ("ms_resnet34", dict(coding="gac", T=4, num_classes=1000), 21.93e6, "GAC, ImageNet"),
    ("gac_ms_resnet18_cifar", dict(coding="gac", T=4, num_classes=10), 12.63e6, "GAC, CIFAR"),
]


@pytest.mark.parametrize(
    "name, kwargs, target, source", PAPER_PARAMETERS, ids=[p[0] for p in PAPER_PARAMETERS]
)
def test_parameter_counts_match_the_papers(name, kwargs, target, source):
    n = sum(p.numel() for p in _meta(name, **kwargs).parameters())
    assert abs(n / target - 1) < 0.005, f"{name}: {n} parameters, {source} reports {target:.0f}"
