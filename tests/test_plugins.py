"""Plugins listed under `plugins:` (spikeattn.plugins): loaded before any name is checked, their
names listed with their file, their failures stopping validation with the file and line named,
and their source digest keying exactly the train specs of the cells that use them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny_params import STUDY, tiny_params

from spikeattn import attention, config, plugins, registry
from spikeattn.config import Params, ParamsError
from spikeattn.io import canonical_json

pytestmark = pytest.mark.usefixtures("plugin_sandbox")

LABEL = "plugins/tdg.py"
TDG = '''\
"""A temporal-difference gate (a test plugin)."""
from torch import nn

from spikeattn.plugins import register_attention


@register_attention("tdg", slot="current", variants=["TDG"])
def tdg(*, T: int, channels: int, spatial: bool = True, kernel: int = 3,
        init_bias: float = 2.0) -> nn.Module:
    return nn.Identity()
'''


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A working directory (plugin paths are relative to it) holding plugins/tdg.py."""
    monkeypatch.chdir(tmp_path)
    write(LABEL, TDG)
    return tmp_path


def write(label: str, text: str) -> None:
    path = Path(label)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def raw_with(*entries: str, attention_names=("TCSA", "TDG"), **model) -> dict:
    """The tiny study over the given attentions, with `plugins: entries` (none: no key)."""
    raw = tiny_params()
    raw["study"][STUDY]["grid"]["attention"] = list(attention_names)
    raw["study"][STUDY]["model"] = model
    if entries:
        raw["plugins"] = list(entries)
    return raw


def error(raw: dict) -> str:
    with pytest.raises(ParamsError) as err:
        Params(raw)
    return str(err.value)


def spec(params: Params, attention_name: str) -> str:
    cell = next(c for c in params.cells(STUDY) if c.attention == attention_name)
    return canonical_json(params.train_spec(cell))


def fresh_process() -> None:
    """What a new interpreter (a job, the next planning) has: no plugin loaded."""
    for label in registry.owners():
        registry.drop_owner(label)
    plugins.forget_all()
    for name in [n for n in sys.modules if n.startswith(plugins.MODULE_PREFIX)]:
        del sys.modules[name]


# -- loading ------------------------------------------------------------------------------------
def test_a_path_plugin_registers_its_names_owned_by_its_label(work):
    params = Params(raw_with(LABEL))
    (plugin,) = params.plugins
    assert (plugin.label, plugin.path) == (LABEL, (work / LABEL).resolve())
    assert [c.attention for c in params.cells(STUDY)] == ["TCSA", "TDG"]
    assert registry.owner_of("attention", "TDG") == LABEL
    assert registry.owner_of("attention", "TCSA") is None
    # imported under a module name of its own, present in sys.modules (timm's register_model
    # looks the entry point's module up there)
    builder = attention.FAMILY_BUILDERS["tdg"]
    assert builder.__module__ == plugin.module and sys.modules[plugin.module].tdg is builder
    assert plugin.module.startswith("spikeattn_plugin_tdg_") and "." not in plugin.module
    assert plugins.loaded_digest(LABEL) == plugin.digest


def test_a_module_name_plugin_is_found_beside_the_working_directory(work):
    """A package by module name: found with the working directory first on sys.path, and
    every one of its files in the digest."""
    write("tdg_pkg_for_tests/__init__.py", "from . import blocks  # noqa: F401\n")
    write("tdg_pkg_for_tests/blocks.py", TDG)
    try:
        params = Params(raw_with("tdg_pkg_for_tests"))
        assert registry.owner_of("attention", "TDG") == "tdg_pkg_for_tests"
        assert params.plugins[0].path is None
        before = params.plugins[0].digest
        write("tdg_pkg_for_tests/blocks.py", TDG.replace("2.0", "1.5"))
        assert Params(raw_with("tdg_pkg_for_tests")).plugins[0].digest != before
        assert str(work) not in sys.path  # only while importing
    finally:
        for name in [n for n in sys.modules if n.startswith("tdg_pkg_for_tests")]:
            del sys.modules[name]


def test_unknown_grid_names_list_plugin_names_with_their_file(work):
    message = error(raw_with(LABEL, attention_names=["TDX"]))
    assert "study.tiny.grid.attention[0]: unknown attention 'TDX'" in message
    assert f"SMA-L+AZO, TDG ({LABEL})" in message and "under plugins:" not in message
    # without plugins, the message says where your own module goes
    assert "list its file under plugins:" in error(raw_with(attention_names=["TDG"]))


@pytest.mark.parametrize("first", ["helper_of_the_plugin", "spikeattn.plugins"])
def test_library_modules_a_plugin_imports_first_register_their_own_names(work, first):
    """In a fresh interpreter (a job, the planning), a library module first imported while a
    plugin loads (through a helper of the plugin's, or spikeattn.plugins' re-exports) registers
    its names as built in: else an edit of the plugin would drop them, and their cells would
    carry its digest."""
    (work / "helper_of_the_plugin.py").write_text("import spikeattn.data\n")
    helper = "import helper_of_the_plugin  # noqa: F401  (imports spikeattn.data first)\n"
    write("plugins/mine.py", (helper if first == "helper_of_the_plugin" else "") + DATASET)
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, ".")
        from spikeattn.plugins import load_plugins
        assert "spikeattn.data" not in sys.modules
        load_plugins(["plugins/mine.py"])
        from spikeattn.data import DATASETS
        print(sorted({str(DATASETS.owner(n)) for n in DATASETS}), DATASETS.owner("digits"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["['None',", "'plugins/mine.py']", "None"], out


# -- failures: validation stops, naming the entry, its file and line ---------------------------
def _builder(signature: str, variants: str = '["TDG"]') -> str:
    return (
        "from spikeattn.plugins import register_attention\n\n\n"
        f'@register_attention("tdg", slot="current", variants={variants})\n'
        f"def tdg({signature}):\n"
        "    return None\n"
    )


@pytest.mark.parametrize(
    "text, fragments",
    [
        (
            _builder("*, T, channels", variants='["TDG", "TCSA"]'),
            [
                f"plugins[0] ({LABEL}:4): RegistrationError",
                "'TCSA' is already registered by spikeattn (built in)",
            ],
        ),
        (
            _builder("*, T, channels, kernel"),
            [f"plugins[0] ({LABEL}:4)", "option 'kernel' has no default"],
        ),
        (
            _builder("*, T, width=3"),
            [f"plugins[0] ({LABEL}:4)", "keyword parameter(s) channels"],
        ),
        (
            "import os\nimport nonexistent_module_for_tests\n",
            [f"plugins[0] ({LABEL}:2): ModuleNotFoundError", "nonexistent_module_for_tests"],
        ),
        ("x = 1\n\ndef broken(:\n    pass\n", [f"plugins[0] ({LABEL}:3): SyntaxError"]),
        ("raise RuntimeError('not ready')\n", [f"plugins[0] ({LABEL}:1): RuntimeError: not ready"]),
        ("x = 1\n", [f"plugins[0] ({LABEL}): registers nothing", "register_attention"]),
    ],
    ids=[
        "clash-built-in",
        "no-default",
        "no-channels",
        "import",
        "syntax",
        "raises",
        "nothing",
    ],
)
def test_a_bad_plugin_stops_validation_naming_its_file_and_line(work, text, fragments):
    write(LABEL, text)
    message = error(raw_with(LABEL, attention_names=["TCSA"]))
    assert message.startswith("params.yaml is invalid:")
    for fragment in fragments:
        assert fragment in message, message
    assert registry.owners() == set()  # nothing half registered
    assert attention.ATTENTIONS.owner("TCSA") is None and "TDG" not in attention.ATTENTIONS
    assert not [n for n in sys.modules if n.startswith(plugins.MODULE_PREFIX)]


def test_two_plugins_taking_one_name_are_both_named(work):
    write("plugins/other.py", _builder("*, T, channels", variants='["TDG"]').replace("tdg", "gate"))
    message = error(raw_with(LABEL, "plugins/other.py"))
    assert "plugins[1] (plugins/other.py:4): RegistrationError" in message
    assert f"'TDG' is already registered by {LABEL}" in message
    assert registry.owners() == {LABEL}  # the first stays, the second left nothing


def test_entries_that_name_no_plugin_of_their_own_are_named(work):
    assert "plugins[0]: plugins/nothere.py: no such file (paths are relative to " in error(
        raw_with("plugins/nothere.py")
    )
    assert "plugins[1]: ./plugins/tdg.py is plugins[0] again" in error(
        raw_with(LABEL, "./plugins/tdg.py")
    )
    assert "plugins[0]: no_such_module_for_tests: no such module" in error(
        raw_with("no_such_module_for_tests")
    )
    assert "plugins[0]: spikeattn.attention: a module of spikeattn itself" in error(
        raw_with("spikeattn.attention")
    )
    assert "plugins[0] (os): module os was imported before the plugins" in error(raw_with("os"))
    assert "plugins: 'plugins/tdg.py' is not of type 'array'" in error(
        {**raw_with(), "plugins": LABEL}
    )


def test_plugin_options_are_checked_against_its_builder(work):
    message = error(raw_with(LABEL, attention_kwargs={"tdg": {"kernel": 5, "foo": 1}}))
    assert (
        f"study.tiny.model.attention_kwargs.tdg: tdg attention ({LABEL}) takes no 'foo'; "
        "allowed: init_bias, kernel"
    ) in message
    assert "'3' is not int" in error(raw_with(LABEL, attention_kwargs={"tdg": {"kernel": "3"}}))
    Params(raw_with(LABEL, attention_kwargs={"tdg": {"kernel": 5, "init_bias": 1}}))


CODING = """\
from torch import nn

from spikeattn.plugins import register_coding


@register_coding("scaled")
class Scaled(nn.Module):
    emits_spikes = False

    def __init__(self, T: int, stem: nn.Module, gain: float = 1.0):
        super().__init__()
        self.T, self.stem, self.gain = T, stem, gain
"""


def test_one_coding_kwargs_serves_each_coding_of_the_grid_its_own_options(work):
    write("plugins/coding.py", CODING)
    raw = raw_with("plugins/coding.py", attention_names=["TA"])
    raw["study"][STUDY]["grid"]["coding"] = ["direct", "gac", "scaled"]
    raw["study"][STUDY]["model"]["coding_kwargs"] = {"gain": 2.0, "ratio_t": 1}
    Params(raw)  # gain is scaled's, ratio_t gac's
    raw["study"][STUDY]["model"]["coding_kwargs"] = {"gain": "2", "ratio": 1}
    message = error(raw)
    assert (
        "coding_kwargs.ratio: no coding of the grid (direct, gac, scaled (plugins/coding.py))"
        in message
    )
    assert (
        "coding_kwargs.gain: '2' is not float, as coding scaled (plugins/coding.py) needs"
        in message
    )


# -- re-runs: the train spec ----------------------------------------------------------------------
def test_listing_a_plugin_changes_no_spec_of_a_cell_that_does_not_use_it(work):
    without = Params(raw_with(attention_names=["TCSA"]))
    with_ = Params(raw_with(LABEL))
    assert spec(with_, "TCSA") == spec(without, "TCSA")
    assert '"plugins"' not in spec(with_, "TCSA")
    tdg_cell = with_.cells(STUDY)[1]
    assert with_.plugins_of(tdg_cell) == {LABEL: with_.plugins[0].digest}
    assert with_.train_spec(tdg_cell)["plugins"] == {LABEL: with_.plugins[0].digest}


def test_a_code_edit_changes_the_plugin_cells_spec_a_comment_does_not(work):
    before = Params(raw_with(LABEL))
    write(LABEL, "# a comment\n\n" + TDG.replace("init_bias: float = 2.0", "init_bias: float=2.0"))
    reformatted = Params(raw_with(LABEL))
    assert (spec(reformatted, "TDG"), spec(reformatted, "TCSA")) == (
        spec(before, "TDG"),
        spec(before, "TCSA"),
    )
    write(LABEL, TDG.replace("2.0", "1.5"))
    edited = Params(raw_with(LABEL))
    assert spec(edited, "TDG") != spec(before, "TDG")
    assert spec(edited, "TCSA") == spec(before, "TCSA")
    write(LABEL, TDG.replace("a test plugin", "a test plugin, documented"))  # a docstring
    assert Params(raw_with(LABEL)).plugins[0].digest != edited.plugins[0].digest


def test_a_second_plugin_keys_only_its_own_cells(work):
    write("plugins/gate.py", TDG.replace('"tdg"', '"gate"').replace('["TDG"]', '["GATE"]'))
    params = Params(raw_with(LABEL, "plugins/gate.py", attention_names=["TDG", "GATE"]))
    tdg_cell, gate_cell = params.cells(STUDY)
    assert list(params.plugins_of(tdg_cell)) == [LABEL]
    assert list(params.plugins_of(gate_cell)) == ["plugins/gate.py"]


SURROGATE = """\
from dataclasses import dataclass

from spikeattn.plugins import Surrogate, register_surrogate


@register_surrogate
@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    slope: float = 10.0
    name = "fast_sigmoid"

    def grad(self, x):
        return 1 / (1 + self.slope * x.abs()) ** 2
"""
PRESET = """\
from spikeattn.plugins import LIFConfig, register_neuron

register_neuron("soft_fast", LIFConfig(decay=0.4, v_reset=None, surrogate="fast_sigmoid"))
"""


def test_a_cell_uses_the_plugin_of_its_neuron_preset_and_of_that_presets_surrogate(work):
    write("plugins/surrogate.py", SURROGATE)
    write("plugins/preset.py", PRESET)
    entries = ("plugins/surrogate.py", "plugins/preset.py", LABEL)
    by_preset = Params(raw_with(*entries, attention_names=["TA"], neuron="soft_fast"))
    assert by_preset.plugins_of(by_preset.cells(STUDY)[0]) == {
        p.label: p.digest for p in by_preset.plugins[:2]
    }
    own_surrogate = {"surrogate": "fast_sigmoid", "surrogate_kwargs": {}}
    by_kwargs = Params(raw_with(*entries, attention_names=["TA"], neuron_kwargs=own_surrogate))
    assert list(by_kwargs.plugins_of(by_kwargs.cells(STUDY)[0])) == ["plugins/surrogate.py"]
    # the plugin preset with a built-in surrogate over its own: the surrogate's plugin unused
    atan = {"surrogate": "atan", "surrogate_kwargs": {}}
    overridden = Params(
        raw_with(*entries, attention_names=["TA"], neuron="soft_fast", neuron_kwargs=atan)
    )
    assert list(overridden.plugins_of(overridden.cells(STUDY)[0])) == ["plugins/preset.py"]


@pytest.mark.parametrize("backend", ["triton", "triton_recompute"])
def test_a_triton_backend_with_a_plugin_surrogate_stops_validation(work, backend):
    write("plugins/surrogate.py", SURROGATE)
    write("plugins/preset.py", PRESET)
    entries = ("plugins/surrogate.py", "plugins/preset.py")
    raw = raw_with(*entries, attention_names=["TA"], neuron="soft_fast", lif_backend=backend)
    message = error(raw)
    assert f"study.{STUDY}.model.lif_backend: {backend!r} with neuron preset soft_fast" in message
    assert "surrogate 'fast_sigmoid' (plugins/surrogate.py) has no Triton kernel" in message
    raw["study"][STUDY]["model"]["lif_backend"] = "auto"  # the torch LIF runs it
    Params(raw)


DATASET = """\
import numpy as np

from spikeattn.plugins import EventSource, register_dataset


@register_dataset
class MyDVS(EventSource):
    name = "my-dvs"
    origin = "folder"
    sensor = (16, 16)
    num_classes = 2
    official_split = False

    def records(self, raw):
        return []

    def read(self, path):
        return np.load(path)
"""


def test_a_plugin_dataset_entry_passes_the_schema_and_keys_its_cells_on_either_path(work):
    """The plugins load before the schema check (which then knows the dataset's entry), on
    the record path too (which checks dataset names)."""
    write("plugins/my_dvs.py", DATASET)
    raw = raw_with("plugins/my_dvs.py", attention_names=["TA"])
    raw["study"][STUDY]["grid"]["dataset"] = ["my-dvs"]
    raw["datasets"] = {
        "my-dvs": {
            "source": "folder",
            "root": str(work / "recordings"),
            "frame_method": "time_bins",
            "dt_ms": None,
            "downsample": 1,
            "split": "per_class",
            "test_fraction": 0.5,
            "split_seed": 0,
        }
    }
    for fully in (True, False):
        params = Params(raw, record=work / "validated")
        assert params.validated_fully is fully
        assert params.train_spec(params.cells(STUDY)[0])["plugins"] == {
            "plugins/my_dvs.py": params.plugins[0].digest
        }
        fresh_process()


def test_params_built_again_reuse_an_unchanged_plugin_and_reload_an_edited_one(work):
    write(LABEL, TDG.replace('["TDG"]', '["TDG", "TDGX"]'))
    first = Params(raw_with(LABEL))
    module = sys.modules[first.plugins[0].module]
    Params(raw_with(LABEL))
    assert sys.modules[first.plugins[0].module] is module  # not imported again
    write(LABEL, TDG.replace("init_bias: float = 2.0", "gain: float = 1.0"))
    Params(raw_with(LABEL))
    assert sys.modules[first.plugins[0].module] is not module
    assert "TDGX" not in attention.ATTENTIONS  # the edit dropped it
    assert set(attention.family_options("tdg")) == {"kernel", "gain"}


def test_an_edit_reloads_the_helper_modules_the_plugin_imports(work):
    """A helper of the user's project that registers for the plugin is imported again with
    it, so its names come back after the plugin's were dropped."""
    (work / "tdg_helper.py").write_text(textwrap.dedent(TDG))
    write(LABEL, "import tdg_helper  # noqa: F401\nVERSION = 1\n")
    Params(raw_with(LABEL))
    write(LABEL, "import tdg_helper  # noqa: F401\nVERSION = 2\n")
    edited = Params(raw_with(LABEL))
    assert attention.ATTENTIONS.owner("TDG") == LABEL
    assert "TDG" in [c.attention for c in edited.cells(STUDY)]


def test_a_failed_entry_leaves_no_name_and_no_module_behind(work):
    """A module-name entry whose package imports (and registers) before the entry fails
    leaves nothing: the corrected entry then loads."""
    package = work / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(TDG))
    assert "plugins[0]: mypkg.nothere: no such module" in error(raw_with("mypkg.nothere"))
    assert registry.owners() == set() and "mypkg" not in sys.modules
    fixed = Params(raw_with("mypkg"))
    assert attention.ATTENTIONS.owner("TDG") == "mypkg" and fixed.plugins[0].label == "mypkg"


# -- the validation record ------------------------------------------------------------------------
def test_a_record_is_keyed_on_the_plugin_code_and_its_params_still_know_the_plugin(work):
    record = work / "validated"
    raw = raw_with(LABEL)
    first = Params(raw, record=record)
    (written,) = record.iterdir()
    assert written.name == config.validation_digest(raw, first.plugins)
    assert written.name != config.validation_digest(raw)
    fresh_process()
    again = Params(raw, record=record)
    assert not again.validated_fully  # the record path: no name check, yet...
    assert registry.owner_of("attention", "TDG") == LABEL  # ...the plugin is loaded (jobs)
    assert spec(again, "TDG") == spec(first, "TDG")
    write(LABEL, "# a comment\n" + TDG)
    assert not Params(raw, record=record).validated_fully
    write(LABEL, TDG.replace("2.0", "1.5"))
    assert Params(raw, record=record).validated_fully
    assert len(list(record.iterdir())) == 2


# -- the digest ----------------------------------------------------------------------------------
def test_the_source_digest_reads_code_not_comments_or_layout(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = (1,\n     2)  # two\n")
    b.write_text("y = 'b'\n")
    digest = plugins.source_digest([a, b])
    a.write_text("# the pair\nx = (1, 2)\n\n\n")
    assert plugins.source_digest([b, a]) == digest
    a.write_text("x = (1, 3)\n")
    assert plugins.source_digest([a, b]) != digest
    b.rename(tmp_path / "c.py")  # the relative paths count
    assert plugins.source_digest([a, tmp_path / "c.py"]) != plugins.source_digest([a])
    a.write_text("x = (\n")
    with pytest.raises(SyntaxError):
        plugins.source_digest([a])
