"""A throwaway single-node Slurm cluster on this machine, for the `slurm` tests.

Debian's slurm-wlm and munge (installed with apt-get when missing) run one controller
(slurmctld) and one compute node (slurmd) on this host (`hostname -s`), with the node's CPUs
from `nproc`, its memory from /proc/meminfo and `gpus` fake GPUs: gres.conf lists empty files
as the node's `gpu` devices (slurmd logs that they are not devices and sets no
CUDA_VISIBLE_DEVICES), so jobs really request and get `--gpus` from Slurm, while the programs
in them find no CUDA device and run on the CPU.

Everything the daemons write lives in a fresh temporary directory, and munged runs on a
private socket with its own key, so the test neither needs nor touches /etc/munge. Two files
do go to /etc/slurm: slurm.conf and gres.conf, because the plugin's job step (`srun` inside
each job) drops SLURM_CONF from its environment and so reads the default path. They carry a
marker line; a slurm.conf without it (a real cluster's) is never replaced. `stop()` cancels
the jobs, stops the three daemons, removes both files and the temporary directory.

Job states: there is no slurmdbd (it needs a MariaDB server), so `sacct` has no database. The
controller instead keeps every finished job for `MinJobAge` (an hour here), which is what the
plugin's `--slurm-status-command squeue` reads, and jobcomp/filetxt appends one line per
finished job to a file (`finished_jobs()`), which the test uses to check what went through
Slurm.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MARKER = "# written by tests/workflow/slurm_cluster.py"
CONF_DIR = Path("/etc/slurm")
# pid files of the daemons of the current (or an interrupted earlier) test cluster
RUN_DIR = Path("/run/spikeattn-test-slurm")
PACKAGES = ("slurm-wlm", "munge")
PROGRAMS = (
    "slurmctld",
    "slurmd",
    "sbatch",
    "srun",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
    "munged",
    "mungekey",
    "munge",
    "unmunge",
)
PORTS = (6817, 6818)  # Slurm's defaults: slurmctld, slurmd
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class Unavailable(Exception):
    """This machine cannot host the test cluster (no root, no apt-get, a real Slurm here)."""


class ClusterError(RuntimeError):
    """The cluster was set up but did not behave; the message holds the daemons' log tails."""


def which(program: str) -> str | None:
    return shutil.which(program, path=SEARCH_PATH)


def short_hostname() -> str:
    return subprocess.run(
        ["hostname", "-s"], capture_output=True, text=True, check=True
    ).stdout.strip()


def node_cpus() -> int:
    return int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)


def node_memory_mb() -> int:
    """MemTotal from /proc/meminfo in MiB, less 5 % so slurmd never finds less than that."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.95)
    raise ClusterError("no MemTotal in /proc/meminfo")


def _run(cmd: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def ensure_installed(log=print) -> None:
    """Install Debian's slurm-wlm and munge when a program of theirs is missing.

    Services are not started by the install (a temporary policy-rc.d says no where the
    machine has none), so no system munged or slurmd is left behind."""
    missing = [p for p in PROGRAMS if which(p) is None]
    if not missing:
        return
    what = f"Slurm/munge programs missing ({', '.join(missing)})"
    if os.geteuid() != 0:
        raise Unavailable(f"{what}, and installing {' and '.join(PACKAGES)} needs root")
    if which("apt-get") is None:
        raise Unavailable(f"{what}, and there is no apt-get to install {' and '.join(PACKAGES)}")
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if own_policy:
            policy.write_text(
                "#!/bin/sh\n# no service starts while the slurm test installs\nexit 101\n"
            )
            policy.chmod(0o755)
        log(f"installing {' '.join(PACKAGES)} with apt-get")
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        ):
            try:
                proc = _run(cmd, timeout=900, env=env)
            except subprocess.TimeoutExpired:
                raise Unavailable(f"`{' '.join(cmd)}` took more than 15 minutes") from None
            if proc.returncode != 0:
                raise Unavailable(
                    f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
                )
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)
    still = [p for p in PROGRAMS if which(p) is None]
    if still:
        raise ClusterError(
            f"after installing {' '.join(PACKAGES)}, still missing: {', '.join(still)}"
        )


def _tail(path: Path, lines: int = 30) -> str:
    if not path.is_file():
        return f"--- {path}: (not written)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last {len(text)} lines of {path}:\n" + "\n".join(text)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return True
    return False


def _stop_pid(pid: int, names: tuple[str, ...], timeout: float = 15) -> None:
    """SIGTERM (then SIGKILL) process `pid` if it still runs one of `names`."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return
    if comm not in names:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


def stop_leftovers() -> None:
    """Stop the daemons of an earlier test cluster that was killed before its teardown (their
    pid files are in RUN_DIR) and remove its configuration files."""
    if RUN_DIR.is_dir():
        for pidfile in RUN_DIR.glob("*.pid"):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = 0
            if pid > 0:
                _stop_pid(pid, ("slurmctld", "slurmd", "munged"))
            pidfile.unlink(missing_ok=True)
    for name in ("slurm.conf", "gres.conf"):
        path = CONF_DIR / name
        if path.is_file() and path.read_text(errors="replace").startswith(MARKER):
            path.unlink()


class SlurmCluster:
    """`with SlurmCluster() as cluster:` a running one-node cluster; or `start()`/`stop()`."""

    def __init__(self, gpus: int = 2, min_job_age_s: int = 3600, log=print):
        self.gpus = gpus
        self.min_job_age_s = min_job_age_s
        self.log = log
        self.node = short_hostname()
        self.cpus = node_cpus()
        self.mem_mb = node_memory_mb()
        self.root: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}

    # -- paths inside the temporary directory --------------------------------------------
    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def jobcomp(self) -> Path:
        return self.logs / "jobcomp.txt"

    @property
    def gpu_files(self) -> list[Path]:
        return [self.root / "dev" / f"fakegpu{i}" for i in range(self.gpus)]

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    # -- setup -----------------------------------------------------------------------------
    def check_machine(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("the test cluster's slurmd must run as root (it starts jobs)")
        ensure_installed(self.log)
        conf = os.environ.get("SLURM_CONF")
        if conf and Path(conf) != CONF_DIR / "slurm.conf":
            raise Unavailable(
                f"SLURM_CONF={conf} would send the test's jobs to another Slurm; unset it"
            )
        for name in ("slurm.conf", "gres.conf"):
            path = CONF_DIR / name
            if path.is_file() and not path.read_text(errors="replace").startswith(MARKER):
                raise Unavailable(
                    f"{path} exists and was not written by this test: this machine "
                    "has a Slurm configuration of its own, which the test will not replace"
                )
        stop_leftovers()
        busy = [p for p in PORTS if _port_in_use(p)]
        if busy:
            raise ClusterError(
                f"TCP port(s) {busy} (slurmctld/slurmd) are already in use on this "
                "machine; is another Slurm running? (`ss -ltnp`)"
            )

    def slurm_conf(self) -> str:
        r = self.root
        return f"""{MARKER}: a throwaway one-node test cluster; removed when the test ends.
ClusterName=spikeattn-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={RUN_DIR}/slurmctld.pid
SlurmdPidFile={RUN_DIR}/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: works in containers and sandboxes
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd: finished jobs stay in the controller (squeue --states=all) for MinJobAge,
# and each one is appended to JobCompLoc
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
MinJobAge={self.min_job_age_s}
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName=main Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""

    def gres_conf(self) -> str:
        files = ",".join(str(f) for f in self.gpu_files)
        return (
            f"{MARKER}: {self.gpus} fake GPUs (empty files stand for the devices)\n"
            f"AutoDetect=off\nNodeName={self.node} Name=gpu File={files}\n"
        )

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.logs / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root
        )
        out.close()
        (RUN_DIR / f"{name}.pid").write_text(f"{self.procs[name].pid}\n")

    def _died(self) -> str | None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return f"{name} exited with code {proc.returncode}"
        return None

    def diagnostics(self) -> str:
        """The daemons' log tails (for error messages)."""
        if self.root is None:
            return ""
        parts = []
        for daemon in ("slurmctld", "slurmd", "munged"):
            # the daemons' own log, or what they printed before they had one
            log = self.logs / f"{daemon}.log"
            parts.append(_tail(log if log.is_file() else self.logs / f"{daemon}.out"))
        return "\n".join(parts)

    def _fail(self, what: str) -> ClusterError:
        return ClusterError(f"{what}\n{self.diagnostics()}")

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            died = self._died()
            if died:
                raise self._fail(
                    f"the test Slurm cluster did not come up: {died} while waiting for {what}"
                )
            time.sleep(0.5)
        raise self._fail(f"the test Slurm cluster did not come up: no {what} after {timeout:.0f} s")

    def start(self) -> "SlurmCluster":
        self.check_machine()
        self.root = Path(tempfile.mkdtemp(prefix="spikeattn-slurm-"))
        self.root.chmod(0o755)  # munged wants every directory above its socket searchable
        for sub in ("state", "spool", "log", "munge", "dev"):
            (self.root / sub).mkdir(mode=0o755)
        for path in self.gpu_files:
            path.touch()
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        try:
            self._start_daemons()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_daemons(self) -> None:
        munge_dir = self.root / "munge"
        key = munge_dir / "munge.key"
        proc = _run([which("mungekey"), "--create", f"--keyfile={key}"])
        if proc.returncode != 0:
            raise ClusterError(f"mungekey --create failed: {proc.stderr}")
        self._spawn(
            "munged",
            [
                which("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={munge_dir}/munged.pid",
                f"--log-file={self.logs}/munged.log",
                f"--seed-file={munge_dir}/munged.seed",
            ],
        )
        self._wait("munge socket", self.munge_socket.exists, 20)
        cred = _run([which("munge"), "-n", f"--socket={self.munge_socket}"])
        check = _run([which("unmunge"), f"--socket={self.munge_socket}"], input=cred.stdout)
        if check.returncode != 0:
            raise self._fail(f"munge credential round trip failed: {cred.stderr}{check.stderr}")

        CONF_DIR.mkdir(parents=True, exist_ok=True)
        (CONF_DIR / "slurm.conf").write_text(self.slurm_conf())
        (CONF_DIR / "gres.conf").write_text(self.gres_conf())
        self._spawn(
            "slurmctld", [which("slurmctld"), "-D", "-c", "-f", str(CONF_DIR / "slurm.conf")]
        )
        self._wait(
            "answer from slurmctld (`scontrol ping`)",
            lambda: "UP" in _run([which("scontrol"), "ping"], timeout=20).stdout,
            60,
        )
        self._spawn(
            "slurmd", [which("slurmd"), "-D", "-N", self.node, "-f", str(CONF_DIR / "slurm.conf")]
        )
        self._wait(f"idle node {self.node} in sinfo", lambda: self.node_state() == "idle", 90)
        self.log(
            f"Slurm test cluster up: node {self.node}, {self.cpus} CPUs, {self.mem_mb} MB, "
            f"{self.gpus} fake GPUs; files in {self.root}"
        )

    def node_state(self) -> str:
        proc = _run([which("sinfo"), "--noheader", "--Node", "--format=%t"], timeout=20)
        state = proc.stdout.strip()
        if state.startswith(("drain", "down", "inval", "fail")):
            reason = _run([which("sinfo"), "-R"], timeout=20).stdout
            raise self._fail(f"node {self.node} is '{state}' instead of idle:\n{reason}")
        return state

    # -- what ran ---------------------------------------------------------------------------
    def finished_jobs(self) -> list[dict[str, str]]:
        """One dict per finished job (jobcomp/filetxt's KEY=VALUE fields: JobId, Name,
        JobState, Partition, ...)."""
        if not self.jobcomp.is_file():
            return []
        jobs = []
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if fields:
                jobs.append(fields)
        return jobs

    def job_details(self, job_id: str) -> dict[str, str]:
        """`scontrol --details show job` (kept by the controller for MinJobAge after the job
        ended): JobState, Comment, TresPerJob (what was asked, e.g. gres:gpu:1), JOB_GRES
        (what was allocated, e.g. gpu:1), ..."""
        proc = _run(
            [which("scontrol"), "--details", "--oneliner", "show", "job", job_id], timeout=20
        )
        if proc.returncode != 0:
            raise ClusterError(f"scontrol show job {job_id} failed: {proc.stderr}")
        return dict(part.split("=", 1) for part in proc.stdout.split() if "=" in part)

    # -- teardown ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel every job, stop the daemons, remove the config files and the temporary
        directory. Safe to call twice and after a failed start."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                _run([which("scancel"), "--full", f"--user={os.getuid()}"], timeout=20)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    running = _run(
                        [which("squeue"), "--noheader", "--states=PD,R,CG,CF,S"], timeout=20
                    ).stdout.strip()
                    if not running:
                        break
                    time.sleep(1)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            (RUN_DIR / f"{name}.pid").unlink(missing_ok=True)
        for name in ("slurm.conf", "gres.conf"):
            path = CONF_DIR / name
            if path.is_file() and path.read_text(errors="replace").startswith(MARKER):
                path.unlink()
        if RUN_DIR.is_dir() and not any(RUN_DIR.iterdir()):
            RUN_DIR.rmdir()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
