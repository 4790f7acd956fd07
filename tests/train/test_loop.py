"""The training loop: deterministic per seed on CPU, losses on per-step logits."""

import pytest
import timm
import tiny
import torch

import spikeattn.models  # noqa: F401
from spikeattn.data.frames import Split
from spikeattn.data.loader import TensorBatches
from spikeattn.train import LOSSES, build_loss, fit, seed_everything
from spikeattn.train.loop import vote

SETTINGS = {**tiny.SETTINGS, "epochs": 2}


def toy_data(n=96):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 4
    x = (torch.rand(n, 1, 16, 16, generator=g) * 80).to(torch.uint8)
    for k in range(4):  # a bright quadrant per class
        x[y == k, :, (k // 2) * 8 : (k // 2) * 8 + 8, (k % 2) * 8 : (k % 2) * 8 + 8] += 150
    return x[:64], y[:64], x[64:], y[64:]


def train_once(seed, **overrides):
    xtr, ytr, xte, yte = toy_data()
    seed_everything(seed)
    model = timm.create_model("demo_cnn", attention="TCSA", T=2, num_classes=4, img_size=16)
    settings = {**SETTINGS, **overrides}
    train = TensorBatches(Split(xtr, ytr), 1 / 255, settings["batch_size"], train=True, seed=seed)
    test = TensorBatches(Split(xte, yte), 1 / 255, settings["batch_size"])
    return fit(model, train, test, settings, seed, progress=False)


def test_same_seed_same_history_other_seed_differs():
    a, b, c = train_once(0), train_once(0), train_once(1)
    # the history itself: one row per epoch, every column, the lr each epoch trained at
    assert [list(row) for row in a.history] == [
        ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "peak_memory_mb"]
    ] * 2
    assert [row["epoch"] for row in a.history] == [1, 2]
    # cosine over 2 epochs from 3e-3 to min_lr 0: epoch 2 trains at 3e-3 * (1 + cos(pi/2)) / 2
    assert [row["lr"] for row in a.history] == pytest.approx([3e-3, 1.5e-3], rel=1e-12)
    assert [row["peak_memory_mb"] for row in a.history] == [None, None]  # CPU: not measured
    for row in a.history:
        assert row["train_loss"] > 0 and row["test_loss"] > 0
        assert (row["train_acc"] * 64).is_integer() and 0 <= row["train_acc"] <= 1  # 64 samples
        assert (row["test_acc"] * 32).is_integer() and 0 <= row["test_acc"] <= 1  # 32 samples
    assert a.history[1]["train_loss"] < a.history[0]["train_loss"], "the toy task is learnt"
    # same seed: the same history, bit for bit; another seed: other losses
    assert a.history == b.history
    assert [row["train_loss"] for row in c.history] != [row["train_loss"] for row in a.history]


@pytest.mark.parametrize(
    "sched, kwargs, lrs",
    [
        ("plateau", {}, [3e-3, 3e-3]),  # the train loss falls: no plateau, no decay
        ("none", {}, [3e-3, 3e-3]),
        ("step", {"decay_epochs": 1, "decay_rate": 0.1}, [3e-3, 3e-4]),
    ],
)
def test_timm_schedules_by_name_set_each_epochs_lr(sched, kwargs, lrs):
    history = train_once(0, sched=sched, sched_kwargs=kwargs, epochs=2).history
    assert [row["lr"] for row in history] == pytest.approx(lrs, rel=1e-12)


def test_plateau_lowers_lr_when_train_loss_stalls():
    from spikeattn.train.loop import build_scheduler

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = build_scheduler(
        opt,
        {**SETTINGS, "sched": "plateau", "sched_kwargs": {"patience_epochs": 1, "decay_rate": 0.5}},
    )
    for epoch, loss in enumerate([1.0, 0.9, 0.9, 0.9], start=1):
        sched.step(epoch, loss)
    assert opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="decay_rate"):
        build_scheduler(opt, {**SETTINGS, "sched": "plateau", "sched_kwargs": {"noise": 1}})


def test_losses_on_per_step_logits():
    logits = torch.randn(3, 5, 4, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 0])
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(build_loss("ce_mean")(logits, target), ce(logits.mean(0), target))
    torch.testing.assert_close(
        build_loss("tet")(logits, target), sum(ce(logits[t], target) for t in range(3)) / 3
    )
    onehot = torch.nn.functional.one_hot(target, 4).float()
    torch.testing.assert_close(
        build_loss("mse_mean")(logits, target), ((logits.mean(0) - onehot) ** 2).mean()
    )
    assert set(LOSSES) == {"ce_mean", "mse_mean", "tet"}
    with pytest.raises(ValueError, match="choose one of"):
        build_loss("hinge")


def test_clip_vote_is_the_most_frequent_prediction():
    # logits [T=1, B*clips=2*3, K=3]: sample 0's clips say 2, 2, 0; sample 1's say 1, 0, 0.
    decisions = torch.tensor([2, 2, 0, 1, 0, 0])
    logits = torch.nn.functional.one_hot(decisions, 3).float()[None]
    assert vote(logits, 3).tolist() == [2, 0]
    assert vote(logits, 1).tolist() == decisions.tolist()


class NaNFrom(torch.nn.Module):
    """A model whose logits turn NaN from its n-th training forward on."""

    def __init__(self, inner, n):
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x):
        out = self.inner(x)
        self.calls += self.training
        return out * float("nan") if self.training and self.calls >= self.n else out


def test_nan_loss_stops_training_and_restores_the_last_finite_weights(tmp_path):
    from spikeattn.train import Resume
    from spikeattn.train.checkpoint import read_resume_state

    xtr, ytr, xte, yte = toy_data()
    seed_everything(0)
    model = NaNFrom(
        timm.create_model("demo_cnn", attention="TCSA", T=2, num_classes=4, img_size=16), n=6
    )
    train = TensorBatches(Split(xtr, ytr), 1 / 255, 16, train=True, seed=0)  # 4 batches an epoch
    test = TensorBatches(Split(xte, yte), 1 / 255, 16)
    resume = Resume(tmp_path / "resume.pt", "fingerprint")
    result = fit(model, train, test, {**SETTINGS, "epochs": 3}, 0, progress=False, resume=resume)
    assert result.diverged == {"epoch": 2, "batch": 1, "phase": "train", "loss": "nan"}
    assert [row["epoch"] for row in result.history] == [1]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    saved = read_resume_state(tmp_path / "resume.pt")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in saved["model"].items()), (
        "the weights are those saved after the last finished epoch"
    )


def test_interrupted_fit_resumes_to_the_uninterrupted_result(tmp_path):
    from spikeattn.train import Resume

    xtr, ytr, xte, yte = toy_data()

    def run(resume, stop_after=None):
        seed_everything(0)
        model = timm.create_model("demo_cnn", attention="TCSA", T=2, num_classes=4, img_size=16)
        train = TensorBatches(Split(xtr, ytr), 1 / 255, 16, train=True, seed=0)
        test = TensorBatches(Split(xte, yte), 1 / 255, 16)

        def stop(epoch, row):
            if epoch == stop_after:
                raise KeyboardInterrupt  # killed once the epoch's state is saved

        return model, fit(
            model,
            train,
            test,
            {**SETTINGS, "epochs": 3, "sched": "step"},
            0,
            on_epoch=stop,
            progress=False,
            resume=resume,
        )

    whole_model, whole = run(None)
    state = tmp_path / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        run(Resume(state, "fp"), stop_after=2)
    model, resumed = run(Resume(state, "fp"))
    assert resumed.resumed_from == 2
    assert resumed.history == whole.history
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), whole_model.state_dict().values())
    )
    with pytest.warns(UserWarning, match="other settings"):
        assert Resume(state, "other").state is None
