"""Fixtures shared by the test files."""

from collections.abc import Iterator

import pytest

from flows import registry


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """Undo every ``flows.register`` the test makes, so other tests see the seed registry."""
    saved_flows, saved_aliases = dict(registry._FLOWS), dict(registry._ALIASES)
    yield
    registry._FLOWS.clear()
    registry._FLOWS.update(saved_flows)
    registry._ALIASES.clear()
    registry._ALIASES.update(saved_aliases)
