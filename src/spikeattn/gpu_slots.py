"""Pin each GPU job to its own GPU(s) by leasing slots from a pool of lock files.

Why: `snakemake --resources gpu=N` only *counts* GPUs; it never tells a job which one to use
and does not set CUDA_VISIBLE_DEVICES, so N concurrent training jobs would all start on GPU 0.
So every `spikeattn train` and `spikeattn energy` job leases its GPU(s) in process: the CLI
(cli.py, `_pinned`) wraps the stage in

    with pinned(n_gpus, jobs_per_gpu):   # n_gpus: the study's distributed.nproc_per_node
        ...                              # (1 for energy); jobs_per_gpu: compute.jobs_per_gpu

which waits for room in this host's pool, sets CUDA_VISIBLE_DEVICES to the leased devices,
and releases them when the job ends. The lease is taken before the job touches CUDA (CUDA
reads CUDA_VISIBLE_DEVICES when it initializes, at first use). A DDP job's torchrun workers
inherit the variable from the launching job, which holds the lease for them.

The pool: every device has numbered slots, one lock file each
(`<lock dir>/gpu<device>.slot<j>.lock`), held with `filelock.FileLock`, i.e. flock(2): the
kernel drops the lock when its holder dies, even by SIGKILL, so a crashed job never leaks its
GPU and there is no stale state to clean up. Next to each held slot, `...slot<j>.info` says
who holds it (pid, command, its jobs-per-GPU and whether it wants the device to itself);
nothing trusts an .info file whose lock is free.

Packing: with `jobs_per_gpu` = k, up to k one-GPU jobs share a device; a job joins the
least-loaded device that still has room (so k=2 on two GPUs puts the first two jobs on
different GPUs). A job with n > 1 GPUs (DDP) gets n devices to itself. A device is only
shared while every job on it agrees: a job asking for k=1 never joins a busy device, and a
job never joins a device whose holders asked for fewer jobs per GPU than are already there.
All choices are made under one short pool-wide lock (`pool.lock`), so two jobs starting at
the same moment cannot both pick the same "least-loaded" device.

Which devices exist (`visible_devices`): SPIKEATTN_GPUS (a count or a list: how tests fake a
multi-GPU machine on CPU and how users restrict the pool), else CUDA_VISIBLE_DEVICES, else
`nvidia-smi`, else none; with none the job just runs, unpinned (a CPU machine).

This module needs only the standard library and filelock (no torch, no spikeattn imports), so
the tests can load it by file and start many leasing processes in a fraction of a second each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path

import filelock

ENV_GPUS = "SPIKEATTN_GPUS"
ENV_LOCK_DIR = "SPIKEATTN_GPU_LOCK_DIR"
CUDA_VISIBLE = "CUDA_VISIBLE_DEVICES"
POLL_INTERVAL = 0.2  # seconds between looks at the pool while waiting for a slot
_NAME = "spikeattn.gpu_slots"  # prefixes the wait messages on stderr
_SLOT_RE = re.compile(r"gpu(?P<device>.+)\.slot(?P<slot>\d+)\.lock")


class GPUSlotError(RuntimeError):
    """A job cannot be given the GPUs it asks for (too many asked, lock dir unusable, ...)."""


class GPUSlotTimeout(GPUSlotError, TimeoutError):
    """No slot became free within the timeout."""


# ---------------------------------------------------------------------------------- devices


def visible_devices(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The GPU ids this machine (or this job's environment) offers, in order.

    SPIKEATTN_GPUS wins when set: a count ("4" means 0,1,2,3; "0" or "" none), a comma list
    ("0,2"; "3," is the single device 3) or one GPU/MIG UUID. Then CUDA_VISIBLE_DEVICES (a
    comma list; empty means none). Then the indices `nvidia-smi` lists. Otherwise none.
    """
    return _discover(environ)[0]


def _discover(environ: Mapping[str, str]) -> tuple[list[str], str]:
    """`visible_devices` plus where the answer came from (for error messages)."""
    if ENV_GPUS in environ:
        value = environ[ENV_GPUS]
        return _parse_spikeattn_gpus(value), f"{ENV_GPUS}={value!r}"
    if CUDA_VISIBLE in environ:
        value = environ[CUDA_VISIBLE]
        return _parse_cuda_visible(value), f"{CUDA_VISIBLE}={value!r}"
    return _nvidia_smi_indices(environ), "nvidia-smi"


def _parse_spikeattn_gpus(value: str) -> list[str]:
    text = value.strip()
    if not text:
        return []
    if "," in text:
        return _unique(item.strip() for item in text.split(","))
    if text.isdigit():
        return [str(i) for i in range(int(text))]
    if re.fullmatch(r"(GPU|MIG)-\S+", text):
        return [text]
    raise GPUSlotError(
        f"{ENV_GPUS}={value!r} is neither a GPU count ('4' = GPUs 0-3), a comma list of "
        f"device ids ('0,2'; '3,' for device 3 alone) nor a GPU UUID"
    )


def _parse_cuda_visible(value: str) -> list[str]:
    text = value.strip()
    if text in ("", "NoDevFiles"):  # NoDevFiles: what older Slurm sets when a job has no GPU
        return []
    devices = []
    for item in text.split(","):
        item = item.strip()
        if not item or item.startswith("-"):  # CUDA stops at the first invalid entry ("-1")
            break
        devices.append(item)
    return _unique(devices)


def _nvidia_smi_indices(environ: Mapping[str, str]) -> list[str]:
    exe = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if exe is None:
        return []
    try:
        result = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:  # e.g. "NVIDIA-SMI has failed ... driver" on a GPU-less node
        return []
    return _unique(line.strip() for line in result.stdout.splitlines() if line.strip().isdigit())


def _unique(items) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


# ------------------------------------------------------------------------------------- pool


def default_lock_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """SPIKEATTN_GPU_LOCK_DIR, else `<tmp>/spikeattn-gpu-slots`: per host on purpose, since
    the locks guard this host's GPUs (a shared file system would make hosts wait for each
    other, and flock over NFS is not always enforced)."""
    if environ.get(ENV_LOCK_DIR):
        return Path(environ[ENV_LOCK_DIR])
    return Path(tempfile.gettempdir()) / "spikeattn-gpu-slots"


@dataclasses.dataclass(frozen=True)
class _Holder:
    """Who holds a slot, as its .info file says. Unknown holders count as wanting the
    device to themselves (k=1), the safe reading."""

    pid: int | None = None
    jobs_per_gpu: int = 1
    exclusive: bool = False
    command: str = "?"

    def describe(self) -> str:
        mode = "exclusive" if self.exclusive else f"k={self.jobs_per_gpu}"
        return f"pid {self.pid or '?'} ({mode}): {self.command[:80]}"


_FreeSlot = tuple[int, filelock.BaseFileLock]  # (slot number, its lock, held by the survey)


@dataclasses.dataclass
class _Lease:
    devices: list[str]
    locks: list[filelock.BaseFileLock]

    def release(self) -> None:
        for lock in self.locks:
            with contextlib.suppress(Exception):
                lock.release(force=True)
        self.locks = []


class _Pool:
    """The slots of `devices` in `lock_dir`. Every method that looks at or takes slots runs
    under the pool lock, so what it sees cannot change except by releases (a job ending),
    which only ever make room."""

    def __init__(self, lock_dir: Path, devices: list[str], *, shared_dir: bool) -> None:
        self.lock_dir = lock_dir
        self.devices = devices
        self._ensure_dir(shared_dir)

    def _ensure_dir(self, shared: bool) -> None:
        created = []
        path = self.lock_dir
        while not path.exists() and path != path.parent:
            created.append(path)
            path = path.parent
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise GPUSlotError(
                f"cannot create the GPU lock dir {self.lock_dir}: {error}. "
                f"Set {ENV_LOCK_DIR} to a local directory you can write."
            ) from error
        if shared:
            # Like /tmp itself (world-writable, sticky), so other users' jobs on this host
            # can lease from the same pool. Best effort: another user may own the dir.
            for path in created:
                with contextlib.suppress(OSError):
                    path.chmod(0o1777)

    def _lock(self, path: Path) -> filelock.BaseFileLock:
        # mode: other users' jobs must be able to lock it too; no fallback to a soft lock,
        # which a SIGKILLed holder would leave stale
        return filelock.FileLock(str(path), mode=0o666, fallback_to_soft=False)

    def _try(self, lock: filelock.BaseFileLock, timeout: float = 0) -> bool:
        try:
            lock.acquire(timeout=timeout, poll_interval=0.01)
        except filelock.Timeout:
            return False
        except OSError as error:
            raise GPUSlotError(
                f"cannot lock {lock.lock_file}: {error}. The GPU lock dir must be a local "
                f"directory this user can write (one supporting flock); set {ENV_LOCK_DIR} "
                f"to choose another."
            ) from error
        return True

    def _slot_path(self, device: str, slot: int) -> Path:
        return self.lock_dir / f"gpu{urllib.parse.quote(device, safe='')}.slot{slot}.lock"

    def _known_slots(self) -> dict[str, list[int]]:
        slots: dict[str, list[int]] = {device: [] for device in self.devices}
        for name in os.listdir(self.lock_dir):
            match = _SLOT_RE.fullmatch(name)
            if match:
                device = urllib.parse.unquote(match["device"])
                if device in slots:
                    slots[device].append(int(match["slot"]))
        return {device: sorted(found) for device, found in slots.items()}

    def _survey(
        self,
    ) -> tuple[dict[str, list[_Holder]], dict[str, list[_FreeSlot]], dict[str, list[int]]]:
        """Per device: the holders of its busy slots, and its free slots (locked by us
        now; the caller keeps what it takes and releases the rest)."""
        known = self._known_slots()
        holders: dict[str, list[_Holder]] = {device: [] for device in self.devices}
        free: dict[str, list[_FreeSlot]] = {device: [] for device in self.devices}
        for device, slots in known.items():
            for slot in slots:
                lock = self._lock(self._slot_path(device, slot))
                if self._try(lock):
                    free[device].append((slot, lock))
                else:
                    holders[device].append(self._read_holder(device, slot))
        return holders, free, known

    def _read_holder(self, device: str, slot: int) -> _Holder:
        try:
            info = json.loads(self._slot_path(device, slot).with_suffix(".info").read_text())
            return _Holder(
                int(info["pid"]),
                int(info["jobs_per_gpu"]),
                bool(info["exclusive"]),
                str(info["command"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return _Holder()

    def _write_holder(self, device: str, slot: int, holder: _Holder) -> None:
        path = self._slot_path(device, slot).with_suffix(".info")
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        with contextlib.suppress(OSError):
            fd = os.open(path, flags, 0o666)
            try:
                with contextlib.suppress(OSError):
                    os.fchmod(fd, 0o666)
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps(dataclasses.asdict(holder)).encode())
            finally:
                os.close(fd)

    def _try_take(self, n_gpus: int, jobs_per_gpu: int, command: str) -> tuple[_Lease | None, str]:
        """One look at the pool: the lease if it has room now, else None and who is in the way."""
        holders, free, known = self._survey()
        lease = _Lease([], [])
        try:
            if n_gpus == 1:
                candidates = [
                    (len(busy), order, device)
                    for order, (device, busy) in enumerate(holders.items())
                    if not any(h.exclusive for h in busy)
                    and len(busy) < jobs_per_gpu
                    and all(len(busy) < h.jobs_per_gpu for h in busy)
                ]
                chosen = [min(candidates)[2]] if candidates else []
            else:  # DDP: whole devices, nobody else on them
                idle = [device for device, busy in holders.items() if not busy]
                chosen = idle[:n_gpus] if len(idle) >= n_gpus else []
            holder = _Holder(os.getpid(), 1 if n_gpus > 1 else jobs_per_gpu, n_gpus > 1, command)
            for device in chosen:
                if free[device]:
                    slot, lock = free[device].pop(0)
                else:
                    slot = max(known[device], default=-1) + 1
                    lock = self._lock(self._slot_path(device, slot))
                    if not self._try(lock):  # someone outside the pool protocol; look again later
                        lease.release()
                        chosen = []
                        break
                lease.locks.append(lock)
                lease.devices.append(device)
                self._write_holder(device, slot, holder)
        finally:
            for slots in free.values():
                for _, lock in slots:
                    lock.release(force=True)
        if chosen:
            return lease, ""
        return None, self._describe(holders)

    def _describe(self, holders: dict[str, list[_Holder]]) -> str:
        parts = []
        for device, busy in holders.items():
            who = "; ".join(h.describe() for h in busy) or "free"
            parts.append(f"gpu {device}: {who}")
        return " | ".join(parts)

    def acquire(
        self,
        n_gpus: int,
        jobs_per_gpu: int,
        *,
        timeout: float | None,
        poll_interval: float,
        command: str,
    ) -> _Lease:
        """Wait (polling) until the pool has room for the job, then lease it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        mutex = self._lock(self.lock_dir / "pool.lock")
        announced = False
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._try(mutex, -1 if remaining is None else remaining):
                raise GPUSlotTimeout(
                    f"gave up after {timeout} s: the GPU pool lock {mutex.lock_file} stayed busy"
                )
            try:
                lease, in_the_way = self._try_take(n_gpus, jobs_per_gpu, command)
            finally:
                mutex.release(force=True)
            if lease is not None:
                if announced:
                    print(
                        f"{_NAME}: [pid {os.getpid()}] got GPU {','.join(lease.devices)}",
                        file=sys.stderr,
                        flush=True,
                    )
                return lease
            wanted = (
                f"{n_gpus} whole GPUs"
                if n_gpus > 1
                else f"1 GPU, at most {jobs_per_gpu} job(s) per GPU"
            )
            if deadline is not None and time.monotonic() >= deadline:
                raise GPUSlotTimeout(
                    f"no GPU slot free for {timeout} s ({wanted}; {in_the_way}; lock dir "
                    f"{self.lock_dir}). Run fewer GPU jobs at once (snakemake --resources gpu=), "
                    f"let more jobs share a GPU (compute.jobs_per_gpu in params.yaml), or wait "
                    f"longer (pinned's timeout)."
                )
            if not announced:
                print(
                    f"{_NAME}: [pid {os.getpid()}] waiting for a GPU slot ({wanted}; "
                    f"{in_the_way}; lock dir {self.lock_dir}) ...",
                    file=sys.stderr,
                    flush=True,
                )
                announced = True
            time.sleep(
                poll_interval
                if deadline is None
                else max(0.0, min(poll_interval, deadline - time.monotonic()))
            )


_MISSING = object()


@contextlib.contextmanager
def pinned(
    n_gpus: int = 1,
    jobs_per_gpu: int = 1,
    environ: MutableMapping[str, str] | None = None,
    lock_dir: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    *,
    poll_interval: float = POLL_INTERVAL,
    command: str | None = None,
) -> Iterator[list[str]]:
    """Lease `n_gpus` GPUs for the `with` block and point CUDA_VISIBLE_DEVICES at them.

    Yields the leased device ids. CUDA_VISIBLE_DEVICES is set in `environ` (default
    os.environ, so child processes inherit it) and restored on exit, when the lease is
    released. `jobs_per_gpu` (k) lets k one-GPU jobs share a device; n_gpus > 1 takes whole
    devices. Waits for room up to `timeout` seconds (None: forever), then raises
    GPUSlotTimeout. `command` only labels the lease for other jobs' wait messages (default:
    this process's command line). `spikeattn train` and `spikeattn energy` run their whole
    stage inside this block (cli.py), waiting without a timeout.

    Passes through without locking or changing anything when there is nothing to pin:
    n_gpus == 0, or no visible devices (a CPU machine: yields []); or a Slurm job whose
    CUDA_VISIBLE_DEVICES holds exactly the n_gpus it asks for (Slurm already pinned it:
    yields those). In a Slurm allocation with more GPUs than the job asks for (a whole
    Snakemake run inside one allocation), it leases from a pool private to that allocation,
    since Slurm renumbers each allocation's GPUs from 0.
    """
    if n_gpus < 0:
        raise ValueError(f"n_gpus must be >= 0, got {n_gpus}")
    if jobs_per_gpu < 1:
        raise ValueError(f"jobs_per_gpu must be >= 1, got {jobs_per_gpu}")
    env = os.environ if environ is None else environ
    devices, source = _discover(env) if n_gpus else ([], "")
    if not devices:
        yield []
        return
    if n_gpus > len(devices):
        raise GPUSlotError(
            f"this job asks for {n_gpus} GPUs but only {len(devices)} are visible "
            f"({','.join(devices)}, from {source}). Lower the study's distributed.nproc_per_node "
            f"in params.yaml to at most {len(devices)}, or make more GPUs visible ({ENV_GPUS}, "
            f"{CUDA_VISIBLE})."
        )
    slurm_job = env.get("SLURM_JOB_ID") if source.startswith(CUDA_VISIBLE) else None
    if slurm_job and n_gpus == len(devices):
        yield list(devices)
        return
    shared = lock_dir is None and not env.get(ENV_LOCK_DIR)
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir(env)
    if slurm_job:
        directory = directory / f"slurm-{slurm_job}"
    pool = _Pool(directory, devices, shared_dir=shared)
    lease = pool.acquire(
        n_gpus,
        jobs_per_gpu,
        timeout=timeout,
        poll_interval=poll_interval,
        command=command if command is not None else shlex.join(sys.argv),
    )
    previous = env.get(CUDA_VISIBLE, _MISSING)
    env[CUDA_VISIBLE] = ",".join(lease.devices)
    try:
        yield list(lease.devices)
    finally:
        if previous is _MISSING:
            env.pop(CUDA_VISIBLE, None)
        else:
            env[CUDA_VISIBLE] = previous
        lease.release()
