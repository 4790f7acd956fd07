"""`python -m spikeattn` is the `spikeattn` command (the Snakemake rules call it this way).

A train or energy job is handed to the workflow's fork server when one is running
(`spikeattn.worker`); otherwise, and for every other command, it runs in this process.
Either way the process ends without interpreter teardown (`spikeattn.process_exit`).
"""

import sys

from .process_exit import exit_now
from .worker.client import run_on_worker

code = run_on_worker(sys.argv[1:])
if code is None:
    from .cli import run

    code = run(sys.argv[1:])
exit_now(code)
