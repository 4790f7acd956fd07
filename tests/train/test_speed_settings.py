"""Training-step speed settings (`train.deterministic`, `train.compile`, `train.channels_last`),
the peak memory record, no host sync per batch, and the divergence guarantee with the
end-of-epoch non-finite check."""

import pytest
import timm
import tiny
import torch
from tiny import restore_determinism  # noqa: F401  (the fixture pytestmark uses)

import spikeattn.models  # noqa: F401
from spikeattn.data.frames import Split
from spikeattn.data.loader import TensorBatches
from spikeattn.schema import params_schema, violations
from spikeattn.train import Dist, Resume, build_loss, fit, run_epoch, seed_everything, speed
from spikeattn.train.checkpoint import read_resume_state
from spikeattn.train.speed import PeakMemory, StepSettings, resolve_deterministic
from spikeattn.train.tally import Tally

TRAIN = {"$defs": params_schema()["$defs"], "$ref": "#/$defs/train"}


pytestmark = pytest.mark.usefixtures("restore_determinism")


# --- validation -----------------------------------------------------------------------------


def test_speed_settings_are_checked_by_the_schema():
    good = {"deterministic": "auto", "compile": True, "channels_last": False}
    assert violations(good, TRAIN, "train") == []
    assert violations({"deterministic": False}, TRAIN, "train") == []
    assert violations({"deterministic": "yes"}, TRAIN, "train") == [
        "train.deterministic: 'yes' is not one of ['auto', True, False]"
    ]
    assert violations({"deterministic": 1}, TRAIN, "train") == [
        "train.deterministic: 1 is not one of ['auto', True, False]"
    ]
    assert violations({"compile": "true"}, TRAIN, "train") == [
        "train.compile: 'true' is not of type 'boolean'"
    ]
    assert violations({"channels_last": None}, TRAIN, "train") == [
        "train.channels_last: None is not of type 'boolean'"
    ]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("deterministic", "yes", "train.deterministic must be auto, true or false"),
        ("deterministic", 1, "train.deterministic must be auto, true or false"),
        ("compile", "true", "train.compile must be true or false"),
        ("channels_last", 1, "train.channels_last must be true or false"),
    ],
)
def test_fit_refuses_a_bad_value_naming_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        StepSettings.from_settings({key: value}, "cpu")


def test_defaults_and_the_deterministic_rule():
    assert StepSettings.from_settings({}, "cpu") == StepSettings(True, False, False, False, False)
    # (auto fuses the optimizer on CUDA: the default opt, sgd, has a fused kernel)
    assert StepSettings.from_settings({}, "cuda") == StepSettings(False, False, False, False, True)
    assert [resolve_deterministic("auto", d) for d in ("cpu", "cuda")] == [True, False]
    assert [resolve_deterministic(v, "cuda") for v in (True, False)] == [True, False]
    assert [resolve_deterministic(v, "cpu") for v in (True, False)] == [True, False]


# --- tiny runs per setting ------------------------------------------------------------------


class Flags(torch.nn.Module):
    """Records, per training forward, whether deterministic algorithms were on and cudnn benchmark."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, set()

    def forward(self, x):
        self.seen.add(
            (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
        )
        return self.inner(x)


def train_tiny(settings, wrap=lambda m: m, resume=None, on_epoch=None, batch_size=16):
    seed_everything(0)
    model = wrap(tiny.Tiny())
    train, test = tiny.loaders(batch_size=batch_size)
    return model, fit(
        model, train, test, settings, 0, progress=False, resume=resume, on_epoch=on_epoch
    )


@pytest.mark.parametrize("setting, expected", [("auto", True), (True, True), (False, False)])
def test_deterministic_setting_is_applied_and_recorded(setting, expected):
    model, result = train_tiny({**tiny.SETTINGS, "epochs": 1, "deterministic": setting}, Flags)
    assert model.seen == {(expected, not expected)}
    assert result.settings == {
        "deterministic": expected,
        "compile": False,
        "channels_last": False,
        "grad_checkpointing": False,
        "fused_optimizer": False,
        "precision": "fp32",
    }
    assert result.diverged is None and len(result.history) == 1


def test_default_settings_are_recorded_and_cpu_peak_memory_is_null():
    _, result = train_tiny({**tiny.SETTINGS, "epochs": 2})
    assert result.settings == {
        "deterministic": True,
        "compile": False,
        "channels_last": False,
        "grad_checkpointing": False,
        "fused_optimizer": False,
        "precision": "fp32",
    }
    assert [row["peak_memory_mb"] for row in result.history] == [None, None]
    assert PeakMemory("cpu").read() is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="peak memory is recorded on CUDA only")
def test_cuda_peak_memory_is_measured():
    peak = PeakMemory("cuda")
    peak.start()
    x = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
    assert peak.read() >= 64
    del x


def close_histories(a, b, tol):
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert ra[key] == pytest.approx(rb[key], abs=tol), key


def test_compile_trains_through_torch_compile(monkeypatch):
    from torch._dynamo.backends.debugging import aot_eager
    from torch._dynamo.exc import BackendCompilerFailed, Unsupported

    graphs = []

    def recording(gm, example_inputs):  # aot_eager: dynamo's capture and AOT autograd, no codegen
        graphs.append(gm)
        return aot_eager(gm, example_inputs)

    monkeypatch.setattr(speed, "COMPILE_BACKEND", recording)
    settings = {**tiny.SETTINGS, "epochs": 1}
    try:
        _, compiled = train_tiny({**settings, "compile": True})
    except (BackendCompilerFailed, Unsupported) as err:  # torch's failure, not the loop's
        pytest.skip(
            f"torch.compile cannot compile the tiny model on this build: {type(err).__name__}: {err}"
        )
    finally:
        torch._dynamo.reset()
    assert graphs, "the training step ran through torch.compile"
    assert any("conv" in str(node.target) for gm in graphs for node in gm.graph.nodes), (
        "the compiled graph holds the model's conv"
    )
    assert compiled.settings["compile"] is True
    _, eager = train_tiny(settings)
    close_histories(compiled.history, eager.history, 1e-5)


def channels_last_run(settings):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 4
    x = (torch.rand(48, 1, 16, 16, generator=g) * 255).to(torch.uint8)
    seed_everything(0)
    model = timm.create_model("demo_cnn", attention="TCSA", T=2, num_classes=4, img_size=16)
    layouts = []
    model.conv2[0].register_forward_pre_hook(
        lambda m, args: layouts.append(
            (
                m.weight.is_contiguous(memory_format=torch.channels_last)
                and not m.weight.is_contiguous(),
                args[0].is_contiguous(memory_format=torch.channels_last)
                and not args[0].is_contiguous(),
            )
        )
    )
    train = TensorBatches(Split(x, y), 1 / 255, 16, train=True, seed=0)
    test = TensorBatches(Split(x[:16], y[:16]), 1 / 255, 16)
    return layouts, fit(model, train, test, settings, 0, progress=False)


def test_channels_last_trains_nhwc_and_matches_the_default_layout():
    settings = {**tiny.SETTINGS, "epochs": 2}
    layouts, nhwc = channels_last_run({**settings, "channels_last": True})
    assert set(layouts) == {(True, True)}, "conv2's weight and input are NHWC"
    assert nhwc.settings["channels_last"] is True
    default_layouts, nchw = channels_last_run(settings)
    assert set(default_layouts) == {(False, False)}
    close_histories(nhwc.history, nchw.history, 1e-4)


def test_channels_last_converts_image_batches_only():
    on = StepSettings(True, False, True)
    images = on.inputs(torch.rand(2, 3, 4, 4))
    assert images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    clips = torch.rand(2, 5, 3, 4, 4)
    assert on.inputs(clips) is clips
    assert StepSettings(True, False, False).inputs(images) is images


# --- no host sync per batch -----------------------------------------------------------------

SYNCS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts every read of a tensor's value to the host (what waits for a GPU)."""
    count = {"n": 0}
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            count["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return count


def one_epoch_reads(host_reads, n_batches, training):
    seed_everything(0)
    model = tiny.Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if training else None
    batches = TensorBatches(tiny.toy_split(8 * n_batches), 1 / 255, 8, train=True, seed=0)
    before = host_reads["n"]
    out = run_epoch(model, batches, build_loss("ce_mean"), optimizer)
    assert 0 <= out["acc"] <= 1
    return host_reads["n"] - before


@pytest.mark.parametrize("training", [True, False])
def test_run_epoch_reads_nothing_back_per_batch(host_reads, training):
    few, many = one_epoch_reads(host_reads, 2, training), one_epoch_reads(host_reads, 7, training)
    assert (few, many) == (1, 1), "one read an epoch (its sums), whatever the number of batches"


def test_the_read_counter_sees_a_per_batch_read(host_reads):
    """The counter above would catch the old loop's loss.item() per batch."""
    before = host_reads["n"]
    for loss in torch.rand(5):
        loss.item()
    assert host_reads["n"] - before == 5


# --- divergence, checked at the end of the epoch --------------------------------------------


class NaNAt(torch.nn.Module):
    """Logits NaN at the n-th training forward only (later batches are finite, but step from
    weights the NaN step spoiled)."""

    def __init__(self, inner, n):
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.n:
                out = out * float("nan")
        return out


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("with_resume", [False, True])
def test_nan_in_mid_epoch_is_diverged_and_the_last_finite_weights_are_kept(tmp_path, with_resume):
    # batch_size 8: 6 batches an epoch; forward 6 + 3 = 9 is batch 2 (0-based) of epoch 2
    ends = {}
    resume = Resume(tmp_path / "resume.pt", "fp") if with_resume else None
    seed_everything(0)
    model = NaNAt(tiny.Tiny(), 6 + 3)
    train, test = tiny.loaders(batch_size=8)
    assert len(train) == 6
    result = fit(
        model,
        train,
        test,
        {**tiny.SETTINGS, "epochs": 3},
        0,
        progress=False,
        resume=resume,
        on_epoch=lambda epoch, row: ends.setdefault(epoch, snapshot(model)),
    )
    assert model.calls == 12, "the epoch ran to its end: batches after the NaN one still stepped"
    assert result.diverged == {"epoch": 2, "batch": 2, "phase": "train", "loss": "nan"}
    assert [row["epoch"] for row in result.history] == [1]
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ends[1].items()), (
        "the weights at the end of epoch 1"
    )
    if with_resume:
        saved = read_resume_state(tmp_path / "resume.pt")
        assert saved["epoch"] == 1
        assert all(torch.equal(saved["model"][k], v) for k, v in ends[1].items())


@pytest.mark.parametrize("with_resume", [False, True])
def test_nan_in_the_first_epoch_keeps_the_initial_weights(tmp_path, with_resume):
    seed_everything(0)
    model = NaNAt(tiny.Tiny(), 2)
    initial = snapshot(model)
    train, test = tiny.loaders()
    resume = Resume(tmp_path / "resume.pt", "fp") if with_resume else None
    result = fit(
        model, train, test, {**tiny.SETTINGS, "epochs": 2}, 0, progress=False, resume=resume
    )
    assert result.diverged == {"epoch": 1, "batch": 1, "phase": "train", "loss": "nan"}
    assert result.history == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in initial.items()), (
        "no epoch finished: the weights are the initial ones, not the NaN-spoiled ones"
    )
    assert not (tmp_path / "resume.pt").exists()


def test_tally_names_the_first_non_finite_batch_and_its_loss():
    tally = Tally()
    for i, loss in enumerate([1.0, 2.0, float("inf"), float("nan"), 3.0]):
        tally.add(i, torch.tensor(loss), torch.tensor([True, False]))
    totals = tally.totals()
    assert totals.first_bad == (2, float("inf"))
    assert (totals.correct, totals.seen) == (5.0, 10)
    finite = Tally()
    for i, loss in enumerate([1.0, 2.0]):
        finite.add(i, torch.tensor(loss), torch.tensor([True, True, False]))
    assert finite.totals().first_bad is None
    assert finite.totals().loss_sum == 9.0 and finite.running() == (1.5, 4 / 6)


class TwoRanks(Dist):
    """Rank 0 of two, the other process's tally given: sum and gather as torch.distributed would."""

    def __init__(self, other_sums, other_first):
        super().__init__(0, 2, 0)
        object.__setattr__(self, "other_sums", other_sums)  # (a frozen dataclass)
        object.__setattr__(self, "other_first", other_first)

    def sum(self, values, device="cpu"):
        return [float(a) + float(b) for a, b in zip(values, self.other_sums)]

    def gather(self, obj):
        return [obj, self.other_first]


@pytest.mark.parametrize(
    "mine, other_first, expected",
    [
        (-1, (3, float("inf")), (3, float("inf"))),  # only the other process diverged
        (1, (3, float("inf")), (1, float("nan"))),  # both: the lower batch index
        (4, (2, float("inf")), (2, float("inf"))),
    ],
)
def test_every_process_names_the_first_non_finite_batch_of_any(mine, other_first, expected):
    tally = Tally()
    for i in range(5):
        tally.add(i, torch.tensor(float("nan") if i >= mine >= 0 else 1.0), torch.tensor([True]))
    # the other's loss sum, correct, seen, whether it diverged; and its first non-finite batch
    totals = tally.totals(TwoRanks([4.0, 2.0, 5, 1.0], other_first))
    assert totals.seen == 10 and totals.correct == 7.0
    assert totals.first_bad[0] == expected[0]
    assert str(totals.first_bad[1]) == str(expected[1])
