"""Generated, mutated and hostile configs: only ConfigError, no imports, every path named."""

from __future__ import annotations

import copy
import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamlab import load_config
from streamlab.config.model import PipelineSpec
from streamlab.errors import ConfigError

VALID = json.loads(json.dumps({
    "name": "fuzz",
    "pipeline_config": {"channel_capacity": 8, "error_policy": {"policy": "SkipFrame"},
                        "restart": {"strategy": "Exponential", "base_s": 0.01, "max_s": 0.08}},
    "nodes": [
        {"id": "sine", "type": "SineGenerator",
         "config": {"frequency": 10.0, "sample_rate": 1000.0, "samples_per_frame": 10}},
        {"id": "fault", "type": "FaultInjector", "config": {"every": 3},
         "breaker": {"failure_threshold": 2,
                     "reset_timeout_s": 0.05},
         "dead_letter": "gain"},
        {"id": "gain", "type": "Gain", "config": {"gain": 0.5}},
    ],
    "connections": [{"from": "sine", "to": "fault", "capacity": 4, "overflow": "drop_oldest"},
                    {"from": "fault", "to": "gain"}],
}))


def check(source) -> None:
    """The one acceptable outcome of loading anything: a spec, or a ConfigError with paths."""
    before = set(sys.modules)
    try:
        spec = load_config(source)
    except ConfigError as err:
        assert err.problems
        for p in err.problems:
            assert p.path.startswith("$"), p
            assert p.message
    else:
        assert isinstance(spec, PipelineSpec)
    assert set(sys.modules) - before == set(), "loading a config imported a module"


def setup_module() -> None:
    load_config(VALID)  # the registry's first use imports the built-in nodes: not the config


json_leaf = (st.none() | st.booleans() | st.integers(-10**30, 10**30)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4)
                          | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20)

KEYS = ["name", "pipeline_config", "nodes", "connections", "id", "type", "config", "from", "to",
        "capacity", "overflow", "error_policy", "restart", "policy", "strategy",
        "breaker", "failure_threshold", "reset_timeout_s", "base_s", "max_s", "dead_letter", "every"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_value)
def test_generated_documents(doc):
    check(doc)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(VALID) if p]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(["set", "delete", "key"]),
                          json_value, st.sampled_from(KEYS)), min_size=1, max_size=4))
def test_mutated_valid_config(mutations):
    doc = copy.deepcopy(VALID)
    for path, op, value, key in mutations:
        parent = doc
        try:
            for part in path[:-1]:
                parent = parent[part]
            last = path[-1]
            if op == "set":
                parent[last] = value
            elif op == "delete":
                del parent[last]
            elif isinstance(parent[last], dict):
                parent[last][key] = value
        except (KeyError, IndexError, TypeError):
            continue
    check(doc)
    check(json.dumps(doc))


def _deep(n: int) -> str:
    return '{"nodes": ' + "[" * n + "]" * n + "}"


HOSTILE_TEXT = {
    "deep-nesting": _deep(10_000),
    "deep-nesting-in-config": '{"nodes": [{"id": "a", "type": "Gain", "config": {"gain": '
                              + "[" * 5000 + "]" * 5000 + "}}]}",
    "huge-number": '{"nodes": [{"id": "a", "type": "Gain", "config": {"gain": 1' + "0" * 5000 + "}}]}",
    "huge-float": '{"nodes": [{"id": "a", "type": "Gain", "config": {"gain": 1e400}}]}',
    "nan": '{"nodes": [{"id": "a", "type": "Gain", "config": {"gain": NaN}}]}',
    "infinity": '{"nodes": [{"id": "a", "type": "Gain", "config": {"gain": -Infinity}}]}',
    "huge-capacity": json.dumps({"nodes": [{"id": "a", "type": "Passthrough"},
                                           {"id": "b", "type": "Passthrough"}],
                                 "connections": [{"from": "a", "to": "b", "capacity": 10**18}]}),
    "zero-capacity": json.dumps({"pipeline_config": {"channel_capacity": 0},
                                 "nodes": [{"id": "a", "type": "Passthrough"}]}),
    "cycle": json.dumps({"nodes": [{"id": x, "type": "Passthrough"} for x in "abc"],
                         "connections": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"},
                                         {"from": "c", "to": "a"}]}),
    "dead-letter-cycle": json.dumps({"nodes": [
        {"id": "a", "type": "Passthrough", "dead_letter": "b"},
        {"id": "b", "type": "Passthrough", "dead_letter": "a"}]}),
    "unknown-type": json.dumps({"nodes": [{"id": "a", "type": "NoSuchNode"}]}),
    "os-system": json.dumps({"nodes": [{"id": "a", "type": "os.system", "config": {"cmd": "id"}}]}),
    "module-class": json.dumps({"nodes": [{"id": "a", "type": "subprocess.Popen",
                                           "module": "subprocess", "class": "Popen"}]}),
    "dunder-import": json.dumps({"nodes": [{"id": "a", "type": "__import__('os')"}]}),
    "importable-name": json.dumps({"nodes": [{"id": "a", "type": "antigravity"}]}),
    "policy-with-code": json.dumps({"nodes": [{"id": "a", "type": "Passthrough",
                                               "error_policy": {"policy": "os.system"}}]}),
    "threshold-zero": json.dumps({"nodes": [{"id": "a", "type": "Passthrough",
                                             "error_policy": {"policy": "SkipFrame"},
                                             "breaker": {"failure_threshold": 0}}]}),
    "not-utf8": b'{"name": "\xff\xfe"}',
    "not-json": "{nodes: [",
    "top-level-list": "[1, 2, 3]",
    "empty": "",
}


@pytest.mark.parametrize("name", list(HOSTILE_TEXT))
def test_hostile_files(name, tmp_path):
    text = HOSTILE_TEXT[name]
    path = tmp_path / "hostile.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    before = set(sys.modules)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert all(p.path.startswith("$") for p in info.value.problems)
    assert set(sys.modules) - before == set()
    if name in ("os-system", "module-class", "dunder-import", "importable-name"):
        assert "unknown" in str(info.value) or "not allowed" in str(info.value)
    if name == "importable-name":
        assert "antigravity" not in sys.modules


def test_deep_nesting_as_a_dict_is_rejected():
    doc: dict = {"nodes": []}
    cur = doc
    for _ in range(2000):
        cur["x"] = {}
        cur = cur["x"]
    with pytest.raises(ConfigError, match="nested deeper"):
        load_config(doc)
