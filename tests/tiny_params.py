"""The repository's params.yaml cut down for tests that run real jobs: the one home of "tiny".

`tiny_params(selection)` keeps the repository's settings and cuts only what makes a run slow:
no groups, only the selected studies, every dataset they use limited to MAX_SAMPLES samples,
few seeds and epochs. Three selections:

- "tiny" (the default): one study `tiny` of one cell, CELL (static digits, demo_cnn with TA,
  direct coding, T=2), seed 0, 4 epochs of batch 40; the papers are dropped. Real
  `spikeattn train` jobs in scratch directories (tests/jobs.py: resume, divergence, DDP, the fork server).
- "demo": the demo paper's studies cut to one epoch of batch 50: one digits cell (TCSA, GAC
  coding, T=2) with one seed, and a vanilla and a TA digits-dvs cell (T=2) with three seeds.
  The workflow tests run Snakemake on it (tests/workflow/tiny_demo.py).
- "plugin": the demo paper cut to demo-dvs with the example plugin (examples/tdg_attention.py,
  listed as PLUGIN: the test copies it there): attention none, TCSA and TDG at T=2, seed 0,
  one epoch of batch 50 (tests/workflow/test_plugin_dag.py).

`train` updates every selected study's train settings and `**study` its other keys (e.g.
`distributed`). Imported by module name: pytest puts tests/ on sys.path for tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MAX_SAMPLES = 200
STUDY = "tiny"
CELL = "digits__demo_cnn__TA__direct__T2"
PLUGIN = "plugins/tdg_attention.py"


def _tiny_study(raw: dict) -> None:
    raw.pop("papers", None)
    raw["study"] = {
        STUDY: {
            "grid": {
                "dataset": ["digits"],
                "backbone": ["demo_cnn"],
                "attention": ["TA"],
                "coding": ["direct"],
                "T": [2],
            },
            "seeds": [0],
            "train": {"epochs": 4, "batch_size": 40},
        }
    }


def _demo(raw: dict) -> None:
    raw["papers"] = {"demo": raw["papers"]["demo"]}
    raw["study"] = {name: raw["study"][name] for name in raw["papers"]["demo"]["studies"]}
    digits, dvs = raw["study"]["demo-digits"], raw["study"]["demo-dvs"]
    digits["grid"].update(attention=["TCSA"], coding=["gac"], T=[2])
    digits.pop("exclude", None)
    dvs["grid"].update(attention=["none", "TA"], T=[2])
    for study in raw["study"].values():
        study["seeds"] = [0]
        study["train"] = {"epochs": 1, "batch_size": 50}
    dvs["seeds"] = [0, 1, 2]


def _plugin(raw: dict) -> None:
    raw["plugins"] = [PLUGIN]
    raw["studies"] = "demo"
    raw["papers"] = {"demo": {**raw["papers"]["demo"], "studies": ["demo-dvs"]}}
    dvs = raw["study"]["demo-dvs"]
    raw["study"] = {"demo-dvs": dvs}
    dvs["grid"].update(attention=["none", "TCSA", "TDG"], T=[2])
    dvs["model"]["attention_kwargs"]["tdg"] = {"kernel": 3}
    dvs["seeds"] = [0]
    dvs["train"] = {"epochs": 1, "batch_size": 50}


SELECTIONS = {STUDY: _tiny_study, "demo": _demo, "plugin": _plugin}


def tiny_params(selection: str = STUDY, train: dict | None = None, **study) -> dict:
    """The repository's params.yaml as a dict, cut down to `selection` (a key of SELECTIONS)."""
    if selection not in SELECTIONS:
        raise ValueError(
            f"tiny_params: no selection {selection!r}; choose one of {list(SELECTIONS)}"
        )
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.pop("groups", None)
    raw["studies"] = selection  # the study or paper it keeps; a selection may say otherwise
    SELECTIONS[selection](raw)
    for entry in raw["study"].values():
        entry["train"].update(train or {})
        entry.update(study)
    used = dict.fromkeys(d for entry in raw["study"].values() for d in entry["grid"]["dataset"])
    raw["datasets"] = {name: {**raw["datasets"][name], "max_samples": MAX_SAMPLES} for name in used}
    return raw
