"""`python -m spikeattn` is the `spikeattn` command (the Snakemake rules call it this way)."""

import sys

from .cli import main

try:
    sys.exit(main())
except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM from Snakemake (see cli._interrupt)
    # Outputs are written atomically and a train job resumes from its last epoch, so one line
    # says it all; a traceback here would only bury it.
    how = str(stop) or "by Ctrl-C"
    print(
        f"spikeattn: stopped {how}; nothing half-written was kept. Run the same command "
        f"again to continue (a train job resumes from its last finished epoch).",
        file=sys.stderr,
    )
    sys.exit(130)
