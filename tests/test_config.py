"""params.yaml validation, study selection and grid expansion."""
import copy
from pathlib import Path

import pytest
import yaml

from spikeattn.config import Params, ParamsError
from spikeattn.io import canonical_json

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def params_with(edit):
    raw = copy.deepcopy(RAW)
    edit(raw)
    return Params(raw, source="params.yaml")


def rejects(edit, *fragments):
    with pytest.raises(ParamsError) as err:
        params_with(edit)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    return str(err.value)


def test_repository_params_are_valid_and_demo_selects_demo_studies():
    params = Params.load(REPO / "params.yaml")
    assert params.selected("demo") == ["demo-digits", "demo-dvs"]
    assert params.selected() == params.selected("paper") and "demo-dvs" not in params.selected()
    assert params.selected("all") == params.studies
    assert params.selected("demo-dvs, demo-digits") == ["demo-digits", "demo-dvs"]


def test_cells_are_the_grid_product_with_readable_ids():
    params = Params.load(REPO / "params.yaml")
    cells = params.cells("demo-dvs")
    grid = RAW["study"]["demo-dvs"]["grid"]
    assert len(cells) == len(grid["attention"]) * len(grid["coding"]) * len(grid["T"])
    assert cells[0].id == "digits-dvs__demo_cnn__none__direct__T8"
    assert params.cell("demo-dvs", cells[-1].id) == cells[-1]
    with pytest.raises(ParamsError, match="its cells are"):
        params.cell("demo-dvs", "digits-dvs__demo_cnn__XA__direct__T8")


def test_exclude_drops_matching_cells():
    full = Params(RAW).cells("demo-dvs")

    def edit(raw):
        raw["study"]["demo-dvs"]["exclude"] = [{"attention": "TCSA", "coding": "direct"}]
    ids = [c.id for c in params_with(edit).cells("demo-dvs")]
    assert "digits-dvs__demo_cnn__TCSA__direct__T8" not in ids and len(ids) == len(full) - 1


def test_study_overrides_train_defaults_only_for_that_study():
    params = Params.load(REPO / "params.yaml")
    assert params.train_settings("demo-dvs")["epochs"] == RAW["study"]["demo-dvs"]["train"]["epochs"]
    assert params.train_settings("demo-dvs")["lr"] == RAW["train"]["lr"]


def test_train_spec_ignores_key_order():
    reordered = copy.deepcopy(RAW)
    reordered["train"] = dict(reversed(list(reordered["train"].items())))
    reordered["study"] = dict(reversed(list(reordered["study"].items())))
    a, b = Params(RAW), Params(reordered)
    cell = a.cells("demo-dvs")[0]
    assert canonical_json(a.train_spec(cell)) == canonical_json(b.train_spec(cell))


@pytest.mark.parametrize("edit,fragments", [
    (lambda r: r.update(extra=1), ["(top level)", "'extra'"]),
    (lambda r: r["train"].update(lrr=0.1), ["train", "'lrr'", "allowed:", "lr"]),
    (lambda r: r["study"]["demo-dvs"]["train"].update(lr=-1.0), ["study.demo-dvs.train.lr", "-1.0"]),
    (lambda r: r["train"].update(epochs=0), ["train.epochs"]),
    (lambda r: r["study"]["demo-dvs"]["grid"].update(attention=["none", "TSCA"]),
     ["study.demo-dvs.grid.attention[1]", "'TSCA'", "TCSA"]),
    (lambda r: r["study"]["demo-dvs"]["grid"].update(backbone=["resnet18"]),
     ["study.demo-dvs.grid.backbone[0]", "demo_cnn"]),
    (lambda r: r["study"]["demo-dvs"]["grid"].update(coding=["direct", "rate"]), ["grid.coding[1]"]),
    (lambda r: r["study"]["demo-dvs"]["grid"].update(coding=["gac"]), ["GAC", "digits-dvs", "exclude"]),
    (lambda r: r["train"].update(opt="adamm"), ["train.opt", "'adamm'"]),
    (lambda r: r["train"].update(loss="hinge"), ["train.loss"]),
    (lambda r: r["study"]["demo-dvs"]["model"].update(width=3), ["study.demo-dvs.model.width", "allowed:"]),
    (lambda r: r["study"]["demo-dvs"]["model"].update(neuron="izhikevich"), ["model.neuron", "ma_dvs"]),
    (lambda r: r["groups"].update(demo=["demo-dvs", "demo-cifar"]), ["groups.demo[1]", "'demo-cifar'"]),
    (lambda r: r.update(studies="demo,papers"), ["studies", "'papers'", "paper", "demo-dvs"]),
    (lambda r: r["datasets"]["digits-dvs"].update(threshold=0), ["datasets.digits-dvs.threshold"]),
    (lambda r: r["datasets"]["digits-dvs"].update(sensor_size=17), ["datasets.digits-dvs.sensor_size", "digit_size"]),
    (lambda r: r["energy"].pop("e_ac_pj"), ["energy", "e_ac_pj"]),
])
def test_bad_params_are_rejected_with_the_key_named(edit, fragments):
    message = rejects(edit, *fragments)
    assert message.startswith("params.yaml is invalid")


def test_study_data_overrides_apply_to_that_study_only():
    def edit(raw):
        raw["study"]["demo-dvs"]["data"] = {"digits-dvs": {"threshold": 0.3}}
    params = params_with(edit)
    cell = params.cells("demo-dvs")[0]
    assert params.cell_data(cell)["threshold"] == 0.3
    assert params.dataset("digits-dvs")["threshold"] == RAW["datasets"]["digits-dvs"]["threshold"]
    rejects(lambda r: r["study"]["demo-dvs"].update(data={"digits-dvs": {"threshold": -1}}),
            "study.demo-dvs.data.digits-dvs", "threshold")
    rejects(lambda r: r["study"]["demo-dvs"].update(data={"digits": {"image_size": 32}}),
            "study.demo-dvs.data.digits", "not a dataset of this study")


def test_targets_must_match_a_cell():
    def target(cell):
        return lambda r: r["study"]["demo-dvs"].update(
            targets=[{"cell": cell, "acc": 90.0, "source": "a paper"}])
    assert params_with(target({"attention": "TCSA"})).targets("demo-dvs")[0]["acc"] == 90.0
    rejects(target({"attention": "SMA"}), "study.demo-dvs.targets[0].cell", "matches no cell")


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        Params.load(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("studies: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        Params.load(bad)
