"""The one per-class split (SpikingJelly's rule) on tiny hand-built labels, and its guard."""

import numpy as np
import pytest

from spikeattn.data.splits import per_class_split, train_per_class

# Class 0 at 0, 4, 7, 9, 12 (5 samples); class 1 at 1, 5, 10 (3); class 2 at the other 10.
LABELS = np.array([0, 1, 2, 2, 0, 1, 2, 0, 2, 0, 1, 2, 0, 2, 2, 2, 2, 2])
# test_fraction 0.5 trains ceil(0.5 n) of each class: 3 of 5, 2 of 3, 5 of 10.
TRAIN = [3, 2, 5]


def _split(labels, fraction, seed, **keys):
    return per_class_split(labels, fraction, seed, dataset=keys.pop("dataset", "tiny"), **keys)


def test_train_per_class_rounds_the_training_share_up():
    # n, test_fraction -> training samples (ceil((1 - test_fraction) * n))
    table = [
        (10, 0.1, 9),
        (11, 0.1, 10),  # 9.9
        (19, 0.1, 18),  # 17.1
        (20, 0.1, 18),
        (3, 0.5, 2),  # 1.5
        (178, 0.2, 143),  # 142.4: digits' class 0
        (180, 0.2, 144),
        (3, 0.2, 3),  # 2.4: no test sample left (the guard refuses it)
    ]
    assert [train_per_class(n, f) for n, f, _ in table] == [k for *_, k in table]


def test_without_a_seed_the_first_samples_of_each_class_train():
    split = _split(LABELS, 0.5, None)
    # train: class 0 at 0, 4, 7; class 1 at 1, 5; class 2 at 2, 3, 6, 8, 11
    assert split.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1]
    assert split.dtype == np.int8


def test_every_seed_keeps_the_per_class_counts():
    for seed in range(6):
        split = _split(LABELS, 0.5, seed)
        assert np.bincount(LABELS[split == 0]).tolist() == TRAIN
        assert np.bincount(LABELS[split == 1]).tolist() == [2, 1, 5]


def test_a_seed_fixes_the_split_and_another_seed_changes_it():
    splits = [_split(LABELS, 0.5, seed).tolist() for seed in range(6)]
    assert splits == [_split(LABELS, 0.5, seed).tolist() for seed in range(6)]
    assert len({tuple(s) for s in splits}) > 1
    assert any(s != _split(LABELS, 0.5, None).tolist() for s in splits)


def test_a_seed_shuffles_each_class_in_turn_with_numpy():
    """The documented draw: one generator, each class (ascending) permuted, its first ones train."""
    rng = np.random.default_rng(7)
    expected = np.ones(len(LABELS), dtype=np.int8)
    for cls, k in enumerate(TRAIN):
        idx = np.flatnonzero(LABELS == cls)
        expected[idx[rng.permutation(len(idx))][:k]] = 0
    assert _split(LABELS, 0.5, 7).tolist() == expected.tolist()


def test_a_class_of_one_sample_is_refused_naming_the_keys():
    labels = np.array([0, 0, 0, 0, 0, 0, 1])  # class 0: 5 of 6 train (4.8 up); class 1: 1 of 1
    with pytest.raises(ValueError) as err:
        _split(labels, 0.2, 0, dataset="digits", size_key="max_samples")
    assert str(err.value) == (
        "datasets.digits: the per-class split with test_fraction=0.2 leaves class 1 (1 sample) "
        "with no test sample; change datasets.digits.test_fraction or raise "
        "datasets.digits.max_samples so that every class has samples on both sides"
    )


def test_a_test_fraction_too_small_for_a_class_is_refused():
    labels = np.repeat([0, 1], [40, 10])  # 0.05: class 0 trains 38 of 40, class 1 10 of 10 (9.5)
    with pytest.raises(ValueError) as err:
        _split(labels, 0.05, 3404, dataset="dvs128-gait")
    assert str(err.value) == (
        "datasets.dvs128-gait: the per-class split with test_fraction=0.05 leaves class 1 "
        "(10 samples) with no test sample; change datasets.dvs128-gait.test_fraction so that "
        "every class has samples on both sides"
    )
    assert _split(labels, 0.1, 3404).sum() == 4 + 1  # at 0.1 both classes test some


def test_a_split_with_no_training_sample_is_refused():
    with pytest.raises(ValueError, match=r"leaves class 0 \(2 samples\) with no train sample"):
        _split(np.array([0, 0, 1, 1]), 1.0, 0)
