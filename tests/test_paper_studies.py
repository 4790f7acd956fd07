"""The papers' studies in params.yaml: every cell's model builds as declared."""

from pathlib import Path

import pytest
import timm
import torch

import spikeattn.models  # noqa: F401
from spikeattn.config import Params
from spikeattn.job_inputs import model_spec

PARAMS = Params.load(Path(__file__).resolve().parents[1] / "params.yaml")
PAPER_CELLS = [cell for study in PARAMS.selected("paper") for cell in PARAMS.cells(study)]


@pytest.mark.parametrize("cell", PAPER_CELLS, ids=lambda c: f"{c.study}:{c.id}")
def test_paper_cell_model_builds(cell):
    name, kwargs = model_spec(PARAMS, cell)
    with torch.device("meta"):  # structure and arguments only: no memory for the weights
        model = timm.create_model(name, **kwargs)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_every_paper_study_has_targets_or_says_why_not():
    for study in PARAMS.selected("paper"):
        assert PARAMS.targets(study) or "reports" in PARAMS.study(study)["description"], study
