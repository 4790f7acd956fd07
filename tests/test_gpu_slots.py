"""The GPU slot pool (spikeattn.gpu_slots), on CPU with faked device counts (SPIKEATTN_GPUS).

Most tests run the wrapper as a file, `python -P src/spikeattn/gpu_slots.py`: the module needs
only filelock, while `python -m spikeattn.gpu_slots` first imports the spikeattn package and
with it torch, seconds per process. One test runs the `-m` form the Snakemake rules use.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spikeattn import gpu_slots
from spikeattn.gpu_slots import GPUSlotError, GPUSlotTimeout, pinned, visible_devices

WRAPPER = [sys.executable, "-P", gpu_slots.__file__]

# A job: records the CUDA_VISIBLE_DEVICES it saw and when it ran (CLOCK_MONOTONIC is one
# clock for all processes on Linux), after sleeping argv[2] seconds.
RECORDER = """\
import json, os, sys, time
out, seconds = sys.argv[1], float(sys.argv[2])
start = time.monotonic()
time.sleep(seconds)
end = time.monotonic()
with open(out + ".tmp", "w") as f:
    json.dump({"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": end}, f)
os.replace(out + ".tmp", out)
"""


@pytest.fixture
def recorder(tmp_path) -> Path:
    path = tmp_path / "recorder.py"
    path.write_text(RECORDER)
    return path


def job_env(lock_dir: Path, gpus: str = "2") -> dict[str, str]:
    """This process's environment with a faked GPU count and a private lock dir, and nothing
    that would make the pool look elsewhere (a real CUDA_VISIBLE_DEVICES, Slurm)."""
    env = {key: value for key, value in os.environ.items()
           if key != "CUDA_VISIBLE_DEVICES" and not key.startswith(("SLURM_", "SPIKEATTN_"))}
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


def run_jobs(tmp_path: Path, recorder: Path, jobs: list[tuple[int, int, float]], env) -> list[dict]:
    """Start all (gpus, jobs_per_gpu, seconds) jobs at once, each under the wrapper; their
    records, in job order."""
    out = tmp_path / "records"
    out.mkdir()
    procs = [
        subprocess.Popen([*WRAPPER, "--gpus", str(gpus), "--jobs-per-gpu", str(k), "--",
                          sys.executable, str(recorder), str(out / f"{i}.json"), str(seconds)],
                         env=env, stderr=subprocess.PIPE, text=True)
        for i, (gpus, k, seconds) in enumerate(jobs)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
    return [json.loads((out / f"{i}.json").read_text()) for i in range(len(jobs))]


def by_device(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    devices: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        for device in record["cvd"].split(","):
            devices.setdefault(device, []).append((record["start"], record["end"]))
    return devices


# ---------------------------------------------------------------------------- visible_devices


@pytest.mark.parametrize("value, expected", [
    ("4", ["0", "1", "2", "3"]),
    (" 2 ", ["0", "1"]),
    ("0,2", ["0", "2"]),
    ("3,", ["3"]),
    ("0, 2,2", ["0", "2"]),
    ("GPU-5f1c3e0a", ["GPU-5f1c3e0a"]),
    ("", []),
    ("0", []),
])
def test_spikeattn_gpus_is_a_count_or_a_list(value, expected):
    # it wins over CUDA_VISIBLE_DEVICES: it is how users and tests restrict or fake the pool
    assert visible_devices({"SPIKEATTN_GPUS": value, "CUDA_VISIBLE_DEVICES": "7"}) == expected


def test_spikeattn_gpus_rejects_nonsense():
    with pytest.raises(GPUSlotError, match="SPIKEATTN_GPUS='two'"):
        visible_devices({"SPIKEATTN_GPUS": "two"})


@pytest.mark.parametrize("value, expected", [
    ("1,3", ["1", "3"]),
    ("", []),
    ("-1", []),
    ("0,-1,2", ["0"]),  # CUDA ignores everything from the first invalid entry on
])
def test_cuda_visible_devices(value, expected, tmp_path):
    assert visible_devices({"CUDA_VISIBLE_DEVICES": value, "PATH": str(tmp_path)}) == expected


def fake_nvidia_smi(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)


def test_nvidia_smi_lists_the_devices(tmp_path):
    fake_nvidia_smi(tmp_path / "bin", 'test "$*" = "--query-gpu=index --format=csv,noheader" '
                                      '|| exit 9\nprintf "0\\n1\\n"\n')
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
    with pytest.raises(GPUSlotError, match=r"asks for 3 GPUs but only 2 are visible"):
        with pinned(n_gpus=3, environ=fake("2"), lock_dir=tmp_path):
            pass
    assert time.monotonic() - start < 1
    result = subprocess.run([*WRAPPER, "--gpus", "3", "--", "true"], env=job_env(tmp_path),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "--gpus to at most 2" in result.stderr


def test_cpu_machine_runs_unpinned(tmp_path):
    env = {"PATH": str(tmp_path)}  # no nvidia-smi, no CUDA_VISIBLE_DEVICES
    with pinned(environ=env, lock_dir=tmp_path / "locks") as devices:
        assert devices == []
        assert env == {"PATH": str(tmp_path)}
    assert not (tmp_path / "locks").exists()
    env = fake("2")
    with pinned(n_gpus=0, environ=env, lock_dir=tmp_path / "locks") as devices:  # --gpus 0
        assert devices == [] and env == fake("2")
    cpu = job_env(tmp_path / "locks", gpus="")
    result = subprocess.run(
        [*WRAPPER, "--gpus", "1", "--", sys.executable, "-c",
         "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))"],
        env=cpu, capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout.strip()) == (0, "unset"), result.stderr


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
    with pinned(environ=(first := slurm()), lock_dir=locks) as a, \
            pinned(environ=slurm(), lock_dir=locks) as b:
        assert (a, b, first["CUDA_VISIBLE_DEVICES"]) == (["0"], ["1"], "0")
    assert any((locks / "slurm-42").glob("gpu1.slot0.lock"))
    with pytest.raises(GPUSlotError, match="asks for 3 GPUs"):
        with pinned(n_gpus=3, environ=slurm(), lock_dir=locks):
            pass


# ------------------------------------------------------------------ processes and the wrapper


def test_one_job_per_gpu_across_processes(tmp_path, recorder):
    records = run_jobs(tmp_path, recorder, [(1, 1, 0.5)] * 6, job_env(tmp_path / "locks"))
    assert all(record["cvd"] in ("0", "1") for record in records)
    devices = by_device(records)
    assert set(devices) == {"0", "1"}
    assert all(max_overlap(spans) == 1 for spans in devices.values())
    assert max_overlap([(r["start"], r["end"]) for r in records]) == 2  # both GPUs at once


def test_two_jobs_per_gpu_across_processes(tmp_path, recorder):
    records = run_jobs(tmp_path, recorder, [(1, 2, 0.8)] * 7, job_env(tmp_path / "locks"))
    assert all(record["cvd"] in ("0", "1") for record in records)
    overlaps = {device: max_overlap(spans) for device, spans in by_device(records).items()}
    assert set(overlaps) == {"0", "1"}
    assert max(overlaps.values()) == 2, overlaps  # packed, but never more than 2 on a GPU


def test_jobs_starting_together_spread_over_the_gpus(tmp_path, recorder):
    # Room for 4 per GPU, but each job joins the least-loaded GPU, and the choice is made
    # under the pool lock: 4 jobs can never put 3 on one GPU (that needs 2 on the other).
    records = run_jobs(tmp_path, recorder, [(1, 4, 1.0)] * 4, job_env(tmp_path / "locks"))
    overlaps = {device: max_overlap(spans) for device, spans in by_device(records).items()}
    assert set(overlaps) == {"0", "1"} and max(overlaps.values()) <= 2, overlaps


def test_multi_gpu_job_excludes_others_across_processes(tmp_path, recorder):
    jobs = [(2, 2, 0.8)] + [(1, 2, 0.4)] * 4
    records = run_jobs(tmp_path, recorder, jobs, job_env(tmp_path / "locks"))
    ddp, singles = records[0], records[1:]
    assert ddp["cvd"] == "0,1"
    assert all(record["cvd"] in ("0", "1") for record in singles)
    for single in singles:
        assert single["end"] <= ddp["start"] or single["start"] >= ddp["end"], (ddp, single)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except (FileNotFoundError, IndexError):
        return False


def wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigkilled_holder_frees_its_slot_and_takes_its_job_along(tmp_path):
    locks = tmp_path / "locks"
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    wrapper = subprocess.Popen([*WRAPPER, "--gpus", "1", "--", sys.executable, "-c", child],
                               env=job_env(locks, gpus="1"))
    try:
        wait_for(pid_file)
        child_pid = int(pid_file.read_text())
        with pytest.raises(GPUSlotTimeout):  # the wrapper holds GPU 0
            with pinned(environ=fake("1"), lock_dir=locks, timeout=0.3):
                pass
        wrapper.kill()
        wrapper.wait(timeout=10)
        with pinned(environ=fake("1"), lock_dir=locks, timeout=10) as devices:
            assert devices == ["0"]
        deadline = time.monotonic() + 10
        while alive(child_pid):  # the job must not stay on a GPU whose slot is free
            assert time.monotonic() < deadline, "the wrapper's child outlived it"
            time.sleep(0.05)
    finally:
        wrapper.kill()


@pytest.mark.parametrize("signum, handler, code", [
    (signal.SIGTERM, "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))", 3),
    (signal.SIGINT, "", 130),  # the job below turns KeyboardInterrupt into status 130
])
def test_signals_reach_the_job_and_its_status_comes_back(tmp_path, signum, handler, code):
    ready = tmp_path / "ready"
    child = (f"import signal, sys, time\n{handler}\n"
             f"open({str(ready)!r}, 'w').close()\n"
             "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    sys.exit(130)\n")
    # its own session: no terminal, so a SIGINT is forwarded rather than left to the tty
    wrapper = subprocess.Popen([*WRAPPER, "--gpus", "1", "--", sys.executable, "-c", child],
                               env=job_env(tmp_path / "locks"), start_new_session=True)
    try:
        wait_for(ready)
        wrapper.send_signal(signum)
        assert wrapper.wait(timeout=20) == code
    finally:
        wrapper.kill()


def test_exit_status_of_the_job_is_the_wrappers(tmp_path):
    env = job_env(tmp_path / "locks")
    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    for command, code in [(["-c", "raise SystemExit(7)"], 7), (["-c", kill_self], 128 + 9)]:
        result = subprocess.run([*WRAPPER, "--", sys.executable, *command], env=env, timeout=30)
        assert result.returncode == code


def test_module_entry_point_from_another_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "spikeattn.gpu_slots", "--gpus", "1", "--jobs-per-gpu", "2", "--",
         sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"],
        env=job_env(tmp_path / "locks", gpus="3,"), cwd=tmp_path, capture_output=True,
        text=True, timeout=120)
    assert (result.returncode, result.stdout.strip()) == (0, "3"), result.stderr


# --------------------------------------------------------------------------------- Snakemake

SNAKEFILE = """\
rule all:
    input: expand("records/{i}.json", i=range(6))

rule job:
    output: "records/{i}.json"
    resources: gpu=1
    shell: "@WRAPPER@ --gpus {resources.gpu} --jobs-per-gpu @K@ -- @PYTHON@ @RECORDER@ {output} 1.0"
"""


@pytest.mark.parametrize("k", [1, 2])
def test_snakemake_runs_one_job_per_gpu_slot(tmp_path, recorder, k):
    """`--resources gpu=` counts slots (GPUs x jobs per GPU); the wrapper picks which GPU."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(SNAKEFILE.replace("@WRAPPER@", shlex.join(WRAPPER))
                         .replace("@K@", str(k)).replace("@PYTHON@", shlex.quote(sys.executable))
                         .replace("@RECORDER@", shlex.quote(str(recorder))))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory",
         str(tmp_path), "--cores", "6", "--resources", f"gpu={2 * k}"],
        env=job_env(tmp_path / "locks", gpus="2"), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(path.read_text()) for path in (tmp_path / "records").glob("*.json")]
    assert len(records) == 6
    assert all(record["cvd"] in ("0", "1") for record in records)
    overlaps = {device: max_overlap(spans) for device, spans in by_device(records).items()}
    assert set(overlaps) == {"0", "1"}  # both GPUs used,
    assert max(overlaps.values()) == k, overlaps  # never more than k jobs on one (k reached)
    assert max_overlap([(r["start"], r["end"]) for r in records]) >= 2  # really in parallel
