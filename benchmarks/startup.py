"""Start-up cost of a train job: from `python -m spikeattn train ...` to its first batch.

    python benchmarks/startup.py [--study demo-digits] [--repeats 3]

Builds the study's first cell's frames in a scratch directory (a copy of params.yaml; not
timed) and creates the MLflow store there as Snakemake's onstart does. Then it times the job's
own command line two ways, `--repeats` times each (a new seed each time: a fresh run):

- in a fresh interpreter (`python -m spikeattn` without a job server), phase by phase;
- handed to the fork server the workflow starts (`spikeattn.worker`), from the command's
  start, so the hand-over is included; the server's own imports happen once, before.

In both, `spikeattn.train.fit` is replaced by a stand-in that takes the first training batch,
reports and ends the process, so what is timed is exactly what the job does before training:
interpreter start, imports, params, frames and batches, model build, the MLflow run. Prints
the minimum over the repeats (wall seconds; the machine may be shared) and the CPU time of
the process that ran the job.
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
FIRST_BATCH = r"""
import json, os, resource, sys, time
import spikeattn.train

def first_batch(model, train_batches, *args, **kwargs):
    next(iter(train_batches))
    now = time.time()
    marks.append(("first batch", now))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    phases = {name: end - start for (_, start), (name, end) in zip(marks, marks[1:])}
    print(json.dumps({"phases": phases, "total": now - float(os.environ["STARTUP_T0"]),
                      "cpu": usage.ru_utime + usage.ru_stime}), flush=True)
    os._exit(0)

spikeattn.train.fit = first_batch
"""

# A fresh interpreter: times the job's phases by wrapping the functions it calls.
CHILD = (
    r"""
import os, sys, time
marks = [("interpreter", float(os.environ["STARTUP_T0"]))]
import spikeattn.cli, spikeattn.config, spikeattn.data, spikeattn.train.job  # the job's imports
import timm
marks.append(("interpreter + imports (torch, timm)", time.time()))
"""
    + FIRST_BATCH
    + r"""
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
spikeattn.cli.main(sys.argv[1:])
"""
)

# The fork server, with the same stand-in installed before it forks (children inherit it).
SERVER = (
    r"""
import os, sys, time
marks = []
from spikeattn.worker import server
server.warm_up()
"""
    + FIRST_BATCH
    + r"""
_run_job = server._run_job
def timed_job(request, fds):
    marks[:] = [("hand-over to the server", float(request["env"]["STARTUP_T0"]))]
    _run_job(request, fds)
server._run_job = timed_job
sys.exit(server.main(sys.argv[1:]))
"""
)


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
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
        fresh = _time_jobs(args, cell, scratch, env, 0, [sys.executable, "-c", CHILD])
        served = _with_server(
            scratch,
            env,
            lambda env: _time_jobs(
                args, cell, scratch, env, args.repeats, [sys.executable, "-m", "spikeattn"]
            ),
        )
    print(f"{args.study} {cell.id}: job start to first batch, min of {args.repeats} runs")
    print("fresh interpreter:")
    for name in fresh[0]["phases"]:
        print(f"  {name:<34} {min(r['phases'][name] for r in fresh):6.2f} s")
    for label, runs in (("fresh interpreter", fresh), ("fork server", served)):
        wall, cpu = min(r["total"] for r in runs), min(r["cpu"] for r in runs)
        print(f"{label + ':':<20} total {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    ratio = min(r["total"] for r in fresh) / min(r["total"] for r in served)
    print(f"fork server: {ratio:.1f}x faster to the first batch")


def _time_jobs(args, cell, scratch: Path, env: dict, first_seed: int, command: list) -> list:
    runs = []
    for seed in range(first_seed, first_seed + args.repeats):
        argv = ["train", "--study", args.study, "--cell", cell.id, "--seed", str(seed)]
        proc = subprocess.run(
            [*command, *argv],
            cwd=scratch,
            env={**env, "STARTUP_T0": repr(time.time())},
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        runs.append(json.loads(proc.stdout.splitlines()[-1]))
    return runs


def _with_server(scratch: Path, env: dict, timed):
    """Run `timed(env)` with a fork server listening (started and ready before, not timed)."""
    from spikeattn.worker import ENV_SOCKET

    sock = scratch / "worker.sock"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(sock), "--parent", str(os.getpid())],
        cwd=scratch,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if "ready" not in server.stdout.readline():
            sys.exit("the fork server did not start")
        return timed({**env, ENV_SOCKET: str(sock)})
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
