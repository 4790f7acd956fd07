"""Batches on the device: clips from time-window frames, votes, flips and shifts."""
import pytest
import torch

from conftest import DEVICE
from spikeattn.data.frames import Split
from spikeattn.data.loader import Augment, TensorBatches, place, translate


def clips_split():
    """3 samples of 10, 3 and 6 frames; frame f of sample s is filled with 10 * s + f."""
    lengths = [10, 3, 6]
    x = torch.cat([torch.arange(n) + 10 * s for s, n in enumerate(lengths)]).to(torch.uint8)
    x = x.view(-1, 1, 1, 1).expand(-1, 2, 4, 4).contiguous()
    offsets = torch.tensor([0, 10, 13, 19])
    return Split(x, torch.tensor([0, 1, 2]), offsets)


def first_frames(batch):
    return batch.x[:, :, 0, 0, 0]  # [B(*clips), T]


def test_random_training_windows_are_consecutive_frames_inside_each_sample():
    batches = TensorBatches(clips_split(), 1.0, batch_size=3, device=DEVICE, train=True, T=4, seed=0)
    starts = set()
    for _ in range(30):
        (batch,) = list(batches)
        for row, label in zip(first_frames(batch).cpu(), batch.y.cpu()):
            s = int(label)
            if s == 1:  # 3 frames < T: the clip is the whole sample, then zeros
                assert row.tolist() == [10, 11, 12, 0]
                continue
            assert (row.diff() == 1).all() and 10 * s <= row[0] and row[-1] < 10 * s + [10, 3, 6][s]
            if s == 0:
                starts.add(int(row[0]))
    assert len(starts) > 3, "windows start at random frames"


def test_start_window_takes_the_first_T_frames():
    batches = TensorBatches(clips_split(), 1.0, 3, DEVICE, train=True, T=4, window="start")
    (batch,) = list(batches)
    by_label = {int(y): row.tolist() for row, y in zip(first_frames(batch).cpu(), batch.y.cpu())}
    assert by_label == {0: [0, 1, 2, 3], 1: [10, 11, 12, 0], 2: [20, 21, 22, 23]}


def test_test_clips_are_evenly_spaced_and_counted_for_the_vote():
    batches = TensorBatches(clips_split(), 1.0, 2, DEVICE, train=False, T=4, clips=3)
    first, second = list(batches)
    assert first.clips == 3 and first.x.shape == (6, 4, 2, 4, 4) and first.y.tolist() == [0, 1]
    assert [int(r[0]) for r in first_frames(first).cpu()] == [0, 3, 6, 10, 10, 10]
    assert [int(r[0]) for r in first_frames(second).cpu()] == [20, 21, 22]


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
    assert out[0, 0, :, 0].tolist() == [0, 0, 0, 0] and torch.equal(out[0, 0, :, 1:], x[0, 0, :, :3])
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


def test_clips_layout_needs_T():
    with pytest.raises(ValueError, match="T"):
        TensorBatches(clips_split(), 1.0, 2)
