"""params.yaml validation, study selection and grid expansion."""

import copy
import dataclasses
from pathlib import Path

import pytest
import timm
import torch
import yaml

from spikeattn.config import Params, ParamsError
from spikeattn.io import canonical_json
from spikeattn.job_inputs import model_spec
from spikeattn.neurons import MultiStepLIF

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
    assert cells[0].id == "digits-dvs__demo_cnn__none__direct__T6"
    assert params.cell("demo-dvs", cells[-1].id) == cells[-1]
    with pytest.raises(ParamsError, match="its cells are"):
        params.cell("demo-dvs", "digits-dvs__demo_cnn__XA__direct__T8")


def test_exclude_drops_matching_cells():
    full = Params(RAW).cells("demo-dvs")

    def edit(raw):
        raw["study"]["demo-dvs"]["exclude"] = [{"attention": "TCSA", "coding": "direct"}]

    ids = [c.id for c in params_with(edit).cells("demo-dvs")]
    assert "digits-dvs__demo_cnn__TCSA__direct__T8" not in ids and len(ids) == len(full) - 1


def _two_by_two_minus_one(raw):
    """demo-dvs as attention none/TA x T 8/4, without (TA, 4)."""
    raw["study"]["demo-dvs"]["grid"].update(attention=["none", "TA"], T=[8, 4])
    raw["study"]["demo-dvs"]["exclude"] = [{"attention": "TA", "T": 4}]


def test_the_grid_is_expanded_once_per_params_and_its_cells_cannot_change(monkeypatch):
    expanded = []
    expand = Params._expand

    def counting(study, spec):
        expanded.append(study)
        return expand(study, spec)

    monkeypatch.setattr(Params, "_expand", staticmethod(counting))
    raw = copy.deepcopy(RAW)
    _two_by_two_minus_one(raw)
    params = Params(raw, source="params.yaml")
    assert sorted(expanded) == sorted(RAW["study"])  # each study once, while validating

    cells = params.cells("demo-dvs")
    assert [c.id for c in cells] == [
        "digits-dvs__demo_cnn__none__direct__T8",
        "digits-dvs__demo_cnn__none__direct__T4",
        "digits-dvs__demo_cnn__TA__direct__T8",
    ]
    for _ in range(3):
        assert params.cells("demo-dvs") == cells
        assert params.cell("demo-dvs", "digits-dvs__demo_cnn__none__direct__T4") == cells[1]
        params.energy_settings("demo-dvs")
    with pytest.raises(
        ParamsError, match="its cells are:\n  digits-dvs__demo_cnn__none__direct__T8"
    ):
        params.cell("demo-dvs", "digits-dvs__demo_cnn__TA__direct__T4")
    with pytest.raises(ParamsError, match="no study 'demo-dvz'"):
        params.cells("demo-dvz")
    assert sorted(expanded) == sorted(RAW["study"])  # no call above expanded again

    with pytest.raises(TypeError):  # what callers get cannot change what the next one gets
        params.cells("demo-dvs")[0] = cells[2]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cells[0].T = 4
    raw["study"]["demo-dvs"]["grid"]["T"].append(16)  # nor can the caller's raw mapping
    params.energy_settings("demo-dvs")["e_mac_pj"] = 1.0  # nor the settings a caller changes
    assert len(params.cells("demo-dvs")) == 3 and params.raw["study"]["demo-dvs"]["grid"]["T"] == [
        8,
        4,
    ]
    assert params.energy_settings("demo-dvs")["e_mac_pj"] == RAW["energy"]["e_mac_pj"]


def test_a_fault_of_the_global_energy_is_named_once_not_again_per_study():
    def edit(raw):
        raw["energy"].update(zero_weights="skip")
        raw["study"]["demo-dvs"]["energy"] = {"e_ac_pj": 0.5}  # inherits the fault: not its own

    message = rejects(
        edit, "\n  energy.zero_weights: skip needs sop_count: exact or mac_count: effective"
    )
    assert message.count("\n") == 1, message


def test_study_overrides_train_defaults_only_for_that_study():
    params = Params.load(REPO / "params.yaml")
    assert (
        params.train_settings("demo-dvs")["epochs"] == RAW["study"]["demo-dvs"]["train"]["epochs"]
    )
    assert params.train_settings("demo-dvs")["lr"] == RAW["study"]["demo-dvs"]["train"]["lr"]
    assert "batch_size" not in RAW["study"]["demo-dvs"]["train"]
    assert params.train_settings("demo-dvs")["batch_size"] == RAW["train"]["batch_size"]


def test_train_spec_ignores_key_order():
    reordered = copy.deepcopy(RAW)
    reordered["train"] = dict(reversed(list(reordered["train"].items())))
    reordered["study"] = dict(reversed(list(reordered["study"].items())))
    a, b = Params(RAW), Params(reordered)
    cell = a.cells("demo-dvs")[0]
    assert canonical_json(a.train_spec(cell)) == canonical_json(b.train_spec(cell))


@pytest.mark.parametrize(
    "edit,fragments",
    [
        (lambda r: r.update(extra=1), ["(top level)", "'extra'"]),
        (lambda r: r["train"].update(lrr=0.1), ["train", "'lrr'", "allowed:", "lr"]),
        (
            lambda r: r["study"]["demo-dvs"]["train"].update(lr=-1.0),
            ["study.demo-dvs.train.lr", "-1.0"],
        ),
        (lambda r: r["train"].update(epochs=0), ["train.epochs"]),
        (
            lambda r: r["study"]["demo-dvs"]["grid"].update(attention=["none", "TSCA"]),
            ["study.demo-dvs.grid.attention[1]", "'TSCA'", "TCSA"],
        ),
        (
            lambda r: r["study"]["demo-dvs"]["grid"].update(backbone=["resnet18"]),
            ["study.demo-dvs.grid.backbone[0]", "demo_cnn"],
        ),
        (
            lambda r: r["study"]["demo-dvs"]["grid"].update(coding=["direct", "rate"]),
            ["grid.coding[1]"],
        ),
        (
            lambda r: r["study"]["demo-dvs"]["grid"].update(coding=["gac"]),
            ["coding 'gac' (for static images only)", "digits-dvs", "exclude"],
        ),
        (lambda r: r["train"].update(opt="adamm"), ["train.opt", "'adamm'"]),
        (lambda r: r["train"].update(loss="hinge"), ["train.loss"]),
        (
            lambda r: r["study"]["demo-dvs"]["model"].update(width=3),
            ["study.demo-dvs.model.width", "allowed:"],
        ),
        (
            lambda r: r["study"]["demo-dvs"]["model"].update(neuron="izhikevich"),
            ["model.neuron", "ma_dvs"],
        ),
        (
            lambda r: r["groups"].update(demo=["demo-dvs", "demo-cifar"]),
            ["groups.demo[1]", "'demo-cifar'"],
        ),
        (lambda r: r.update(studies="demo,papers"), ["studies", "'papers'", "paper", "demo-dvs"]),
        (
            lambda r: r["datasets"]["digits-dvs"].update(threshold=0),
            ["datasets.digits-dvs.threshold"],
        ),
        (
            lambda r: r["datasets"]["digits-dvs"].update(sensor_size=15),
            ["datasets.digits-dvs.sensor_size", "digit_size"],
        ),
        (lambda r: r["energy"].pop("e_ac_pj"), ["energy", "e_ac_pj"]),
        (
            lambda r: r["energy"].update(e_mac_pj=0),
            ["energy.e_mac_pj: 0 is less than or equal to the minimum"],
        ),
    ],
)
def test_bad_params_are_rejected_with_the_key_named(edit, fragments):
    message = rejects(edit, *fragments)
    assert message.startswith("params.yaml is invalid")


def _demo(section, **values):
    """An edit setting `values` in demo-dvs's `section` (train or model)."""
    return lambda r: r["study"]["demo-dvs"][section].update(values)


def case(edit, *fragments):
    """A parametrize case named by the key its message must lead with."""
    return pytest.param(edit, fragments, id=fragments[0].split(":")[0])


# Mistakes that used to pass validation and crash every train job (or, for exclude, do nothing).
@pytest.mark.parametrize(
    "edit,fragments",
    [
        case(
            _demo("train", opt_kwargs={"betaz": [0.9, 0.99]}),
            "study.demo-dvs.train.opt_kwargs: optimizer adam (train.opt) takes no 'betaz'",
            "allowed:",
            "betas",
        ),
        case(
            _demo("train", opt_kwargs={"amsgrad": "yes"}),
            "study.demo-dvs.train.opt_kwargs.amsgrad: 'yes' is not bool",
        ),
        case(
            _demo("train", opt_kwargs={"lr": 0.1}),
            "study.demo-dvs.train.opt_kwargs.lr: lr is a setting of its own; set study.demo-dvs.train.lr",
        ),
        case(
            _demo("train", opt_kwargs={"betas": [0.9, 1.5]}),
            "study.demo-dvs.train.opt_kwargs: optimizer adam (train.opt) does not build",
            "Invalid beta parameter",
        ),
        case(
            lambda r: (
                r["train"].update(
                    opt_kwargs={"betas": [0.9, 0.99]}
                ),  # a default another optimizer rejects
                r["study"]["gac-cifar10"]["train"].pop("opt_kwargs"),
            ),
            "train.opt_kwargs: optimizer sgd (study.gac-cifar10.train.opt) takes no 'betas'",
            "nesterov",
        ),
        case(
            _demo("train", sched_kwargs={"cycle_limt": 2}),
            "study.demo-dvs.train.sched_kwargs: schedule cosine (train.sched) takes no 'cycle_limt'",
            "cycle_limit",
        ),
        case(
            _demo("train", sched_kwargs={"cycle_limit": 2.5}),
            "study.demo-dvs.train.sched_kwargs.cycle_limit: 2.5 is not int",
        ),
        case(
            _demo("train", sched_kwargs={"min_lr": 0.1}),
            "study.demo-dvs.train.sched_kwargs.min_lr: min_lr is a setting of its own; set study.demo-dvs.train.min_lr",
        ),
        case(
            _demo("train", sched="none", sched_kwargs={"cycle_limit": 2}),
            "study.demo-dvs.train.sched_kwargs: schedule none (study.demo-dvs.train.sched) takes no options",
        ),
        case(
            lambda r: r["study"]["ma-gait"]["train"].update(sched_kwargs={"patience": 5}),
            "study.ma-gait.train.sched_kwargs: schedule plateau (study.ma-gait.train.sched) takes no 'patience'",
            "patience_epochs",
        ),
        case(
            lambda r: r["study"]["ma-gait"]["train"].update(warmup_epochs=2),
            "study.ma-gait.train.sched_kwargs: schedule plateau (study.ma-gait.train.sched) does not build",
            "no warmup",
        ),
        case(
            _demo("model", attention_kwargs={"ma": {"ratio": 2}}),
            "study.demo-dvs.model.attention_kwargs.ma: ma attention takes no 'ratio'",
            "ratio_c, ratio_t, sa_kernel",
        ),
        case(
            _demo("model", attention_kwargs={"sma": {"light": True}}),
            "study.demo-dvs.model.attention_kwargs.sma: sma attention takes no 'light'",
            "azo_rcr",
        ),
        case(
            _demo("model", attention_kwargs={"ma": {"ratio_c": "8"}}),
            "study.demo-dvs.model.attention_kwargs.ma.ratio_c: '8' is not int",
        ),
        case(
            _demo("model", attention_kwargs={"TCSA": {"ratio_c": 8}}),
            "study.demo-dvs.model.attention_kwargs: takes one mapping per attention family (ma, sma)",
            "'TCSA'",
        ),
        case(
            _demo("model", coding_kwargs={"ratio_t": 2}),
            "study.demo-dvs.model.coding_kwargs.ratio_t: no coding of the grid (direct) takes "
            "'ratio_t'; allowed: none",
        ),
        case(
            lambda r: r["study"]["demo-digits"]["model"].update(coding_kwargs={"ratio_t": "2"}),
            "study.demo-digits.model.coding_kwargs.ratio_t: '2' is not int, as coding gac needs",
        ),
        case(
            _demo("model", neuron_kwargs={"v_thresh": 0.2}),
            "study.demo-dvs.model.neuron_kwargs: the LIF neuron takes no 'v_thresh'",
            "v_threshold",
        ),
        case(
            _demo("model", neuron_kwargs={"detach_reset": "no"}),
            "study.demo-dvs.model.neuron_kwargs.detach_reset: 'no' is not bool",
        ),
        case(
            _demo("model", neuron_kwargs={"v_threshold": -1.0}),
            "study.demo-dvs.model.neuron_kwargs: with neuron preset ma_dvs (study.demo-dvs.model.neuron)",
            "v_threshold must be > 0",
        ),
        case(
            lambda r: r["study"]["demo-dvs"].update(exclude=[{"attention": "TSCA"}]),
            "study.demo-dvs.exclude[0].attention: 'TSCA' is not in this study's grid.attention",
            "TCSA",
            "matches no cell",
        ),
        case(
            lambda r: r["study"]["demo-dvs"].update(
                exclude=[{"dataset": "n-mnist", "attention": "TCSA"}]
            ),
            "study.demo-dvs.exclude[0].dataset: 'n-mnist' is not in this study's grid.dataset (digits-dvs)",
            "matches no cell",
        ),
        case(
            lambda r: r["study"]["demo-dvs"]["grid"].update(dataset=["digits-dvs", "n-mnist"]),
            "study.demo-dvs.grid: backbone demo_cnn cannot take the 34x34 frames of n-mnist "
            "(datasets.n-mnist.downsample)",
            "multiple of 4",
            "{dataset: n-mnist, backbone: demo_cnn}",
        ),
        case(
            lambda r: r["study"]["demo-dvs"].update(data={"digits-dvs": {"sensor_size": 22}}),
            "study.demo-dvs.grid: backbone demo_cnn cannot take the 22x22 frames of digits-dvs "
            "(study.demo-dvs.data.digits-dvs.sensor_size)",
        ),
        # Frames just below each backbone's smallest side (hand-computed: 128 // 33 = 3 < 4 = 1*2*2 pools,
        # 128 // 3 = 42 < 64 = 2*2*2*2*4, 180 // 6 = 30 < 32 = 2**5 with 240 // 6 = 40 fine,
        # 180 // 181 = 0 < 1).
        case(
            lambda r: r["study"]["ma-gesture"].update(data={"dvs128-gesture": {"downsample": 33}}),
            "study.ma-gesture.grid: backbone ma_cnn_gesture cannot take the 3x3 frames of dvs128-gesture "
            "(study.ma-gesture.data.dvs128-gesture.downsample)",
            "at least 4",
            "{dataset: dvs128-gesture, backbone: ma_cnn_gesture}",
        ),
        case(
            lambda r: r["datasets"]["dvs128-gait"].update(downsample=3),
            "study.ma-gait.grid: backbone ma_cnn_gait cannot take the 42x42 frames of dvs128-gait "
            "(datasets.dvs128-gait.downsample)",
            "at least 64",
        ),
        case(
            lambda r: r["datasets"]["n-caltech101"].update(downsample=6),
            "study.sma-ncaltech101.grid: backbone sma_vgg8 cannot take the 30x40 frames of n-caltech101 "
            "(datasets.n-caltech101.downsample)",
            "at least 32, got 30x40",
        ),
        case(
            lambda r: (
                r["study"]["sma-ncaltech101"]["grid"].update(backbone=["ms_resnet18"]),
                r["study"]["sma-ncaltech101"]["model"].pop("sma_blocks"),  # a VGG option
                r["study"]["sma-ncaltech101"]["sources"].pop("model.sma_blocks"),
                r["datasets"]["n-caltech101"].update(downsample=181),
            ),
            "study.sma-ncaltech101.grid: backbone ms_resnet18 cannot take the 0x1 frames of n-caltech101 "
            "(datasets.n-caltech101.downsample)",
            "at least 1 pixel, got 0x1",
        ),
    ],
)
def test_options_exclude_and_frame_sizes_fail_before_any_job(edit, fragments):
    rejects(edit, *fragments)


def test_options_the_builders_take_pass_and_reach_the_train_settings():
    from spikeattn.train.loop import build_optimizer

    def edit(raw):
        raw["study"]["demo-dvs"]["train"].update(
            opt_kwargs={"betas": [0.8, 0.9], "amsgrad": True},
            sched_kwargs={"cycle_limit": 2, "warmup_lr": 1e-6},
        )
        raw["study"]["demo-dvs"]["model"].update(
            neuron_kwargs={"v_threshold": 0.2, "v_reset": None},
            attention_kwargs={
                "ma": {"ratio_c": 4},
                "sma": {"kernels": [1, 3], "branch_act": "relu"},
            },
        )
        raw["study"]["ma-gait"]["train"]["sched_kwargs"]["cooldown_epochs"] = 2

    params = params_with(edit)
    optimizer = build_optimizer(torch.nn.Linear(1, 1), params.train_settings("demo-dvs"))
    assert (
        tuple(optimizer.defaults["betas"]) == (0.8, 0.9) and optimizer.defaults["amsgrad"] is True
    )
    name, kwargs = model_spec(
        params, params.cell("demo-dvs", "digits-dvs__demo_cnn__TCSA__direct__T6")
    )
    model = timm.create_model(name, **kwargs)
    lifs = [m for m in model.modules() if isinstance(m, MultiStepLIF)]
    assert lifs and all(m.cfg.v_threshold == 0.2 and m.cfg.v_reset is None for m in lifs)


@pytest.mark.parametrize(
    "attention, options",
    [("TCSA", {"ma": {"ratio_c": 2}}), ("SMA-L", {"sma": {"kernels": (1, 3)}})],
)
def test_attention_options_reach_the_builder_params_checks_them_against(
    monkeypatch, attention, options
):
    """Params admits attention_kwargs[family] by FAMILY_BUILDERS[family]'s signature, so
    build_attention must hand them to that very builder."""
    from spikeattn import attention as att

    ((fam, given),) = options.items()
    received = {}
    real = att.FAMILY_BUILDERS[fam]

    def spy(*args, **kwargs):
        received.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setitem(att.FAMILY_BUILDERS, fam, spy)
    att.build_attention(
        attention,
        T=2,
        channels=4,
        make_neuron=lambda: MultiStepLIF("ma_dvs"),
        attention_kwargs=options,
    )
    assert received.items() >= given.items()


@pytest.mark.parametrize(
    "edit",
    [  # one less downsample than each refused case above
        lambda r: r["study"]["ma-gesture"].update(
            data={"dvs128-gesture": {"downsample": 32}}
        ),  # 4x4
        lambda r: r["datasets"]["dvs128-gait"].update(downsample=2),  # 64x64
        lambda r: r["datasets"]["n-caltech101"].update(downsample=5),  # 36x48
        lambda r: (
            r["study"]["sma-ncaltech101"]["grid"].update(backbone=["ms_resnet18"]),
            r["study"]["sma-ncaltech101"]["model"].pop("sma_blocks"),
            r["study"]["sma-ncaltech101"]["sources"].pop("model.sma_blocks"),
            r["datasets"]["n-caltech101"].update(downsample=180),
        ),  # 1x1
    ],
    ids=["ma_cnn_gesture", "ma_cnn_gait", "sma_vgg8", "ms_resnet18"],
)
def test_the_largest_downsample_each_backbone_takes_passes(edit):
    params_with(edit)


def test_an_exclude_entry_is_the_fix_the_frame_size_error_offers():
    def edit(raw):
        raw["study"]["demo-dvs"]["grid"]["dataset"] = ["digits-dvs", "n-mnist"]
        raw["study"]["demo-dvs"]["exclude"] = [{"dataset": "n-mnist", "backbone": "demo_cnn"}]

    assert {c.dataset for c in params_with(edit).cells("demo-dvs")} == {"digits-dvs"}


def test_validation_draws_no_random_numbers():
    """Train jobs validate params before seeding; building the dry-run optimizer must not
    move torch's global RNG."""
    state = torch.random.get_rng_state()
    Params(RAW)
    assert torch.equal(state, torch.random.get_rng_state())


def test_one_of_errors_give_the_cause_with_the_key():
    message = rejects(
        lambda r: r["datasets"]["digits"].update(max_samples=5),
        "datasets.digits.max_samples: 5 is less than the minimum of 20",
    )
    assert "not valid under any" not in message
    rejects(
        lambda r: r["datasets"]["n-mnist"].update(dt_ms=0),
        "datasets.n-mnist.dt_ms: 0 is less than or equal to the minimum of 0",
    )
    rejects(
        lambda r: r.update(studies=5),  # no branch is closer: each says why not
        "studies: 5 is not valid under any of the given schemas",
        "not of type 'string'",
        "not of type 'array'",
    )


def test_study_data_overrides_apply_to_that_study_only():
    def edit(raw):
        raw["study"]["demo-dvs"]["data"] = {"digits-dvs": {"threshold": 0.3}}

    params = params_with(edit)
    cell = params.cells("demo-dvs")[0]
    assert params.cell_data(cell)["threshold"] == 0.3
    assert params.dataset("digits-dvs")["threshold"] == RAW["datasets"]["digits-dvs"]["threshold"]
    rejects(
        lambda r: r["study"]["demo-dvs"].update(data={"digits-dvs": {"threshold": -1}}),
        "study.demo-dvs.data.digits-dvs",
        "threshold",
    )
    rejects(
        lambda r: r["study"]["demo-dvs"].update(data={"digits": {"image_size": 32}}),
        "study.demo-dvs.data.digits",
        "not a dataset of this study",
    )


def test_targets_must_match_a_cell():
    def target(cell):
        return lambda r: r["study"]["demo-dvs"].update(
            targets=[{"cell": cell, "acc": 90.0, "source": "a paper"}]
        )

    assert params_with(target({"attention": "TCSA"})).targets("demo-dvs")[0]["acc"] == 90.0
    rejects(target({"attention": "SMA"}), "study.demo-dvs.targets[0].cell", "matches no cell")


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        Params.load(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("studies: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        Params.load(bad)
