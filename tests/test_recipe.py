"""Recipe cards: `study.<name>.sources` checked against the study's settings, one card row per
setting with its source (longest declared prefix), and the files the `recipe` stage writes."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from spikeattn.cli import main
from spikeattn.config import Params, ParamsError
from spikeattn.report.html import tables_page
from spikeattn.report.recipe import RECIPE_COLUMNS, recipe_caption, recipe_card

REPO = Path(__file__).resolve().parents[1]
# A small params file written out by hand: one study on embedded digits.
RAW = {
    "studies": "s",
    "datasets": {
        "digits": {
            "source": "embedded",
            "image_size": 16,
            "test_fraction": 0.2,
            "split_seed": 0,
            "max_samples": None,
        }
    },
    "train": {
        "epochs": 2,
        "batch_size": 4,
        "opt": "sgd",
        "lr": 0.1,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "sched": "none",
        "warmup_epochs": 0,
        "min_lr": 0.0,
        "loss": "ce_mean",
        "label_smoothing": 0.0,
    },
    "energy": {"e_mac_pj": 4.6, "e_ac_pj": 0.9},
    "report": {"alpha": 0.05, "min_seeds": 3, "correction": "holm"},
    "study": {
        "s": {
            "grid": {
                "dataset": ["digits"],
                "backbone": ["demo_cnn"],
                "attention": ["none", "TCSA"],
                "coding": ["direct"],
                "T": [4],
            },
            "seeds": [0, 1],
            "data": {"digits": {"test_fraction": 0.25}},
            "model": {"neuron": "ma_dvs", "attention_kwargs": {"ma": {"ratio_c": 8, "ratio_t": 2}}},
            "train": {"epochs": 3},
            "sources": {
                "train": "paper",  # a prefix
                "train.lr": {
                    "from": "code",
                    "paper": 0.05,
                    "note": "README command",
                },  # longer wins
                "train.epochs": {"from": "paper", "code": 3},  # both known, equal: no flag
                "model.attention_kwargs": {"from": "assumed", "note": "T=4 is short"},
                "model.attention_kwargs.ma.ratio_c": "paper+code",
                "model.neuron": {"from": "assumed", "paper": "lif_a", "code": "lif_b"},
                "data.image_size": "project",
                "energy": "paper",
                "grid": "project",
            },
        }
    },
}

ND = "not declared"
FLAG = "paper ≠ code"
# (section, setting, value, source, note, paper, code, disagreement), energy rows apart
EXPECTED = [
    ("data", "data.image_size", "16", "project", "", "", "", ""),
    ("data", "data.max_samples", "null", ND, "", "", "", ""),
    ("data", "data.split_seed", "0", ND, "", "", "", ""),
    ("data", "data.test_fraction", "0.25", ND, "", "", "", ""),
    ("model", "model.attention_kwargs.ma.ratio_c", "8", "paper+code", "", "8", "8", ""),
    ("model", "model.attention_kwargs.ma.ratio_t", "2", "assumed", "T=4 is short", "", "", ""),
    # demo_cnn's defaults for what the study does not set, then ma_dvs's LIF constants
    ("model", "model.channels", "[16, 32]", ND, "", "", "", ""),
    ("model", "model.lif.decay", "0.3", ND, "", "", "", ""),
    ("model", "model.lif.decay_input", "false", ND, "", "", "", ""),
    ("model", "model.lif.detach_reset", "false", ND, "", "", "", ""),
    ("model", "model.lif.fire_at_threshold", "true", ND, "", "", "", ""),
    ("model", "model.lif.surrogate", "rectangle", ND, "", "", "", ""),
    ("model", "model.lif.surrogate_kwargs.width", "0.5", ND, "", "", "", ""),
    ("model", "model.lif.v_reset", "0.3", ND, "", "", "", ""),
    ("model", "model.lif.v_threshold", "0.3", ND, "", "", "", ""),
    ("model", "model.neuron", "ma_dvs", "assumed", "", "lif_a", "lif_b", FLAG),
    ("train", "train.batch_size", "4", "paper", "", "4", "", ""),
    ("train", "train.epochs", "3", "paper", "", "3", "3", ""),
    ("train", "train.label_smoothing", "0.0", "paper", "", "0.0", "", ""),
    ("train", "train.loss", "ce_mean", "paper", "", "ce_mean", "", ""),
    ("train", "train.lr", "0.1", "code", "README command", "0.05", "0.1", FLAG),
    ("train", "train.min_lr", "0.0", "paper", "", "0.0", "", ""),
    ("train", "train.momentum", "0.9", "paper", "", "0.9", "", ""),
    ("train", "train.opt", "sgd", "paper", "", "sgd", "", ""),
    ("train", "train.sched", "none", "paper", "", "none", "", ""),
    ("train", "train.warmup_epochs", "0", "paper", "", "0", "", ""),
    ("train", "train.weight_decay", "0.0", "paper", "", "0.0", "", ""),
    ("grid", "grid.T", "[4]", "project", "", "", "", ""),
    ("grid", "grid.attention", "[none, TCSA]", "project", "", "", "", ""),
    ("grid", "grid.backbone", "[demo_cnn]", "project", "", "", "", ""),
    ("grid", "grid.coding", "[direct]", "project", "", "", "", ""),
    ("grid", "grid.dataset", "[digits]", "project", "", "", "", ""),
    ("seeds", "seeds", "[0, 1]", ND, "", "", "", ""),
]


def params_with(edit=None) -> Params:
    raw = copy.deepcopy(RAW)
    if edit:
        edit(raw["study"]["s"])
    return Params(raw, source="params.yaml")


@pytest.fixture(scope="module")
def params() -> Params:
    return params_with()


def _rows(card: pd.DataFrame) -> list[tuple]:
    return [tuple(row) for row in card.itertuples(index=False)]


def test_card_has_one_row_per_setting_with_its_longest_declared_source(params):
    card = recipe_card(params, "s")
    assert tuple(card.columns) == RECIPE_COLUMNS
    rows = _rows(card)
    energy = [r for r in rows if r[0] == "energy"]
    assert [r for r in rows if r[0] != "energy"] == EXPECTED
    assert [r[0] for r in rows] == (
        ["data"] * 4
        + ["model"] * 12
        + ["train"] * 11
        + ["energy"] * len(energy)
        + ["grid"] * 5
        + ["seeds"]
    )
    # energy: the study's resolved conventions (owned by config), each covered by `energy: paper`
    resolved = {k: v for k, v in params.energy_settings("s").items() if v is not None}
    assert [r[1] for r in energy] == sorted(f"energy.{k}" for k in resolved)
    assert ("energy", "energy.e_mac_pj", "4.6", "paper", "", "4.6", "", "") in energy
    assert all(r[3] == "paper" for r in energy)


def test_caption_counts_disagreements_assumed_and_undeclared(params):
    card = recipe_card(params, "s")
    caption = recipe_caption("s", card)
    assert f"{len(card)} settings" in caption
    assert "2 paper/code disagreements, 2 assumed values, 13 not declared" in caption


def test_lists_and_mappings_are_written_compactly():
    def edit(spec):
        spec["data"]["digits"]["image_size"] = 16
        spec["train"]["opt_kwargs"] = {"nesterov": True}
        spec["train"]["sched_kwargs"] = {}

    card = recipe_card(params_with(edit), "s")
    values = dict(zip(card["setting"], card["value"]))
    assert values["train.opt_kwargs.nesterov"] == "true"  # a mapping is descended
    assert values["train.sched_kwargs"] == "{}"  # an empty one is one setting
    assert values["seeds"] == "[0, 1]"


def _model_rows(card: pd.DataFrame) -> dict[str, str]:
    rows = card[card["section"] == "model"]
    return dict(zip(rows["setting"], rows["value"]))


def test_card_shows_the_backbones_defaults_and_the_presets_lif_constants():
    """ms_resnet18 with GAC's CIFAR LIF and one surrogate option changed: every constructor
    argument a cell does not fill in itself, declared or default, and the LIF the neurons get."""

    def edit(spec):
        spec["grid"]["backbone"] = ["ms_resnet18"]
        spec["model"] = {
            "neuron": "gac_cifar",
            "neuron_kwargs": {"surrogate_kwargs": {"gamma": 0.5}},
            "stem": "deep",
        }
        spec["sources"] = {}

    assert _model_rows(recipe_card(params_with(edit), "s")) == {
        "model.bn_weight_init": "0.5",
        "model.conv_init": "pytorch",
        "model.depths": "[2, 2, 2, 2]",  # ms_resnet18's own, over the class's
        "model.downsample": "avgpool",
        "model.drop_rate": "0.2",
        "model.lif.decay": "0.5",  # gac_cifar: LIFSpike(thresh 1.0, tau 0.5)
        "model.lif.decay_input": "false",
        "model.lif.detach_reset": "false",
        "model.lif.fire_at_threshold": "false",
        "model.lif.surrogate": "triangle",
        "model.lif.surrogate_kwargs.gamma": "0.5",  # neuron_kwargs applied
        "model.lif.v_reset": "0.0",
        "model.lif.v_threshold": "1.0",
        "model.neuron": "gac_cifar",
        "model.neuron_kwargs.surrogate_kwargs.gamma": "0.5",
        "model.residual_bn_weight_init": "0.1",
        "model.sma_blocks_per_stage": "2",
        "model.sma_branch_act": "relu",
        "model.sma_position": "conv1",
        "model.stem": "deep",  # declared: the study's value
        "model.stem_width": "64",
        "model.strides": "[2, 2, 2, 2]",
        "model.widths": "[64, 128, 256, 512]",
    }  # no attention, coding, T, num_classes, in_chans, img_size (each cell's), lif_backend,
    # nor the options mappings left at None (attention_kwargs, coding_kwargs: they set nothing)


def test_without_a_neuron_the_card_shows_the_backbones_default_preset():
    def edit(spec):
        spec["grid"]["backbone"] = ["gac_ms_resnet18_cifar"]
        spec["model"] = {}
        spec["sources"] = {}

    rows = _model_rows(recipe_card(params_with(edit), "s"))
    assert (
        rows["model.neuron"],
        rows["model.lif.v_threshold"],
        rows["model.lif.decay"],
        rows["model.drop_rate"],
        rows["model.stem"],
    ) == ("gac_cifar", "1.0", "0.5", "0.0", "3x3")


@pytest.mark.parametrize(
    "backbones, expected",
    [
        # depths differ: one row per backbone; everything else is shared (msresnet's LIF included)
        (
            ["ms_resnet18", "ms_resnet34"],
            {
                "model.ms_resnet18.depths": "[2, 2, 2, 2]",
                "model.ms_resnet34.depths": "[3, 4, 6, 3]",
                "model.drop_rate": "0.2",
                "model.stem": "7x7",
                "model.neuron": "msresnet",
                "model.lif.decay": "0.25",
                "model.lif.v_threshold": "0.5",
                "model.lif.surrogate_kwargs.width": "1.0",
            },
        ),
        # a key only one backbone takes, or whose defaults differ, is per backbone; equal ones shared
        (
            ["demo_cnn", "gac_ms_resnet18_cifar"],
            {
                "model.demo_cnn.channels": "[16, 32]",
                "model.gac_ms_resnet18_cifar.drop_rate": "0.0",
                "model.demo_cnn.neuron": "ma_dvs",
                "model.gac_ms_resnet18_cifar.neuron": "gac_cifar",
                "model.lif.demo_cnn.decay": "0.3",
                "model.lif.gac_ms_resnet18_cifar.decay": "0.5",
                "model.lif.demo_cnn.surrogate_kwargs.width": "0.5",
                "model.lif.gac_ms_resnet18_cifar.surrogate_kwargs.gamma": "1.0",
                "model.lif.decay_input": "false",
                "model.lif.detach_reset": "false",
            },
        ),
    ],
)
def test_defaults_that_differ_between_the_grids_backbones_get_one_row_each(backbones, expected):
    def edit(spec):
        spec["grid"]["backbone"] = backbones
        spec["model"] = {}
        spec["sources"] = {}

    rows = _model_rows(recipe_card(params_with(edit), "s"))
    assert {k: rows.get(k) for k in expected} == expected
    shared = {
        ".".join(p for p in key.split(".") if p not in backbones)
        for key in rows
        if set(key.split(".")) & set(backbones)
    }
    assert not shared & set(rows)  # a key is either one shared row or one row per backbone


def test_sources_may_name_defaults_and_lif_constants():
    def edit(spec):
        spec["grid"]["backbone"] = ["ms_resnet18", "ms_resnet34"]
        spec["model"] = {"neuron": "gac_cifar"}
        spec["sources"] = {
            "model": "code",
            "model.lif.v_threshold": {"from": "code", "paper": 0.5},
            "model.ms_resnet34.depths": "paper+code",
            "model.drop_rate": "assumed",
        }

    card = recipe_card(params_with(edit), "s").set_index("setting")
    assert tuple(card.loc["model.lif.v_threshold", ["value", "paper", "code", "disagreement"]]) == (
        "1.0",
        "0.5",
        "1.0",
        FLAG,
    )
    assert card.loc["model.ms_resnet34.depths", "source"] == "paper+code"
    assert card.loc["model.ms_resnet18.depths", "source"] == "code"
    assert card.loc["model.drop_rate", "source"] == "assumed"
    with pytest.raises(
        ParamsError,
        match=r"sources.model.lif.v_thresh: names no setting of this "
        r"study; its settings are model.lif.decay",
    ):
        params_with(lambda spec: spec.update(sources={"model.lif.v_thresh": "code"}))


def test_cell_keys_are_what_model_spec_fills_in(params):
    from spikeattn.job_inputs import model_spec
    from spikeattn.recipe import CELL_KEYS

    _, kwargs = model_spec(params, params.cells("s")[0])
    assert set(kwargs) - set(params.model_kwargs("s")) == set(CELL_KEYS)


@pytest.mark.parametrize(
    "name", ["ms_resnet18", "ms_resnet104", "gac_ms_resnet18_cifar", "sma_vgg8"]
)
def test_backbone_defaults_are_what_the_timm_name_builds_with(name, monkeypatch):
    """The entry point's own arguments, caught where it hands them to the class, over the
    class's signature defaults."""
    import inspect

    import timm

    from spikeattn.models import backbone_defaults, model_class

    entry = timm.models.model_entrypoint(name)
    passed = {}
    monkeypatch.setattr(
        inspect.getmodule(entry), "build", lambda cls, pretrained, **kwargs: passed.update(kwargs)
    )
    entry()
    signature = inspect.signature(model_class(name)).parameters
    assert backbone_defaults(name) == {**{k: p.default for k, p in signature.items()}, **passed}


@pytest.mark.parametrize(
    "sources, fragments",
    [
        (
            {"train.lrr": "paper"},
            [
                "study.s.sources.train.lrr: names no setting of this study; its settings are "
                "train.batch_size, train.epochs"
            ],
        ),
        (
            {"optim": "paper"},
            ["study.s.sources.optim: names no setting", "under data, model, train"],
        ),
        (
            {"train.opt_kwargs.momentum_decay": "code"},
            [
                "study.s.sources.train.opt_kwargs.momentum_decay: names no setting",
                "train.opt_kwargs",
            ],
        ),
        (
            {"train.lr": {"from": "paper", "paper": 0.1}},
            ["study.s.sources.train.lr.paper: from: paper says the paper gives our value (0.1)"],
        ),
        (
            {"train.lr": {"from": "paper+code", "code": 0.2}},
            ["study.s.sources.train.lr.code: from: paper+code"],
        ),
        (
            {"train": {"from": "code", "paper": 0.05}},
            ["study.s.sources.train.paper: train holds several settings"],
        ),
        ({"train.lr": "papr"}, ["study.s.sources.train.lr", "'papr'"]),
        ({"train.lr": {"from": "paper", "url": "x"}}, ["study.s.sources.train.lr", "'url'"]),
        ({"train.lr": {"paper": 0.1}}, ["study.s.sources.train.lr", "'from'"]),
        ({"train..lr": "paper"}, ["study.s.sources", "'train..lr'"]),
    ],
)
def test_sources_errors_name_the_key(sources, fragments):
    with pytest.raises(ParamsError) as err:
        params_with(lambda spec: spec.update(sources=sources))
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_recipe_stage_writes_three_files_atomically(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(RAW))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "reports" / "s"
    out.mkdir(parents=True)
    (out / "recipe.md").write_text("old")

    import spikeattn.report.recipe as recipe

    def broken(*args):
        raise RuntimeError("rendering failed")

    with monkeypatch.context() as patch:
        patch.setattr(recipe, "recipe_page", broken)
        with pytest.raises(RuntimeError):
            main(["recipe", "--study", "s"])
    assert sorted(p.name for p in out.iterdir()) == ["recipe.md"]  # nothing half-written
    assert (out / "recipe.md").read_text() == "old"

    assert main(["recipe", "--study", "s"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["recipe.csv", "recipe.html", "recipe.md"]
    md = (out / "recipe.md").read_text()
    assert md.startswith("# s: recipe card\n") and "2 paper/code disagreements" in md
    assert "| train     | train.lr " in md
    csv = pd.read_csv(out / "recipe.csv", keep_default_na=False, dtype=str)
    assert [r for r in _rows(csv) if r[0] != "energy"] == EXPECTED
    html = (out / "recipe.html").read_text()
    assert "<h2>Recipe card: s</h2>" in html and "README command" in html


def test_tables_page_shows_each_studys_recipe_card(params):
    card = recipe_card(params, "s")
    results = pd.DataFrame({"acc": [1.0]}, index=["none"])
    page = tables_page(
        "Paper",
        results,
        "results caption",
        pd.DataFrame(),
        "ablation caption",
        {},
        {"s": (card, "the card's caption")},
    )
    assert '<section id="recipe-s"><h2>Recipe card: s</h2>' in page
    assert "<td>train.lr</td>" in page and FLAG in page and "the card&#x27;s caption" in page
    assert page.index('id="results"') < page.index('id="recipe-s"')


REAL = Params.load(REPO / "params.yaml")
PAPER_STUDIES = [
    s for paper in REAL.papers if paper != "demo" for s in REAL.paper(paper)["studies"]
]


@pytest.mark.parametrize("study", PAPER_STUDIES)
def test_every_paper_setting_declares_its_source(study):
    card = recipe_card(REAL, study)
    undeclared = list(card.loc[card["source"] == ND, "setting"])
    assert not undeclared, f"study.{study}.sources misses: {', '.join(undeclared)}"
