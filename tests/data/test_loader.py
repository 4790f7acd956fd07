"""Batches on the device: fixed-layout frames and images, flips and shifts (time windows:
test_event_windows.py)."""

import torch
from conftest import DEVICE

from spikeattn.data.frames import Split
from spikeattn.data.loader import Augment, TensorBatches, place, translate


def test_fixed_layout_batches_are_float_shuffled_and_complete():
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    batches = TensorBatches(Split(x, torch.arange(10)), 1 / 255, 4, DEVICE, train=True, seed=1)
    seen = [b for b in batches]
    assert len(batches) == 3 and [len(b.y) for b in seen] == [4, 4, 2]
    assert seen[0].x.dtype == torch.float32
    labels = torch.cat([b.y for b in seen]).cpu()
    assert sorted(labels.tolist()) == list(range(10)) and labels.tolist() != list(range(10))
    for b in seen:
        assert torch.allclose(b.x[:, 0, 0, 0] * 255, b.y.float())


def test_translate_shifts_with_zero_fill():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    out = translate(x, torch.tensor([1, 0]), torch.tensor([0, -2]))
    assert out[0, 0, :, 0].tolist() == [0, 0, 0, 0] and torch.equal(
        out[0, 0, :, 1:], x[0, 0, :, :3]
    )
    assert torch.equal(out[1, 0, :2], x[1, 0, 2:]) and out[1, 0, 2:].abs().sum() == 0


def test_augment_flips_and_shifts_each_sample_independently():
    x = torch.rand(64, 3, 2, 8, 8, device=DEVICE)
    g = torch.Generator(DEVICE).manual_seed(0)
    flipped = Augment(flip=True)(x, g)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()
    shifted = Augment(translate_px=2)(x, g)
    assert shifted.shape == x.shape and not torch.equal(shifted, x)
    assert not Augment() and Augment(translate_px=1)


def test_place_keeps_cpu_tensors_where_they_are():
    t = torch.ones(3)
    assert place(t, torch.device("cpu")) is t and place(None, torch.device("cpu")) is None
