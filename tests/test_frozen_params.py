"""The settings a Snakemake run planned, frozen for its jobs (spikeattn.frozen_params)."""

import pytest
import yaml

from spikeattn.frozen_params import freeze_params
from spikeattn.paths import FROZEN_PARAMS


def test_the_frozen_file_reads_back_as_the_merged_config_and_is_named_by_it(tmp_path):
    merged = {
        "train": {"opt": "sgd", "lr": 1e-05, "opt_kwargs": {}},
        "studies": "demo",
        "seeds": [0, 1],
        "flag": True,
        "name": "yes",
        "none": None,
    }
    path = freeze_params(merged, tmp_path)
    assert path.parent == FROZEN_PARAMS and not path.is_absolute()
    assert yaml.safe_load((tmp_path / path).read_text()) == merged  # 1e-05 stays a float
    assert freeze_params(dict(reversed(merged.items())), tmp_path) == path  # content, not order
    other = freeze_params({**merged, "train": {**merged["train"], "opt": "adam"}}, tmp_path)
    assert other != path and (tmp_path / path).exists()  # an earlier run's file stays


def test_a_config_that_does_not_survive_yaml_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot be written as YAML"):
        freeze_params({"x": object()}, tmp_path)
    with pytest.raises(ValueError, match="does not read back equal"):
        freeze_params({"x": (1, 2)}, tmp_path)  # a tuple comes back as a list
    assert not (tmp_path / FROZEN_PARAMS).exists() or not any((tmp_path / FROZEN_PARAMS).iterdir())
