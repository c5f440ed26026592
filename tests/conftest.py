"""Fixtures shared by the test files."""

import os
from collections.abc import Iterator

import pytest

from flows import registry

# The nfvi command turns on a persistent compilation cache under the user's cache
# folder; in-process calls of its main() would turn it on for the whole test session.
os.environ["NFVI_NO_CACHE"] = "1"

# The tests check what programs compute, not how fast they run, and most of their time
# is XLA compiling: without LLVM's optimisation passes the suite takes 7 minutes on 2
# CPU cores instead of 11 (results agree to rounding). Set before JAX starts its CPU
# backend; subprocesses and notebook kernels inherit it.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """Undo every ``flows.register`` the test makes, so other tests see the seed registry."""
    saved_flows, saved_aliases = dict(registry._FLOWS), dict(registry._ALIASES)
    yield
    registry._FLOWS.clear()
    registry._FLOWS.update(saved_flows)
    registry._ALIASES.clear()
    registry._ALIASES.update(saved_aliases)


# Files whose tests share module-scoped fixtures (built once per worker that runs
# them) go to one worker each; the tests of every other file, and each notebook
# execution, are spread over the workers one by one (pytest-xdist --dist loadgroup).
_SHARED_FIXTURES = {"test_approximation", "test_bad_input", "test_browser", "test_devices",
                    "test_docs", "test_neutra", "test_nfvi", "test_plots", "test_refit",
                    "test_sample"}


_LONG = ("test_devices.py", "test_notebook_runs[06", "test_notebook_runs")
"""Node ids (parts of them) of the longest tests and groups: the multi-device group
(about 90 s on a busy machine), notebook 06 (about 70 s) and the other notebooks."""


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in _SHARED_FIXTURES:
            item.add_marker(pytest.mark.xdist_group(module))
    # the longest work first (the workers take it in this order), so that they finish
    # together instead of one running the last notebook alone
    items.sort(key=lambda item: next(
        (i for i, long in enumerate(_LONG) if long in item.nodeid), len(_LONG)))
