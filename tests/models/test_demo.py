"""The demo backbone through timm: shapes, gradients, registry, clear errors."""
import inspect

import pytest
import timm
import torch

import spikeattn.models  # noqa: F401  (registers the models)
from gradcheck import assert_gradients_reach_every_parameter
from spikeattn.attention import ATTENTIONS
from spikeattn.coding import CODINGS
from spikeattn.models import BACKBONES, model_class
from spikeattn.models.demo import DemoCNN


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("coding", CODINGS)
def test_shapes_and_gradients_reach_every_parameter(attention, coding):
    torch.manual_seed(0)
    # Demo-sized layers: MA attention scales currents by up to three sigmoid weights, so a
    # much smaller net can be silent at init (no spikes, no gradient), as in the paper's models.
    # Small ratio_t: with the default 4, T=4 leaves one hidden unit in the time MLPs, whose ReLU
    # can be dead at init (then those weights get no gradient until it revives)
    model = timm.create_model("demo_cnn", attention=attention, coding=coding, T=4, num_classes=7,
                              in_chans=1, img_size=16,
                              attention_kwargs={"ma": {"ratio_t": 2}, "sma": {"ratio_t": 1}})
    out = model(torch.rand(16, 1, 16, 16))
    assert out.shape == (4, 16, 7)
    assert_gradients_reach_every_parameter(model, out)


def test_event_frames_in_time_major_logits_out():
    model = timm.create_model("demo_cnn", attention="TCSA", T=5, in_chans=2, img_size=12)
    assert model(torch.rand(2, 5, 2, 12, 12)).shape == (5, 2, 10)


def test_registry_matches_timm():
    ours = {name for name in timm.list_models() if timm.models.get_pretrained_cfg(name) is None
            and inspect.getmodule(timm.models.model_entrypoint(name)).__name__.startswith("spikeattn.")}
    assert ours == set(BACKBONES)
    for name, cls in BACKBONES.items():
        assert isinstance(timm.create_model(name), cls)
    with pytest.raises(ValueError, match="choose one of"):
        model_class("resnet_nope")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_declares_the_frame_sizes_it_takes(name):
    """Params checks each grid cell's frames with the class's check_img_size, no fallback;
    a backbone's own default size (an int: square frames) passes it as (H, W)."""
    cls = model_class(name)
    default = inspect.signature(cls).parameters["img_size"].default
    assert cls.check_img_size(default) == (default, default)


def test_wrong_T_and_bad_names_raise_clear_errors():
    model = timm.create_model("demo_cnn", attention="TA", T=4, img_size=8)
    with pytest.raises(ValueError, match="built for T=4"):
        model(torch.rand(2, 6, 1, 8, 8))
    with pytest.raises(ValueError, match="choose one of"):
        timm.create_model("demo_cnn", attention="XA")
    with pytest.raises(ValueError, match="pretrained"):
        timm.create_model("demo_cnn", pretrained=True)


@pytest.mark.parametrize("size", [0, (0, 8), (8, 0), 6, (8, 10)])
def test_demo_cnn_refuses_sides_that_are_not_positive_multiples_of_4(size):
    with pytest.raises(ValueError, match="multiple of 4"):
        DemoCNN.check_img_size(size)
    assert DemoCNN.check_img_size((4, 12)) == (4, 12)
