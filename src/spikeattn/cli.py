"""`spikeattn <stage>`: one subcommand per pipeline stage. Argument parsing only."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .config import DEFAULT_PARAMS


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _parser() -> argparse.ArgumentParser:
    params_help = "the params file (default: params.yaml in the current directory)"
    p = argparse.ArgumentParser(prog="spikeattn", description=__doc__)
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help=params_help)
    # --params is also accepted after the stage (`spikeattn train --params p.yaml ...`).
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--params", type=Path, default=argparse.SUPPRESS, help=params_help)
    sub = p.add_subparsers(dest="command", required=True, metavar="STAGE")

    def stage(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=text, description=text[0].upper() + text[1:] + ".", parents=[after]
        )

    s = stage("cells", "print a study's cell ids, one per line")
    s.add_argument("study")

    s = stage("prepare", "build an embedded dataset into data/raw/<dataset>/")
    s.add_argument("dataset")
    s = stage("download", "fetch a real dataset into data/raw/<dataset>/")
    s.add_argument("dataset")

    s = stage("preprocess", "raw data -> cached frame tensors in data/frames/")
    s.add_argument("dataset")
    s.add_argument("--T", type=_positive, required=True, help="time steps (frames per sample)")
    s.add_argument("--study", help="apply this study's overrides of the dataset's parameters")
    s.add_argument(
        "--workers", type=_positive, default=1, help="processes reading and framing events"
    )

    for name, text in (
        ("train", "train one cell x seed into results/<study>/<cell>/seed<k>/"),
        ("energy", "estimate a trained cell x seed's energy (energy.json)"),
    ):
        s = stage(name, text)
        s.add_argument("--study", required=True)
        s.add_argument("--cell", required=True)
        s.add_argument("--seed", type=int, required=True)
        s.add_argument("--threads", type=_positive, default=1, help="torch CPU threads (default 1)")
        s.add_argument("--no-track", action="store_true", help="do not log to MLflow")

    s = stage("tables", "results/<study>/ -> reports/<study>/ tables")
    s.add_argument("--study", required=True)
    s = stage("figures", "results/<study>/ -> reports/<study>/ figures (PNG, SVG)")
    s.add_argument("--study", required=True)
    s = stage(
        "paper", "a paper's studies -> reports/<paper>/ results, ablations, headline, tables.html"
    )
    s.add_argument("--paper", required=True)
    s = stage(
        "recipe",
        "params.yaml -> reports/<study>/recipe.{md,csv,html}: each setting of a "
        "study with its value and source",
    )
    s.add_argument("--study", required=True)

    s = stage(
        "plan",
        "the selected studies' cost before they run: jobs, steps, measured step "
        "time, GPU-hours and wall time on this machine",
    )
    s.add_argument(
        "--studies",
        metavar="SEL",
        help="studies, papers, groups or all, comma-separated (default: params.yaml studies)",
    )
    s.add_argument(
        "--device",
        metavar="cpu|cuda|NAME",
        help="where to probe (default: cuda if there is one, else cpu), or a GPU's name "
        "to plan from its cached probes (.spikeattn/probe/)",
    )
    s.add_argument(
        "--gpus",
        type=_positive,
        metavar="N",
        help="GPUs to plan the wall time for (default: those torch sees)",
    )
    s.add_argument(
        "--probe-steps",
        type=_positive,
        default=3,
        metavar="K",
        help="timed training steps per probe, after one warm-up (default 3)",
    )
    s.add_argument(
        "--probe-batch",
        type=_positive,
        metavar="B",
        help="samples per probe step (default: the full per-process batch on a GPU; "
        "on a CPU 2, grown while steps are cheap); fewer than the batch are "
        "scaled up linearly",
    )
    s.add_argument(
        "--no-probe",
        action="store_true",
        help="use cached probes only; cells without one are 'not measured'",
    )
    s.add_argument("--reprobe", action="store_true", help="measure again even where cached")
    s.add_argument("--cells", action="store_true", help="one row per cell instead of per study")
    s.add_argument("--markdown", action="store_true", help="print the table as Markdown")

    s = stage(
        "tracking-store",
        "create the MLflow store and experiment (Snakemake does this before any job)",
    )
    s.add_argument(
        "--relocate",
        action="store_true",
        help="after copying or moving the project folder: point mlflow.db at the "
        "mlartifacts/ next to it",
    )
    s = stage(
        "mlflow-server",
        "serve the MLflow store (mlflow.db, mlartifacts/) on 127.0.0.1; "
        "jobs log to it via MLFLOW_TRACKING_URI",
    )
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; others need --allow-remote)",
    )
    s.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    s.add_argument(
        "--allow-remote",
        action="store_true",
        help="listen beyond loopback, behind MLflow's basic authentication (needs "
        "mlflow[auth]; MLFLOW_AUTH_ADMIN_PASSWORD on the first start)",
    )
    s.add_argument(
        "--allowed-hosts",
        metavar="HOSTS",
        help="Host headers to accept, comma-separated fnmatch patterns (default: "
        "loopback names; with --allow-remote, MLflow's default)",
    )
    return p


def _pinned(params, args):
    """A train/energy job's lease of GPU slots (CUDA_VISIBLE_DEVICES), taken before CUDA starts;
    torchrun's workers run under their launcher's lease."""
    import contextlib

    from .gpu_slots import pinned
    from .train.distributed import launched_by_torchrun

    if launched_by_torchrun():
        return contextlib.nullcontext()
    gpus = params.distributed(args.study)["nproc_per_node"] if args.command == "train" else 1
    return pinned(n_gpus=gpus, jobs_per_gpu=params.jobs_per_gpu)


def _interrupt(signum, frame):
    """Snakemake stops jobs with SIGTERM: unwind like Ctrl-C, so no output is left half-written
    and the job's MLflow run is marked KILLED instead of staying RUNNING. A second SIGTERM
    (one sent to the job's process group and also passed on to it) would only interrupt that
    cleanup, so from here on SIGTERM is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"by signal {signal.Signals(signum).name}")


def _serve(args) -> None:
    """`mlflow-server`: replace this process with MLflow's server (checks in tracking)."""
    import os

    from .tracking import server_command

    argv = server_command(
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        allowed_hosts=args.allowed_hosts,
    )
    print(" ".join(argv), file=sys.stderr)
    os.execvp(argv[0], argv)


def _tracking_store(args) -> None:
    from .tracking import Tracker

    tracker = Tracker()
    if args.relocate:
        print("\n".join(tracker.relocate_store()) or "already in place", file=sys.stderr)
    tracker.ensure_store()
    print(tracker.uri)


def _run_stage(args) -> None:
    from . import paths, stages
    from .config import Params

    # The validation record: params this code and these libraries already validated in full
    # (Snakemake validated every job's frozen params while planning) skip the torch checks.
    params = Params.load(args.params, record=paths.VALIDATED)
    if args.command == "cells":
        print("\n".join(cell.id for cell in params.cells(args.study)))
    elif args.command in ("prepare", "download"):
        print(getattr(stages, args.command)(params, args.dataset))
    elif args.command == "preprocess":
        print(stages.preprocess(params, args.dataset, args.T, args.study, workers=args.workers))
    elif args.command in ("train", "energy"):
        with _pinned(params, args):
            getattr(stages, args.command)(
                params,
                args.study,
                args.cell,
                args.seed,
                threads=args.threads,
                track=not args.no_track,
            )
    elif args.command in ("tables", "figures", "recipe"):
        print(getattr(stages, args.command)(params, args.study))
    elif args.command == "paper":
        print(stages.paper(params, args.paper))
    elif args.command == "plan":
        print(
            stages.plan(
                params,
                args.studies,
                device=args.device,
                gpus=args.gpus,
                probe_steps=args.probe_steps,
                probe=not args.no_probe,
                reprobe=args.reprobe,
                probe_batch=args.probe_batch,
                markdown=args.markdown,
                per_cell=args.cells,
            ),
            end="",
        )


# Errors whose message already names the file or key and the fix: one line, no traceback.
# By module, so that printing one never imports a module the command did not load (the train
# job's module loads torch): a class whose module is not loaded cannot have been raised.
_USER_ERRORS = {
    "spikeattn.config": ["ParamsError"],
    "spikeattn.data.errors": ["DataError", "DownloadError"],
    "spikeattn.gpu_slots": ["GPUSlotError"],
    "spikeattn.plan": ["PlanError"],
    "spikeattn.records": ["ResultError"],
    "spikeattn.train.job": ["RunBusyError"],
    "spikeattn.tracking": ["TrackingError"],
}


def _user_errors() -> tuple[type[Exception], ...]:
    """The user errors (`_USER_ERRORS`, FileNotFoundError, NotImplementedError) whose modules
    are loaded."""
    return (
        FileNotFoundError,
        NotImplementedError,
        *(
            getattr(sys.modules[module], name)
            for module, names in _USER_ERRORS.items()
            if module in sys.modules
            for name in names
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    run = {"mlflow-server": _serve, "tracking-store": _tracking_store}.get(args.command, _run_stage)
    try:
        run(args)  # mlflow-server and tracking-store need no params file
    except _user_errors() as err:
        print(f"spikeattn {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def run(argv: list[str]) -> int:
    """`main` as the `spikeattn` command runs it: a stop (Ctrl-C, SIGTERM) is one line, and
    its exit status is 130."""
    try:
        return main(argv)
    except SystemExit as done:  # argparse's usage errors and --help, as Python would exit
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`spikeattn cells S | head -1`): done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    except KeyboardInterrupt as stop:
        # Outputs are written atomically and a train job resumes from its last epoch, so one
        # line says it all; a traceback here would only bury it.
        how = str(stop) or "by Ctrl-C"
        print(
            f"spikeattn: stopped {how}; nothing half-written was kept. Run the same command "
            f"again to continue (a train job resumes from its last finished epoch).",
            file=sys.stderr,
        )
        return 130
