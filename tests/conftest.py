"""Shared fixtures."""

import os
import sys

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors. It must be on
# before the kernels are defined (first use), so it is set here, before any test imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def float64():
    """Run a test in float64 (exact comparisons), restoring the default dtype afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def plugin_sandbox():
    """Registries, loaded plugins and plugin modules as they were before the test: a plugin a
    test registers must not leak into the tests that compare registries with the built-ins."""
    from spikeattn import registry

    state = registry.snapshot()
    before = set(sys.modules)
    yield
    registry.restore(state)
    for name in set(sys.modules) - before:
        if name.startswith("spikeattn_plugin_"):
            del sys.modules[name]
    plugins = sys.modules.get("spikeattn.plugins")
    if plugins is not None:
        plugins.forget_all()
