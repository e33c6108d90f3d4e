"""The control API fuzzed against its own OpenAPI document with schemathesis: no server error,
every status and body as documented. Bounded examples per operation (the test stays short)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="fuzzing needs schemathesis (dev extra)")
pytest.importorskip("aiohttp", reason="the control API needs aiohttp (pip install 'streamlab[web]')")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from tests.web.conftest import LiveServer, spec  # noqa: E402

CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = LiveServer(spec(), tmp_path_factory.mktemp("fuzz"), ).start()
    yield s
    s.close()


def test_api_conforms_to_its_openapi_document(server):
    """Every operation, 15 positive and 15 negative examples each, against a pipeline
    with the live runtime: 0 server errors, 0 schema
    or status violations. (schemathesis' pytest plugin is not used: its fixture loader does
    not work with pytest 9; the operations' strategies are driven here.)"""
    from hypothesis import given

    schema = schemathesis.openapi.from_url(server.url + "/api/openapi.json",
                                           headers={"Authorization": f"Bearer {server.token}"})
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 12
    headers = {"Authorization": f"Bearer {server.token}"}
    calls = {"n": 0}
    # the stop operation last: what runs after it sees a stopped pipeline (409s, documented)
    operations.sort(key=lambda op: op.path == "/api/stop")
    modes = list(schemathesis.GenerationMode)  # positive and negative data
    for op, mode in [(op, mode) for op in operations for mode in modes]:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)
            calls["n"] += 1

        fuzz()
    assert calls["n"] >= 12
