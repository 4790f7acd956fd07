"""`spikeattn plan`: the cost arithmetic against hand-worked numbers, the probe cache, and the
command on CPU (tiny demo models)."""

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from spikeattn import plan
from spikeattn.cli import main
from spikeattn.config import Params
from spikeattn.data import DATASETS
from spikeattn.io import read_yaml, write_json
from spikeattn.job_inputs import frames_path

REPO = Path(__file__).resolve().parents[1]
HOUR = 3600


def _params(studies: dict, datasets: dict | None = None) -> Params:
    """The repository's params.yaml with only `studies` (and `datasets` overrides)."""
    raw = copy.deepcopy(read_yaml(REPO / "params.yaml"))
    raw.update(studies="all", papers={}, groups={}, study=studies)
    for name, overrides in (datasets or {}).items():
        raw["datasets"][name].update(overrides)
    return Params(raw)


def _study(attention: list[str], seeds: list[int], epochs: int, batch: int, **extra) -> dict:
    return {
        "grid": {
            "dataset": ["digits"],
            "backbone": ["demo_cnn"],
            "attention": attention,
            "coding": ["direct"],
            "T": [4],
        },
        "seeds": seeds,
        "train": {"epochs": epochs, "batch_size": batch},
        **extra,
    }


@pytest.fixture
def hand(tmp_path, monkeypatch):
    """digits cut to 995 samples, 20% test per class: 800 training samples (the per-class
    split's count, ceil(0.8 n) summed over the classes), batch 100: 8 steps per
    epoch. `single`: 2 cells x 3 seeds, 3 epochs (24 steps per run); `ddp`: 1 cell x 1 seed on
    2 processes, 3 epochs. No frames cache (tmp_path): samples come from the registry."""
    monkeypatch.chdir(tmp_path)
    return _params(
        {
            "single": _study(["none", "TCSA"], [0, 1, 2], epochs=3, batch=100),
            "ddp": _study(["none"], [0], epochs=3, batch=100, distributed={"nproc_per_node": 2}),
        },
        datasets={"digits": {"max_samples": 995, "test_fraction": 0.2}},
    )


def _costs(params: Params) -> list[plan.CellCost]:
    # 150 s x 24 steps = 1 h per run with TCSA; 75 s: half an hour without attention
    seconds = {"none": 75.0, "TCSA": 150.0}
    return plan.cell_costs(
        params,
        ["single", "ddp"],
        lambda cell: seconds[cell.attention] * (2 if cell.study == "ddp" else 1),
        lambda cell: plan.train_samples(params, cell),
    )


def test_steps_and_gpu_hours_of_each_cell(hand):
    rows = {(r.study, r.cell.split("__")[2]): r for r in _costs(hand)}
    single, ddp = rows["single", "TCSA"], rows["ddp", "none"]
    assert (single.samples, single.samples_from, single.steps, single.jobs) == (
        800,
        "registry",
        24,
        3,
    )
    assert single.job_hours == pytest.approx(1.0)  # 24 x 150 s
    assert single.gpu_hours == pytest.approx(3.0)  # 3 seeds x 1 h x 1 process
    assert rows["single", "none"].gpu_hours == pytest.approx(1.5)
    assert (ddp.processes, ddp.job_hours) == (2, pytest.approx(1.0))  # 24 x 150 s per process
    assert ddp.gpu_hours == pytest.approx(2.0)  # 1 run x 1 h x 2 GPUs


def test_study_table_on_one_gpu(hand):
    table, totals = plan.study_table(_costs(hand), devices=1, jobs_per_gpu=1)
    single, ddp = (table.set_index("study").loc[s] for s in ("single", "ddp"))
    assert (
        single["cells"],
        single["seeds"],
        single["jobs"],
        single["epochs"],
        single["samples/epoch"],
        single["steps/run"],
    ) == (2, 3, 6, 3, 800, 24)
    assert single["s/step"] == pytest.approx(112.5)  # (3 x 75 + 3 x 150) / 6 runs
    assert single["GPU-h"] == pytest.approx(4.5)
    assert single["wall-h"] == pytest.approx(4.5)  # one run at a time
    assert ddp["GPU-h"] == pytest.approx(2.0) and pd.isna(ddp["wall-h"])  # it needs 2 GPUs
    assert (totals.jobs, totals.gpu_hours, totals.unplaced_jobs) == (7, pytest.approx(6.5), 1)
    assert totals.wall_hours == pytest.approx(4.5)  # the 6 runs that fit, one after another


@pytest.mark.parametrize(
    "devices, jobs_per_gpu, wall",
    [
        # runs of 1, 1, 1, 0.5, 0.5, 0.5 h on two slots, longest first: 0-1 h: two 1 h runs;
        # 1-2 h: the third, and a 0.5 h run then another; 2-2.5 h: the last 0.5 h run.
        (2, 1, 2.5),
        (1, 2, 2.5),  # two jobs share the one GPU: the same two slots
        (2, 3, 1.0),  # six slots: every run at once
    ],
)
def test_wall_time_packs_jobs_on_slots(hand, devices, jobs_per_gpu, wall):
    table, _ = plan.study_table(_costs(hand), devices=devices, jobs_per_gpu=jobs_per_gpu)
    assert table.set_index("study").loc["single", "wall-h"] == pytest.approx(wall)


def test_totals_schedule_every_study_together(hand):
    _, totals = plan.study_table(_costs(hand), devices=2, jobs_per_gpu=1)
    # 0-1 h: two 1 h runs; 1 h: a 1 h run and a 0.5 h run (the DDP run needs both GPUs);
    # 1.5 h: a 0.5 h run; 2 h: the DDP run alone until 3 h; then the last 0.5 h run: 3.5 h.
    assert (totals.gpu_hours, totals.wall_hours, totals.unplaced_jobs) == (
        pytest.approx(6.5),
        pytest.approx(3.5),
        0,
    )


def test_schedule():
    assert plan.schedule([(2.0, 1)] * 5, slots=2) == pytest.approx(6.0)  # ceil(5 / 2) x 2 h
    assert plan.schedule([(1.0, 4), (1.0, 1)], slots=4) == pytest.approx(2.0)
    assert plan.schedule([(1.0, 3)], slots=2) is None
    assert plan.schedule([], slots=1) == 0.0


def test_an_unmeasured_cell_leaves_hours_open(hand):
    rows = plan.cell_costs(
        hand,
        ["single"],
        lambda cell: 75.0 if cell.attention == "none" else None,
        lambda cell: (800, "registry"),
    )
    table, totals = plan.study_table(rows, devices=1, jobs_per_gpu=1)
    row = table.iloc[0]
    assert (row["s/step"], row["measured"]) == (75.0, 1)
    assert pd.isna(row["GPU-h"]) and pd.isna(row["wall-h"])
    assert (totals.gpu_hours, totals.wall_hours) == (None, None)


def test_a_built_cache_counts_the_samples(hand):
    cell = hand.cells("single")[0]
    write_json(frames_path(hand, cell), {"counts": {"train": 123, "test": 7}})
    assert plan.train_samples(hand, cell) == (123, "cache")


def test_declared_training_samples():
    counts = {
        name: info.train_count(read_yaml(REPO / "params.yaml")["datasets"][name])
        for name, info in DATASETS.items()
    }
    assert counts == {
        "digits": 1442,
        "digits-dvs": 1442,
        "dvs128-gesture": 1176,
        "dvs128-gait": 2000,
        "cifar10-dvs": 9000,
        "n-caltech101": 7889,
        "n-mnist": 60000,
        "cifar10": 50000,
        "cifar100": 50000,
        "imagenet": 1281167,
    }


def test_probe_cache_round_trip(tmp_path):
    cache = plan.ProbeCache("NVIDIA H100 80GB HBM3", root=tmp_path)
    assert cache.path == tmp_path / "NVIDIA-H100-80GB-HBM3.json" and cache.get("k") is None
    cache.put("k", {"seconds_per_step": 0.25, "batch": 64, "probe_batch": 64})
    again = plan.ProbeCache("NVIDIA H100 80GB HBM3", root=tmp_path)
    assert again.get("k") == {"seconds_per_step": 0.25, "batch": 64, "probe_batch": 64}


def test_probe_key_names_the_shape_and_ignores_the_schedule(hand):
    cell = hand.cells("single")[1]
    key = plan.probe_key(hand, cell, 100)
    assert key.startswith("demo_cnn|16x16|b100|T4|TCSA|direct|fp32|")
    other = _params(
        {"single": _study(["none", "TCSA"], [0], epochs=9, batch=100)},
        datasets={"digits": {"max_samples": 1000}},
    )
    assert (
        plan.probe_key(other, other.cells("single")[1], 100) == key
    )  # epochs and seeds: same step


def test_render_labels_extrapolation_and_missing_probes(hand):
    target = plan.Target("test-gpu", "cuda:0", 1, "cuda")
    rows = _costs(hand)
    probes = {
        ("single", rows[0].cell): {
            "seconds_per_step": 75.0,
            "batch": 100,
            "probe_batch": 2,
            "peak_memory_mb": 3072,
        },
        ("single", rows[1].cell): None,
    }
    text = plan.Plan(target, 1, rows, probes).render()
    assert "peak GiB" in text and " 3.0" in text
    assert "Extrapolated: step times measured at a reduced batch (2 of 100 samples)" in text
    assert "not measured: --no-probe and no cached probe" in text
    assert "ddp: each job trains on 2 GPUs" in text and "needs 2 GPUs" in text
    assert "Total: 7 train jobs, 6.5 GPU-hours, 4.5 h wall (+1 jobs that need more GPUs" in text


def test_no_probe_without_a_cache_says_not_measured(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "--params",
                str(REPO / "params.yaml"),
                "plan",
                "--studies",
                "demo",
                "--no-probe",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("demo-")]
    assert [row[0] for row in rows] == ["demo-digits", "demo-dvs"]
    assert all("not measured" in " ".join(row) for row in rows)
    assert "Total: 42 train jobs; CPU-hours and wall time not measured (14 of 14 cells" in out


def test_a_device_not_here_plans_from_cache_only(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "--params",
                str(REPO / "params.yaml"),
                "plan",
                "--studies",
                "demo-digits",
                "--device",
                "Some GPU 80GB",
                "--gpus",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Plan on Some GPU 80GB: 4 GPUs, 1 job per GPU." in out
    assert "Some GPU 80GB is not on this machine: cached probes only" in out


def test_cli_probes_demo_on_cpu_then_reads_the_cache(tmp_path, monkeypatch, capsys):
    """Tiny demo studies (one cell each, 8x8 digits, batch 4): a row per study, measured; the
    second plan reads the probes back instead of measuring again."""
    raw = read_yaml(REPO / "params.yaml")
    for study, T in (("demo-digits", 4), ("demo-dvs", 8)):
        spec = raw["study"][study]
        spec["grid"].update(attention=["TCSA"], T=[T])
        spec.pop("exclude", None)
        spec["train"] = {"epochs": 2, "batch_size": 4}
    raw["datasets"]["digits"]["image_size"] = 8
    raw["datasets"]["digits-dvs"].update(digit_size=8, sensor_size=12)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--studies", "demo", "--probe-steps", "1", "--device", "cpu"]) == 0
    first = capsys.readouterr()
    assert first.err.count("probing ") >= 2
    rows = [line.split() for line in first.out.splitlines() if line.strip().startswith("demo-")]
    assert [row[0] for row in rows] == ["demo-digits", "demo-dvs"]
    assert "not measured" not in first.out and "CPU-hours" in first.out
    assert main(["plan", "--studies", "demo", "--no-probe", "--device", "cpu"]) == 0
    second = capsys.readouterr()
    assert "probing" not in second.err and "not measured" not in second.out
    assert [
        line.split()[0] for line in second.out.splitlines() if line.strip().startswith("demo-")
    ] == ["demo-digits", "demo-dvs"]


def _single(**train) -> Params:
    """`hand`'s single study (2 cells, batch 100) with extra train settings."""
    study = _study(["none", "TCSA"], [0], epochs=3, batch=100)
    study["train"].update(train)
    return _params({"single": study}, datasets={"digits": {"max_samples": 1000}})


@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_batch_that_does_not_fit_names_the_remedy(monkeypatch, checkpointing):
    """The probe halves the batch on out-of-memory and its footer line says what makes the
    paper batch fit: train.grad_checkpointing (which the probe, run through fit, already has
    when the study sets it), else more GPUs."""
    import torch

    params = _single(grad_checkpointing=checkpointing)
    tried = []

    def fake(params, cell, device, batch, probe_batch, steps):
        tried.append(probe_batch)
        if probe_batch > 25:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return {"seconds_per_step": 0.1, "batch": batch, "probe_batch": probe_batch}

    monkeypatch.setattr(plan, "_measure", fake)
    found = plan.measure(params, params.cells("single")[0], "cuda:0", 100, 100, 1)
    assert tried == [100, 50, 25]
    assert found["note"].startswith(
        "digits__demo_cnn__none__direct__T4: batch 100 does not fit on "
        "cuda:0; measured at 25 and scaled; "
    )
    if checkpointing:
        assert "even with train.grad_checkpointing: true; train it on more GPUs" in found["note"]
    else:
        assert "set train.grad_checkpointing: true for the study" in found["note"]
        assert "or train it on more GPUs (distributed.nproc_per_node)" in found["note"]


def test_the_probe_key_tells_memory_and_optimizer_settings_apart():
    """Checkpointing and a fused optimizer change the step time: each has its own probe."""
    keys = {
        plan.probe_key(params, params.cells("single")[1], 100)
        for params in (_single(), _single(grad_checkpointing=True), _single(fused_optimizer=True))
    }
    assert len(keys) == 3
