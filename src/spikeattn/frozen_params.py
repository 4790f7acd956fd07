"""The settings Snakemake planned, frozen into one file that every job of the run reads.

Snakemake's `config` is params.yaml merged with any `--configfile` and `--config`; it decides
what re-runs (each job's params are computed from it). A job that re-read params.yaml, or only
the last `--configfile`, would train with other settings than the ones Snakemake planned and
MLflow records. So the merged, validated configuration is written once, to a file named by its
content digest, and the jobs get that file as `--params`. Equal settings give the same file, so
re-running with the same overrides rewrites nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from .io import atomic_path, short_hash
from .paths import FROZEN_PARAMS

HEADER = (
    "# The settings one Snakemake run planned: params.yaml merged with its --configfile and\n"
    "# --config overrides, validated. Written by the workflow (spikeattn.frozen_params); its\n"
    "# jobs read it. Do not edit: change params.yaml or the overrides instead.\n"
)


def freeze_params(config: Mapping[str, Any], root: str | os.PathLike = ".") -> Path:
    """Write `config` to `<root>/.spikeattn/params/<digest>.yaml` (once) and return that path,
    relative to `root`. The file reads back equal to `config`, or this raises ValueError."""
    config = dict(config)
    try:
        text = HEADER + yaml.safe_dump(config, sort_keys=True, allow_unicode=True)
    except yaml.YAMLError as err:
        raise ValueError(f"the merged Snakemake config cannot be written as YAML: {err}") from None
    if yaml.safe_load(text) != config:
        raise ValueError(
            "the merged Snakemake config does not read back equal from YAML; "
            "use plain values (strings, numbers, lists, mappings) in params.yaml "
            "and in --config"
        )
    relative = FROZEN_PARAMS / f"{short_hash(config, 16)}.yaml"
    path = Path(root) / relative
    if not path.exists() or path.read_text() != text:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return relative
