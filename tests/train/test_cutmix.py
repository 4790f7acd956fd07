"""CutMix (`train.cutmix`) against a written-out version of the authors' rule (bollossom/GAC
CODE/CIFAR/main.py: rand_bbox and its use in `train`), its draw granularity, its loss through the
training loop, and resume."""

import numpy as np
import pytest
import tiny
import torch
import torch.nn.functional as F
from torch import nn

from spikeattn.data.loader import Batch
from spikeattn.schema import params_schema, violations
from spikeattn.train import Resume, build_loss, fit, run_epoch, seed_everything
from spikeattn.train.cutmix import CutMix, rand_box


def authors_rand_bbox(size, lam, cx, cy):
    """GAC's rand_bbox, written out, with its two np.random.randint draws (cx over size[2],
    cy over size[3]) given."""
    W = size[2]
    H = size[3]
    cut_rat = np.sqrt(1.0 - lam)
    cut_w = int(W * cut_rat)
    cut_h = int(H * cut_rat)
    bbx1 = np.clip(cx - cut_w // 2, 0, W)
    bby1 = np.clip(cy - cut_h // 2, 0, H)
    bbx2 = np.clip(cx + cut_w // 2, 0, W)
    bby2 = np.clip(cy + cut_h // 2, 0, H)
    return bbx1, bby1, bbx2, bby2


def authors_cutmix(images, labels, lam, rand_index, cx, cy):
    """GAC's `train` step under CutMix, on given draws: the pasted images, both targets and
    the area-corrected lam."""
    images = images.clone()
    target_a = labels
    target_b = labels[rand_index]
    bbx1, bby1, bbx2, bby2 = authors_rand_bbox(images.size(), lam, cx, cy)
    images[:, :, bbx1:bbx2, bby1:bby2] = images[rand_index, :, bbx1:bbx2, bby1:bby2]
    lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (images.size()[-1] * images.size()[-2]))
    return images, target_a, target_b, lam


@pytest.mark.parametrize("rows, cols", [(8, 8), (8, 12), (7, 5)])
def test_box_is_the_authors_rand_bbox_on_every_centre(rows, cols):
    for lam in [0.0, 0.01, 0.3, 0.5, 0.77, 0.999, 1.0]:
        for cx in range(rows):
            for cy in range(cols):
                x1, y1, x2, y2 = authors_rand_bbox((4, 3, rows, cols), lam, cx, cy)
                assert rand_box(rows, cols, lam, cx, cy) == (x1, x2, y1, y2), (lam, cx, cy)


class Fixed(CutMix):
    """CutMix on given draws (lam, partners, centre), to compare with the authors' step."""

    def __init__(self, lam, partner, r, c):
        super().__init__(prob=1.0, beta=1.0, draw="batch")
        self.fixed = (lam, torch.tensor(partner), r, c)

    def draws(self, batch, rows, cols):
        return self.fixed


@pytest.mark.parametrize("lam, r, c", [(0.3, 2, 5), (0.8, 0, 0), (0.05, 7, 11), (0.6, 4, 9)])
def test_mixed_batch_and_lam_are_the_authors(lam, r, c):
    x = torch.randn(5, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 4])
    partner = [3, 0, 4, 1, 2]
    mixed = Fixed(lam, partner, r, c)(x, y)
    images, target_a, target_b, lam_ref = authors_cutmix(x, y, lam, torch.tensor(partner), r, c)
    assert torch.equal(mixed.x, images)
    assert torch.equal(mixed.y_a, target_a) and torch.equal(mixed.y_b, target_b)
    assert mixed.lam == pytest.approx(lam_ref, abs=1e-12)
    assert not torch.equal(mixed.x, x), "the box is not empty on these draws"


def test_frames_get_the_same_box_in_every_frame():
    x = torch.randn(4, 3, 2, 8, 8, generator=torch.Generator().manual_seed(2))  # [B, T, C, H, W]
    mixed = Fixed(0.5, [1, 2, 3, 0], 3, 4)(x, torch.arange(4))
    for t in range(3):
        images, _, _, lam = authors_cutmix(
            x[:, t], torch.arange(4), 0.5, torch.tensor([1, 2, 3, 0]), 3, 4
        )
        assert torch.equal(mixed.x[:, t], images) and mixed.lam == pytest.approx(lam)


def test_draws_are_beta_lam_a_permutation_and_uniform_centres():
    for beta in (1.0, 0.5, 2.0):
        mixer = CutMix(prob=1.0, beta=beta, draw="batch", seed=3)
        draws = [mixer.draws(6, 5, 7) for _ in range(4000)]
        lam = np.array([d[0] for d in draws])
        assert lam.min() >= 0 and lam.max() <= 1
        assert lam.mean() == pytest.approx(0.5, abs=0.02)
        assert lam.var() == pytest.approx(1 / (4 * (2 * beta + 1)), rel=0.1)  # Beta(b, b)
    assert all(sorted(d[1].tolist()) == list(range(6)) for d in draws)
    assert {d[2] for d in draws} == set(range(5)) and {d[3] for d in draws} == set(range(7))


def mixed_pattern(draw, prob, epochs, batches, seed=0):
    mixer = CutMix(prob=prob, beta=1.0, draw=draw, seed=seed)
    x, y = torch.randn(4, 1, 6, 6), torch.arange(4)
    pattern = []
    for _ in range(epochs):
        mixer.start_epoch()
        pattern.append([mixer(x, y) is not None for _ in range(batches)])
    return pattern


def test_epoch_draw_mixes_whole_epochs():
    pattern = mixed_pattern("epoch", 0.5, epochs=60, batches=5)
    assert all(len(set(epoch)) == 1 for epoch in pattern), "every batch of an epoch mixed, or none"
    mixed = sum(epoch[0] for epoch in pattern)
    assert 15 <= mixed <= 45, mixed


def test_batch_draw_mixes_single_batches():
    pattern = mixed_pattern("batch", 0.5, epochs=2, batches=200)
    for epoch in pattern:
        assert 70 <= sum(epoch) <= 130, sum(epoch)
    assert pattern[0] != pattern[1]


@pytest.mark.parametrize("draw", ["epoch", "batch"])
def test_prob_one_always_mixes_prob_zero_never(draw):
    assert all(all(e) for e in mixed_pattern(draw, 1.0, 5, 5))
    assert not any(any(e) for e in mixed_pattern(draw, 0.0, 5, 5))


def test_same_seed_same_draws_other_seed_differs():
    assert mixed_pattern("batch", 0.5, 2, 30, seed=4) == mixed_pattern("batch", 0.5, 2, 30, seed=4)
    assert mixed_pattern("batch", 0.5, 2, 30, seed=4) != mixed_pattern("batch", 0.5, 2, 30, seed=5)


def by_hand(name, logits, target, eps):
    """The three losses written out, with label smoothing eps, on logits [T, B, K]."""
    K = logits.shape[-1]
    soft = F.one_hot(target, K).double() * (1 - eps) + eps / K
    if name == "mse_mean":
        return ((logits.mean(0) - soft) ** 2).mean()
    steps = [logits.mean(0)] if name == "ce_mean" else list(logits)
    return sum(-(soft * torch.log_softmax(z, -1)).sum(-1).mean() for z in steps) / len(steps)


class Recorder(nn.Module):
    """Fixed logits [T=2, B, 4] from the input (no BN), recording what it was given."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 12, 4).double()
        self.seen = []

    def forward(self, x):
        z = self.fc(x.flatten(1))
        out = torch.stack([z, 0.5 * z])
        self.seen.append((x.detach(), out.detach()))
        return out


@pytest.mark.parametrize("loss", ["ce_mean", "mse_mean", "tet"])
def test_loop_loss_is_lam_weighted_per_label_and_accuracy_counts_the_first(loss):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 12, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    partner = [2, 3, 4, 5, 0, 1]  # every partner has another label
    model = Recorder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    mixer = Fixed(0.55, partner, 3, 5)
    out = run_epoch(model, [Batch(x, y)], build_loss(loss, 0.1), optimizer, cutmix=mixer)
    images, y_a, y_b, lam = authors_cutmix(x, y, 0.55, torch.tensor(partner), 3, 5)
    seen_x, logits = model.seen[0]
    assert torch.equal(seen_x, images)
    expected = lam * by_hand(loss, logits, y_a, 0.1) + (1 - lam) * by_hand(loss, logits, y_b, 0.1)
    assert out["loss"] == pytest.approx(expected.item(), rel=1e-9)
    assert out["acc"] == pytest.approx((logits.mean(0).argmax(-1) == y).double().mean().item())
    model.seen.clear()
    clean = run_epoch(model, [Batch(x, y)], build_loss(loss, 0.1))  # evaluation never mixes
    assert torch.equal(model.seen[0][0], x)
    assert clean["loss"] == pytest.approx(by_hand(loss, model.seen[0][1], y, 0.1).item(), rel=1e-9)


class Counted(CutMix):
    """CutMix that records, per batch, whether it mixed and what it returned."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.results = []

    def __call__(self, x, y):
        self.results.append(super().__call__(x, y))
        return self.results[-1]


def test_loop_draws_once_per_epoch_and_trains_on_the_mixed_batch():
    model = Recorder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    batches = [
        Batch(torch.randn(4, 3, 8, 12, dtype=torch.float64), torch.arange(4)) for _ in range(4)
    ]
    mixer = Counted(prob=0.5, beta=1.0, draw="epoch", seed=1)
    kinds = []
    for _ in range(12):
        model.seen.clear()
        mixer.results.clear()
        run_epoch(model, batches, build_loss("ce_mean"), optimizer, cutmix=mixer)
        kinds.append({m is not None for m in mixer.results})
        for (seen, _), batch, m in zip(model.seen, batches, mixer.results, strict=True):
            assert torch.equal(seen, batch.x if m is None else m.x)
    assert all(len(k) == 1 for k in kinds), "each epoch mixes all its batches or none"
    assert {True} in kinds and {False} in kinds


def train(settings, resume=None, stop_after=None):
    seed_everything(0)
    model = tiny.Tiny()
    train_batches, test_batches = tiny.loaders()

    def stop(epoch, row):
        if epoch == stop_after:
            raise KeyboardInterrupt  # killed once the epoch's state is saved

    result = fit(
        model,
        train_batches,
        test_batches,
        settings,
        0,
        on_epoch=stop,
        progress=False,
        resume=resume,
    )
    return model, result


# seed 0, prob 0.7, draw epoch: epochs 2 and 3 mix, 1 and 4 do not (one on each side of the stop)
@pytest.mark.parametrize(
    "cutmix",
    [{"prob": 0.7, "beta": 1.0, "draw": "epoch"}, {"prob": 1.0, "beta": 1.0, "draw": "batch"}],
)
def test_resumed_run_mixes_as_the_uninterrupted_one(tmp_path, monkeypatch, cutmix):
    settings = {**tiny.SETTINGS, "epochs": 4, "cutmix": cutmix}
    whole_model, whole = train(settings)
    plain_model, _ = train({**tiny.SETTINGS, "epochs": 4})
    assert not all(
        torch.equal(a, b)
        for a, b in zip(whole_model.state_dict().values(), plain_model.state_dict().values())
    ), "CutMix acts"
    state = tmp_path / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        train(settings, Resume(state, "fp"), stop_after=2)
    model, resumed = train(settings, Resume(state, "fp"))
    assert resumed.resumed_from == 2 and resumed.history == whole.history
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), whole_model.state_dict().values())
    )
    # the saved generator is what makes it so: a resume that forgets it mixes otherwise
    monkeypatch.setattr(CutMix, "load_state_dict", lambda self, state: None)
    with pytest.raises(KeyboardInterrupt):
        train(settings, Resume(tmp_path / "other.pt", "fp"), stop_after=2)
    _, forgetful = train(settings, Resume(tmp_path / "other.pt", "fp"))
    assert forgetful.history[2:] != whole.history[2:]


TRAIN = {"$defs": params_schema()["$defs"], "$ref": "#/$defs/train"}


def test_schema_takes_null_or_the_three_keys_and_names_the_problem():
    assert violations({"cutmix": None}, TRAIN, "train") == []
    assert violations({"cutmix": {"prob": 0.5, "beta": 1.0, "draw": "epoch"}}, TRAIN, "train") == []
    assert violations(
        {"cutmix": {"prob": 1.5, "beta": 0, "draw": "sometimes"}}, TRAIN, "train"
    ) == [
        "train.cutmix.beta: 0 is less than or equal to the minimum of 0",
        "train.cutmix.draw: 'sometimes' is not one of ['epoch', 'batch']",
        "train.cutmix.prob: 1.5 is greater than the maximum of 1",
    ]
    assert violations({"cutmix": {"prob": 0.5}}, TRAIN, "train") == [
        "train.cutmix: 'beta' is a required property",
        "train.cutmix: 'draw' is a required property",
    ]
    assert CutMix.from_settings({}, 0) is None and CutMix.from_settings({"cutmix": None}, 0) is None
    with pytest.raises(ValueError, match="train.cutmix"):
        CutMix.from_settings({"cutmix": {"prob": 0.5, "beta": -1.0, "draw": "epoch"}}, 0)
