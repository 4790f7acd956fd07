"""A plugin's backbone: registered with the built-ins' decorator, built by timm, held to the
contract the pipeline relies on (check_img_size, set_grad_checkpointing, the cell's keywords),
and refused under a name timm or spikeattn has already."""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch
from torch import Tensor, nn

from spikeattn import registry
from spikeattn.models import (
    BACKBONES,
    backbone_defaults,
    build_backbone,
    model_class,
    register_backbone,
)
from spikeattn.models.demo import DemoCNN
from spikeattn.neurons import MultiStepLIF

pytestmark = pytest.mark.usefixtures("plugin_sandbox")

PLUGIN = "tests/fake.py"


class TinySNN(nn.Module):
    """One spiking conv layer and a read-out: about the least a backbone can be."""

    def __init__(
        self,
        attention: str = "none",
        coding: str = "direct",
        T: int = 2,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 8,
        width: int = 4,
    ):
        super().__init__()
        if attention != "none" or coding != "direct":
            raise ValueError("TinySNN takes attention none and coding direct only")
        height, width_px = self.check_img_size(img_size)
        self.grad_checkpointing = False
        self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
        self.lif = MultiStepLIF("msresnet")
        self.head = nn.Linear(width * height * width_px, num_classes)

    @staticmethod
    def check_img_size(img_size: Any) -> tuple[int, int]:
        height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
        if min(height, width) < 1:
            raise ValueError(f"TinySNN needs positive frame sides, got {height}x{width}")
        return height, width

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, x: Tensor) -> Tensor:  # [B, T, C, H, W] -> [T, B, classes]
        x = x.transpose(0, 1)
        T, B = x.shape[:2]
        current = self.conv(x.flatten(0, 1)).reshape(T, B, -1)
        return self.head(self.lif(current))


def register_tiny(owner: str = PLUGIN) -> None:
    """What a plugin file does: one entry point, a variant (width 6) over the class."""
    with registry.loading(owner):

        @register_backbone(TinySNN, width=6)
        def tiny_snn(pretrained: bool = False, **kwargs: Any) -> TinySNN:
            return build_backbone(TinySNN, pretrained, **kwargs)


def test_a_plugin_backbone_builds_through_timm_and_goes_with_its_registration():
    state = registry.snapshot()
    register_tiny()
    assert "tiny_snn" in BACKBONES and BACKBONES["tiny_snn"] is TinySNN  # a live view
    assert registry.owner_of("backbone", "tiny_snn") == PLUGIN
    assert backbone_defaults("tiny_snn")["width"] == 6
    model = timm.create_model("tiny_snn", T=3, num_classes=5, in_chans=2, img_size=4)
    assert isinstance(model, TinySNN) and model.conv.out_channels == 6
    out = model(torch.rand(2, 3, 2, 4, 4))
    assert out.shape == (3, 2, 5)
    with pytest.raises(ValueError, match=r"tiny_snn \(tests/fake.py\)"):
        model_class("no_such_backbone")

    registry.restore(state)
    assert "tiny_snn" not in BACKBONES
    with pytest.raises(ValueError, match="tiny_snn.*no longer registered"):
        timm.create_model("tiny_snn")  # timm keeps the name; its entry point refuses

    register_tiny()  # loaded again (after an edit): timm's leftover is ours to replace
    assert isinstance(timm.create_model("tiny_snn"), TinySNN)


def test_a_name_timm_has_is_refused_before_timm_hears_of_it():
    before = timm.models.model_entrypoint("resnet18")
    with registry.loading(PLUGIN), pytest.raises(registry.RegistrationError, match="timm has"):

        @register_backbone(TinySNN)
        def resnet18(pretrained: bool = False, **kwargs: Any) -> TinySNN:
            return build_backbone(TinySNN, pretrained, **kwargs)

    assert timm.models.model_entrypoint("resnet18") is before
    assert "resnet18" not in BACKBONES


def test_a_built_in_name_is_refused():
    with registry.loading(PLUGIN), pytest.raises(registry.RegistrationError, match="built in"):

        @register_backbone(TinySNN)
        def demo_cnn(pretrained: bool = False, **kwargs: Any) -> TinySNN:
            return build_backbone(TinySNN, pretrained, **kwargs)

    assert BACKBONES["demo_cnn"] is DemoCNN
    assert isinstance(timm.create_model("demo_cnn"), DemoCNN)


def test_another_plugins_name_is_refused_naming_it():
    register_tiny("plugins/first.py")
    with pytest.raises(registry.RegistrationError, match="plugins/first.py"):
        register_tiny("plugins/second.py")


class NoSizeCheck(nn.Module):
    def __init__(
        self, attention="none", coding="direct", T=2, num_classes=2, in_chans=1, img_size=8
    ):
        super().__init__()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        pass


class NoCheckpointing(NoSizeCheck):
    check_img_size = staticmethod(TinySNN.check_img_size)
    set_grad_checkpointing = None


class NoImgSize(TinySNN):
    def __init__(self, attention="none", coding="direct", T=2, num_classes=2, in_chans=1):
        super().__init__(attention, coding, T, num_classes, in_chans)


@pytest.mark.parametrize(
    "cls, message",
    [
        (NoSizeCheck, "no check_img_size"),
        (NoCheckpointing, "no set_grad_checkpointing"),
        (NoImgSize, "takes no img_size"),
        (int, "nn.Module class"),
    ],
)
def test_a_class_outside_the_contract_is_refused(cls, message):
    with registry.loading(PLUGIN), pytest.raises(registry.RegistrationError, match=message):

        @register_backbone(cls)
        def not_a_backbone(pretrained: bool = False, **kwargs: Any) -> nn.Module:
            return build_backbone(cls, pretrained, **kwargs)

    assert "not_a_backbone" not in BACKBONES and not timm.models.is_model("not_a_backbone")
