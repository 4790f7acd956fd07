"""`python -m spikeattn` is the `spikeattn` command (the Snakemake rules call it this way)."""
import sys

from .cli import main

sys.exit(main())
