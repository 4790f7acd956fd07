"""The owner-recording name table every registry is (spikeattn.registry)."""

from __future__ import annotations

import pytest

from spikeattn import registry
from spikeattn.registry import RegistrationError, Registry


@pytest.fixture
def table(plugin_sandbox):
    kind = "test thing"
    yield Registry(kind)
    registry.ALL.pop(kind, None)


def test_built_in_names_have_no_owner(table):
    with registry.built_in():
        table.register("a", 1)
    assert table == {"a": 1}
    assert table.owner("a") is None
    assert registry.owner_of("test thing", "a") is None


def test_a_plugin_owns_what_it_registers(table):
    with registry.loading("plugins/mine.py"):
        table.register("b", 2)
    assert table.owner("b") == "plugins/mine.py"
    assert registry.owner_of("test thing", "b") == "plugins/mine.py"
    assert registry.current_owner() is None  # restored on leaving


def test_a_plugin_cannot_take_a_built_in_name(table):
    with registry.built_in():
        table.register("a", 1)
    with registry.loading("plugins/mine.py"), pytest.raises(RegistrationError) as err:
        table.register("a", 3)
    assert "test thing 'a' is already registered by spikeattn (built in)" in str(err.value)
    assert table["a"] == 1


def test_two_plugins_cannot_share_a_name(table):
    with registry.loading("plugins/one.py"):
        table.register("x", 1)
    with registry.loading("plugins/two.py"), pytest.raises(RegistrationError, match="one.py"):
        table.register("x", 2)


def test_a_name_is_registered_once_even_by_its_owner(table):
    """A plugin re-imported after an edit has its names dropped first: nothing is replaced
    in place, so two registrations of one name in one load are a mistake, named."""
    with registry.loading("plugins/mine.py"):
        table.register("x", 1)
        with pytest.raises(RegistrationError, match="by plugins/mine.py itself; register each"):
            table.register("x", 2)
    with registry.built_in():
        table.register("a", 1)
        with pytest.raises(RegistrationError, match="spikeattn \\(built in\\)"):
            table.register("a", 2)
    assert table == {"x": 1, "a": 1}


def test_registering_outside_the_loader_is_refused(table):
    """From a script or a notebook a name would count as built in (no file to key cells on, and
    it could shadow a built-in): registering needs `plugins:` (or the library's built_in)."""
    with pytest.raises(RegistrationError, match="outside the plugin loader; list the file"):
        table.register("a", 1)
    assert table == {} and registry.current_owner() is None


@pytest.mark.parametrize("name", ["", None, 3])
def test_names_are_non_empty_strings(table, name):
    with registry.built_in(), pytest.raises(RegistrationError, match="non-empty string"):
        table.register(name, 1)


def test_drop_owner_forgets_only_that_plugins_names(table):
    with registry.built_in():
        table.register("a", 1)
    with registry.loading("p1.py"):
        table.register("b", 2)
        registry.mark_static_only("b")
    with registry.loading("p2.py"):
        table.register("c", 3)
    registry.drop_owner("p1.py")
    assert list(table) == ["a", "c"]
    assert "b" not in registry.STATIC_ONLY_CODINGS
    assert "gac" in registry.STATIC_ONLY_CODINGS
    assert registry.owners() >= {"p2.py"} and "p1.py" not in registry.owners()


def test_describe_names_plugins_with_their_file(table):
    with registry.built_in():
        table.register("a", 1)
    with registry.loading("plugins/mine.py"):
        table.register("b", 2)
    assert table.describe() == "a, b (plugins/mine.py)"
    assert table.describe(["b"]) == "b (plugins/mine.py)"


def test_a_kind_has_one_registry(table):
    with pytest.raises(RegistrationError, match="exists already"):
        Registry("test thing")


def test_restore_puts_every_registry_back(table):
    with registry.built_in():
        table.register("a", 1)
    state = registry.snapshot()
    with registry.loading("p.py"):
        table.register("b", 2)
        registry.mark_static_only("b")
    late = Registry("late thing")  # a registry first imported after the snapshot
    with registry.built_in():
        late.register("built", 0)
    with registry.loading("p.py"):
        late.register("plugged", 1)
    registry.restore(state)
    registry.ALL.pop("late thing")
    assert table == {"a": 1} and table.owners == {"a": None}
    assert late == {"built": 0}
    assert registry.STATIC_ONLY_CODINGS == state[1]


def test_unknown_kinds_have_no_owner():
    assert registry.owner_of("no such kind", "x") is None


def test_the_library_registers_built_ins_whatever_plugin_is_loading():
    """Every home module's names are built in even when its first import happens while a
    plugin loads (a fresh interpreter, as a job's): `registry.built_in` at each site."""
    import subprocess
    import sys

    script = (
        "from spikeattn import registry\n"
        "with registry.loading('plugins/x.py'):\n"
        "    import spikeattn.attention, spikeattn.coding, spikeattn.data, spikeattn.models\n"
        "    import spikeattn.neurons\n"
        "kinds = {'attention', 'attention family', 'coding', 'dataset', 'backbone',\n"
        "         'neuron preset', 'surrogate'}\n"
        "assert kinds <= set(registry.ALL), set(registry.ALL)\n"
        "assert all(len(registry.ALL[k]) for k in kinds)\n"
        "print(sorted(registry.owners()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
