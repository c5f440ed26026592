"""Fixtures shared by the test files."""

import os
from collections.abc import Iterator

import pytest

from flows import registry

# The nfvi command turns on a persistent compilation cache under the user's cache
# folder; in-process calls of its main() would turn it on for the whole test session.
os.environ["NFVI_NO_CACHE"] = "1"


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """Undo every ``flows.register`` the test makes, so other tests see the seed registry."""
    saved_flows, saved_aliases = dict(registry._FLOWS), dict(registry._ALIASES)
    yield
    registry._FLOWS.clear()
    registry._FLOWS.update(saved_flows)
    registry._ALIASES.clear()
    registry._ALIASES.update(saved_aliases)
