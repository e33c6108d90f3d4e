"""Register the reliability harness's test node types for the resilience tests."""

from __future__ import annotations

import pytest

from tests.reliability import harness


@pytest.fixture(scope="session", autouse=True)
def rel_nodes():
    harness.register_test_nodes()
    yield
    harness.unregister_test_nodes()
