"""Mixed precision (`train.precision`): autocast in training and evaluation, fp32 LIF membranes,
fp16's GradScaler (skipped steps are not divergence, its state survives resume)."""

import pytest
import tiny
import torch
from torch import nn

from spikeattn.neurons import MultiStepLIF
from spikeattn.schema import params_schema, violations
from spikeattn.train import Resume, fit, loop, seed_everything
from spikeattn.train.precision import Precision


def fp16_on_cpu() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float16
    except RuntimeError:
        return False


HALF = [
    "bf16",
    pytest.param(
        "fp16",
        marks=pytest.mark.skipif(
            not fp16_on_cpu(), reason="this torch build has no fp16 autocast on CPU"
        ),
    ),
]


class Watch(nn.Module):
    """Records, per forward, (training, autocast dtype or None); `bomb`: the forward number
    whose logits' gradient is made infinite (the loss stays finite); `nan`: the forward from
    which the logits (so the loss) are NaN."""

    def __init__(self, inner, bomb=None, nan=None):
        super().__init__()
        self.inner, self.bomb, self.nan, self.calls, self.log = inner, bomb, nan, 0, []

    def forward(self, x):
        on = torch.is_autocast_enabled("cpu")
        self.log.append((self.training, torch.get_autocast_dtype("cpu") if on else None))
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.bomb:
                out.register_hook(lambda grad: grad * float("inf"))
            if self.nan is not None and self.calls >= self.nan:
                out = out * float("nan")
        return out


class Spy(Precision):
    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Spy.made.append(self)


@pytest.fixture
def spy(monkeypatch):
    Spy.made = []
    monkeypatch.setattr(loop, "Precision", Spy)
    return Spy.made


def train(settings, wrap=lambda m: m, resume=None, stop_after=None):
    seed_everything(0)
    model = wrap(tiny.Tiny())
    train_batches, test_batches = tiny.loaders()

    def stop(epoch, row):
        if epoch == stop_after:
            raise KeyboardInterrupt

    return model, fit(
        model,
        train_batches,
        test_batches,
        settings,
        0,
        on_epoch=stop,
        progress=False,
        resume=resume,
    )


@pytest.mark.parametrize("precision", HALF)
def test_half_precision_trains_and_evaluates_under_autocast(precision, spy):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    model, result = train({**tiny.SETTINGS, "epochs": 2, "precision": precision}, Watch)
    assert result.diverged is None and len(result.history) == 2
    assert all(
        torch.isfinite(torch.tensor([row["train_loss"], row["test_loss"]])).all()
        for row in result.history
    )
    assert {training for training, _ in model.log} == {True, False}, "trained and evaluated"
    assert {d for _, d in model.log} == {dtype}, "every forward, training and test, under autocast"
    assert all(p.dtype == torch.float32 for p in model.parameters()), "weights stay fp32"
    assert (spy[0].scaler is not None) == (precision == "fp16")


def test_fp32_is_the_default_and_uses_no_autocast(spy):
    model, result = train({**tiny.SETTINGS, "epochs": 1}, Watch)
    assert {d for _, d in model.log} == {None} and spy[0].name == "fp32" and spy[0].scaler is None
    _, explicit = train({**tiny.SETTINGS, "epochs": 1, "precision": "fp32"})
    assert explicit.history == result.history


def test_lif_membrane_stays_fp32_under_half_precision_currents():
    # bf16 currents whose membrane bf16 cannot hold: 0.5 * 0.5 + 0.75390625 = 1.00390625 crosses
    # the threshold 1.0, but rounds to 1.0 (no spike) in bf16
    x = torch.tensor([0.5, 0.75390625, 0.5])[:, None].to(torch.bfloat16)
    m, spikes = torch.zeros(1), []
    for x_t in x.float():  # GAC's CIFAR neuron, written out in fp32
        m = 0.5 * m + x_t
        s = (m - 1.0 > 0).float()
        m = (1 - s) * m
        spikes.append(s)
    expected = torch.stack(spikes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = MultiStepLIF("gac_cifar", backend="torch")(x)
    assert out.dtype == torch.bfloat16
    assert expected[:, 0].tolist() == [0.0, 1.0, 0.0]
    assert torch.equal(out.float(), expected)


@pytest.mark.skipif(not fp16_on_cpu(), reason="this torch build has no fp16 autocast on CPU")
def test_fp16_overflowing_gradients_skip_the_step_and_are_not_divergence(spy):
    model, result = train(
        {**tiny.SETTINGS, "epochs": 2, "precision": "fp16"}, lambda m: Watch(m, bomb=2)
    )
    assert result.diverged is None and len(result.history) == 2
    scaler = spy[0].scaler.state_dict()
    assert scaler["scale"] == 2.0**16 * 0.5, "the scaler backed off once"
    assert scaler["_growth_tracker"] == 6 - 2, "and counts the good steps after the skipped one"


@pytest.mark.parametrize("precision", HALF)
def test_a_non_finite_loss_is_still_divergence(precision):
    _, result = train(
        {**tiny.SETTINGS, "epochs": 2, "precision": precision}, lambda m: Watch(m, nan=5)
    )
    assert result.diverged == {"epoch": 2, "batch": 1, "phase": "train", "loss": "nan"}


@pytest.mark.skipif(not fp16_on_cpu(), reason="this torch build has no fp16 autocast on CPU")
def test_fp16_scaler_state_survives_resume(tmp_path, spy, monkeypatch):
    settings = {**tiny.SETTINGS, "epochs": 4, "precision": "fp16"}

    def bomb(model):  # one skipped step: a backed-off scale to carry over
        return Watch(model, bomb=2)

    whole_model, whole = train(settings, bomb)
    whole_scaler = spy[-1].scaler.state_dict()
    assert whole_scaler["scale"] == 2.0**15 and whole_scaler["_growth_tracker"] == 4 * 3 - 2
    with pytest.raises(KeyboardInterrupt):
        train(settings, bomb, Resume(tmp_path / "resume.pt", "fp"), stop_after=2)
    model, resumed = train(settings, Watch, Resume(tmp_path / "resume.pt", "fp"))
    assert resumed.resumed_from == 2 and resumed.history == whole.history
    assert spy[-1].scaler.state_dict() == whole_scaler
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), whole_model.state_dict().values())
    )
    monkeypatch.setattr(Precision, "load_state_dict", lambda self, state: None)
    with pytest.raises(KeyboardInterrupt):
        train(settings, bomb, Resume(tmp_path / "other.pt", "fp"), stop_after=2)
    train(settings, Watch, Resume(tmp_path / "other.pt", "fp"))
    assert spy[-1].scaler.state_dict() != whole_scaler, (
        "without the saved state the scale starts over"
    )


TRAIN = {"$defs": params_schema()["$defs"], "$ref": "#/$defs/train"}


def test_precision_names_are_checked():
    assert violations({"precision": "bf16"}, TRAIN, "train") == []
    assert violations({"precision": "fp8"}, TRAIN, "train") == [
        "train.precision: 'fp8' is not one of ['fp32', 'bf16', 'fp16']"
    ]
    with pytest.raises(ValueError, match="train.precision must be one of"):
        Precision("fp8", "cpu")
