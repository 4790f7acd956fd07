"""Start-up cost of a train job: from `python -m spikeattn train ...` to its first batch.

    python benchmarks/startup.py [--study demo-digits] [--repeats 3]

Builds the study's first cell's frames in a scratch directory (a copy of params.yaml; not
timed), creates the MLflow store there as Snakemake's onstart does, then runs the job's own
command line (`spikeattn.cli.main`) in a fresh interpreter `--repeats` times. In that child,
`spikeattn.train.fit` is replaced by a stand-in that takes the first training batch and stops,
so what is timed is exactly what the job does before training: interpreter start, imports,
params validation, frames and batches, model build, the MLflow run. Prints, per phase, the
minimum over the repeats (wall seconds; the machine may be shared) and the child's CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in the child: times the job's phases by wrapping the functions it calls.
CHILD = r"""
import json, resource, sys, time
started = float(sys.argv[1])
marks = [("interpreter", started)]
import spikeattn.cli, spikeattn.config, spikeattn.data, spikeattn.train.job  # the job's imports
import timm, spikeattn.train
marks.append(("interpreter + imports (torch, timm)", time.time()))

def after(name, fn):
    def wrapped(*args, **kwargs):
        result = fn(*args, **kwargs)
        marks.append((name, time.time()))
        return result
    return wrapped

spikeattn.config.Params.load = classmethod(after("params.yaml validated", spikeattn.config.Params.load.__func__))
spikeattn.data.load_frames = after("frames loaded", spikeattn.data.load_frames)
timm.create_model = after("batches + model built", timm.create_model)
spikeattn.train.job._open_train_run = after("MLflow run open", spikeattn.train.job._open_train_run)

class FirstBatch(Exception):
    pass

def first_batch(model, train_batches, *args, **kwargs):
    next(iter(train_batches))
    marks.append(("first batch", time.time()))
    raise FirstBatch

spikeattn.train.fit = first_batch
try:
    spikeattn.cli.main(sys.argv[2:])
except FirstBatch:
    pass
usage = resource.getrusage(resource.RUSAGE_SELF)
phases = {name: end - start for (_, start), (name, end) in zip(marks, marks[1:])}
print(json.dumps({"phases": phases, "total": marks[-1][1] - started,
                  "cpu": usage.ru_utime + usage.ru_stime}))
"""


def _spikeattn(scratch: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "spikeattn", *args],
        cwd=scratch,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="demo-digits")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from spikeattn.config import Params

    params = Params.load(REPO / "params.yaml")
    cell = params.cells(args.study)[0]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        shutil.copy(REPO / "params.yaml", scratch / "params.yaml")
        _spikeattn(scratch, "prepare", cell.dataset)
        _spikeattn(scratch, "preprocess", cell.dataset, "--T", str(cell.T), "--study", args.study)
        _spikeattn(scratch, "tracking-store")
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        runs = []
        for seed in range(args.repeats):  # a new seed each time: no resume, a fresh run
            argv = ["train", "--study", args.study, "--cell", cell.id, "--seed", str(seed)]
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, repr(time.time()), *argv],
                cwd=scratch,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(proc.stdout.splitlines()[-1]))
    print(f"{args.study} {cell.id}: job start to first batch, min of {args.repeats} runs")
    for name in runs[0]["phases"]:
        print(f"  {name:<34} {min(r['phases'][name] for r in runs):6.2f} s")
    print(f"  {'total (wall)':<34} {min(r['total'] for r in runs):6.2f} s")
    print(f"  {'total (CPU, user + sys)':<34} {min(r['cpu'] for r in runs):6.2f} s")


if __name__ == "__main__":
    main()
