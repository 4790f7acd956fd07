"""The demo backbone: clear errors for input it cannot take (shapes, gradients, registry and
refusals common to every backbone: test_contract.py)."""

import pytest
import timm
import torch

import spikeattn.models  # noqa: F401  (registers the models)
from spikeattn.models.demo import DemoCNN


def test_frames_of_another_T_raise_a_clear_error():
    model = timm.create_model("demo_cnn", attention="TA", T=4, img_size=8)
    with pytest.raises(ValueError, match="built for T=4"):
        model(torch.rand(2, 6, 1, 8, 8))


@pytest.mark.parametrize("size", [0, (0, 8), (8, 0), 6, (8, 10)])
def test_demo_cnn_refuses_sides_that_are_not_positive_multiples_of_4(size):
    with pytest.raises(ValueError, match="multiple of 4"):
        DemoCNN.check_img_size(size)
    assert DemoCNN.check_img_size((4, 12)) == (4, 12)
