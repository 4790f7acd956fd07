"""DDP training on CPU: gloo, 2 processes under torchrun, on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jobs
import pandas as pd
import torch

from spikeattn.data.frames import Split
from spikeattn.data.loader import TensorBatches


def _loader(n=30, batch=8, train=True, seed=0):
    x = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 1, 2, 2).clone()
    return TensorBatches(Split(x, torch.arange(n) % 3), 1.0, batch, train=train, seed=seed)


def test_shards_split_every_global_batch_and_stay_in_step():
    whole = [b.x[:, 0, 0, 0].long().tolist() for b in _loader()]
    shards = [_loader().shard(rank, 2) for rank in (0, 1)]
    parts = [[b.x[:, 0, 0, 0].long().tolist() for b in shard] for shard in shards]
    assert [len(p) for p in parts] == [len(whole), len(whole)]
    for i, batch in enumerate(whole):  # the same global batches, interleaved between the ranks
        trimmed = batch[: len(batch) - len(batch) % 2] if i == len(whole) - 1 else batch
        assert sorted(parts[0][i] + parts[1][i]) == sorted(trimmed)
    assert torch.equal(shards[0].generator.get_state(), shards[1].generator.get_state())
    tests = [
        [b.x[:, 0, 0, 0].long().tolist() for b in _loader(train=False).shard(r, 2)] for r in (0, 1)
    ]
    assert sorted(sum(tests[0] + tests[1], [])) == list(range(30)), "the test set is covered once"


SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from torch import nn
    from spikeattn.data.frames import Split
    from spikeattn.data.loader import TensorBatches
    from spikeattn.train import Dist, fit

    class Linear(nn.Module):  # per-step logits [T=1, B, K]; no BatchNorm, so DDP == one process
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 4)
        def forward(self, x):
            return self.fc(x.flatten(1))[None]

    dist = Dist.from_env("gloo")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 1, 4, 4, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 4, (64,), generator=g)
    train = TensorBatches(Split(x, y), 1 / 255, 16, train=True, seed=0)
    test = TensorBatches(Split(x, y), 1 / 255, 16)
    if dist.active:
        train.shard(dist.rank, dist.world); test.shard(dist.rank, dist.world)
    torch.manual_seed(0)
    model = Linear()
    settings = {"epochs": 3, "opt": "sgd", "lr": 0.5, "weight_decay": 0.0, "momentum": 0.9,
                "sched": "none", "warmup_epochs": 0, "min_lr": 0.0, "loss": "ce_mean",
                "label_smoothing": 0.0}
    result = fit(model, train, test, settings, seed=0, progress=False, dist=dist)
    if dist.main:
        json.dump({"history": result.history, "weight": model.fc.weight.tolist(),
                   "world": dist.world}, open(sys.argv[1], "w"))
    dist.close()
""")


def test_two_gloo_processes_train_as_one_process_on_the_global_batch(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    subprocess.run([sys.executable, str(script), str(one)], check=True, timeout=300)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            str(script),
            str(two),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a["world"], b["world"]) == (1, 2)
    torch.testing.assert_close(
        torch.tensor(b["weight"]), torch.tensor(a["weight"]), rtol=1e-5, atol=1e-6
    )
    for ra, rb in zip(a["history"], b["history"], strict=True):
        assert ra["test_acc"] == rb["test_acc"] and ra["train_acc"] == rb["train_acc"]
        assert abs(ra["train_loss"] - rb["train_loss"]) < 1e-5


def test_train_command_of_a_distributed_study_runs_two_processes(tmp_path):
    raw = jobs.tiny_params(
        train={"epochs": 2}, distributed={"nproc_per_node": 2, "backend": "gloo"}
    )
    workdir = jobs.setup(tmp_path / "job", raw)
    jobs.run(workdir, *jobs.TRAIN)
    out = jobs.run_dir(workdir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["status"] == "completed"
    assert len(pd.read_csv(out / "history.csv")) == 2
    from spikeattn.tracking import Tracker

    with Tracker(uri=f"sqlite:///{workdir / 'mlflow.db'}").locked() as client:
        runs = client.search_runs([client.get_experiment_by_name("spikeattn").experiment_id])
    cells = [r for r in runs if r.data.tags.get("spikeattn.kind") == "cell"]
    assert len(cells) == 1 and cells[0].info.status == "FINISHED", "rank 0 alone logs to MLflow"
