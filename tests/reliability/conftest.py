"""Fixtures of the reliability suite: the Rel* test node types, and the ``slow`` marker.

Tests marked ``slow`` (full-size soak runs) are skipped unless selected with ``-m slow``;
``scripts/reliability.py`` runs the same scenarios at full size.
"""

from __future__ import annotations

import faulthandler

import pytest

from tests.reliability import harness


@pytest.fixture(scope="session", autouse=True)
def rel_nodes():
    harness.register_test_nodes()
    faulthandler.enable()
    yield
    harness.unregister_test_nodes()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="soak run: select with -m slow")
    for item in items:
        if "slow" in item.keywords and "reliability" in str(item.fspath):
            item.add_marker(skip)
