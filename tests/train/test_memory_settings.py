"""`train.fused_optimizer` and `train.grad_checkpointing`: validation, resolution per device,
what a run records, and that both train as the default does; the history columns."""

import copy
from pathlib import Path

import pytest
import timm
import tiny
import torch
import yaml
from tiny import restore_determinism  # noqa: F401  (the fixture pytestmark uses)

import spikeattn.models  # noqa: F401
from spikeattn.config import MEMORY_ONLY_TRAIN_KEYS, Params, ParamsError
from spikeattn.data.frames import Split
from spikeattn.data.loader import TensorBatches
from spikeattn.io import canonical_json
from spikeattn.records import HISTORY_COLUMNS
from spikeattn.schema import params_schema, violations
from spikeattn.train import fit, seed_everything
from spikeattn.train.loop import build_optimizer
from spikeattn.train.speed import StepSettings, fused_problem, resolve_fused

RAW = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
TRAIN = {"$defs": params_schema()["$defs"], "$ref": "#/$defs/train"}


pytestmark = pytest.mark.usefixtures("restore_determinism")


# --- validation -----------------------------------------------------------------------------


def test_the_schema_checks_both_keys():
    assert violations({"fused_optimizer": "auto", "grad_checkpointing": True}, TRAIN, "train") == []
    assert violations({"fused_optimizer": False}, TRAIN, "train") == []
    assert violations({"fused_optimizer": "yes"}, TRAIN, "train") == [
        "train.fused_optimizer: 'yes' is not one of ['auto', True, False]"
    ]
    assert violations({"grad_checkpointing": "auto"}, TRAIN, "train") == [
        "train.grad_checkpointing: 'auto' is not of type 'boolean'"
    ]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"fused_optimizer": "on"}, "train.fused_optimizer: must be auto, true or false, got 'on'"),
        ({"fused_optimizer": 1}, "train.fused_optimizer: must be auto, true or false, got 1"),
        (
            {"fused_optimizer": True, "opt": "nadam"},
            "train.fused_optimizer: true, but optimizer nadam has no fused kernel",
        ),
        (
            {"opt": "sgd", "opt_kwargs": {"fused": True}},
            "train.opt_kwargs: holds fused; set train.fused_optimizer",
        ),
        (
            {"fused_optimizer": True, "opt": "adam", "opt_kwargs": {"foreach": True}},
            "train.fused_optimizer: true, and train.opt_kwargs.foreach: true",
        ),
        ({"grad_checkpointing": "yes"}, "train.grad_checkpointing must be true or false"),
    ],
)
def test_fit_refuses_bad_values_naming_the_key(settings, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        StepSettings.from_settings(settings, "cuda")


def test_the_device_free_checks_are_what_params_checks():
    assert fused_problem("auto", "nadam", {}) is None
    assert fused_problem(True, "lookahead_adamw", {}) is None  # (timm's lookahead_ prefix)
    assert fused_problem(True, "radam", {})[0] == "fused_optimizer"
    assert fused_problem("auto", "sgd", {"fused": False})[0] == "opt_kwargs"


# --- resolution -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, opt, device, opt_kwargs, expected",
    [
        ("auto", "sgd", "cpu", {}, False),  # CPU runs stay bit-identical to torch's default
        ("auto", "sgd", "cuda", {}, True),
        ("auto", "adamw", "cuda", {}, True),
        ("auto", "nadam", "cuda", {}, False),  # torch's NAdam has no fused kernel
        ("auto", "lamb", "cuda", {}, False),  # timm's own optimizers neither
        ("auto", "adam", "cuda", {"foreach": False}, False),  # an explicit kernel choice is kept
        (False, "sgd", "cuda", {}, False),
        (True, "sgd", "cuda", {}, True),
        (True, "adam", "cpu", {}, True),  # torch has fused CPU kernels too
    ],
)
def test_resolution(setting, opt, device, opt_kwargs, expected):
    assert resolve_fused(setting, opt, device, opt_kwargs) is expected


def test_true_on_a_device_without_the_kernel_is_an_error(monkeypatch):
    from spikeattn.train import speed

    monkeypatch.setattr(speed, "fused_kernel_devices", lambda: ("cuda",))
    with pytest.raises(
        ValueError,
        match="train.fused_optimizer: true, but torch has no fused optimizer kernel on cpu devices",
    ):
        resolve_fused(True, "sgd", "cpu")


def test_build_optimizer_passes_fused_through_timm():
    model = torch.nn.Linear(2, 2)
    settings = {**tiny.SETTINGS, "opt": "sgd"}
    assert build_optimizer(model, settings, fused=True).defaults["fused"] is True
    assert not build_optimizer(model, settings).defaults["fused"]


# --- tiny runs ------------------------------------------------------------------------------


def train_tiny(settings, model=None):
    seed_everything(0)
    model = model or tiny.Tiny()
    train, test = tiny.loaders()
    return model, fit(
        model, train, test, {**tiny.SETTINGS, "epochs": 2, **settings}, 0, progress=False
    )


def close_histories(a, b, tol):
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert ra[key] == pytest.approx(rb[key], abs=tol), key


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_fused_optimizer_trains_as_the_default_one(precision):
    """Fused on CPU (true; auto would not fuse here), fp16 through the GradScaler as well."""
    if precision == "fp16" and not torch.amp.is_autocast_available("cpu"):
        pytest.skip("no CPU autocast")
    settings = {"precision": precision}
    _, fused = train_tiny({**settings, "fused_optimizer": True})
    assert fused.settings["fused_optimizer"] is True
    _, plain = train_tiny(settings)
    assert plain.settings["fused_optimizer"] is False
    close_histories(fused.history, plain.history, 1e-4)


def demo_run(settings):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 4
    x = (torch.rand(32, 1, 8, 8, generator=g) * 255).to(torch.uint8)
    seed_everything(0)
    model = timm.create_model("demo_cnn", attention="TCSA", T=2, num_classes=4, img_size=8)
    train = TensorBatches(Split(x, y), 1 / 255, 16, train=True, seed=0)
    test = TensorBatches(Split(x[:16], y[:16]), 1 / 255, 16)
    return model, fit(
        model, train, test, {**tiny.SETTINGS, "epochs": 1, **settings}, 0, progress=False
    )


def test_grad_checkpointing_trains_the_same_run():
    model, checkpointed = demo_run({"grad_checkpointing": True})
    assert model.grad_checkpointing and checkpointed.settings["grad_checkpointing"] is True
    plain_model, plain = demo_run({})
    assert not plain_model.grad_checkpointing
    assert checkpointed.history == plain.history  # bit-identical on CPU
    for key, value in plain_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_a_model_that_cannot_checkpoint_is_refused():
    with pytest.raises(
        ValueError, match="train.grad_checkpointing: true, but Tiny cannot checkpoint"
    ):
        train_tiny({"grad_checkpointing": True})


def params_with(**train):
    raw = copy.deepcopy(RAW)
    raw["study"]["demo-dvs"]["train"].update(train)
    return Params(raw)


def test_the_resume_spec_has_fused_optimizer_but_not_grad_checkpointing():
    """A run resumed with checkpointing switched (to fit a GPU) is the same run; a fused
    optimizer rounds differently, so it is another."""
    assert MEMORY_ONLY_TRAIN_KEYS == {"grad_checkpointing"}
    base = Params(RAW)
    cell = base.cells("demo-dvs")[0]
    spec = canonical_json(base.train_spec(cell))
    assert canonical_json(params_with(grad_checkpointing=True).train_spec(cell)) == spec
    assert canonical_json(params_with(fused_optimizer=True).train_spec(cell)) != spec


def test_params_refuses_a_fused_optimizer_the_optimizer_lacks_naming_the_study_key():
    with pytest.raises(ParamsError) as err:
        params_with(opt="nadam", fused_optimizer=True)
    assert (
        "study.demo-dvs.train.fused_optimizer: true, but optimizer nadam has no fused kernel"
        in str(err.value)
    )
    with pytest.raises(ParamsError, match=r"study\.demo-dvs\.train\.opt_kwargs: holds fused"):
        params_with(opt_kwargs={"fused": True})
    params_with(opt="nadam", fused_optimizer="auto", grad_checkpointing=True)  # valid


# --- history.csv ----------------------------------------------------------------------------


def test_history_csv_holds_every_column_of_a_history_row():
    _, result = train_tiny({})
    assert list(result.history[0]) == HISTORY_COLUMNS
    assert HISTORY_COLUMNS[-1] == "peak_memory_mb"
