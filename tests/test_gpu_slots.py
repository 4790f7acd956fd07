"""The GPU slot pool (spikeattn.gpu_slots), on CPU with faked device counts (SPIKEATTN_GPUS).

The process tests start real jobs that lease in process, as `spikeattn train` and `energy` do
(`with pinned(...)`), and record the interval each one held its lease: no GPU may ever have more
holders at one instant than the jobs on it agreed to share it with. The jobs load gpu_slots.py
by file (it needs only filelock), since `import spikeattn.gpu_slots` first imports the spikeattn
package, seconds per process.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spikeattn import gpu_slots
from spikeattn.gpu_slots import GPUSlotError, GPUSlotTimeout, pinned, visible_devices

# A job: leases its GPUs in process, records the CUDA_VISIBLE_DEVICES it got and the interval
# it held the lease (CLOCK_MONOTONIC is one clock for all processes on Linux), holding it for
# `seconds`. With --broken, its pool never sees a held slot (nor the pool lock): the lease a
# correct checker must catch.
JOB = """\
import argparse, importlib.util, json, os, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("seconds", type=float)
parser.add_argument("--gpus", type=int, default=1)
parser.add_argument("--jobs-per-gpu", type=int, default=1)
parser.add_argument("--ready", help="a file to create once the lease is held")
parser.add_argument("--broken", action="store_true")
args = parser.parse_args()
spec = importlib.util.spec_from_file_location("gpu_slots", @GPU_SLOTS@)
gpu_slots = sys.modules["gpu_slots"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_slots)
if args.broken:
    gpu_slots._Pool._try = lambda self, lock, timeout=0: True
with gpu_slots.pinned(args.gpus, args.jobs_per_gpu) as devices:
    start = time.monotonic()
    if args.ready:
        open(args.ready, "w").close()
    time.sleep(args.seconds)
    end = time.monotonic()
    record = {"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "devices": devices,
              "start": start, "end": end}
with open(args.out + ".tmp", "w") as f:
    json.dump(record, f)
os.replace(args.out + ".tmp", args.out)
"""


@pytest.fixture
def job(tmp_path) -> list[str]:
    """The command that runs one leasing job (arguments: out seconds [--gpus N] ...)."""
    path = tmp_path / "job.py"
    path.write_text(JOB.replace("@GPU_SLOTS@", repr(gpu_slots.__file__)))
    return [sys.executable, "-P", str(path)]


def job_env(lock_dir: Path, gpus: str = "2") -> dict[str, str]:
    """This process's environment with a faked GPU count and a private lock dir, and nothing
    that would make the pool look elsewhere (a real CUDA_VISIBLE_DEVICES, Slurm)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "CUDA_VISIBLE_DEVICES" and not key.startswith(("SLURM_", "SPIKEATTN_"))
    }
    env.update(SPIKEATTN_GPUS=gpus, SPIKEATTN_GPU_LOCK_DIR=str(lock_dir))
    return env


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals running at one instant (one ending as another starts do not overlap)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run_jobs(
    tmp_path: Path, job: list[str], jobs: list[tuple[int, int, float]], env, *extra: str
) -> list[dict]:
    """Start all (gpus, jobs_per_gpu, seconds) jobs at once; their records, in job order."""
    out = tmp_path / "records"
    out.mkdir()
    procs = [
        subprocess.Popen(
            [
                *job,
                str(out / f"{i}.json"),
                str(seconds),
                "--gpus",
                str(gpus),
                "--jobs-per-gpu",
                str(k),
                *extra,
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, (gpus, k, seconds) in enumerate(jobs)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
    return [json.loads((out / f"{i}.json").read_text()) for i in range(len(jobs))]


def by_device(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Per device, the lease intervals of the jobs that held it."""
    devices: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        for device in record["cvd"].split(","):
            devices.setdefault(device, []).append((record["start"], record["end"]))
    return devices


def assert_gpus_never_shared_beyond(records: list[dict], k: int) -> None:
    """No GPU held by more than `k` jobs at one instant; with k = 1, no two overlapping lease
    intervals on one GPU. Names the jobs that broke it."""
    for device, spans in by_device(records).items():
        if max_overlap(spans) <= k:
            continue
        clashes = [
            (i, j)
            for i, a in enumerate(records)
            for j, b in enumerate(records)
            if i < j
            and device in a["cvd"].split(",")
            and device in b["cvd"].split(",")
            and a["start"] < b["end"]
            and b["start"] < a["end"]
        ]
        raise AssertionError(
            f"GPU {device} had {max_overlap(spans)} holders at once (at most "
            f"{k} allowed); overlapping leases of jobs {clashes}"
        )


# ---------------------------------------------------------------------------- visible_devices


@pytest.mark.parametrize(
    "value, expected",
    [
        ("4", ["0", "1", "2", "3"]),
        (" 2 ", ["0", "1"]),
        ("0,2", ["0", "2"]),
        ("3,", ["3"]),
        ("0, 2,2", ["0", "2"]),
        ("GPU-5f1c3e0a", ["GPU-5f1c3e0a"]),
        ("", []),
        ("0", []),
    ],
)
def test_spikeattn_gpus_is_a_count_or_a_list(value, expected):
    # it wins over CUDA_VISIBLE_DEVICES: it is how users and tests restrict or fake the pool
    assert visible_devices({"SPIKEATTN_GPUS": value, "CUDA_VISIBLE_DEVICES": "7"}) == expected


def test_spikeattn_gpus_rejects_nonsense():
    with pytest.raises(GPUSlotError, match="SPIKEATTN_GPUS='two'"):
        visible_devices({"SPIKEATTN_GPUS": "two"})


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1,3", ["1", "3"]),
        ("", []),
        ("-1", []),
        ("0,-1,2", ["0"]),  # CUDA ignores everything from the first invalid entry on
    ],
)
def test_cuda_visible_devices(value, expected, tmp_path):
    assert visible_devices({"CUDA_VISIBLE_DEVICES": value, "PATH": str(tmp_path)}) == expected


def fake_nvidia_smi(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)


def test_nvidia_smi_lists_the_devices(tmp_path):
    fake_nvidia_smi(
        tmp_path / "bin",
        'test "$*" = "--query-gpu=index --format=csv,noheader" || exit 9\nprintf "0\\n1\\n"\n',
    )
    assert visible_devices({"PATH": str(tmp_path / "bin")}) == ["0", "1"]


def test_failing_nvidia_smi_means_no_devices(tmp_path):
    fake_nvidia_smi(tmp_path / "bin", 'echo "NVIDIA-SMI has failed" ; exit 9\n')
    assert visible_devices({"PATH": str(tmp_path / "bin")}) == []


def test_no_nvidia_smi_means_no_devices(tmp_path, monkeypatch):
    assert visible_devices({"PATH": str(tmp_path)}) == []
    # and whatever the real machine has: which() finding nothing means no devices
    monkeypatch.setattr(gpu_slots.shutil, "which", lambda *args, **kwargs: None)
    assert visible_devices({}) == []


# ----------------------------------------------------------------------- pinned, in process


def fake(gpus: str = "2", **extra: str) -> dict[str, str]:
    return {"SPIKEATTN_GPUS": gpus, **extra}


def test_pinned_sets_and_restores_cuda_visible_devices(tmp_path):
    env = fake(CUDA_VISIBLE_DEVICES="before")
    with pinned(environ=env, lock_dir=tmp_path) as devices:
        assert devices == ["0"]
        assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env == fake(CUDA_VISIBLE_DEVICES="before")
    env = fake()
    with pinned(n_gpus=2, environ=env, lock_dir=tmp_path) as devices:
        assert devices == ["0", "1"]
        assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env == fake()
    with pinned(environ=env, lock_dir=tmp_path) as devices:  # the lease was released
        assert devices == ["0"]


def test_packing_prefers_the_least_loaded_gpu(tmp_path):
    def take():
        return pinned(jobs_per_gpu=2, environ=fake(), lock_dir=tmp_path, timeout=0.3)

    with take() as a, take() as b, take() as c:
        # the second job goes to the idle GPU although GPU 0 still has room
        assert (a, b, c) == (["0"], ["1"], ["0"])
        with take() as d:
            assert d == ["1"]
            with pytest.raises(GPUSlotTimeout, match="no GPU slot free"):
                with take():
                    pass
        with take() as e:  # d's slot is free again
            assert e == ["1"]


def test_waiting_is_logged_once_and_the_timeout_says_who_is_in_the_way(tmp_path, capfd):
    with pinned(environ=fake("1"), lock_dir=tmp_path, command="python train.py --seed 1"):
        start = time.monotonic()
        with pytest.raises(GPUSlotTimeout) as error:
            with pinned(environ=fake("1"), lock_dir=tmp_path, timeout=0.6, poll_interval=0.05):
                pass
        assert 0.6 <= time.monotonic() - start < 5
    message = str(error.value)
    assert f"pid {os.getpid()}" in message and "python train.py --seed 1" in message
    assert str(tmp_path) in message
    assert capfd.readouterr().err.count("waiting for a GPU slot") == 1


def test_multi_gpu_job_takes_whole_gpus(tmp_path):
    def single():
        return pinned(jobs_per_gpu=2, environ=fake("3"), lock_dir=tmp_path, timeout=0.3)

    with single() as a:
        assert a == ["0"]
        with pinned(n_gpus=2, environ=fake("3"), lock_dir=tmp_path, timeout=0.3) as ddp:
            assert ddp == ["1", "2"]  # skips the busy GPU
            with single() as b:
                assert b == ["0"]  # the only GPU with room: GPU 1 and 2 belong to the DDP job
                with pytest.raises(GPUSlotTimeout):
                    with single():
                        pass
        with single() as c:
            assert c == ["1"]
    with single():  # one job on GPU 0 of two: no two whole GPUs are free
        with pytest.raises(GPUSlotTimeout):
            with pinned(n_gpus=2, environ=fake("2"), lock_dir=tmp_path, timeout=0.3):
                pass


@pytest.mark.parametrize("first, second", [(1, 2), (2, 1)])
def test_jobs_with_different_packing_do_not_share_against_ones_wish(tmp_path, first, second):
    with pinned(jobs_per_gpu=first, environ=fake("1"), lock_dir=tmp_path):
        with pytest.raises(GPUSlotTimeout):
            with pinned(jobs_per_gpu=second, environ=fake("1"), lock_dir=tmp_path, timeout=0.3):
                pass


def test_asking_for_more_gpus_than_exist_fails_at_once(tmp_path):
    start = time.monotonic()
    with pytest.raises(GPUSlotError, match=r"asks for 3 GPUs but only 2 are visible") as error:
        with pinned(n_gpus=3, environ=fake("2"), lock_dir=tmp_path):
            pass
    assert time.monotonic() - start < 1
    assert "distributed.nproc_per_node in params.yaml to at most 2" in str(error.value)  # the fix


def test_cpu_machine_runs_unpinned(tmp_path):
    env = {"PATH": str(tmp_path)}  # no nvidia-smi, no CUDA_VISIBLE_DEVICES
    with pinned(environ=env, lock_dir=tmp_path / "locks") as devices:
        assert devices == []
        assert env == {"PATH": str(tmp_path)}
    assert not (tmp_path / "locks").exists()
    env = fake("2")
    with pinned(n_gpus=0, environ=env, lock_dir=tmp_path / "locks") as devices:  # --gpus 0
        assert devices == [] and env == fake("2")


def test_slurm_job_is_already_pinned(tmp_path):
    locks = tmp_path / "locks"

    def slurm():
        return {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "0,1", "PATH": str(tmp_path)}

    env = slurm()
    with pinned(n_gpus=2, environ=env, lock_dir=locks) as devices:
        assert devices == ["0", "1"] and env == slurm()
    assert not locks.exists()  # no locking at all
    # a whole Snakemake run inside a 2-GPU allocation: its one-GPU jobs still get one GPU
    # each, from a pool private to the allocation (Slurm numbers every allocation's GPUs from 0)
    with (
        pinned(environ=(first := slurm()), lock_dir=locks) as a,
        pinned(environ=slurm(), lock_dir=locks) as b,
    ):
        assert (a, b, first["CUDA_VISIBLE_DEVICES"]) == (["0"], ["1"], "0")
    assert any((locks / "slurm-42").glob("gpu1.slot0.lock"))
    with pytest.raises(GPUSlotError, match="asks for 3 GPUs"):
        with pinned(n_gpus=3, environ=slurm(), lock_dir=locks):
            pass


# ---------------------------------------------------------------- the checker, then processes


def lease(cvd: str, start: float, end: float) -> dict:
    return {"cvd": cvd, "start": start, "end": end}


def test_the_checker_catches_two_jobs_on_one_gpu_at_once():
    # written out: jobs 0 and 2 hold GPU 0 during [1.5, 2]; job 1 is on GPU 1
    clash = [lease("0", 0.0, 2.0), lease("1", 0.0, 2.0), lease("0", 1.5, 3.0)]
    with pytest.raises(AssertionError, match=r"GPU 0 had 2 holders at once .*jobs \[\(0, 2\)\]"):
        assert_gpus_never_shared_beyond(clash, k=1)
    assert_gpus_never_shared_beyond(clash, k=2)  # two agreed to share it
    # one lease ending as the next starts is a hand-over, not sharing; a DDP job holds both
    assert_gpus_never_shared_beyond(
        [lease("0", 0.0, 1.0), lease("0", 1.0, 2.0), lease("0,1", 2.0, 3.0), lease("1", 0.5, 2.0)],
        k=1,
    )
    with pytest.raises(AssertionError, match="GPU 1 had 2 holders"):
        assert_gpus_never_shared_beyond([lease("0,1", 2.0, 3.0), lease("1", 0.5, 2.5)], k=1)


def test_the_checker_catches_a_broken_lease(tmp_path, job):
    """The same jobs as below with a pool that never sees a held slot: all land on GPU 0 at
    once, and the check that guards the real pool fails."""
    records = run_jobs(tmp_path, job, [(1, 1, 1.0)] * 3, job_env(tmp_path / "locks"), "--broken")
    assert [record["cvd"] for record in records] == ["0", "0", "0"]
    # all 3 at once, or 2 where a very busy machine started one job late
    with pytest.raises(AssertionError, match="GPU 0 had [23] holders at once"):
        assert_gpus_never_shared_beyond(records, k=1)


def test_one_job_per_gpu_across_processes(tmp_path, job):
    records = run_jobs(tmp_path, job, [(1, 1, 0.5)] * 6, job_env(tmp_path / "locks"))
    assert all(record["cvd"] in ("0", "1") for record in records)
    assert all(record["devices"] == [record["cvd"]] for record in records)
    assert set(by_device(records)) == {"0", "1"}
    assert_gpus_never_shared_beyond(records, k=1)
    assert max_overlap([(r["start"], r["end"]) for r in records]) == 2  # both GPUs at once


def test_two_jobs_per_gpu_across_processes(tmp_path, job):
    records = run_jobs(tmp_path, job, [(1, 2, 0.8)] * 7, job_env(tmp_path / "locks"))
    assert all(record["cvd"] in ("0", "1") for record in records)
    overlaps = {device: max_overlap(spans) for device, spans in by_device(records).items()}
    assert set(overlaps) == {"0", "1"}
    assert_gpus_never_shared_beyond(records, k=2)
    assert max(overlaps.values()) == 2, overlaps  # packed: some GPU had 2 at once


def test_jobs_starting_together_spread_over_the_gpus(tmp_path, job):
    # Room for 4 per GPU, but each job joins the least-loaded GPU, and the choice is made
    # under the pool lock: 4 jobs can never put 3 on one GPU (that needs 2 on the other).
    records = run_jobs(tmp_path, job, [(1, 4, 1.0)] * 4, job_env(tmp_path / "locks"))
    assert set(by_device(records)) == {"0", "1"}
    assert_gpus_never_shared_beyond(records, k=2)


def test_multi_gpu_job_excludes_others_across_processes(tmp_path, job):
    jobs = [(2, 2, 0.8)] + [(1, 2, 0.4)] * 4
    records = run_jobs(tmp_path, job, jobs, job_env(tmp_path / "locks"))
    ddp, singles = records[0], records[1:]
    assert ddp["cvd"] == "0,1"
    assert all(record["cvd"] in ("0", "1") for record in singles)
    for single in singles:
        assert single["end"] <= ddp["start"] or single["start"] >= ddp["end"], (ddp, single)


def test_cpu_job_runs_unpinned(tmp_path, job):
    records = run_jobs(tmp_path, job, [(1, 1, 0.0)], job_env(tmp_path / "locks", gpus=""))
    assert (records[0]["cvd"], records[0]["devices"]) == (None, [])
    assert not (tmp_path / "locks").exists()


def wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigkilled_holder_frees_its_slot(tmp_path, job):
    locks = tmp_path / "locks"
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [*job, str(tmp_path / "never.json"), "60", "--ready", str(ready)],
        env=job_env(locks, gpus="1"),
    )
    try:
        wait_for(ready)
        with pytest.raises(GPUSlotTimeout):  # the holder has GPU 0
            with pinned(environ=fake("1"), lock_dir=locks, timeout=0.3):
                pass
        holder.kill()
        holder.wait(timeout=10)
        with pinned(environ=fake("1"), lock_dir=locks, timeout=10) as devices:
            assert devices == ["0"]
    finally:
        holder.kill()


# --------------------------------------------------------------------------------- Snakemake

SNAKEFILE = """\
rule all:
    input: expand("records/{i}.json", i=range(6))

rule job:
    output: "records/{i}.json"
    resources: gpu=1
    shell: "@JOB@ {output} 1.0 --gpus {resources.gpu} --jobs-per-gpu @K@"
"""


@pytest.mark.parametrize("k", [1, 2])
def test_snakemake_runs_one_job_per_gpu_slot(tmp_path, job, k):
    """`--resources gpu=` counts slots (GPUs x jobs per GPU); each job's lease picks its GPU."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(SNAKEFILE.replace("@JOB@", shlex.join(job)).replace("@K@", str(k)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(snakefile),
            "--directory",
            str(tmp_path),
            "--cores",
            "6",
            "--resources",
            f"gpu={2 * k}",
        ],
        env=job_env(tmp_path / "locks", gpus="2"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(path.read_text()) for path in (tmp_path / "records").glob("*.json")]
    assert len(records) == 6
    assert all(record["cvd"] in ("0", "1") for record in records)
    overlaps = {device: max_overlap(spans) for device, spans in by_device(records).items()}
    assert set(overlaps) == {"0", "1"}  # both GPUs used,
    assert_gpus_never_shared_beyond(records, k)  # never more than k jobs on one
    assert max(overlaps.values()) == k, overlaps  # (k reached)
    assert max_overlap([(r["start"], r["end"]) for r in records]) >= 2  # really in parallel
