"""Resilience settings: one definition, rules checked at load time, seconds, the breaker on its own.

Issue #10: every duration in seconds (the old millisecond names and the breaker written as a
restart strategy still load with a DeprecationWarning naming the JSON path and the new name),
the rules between settings checked once in ``config/`` with their JSON path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from streamlab import AsyncPipeline
from streamlab.config import load_config, pipeline_json_schema
from streamlab.errors import ConfigError
from streamlab.resilience import (
    CircuitBreakerSettings,
    CircuitBreakerStrategy,
    Exponential,
    Never,
    RestartStrategy,
    SkipFrame,
)
from tests.reliability.harness import chain_config

SRC = str(Path(__file__).resolve().parents[2] / "src")


def load_warnings(cfg: dict) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = load_config(cfg)
    return spec, [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]


OLD = {
    "pipeline_config": {"deadline_ms": 50},
    "nodes": [
        {"id": "a", "type": "Passthrough", "deadline_ms": 5,
         "restart": {"strategy": "Exponential", "base_ms": 10, "max_ms": 80}},
        {"id": "b", "type": "Passthrough",
         "restart": {"strategy": "CircuitBreaker", "failure_threshold": 2,
                     "reset_timeout_ms": 250, "max_restarts": 3}},
    ],
    "connections": [{"from": "a", "to": "b"}],
}


# -- deprecated names ------------------------------------------------------------------------
def test_old_names_load_converted_to_seconds():
    spec, _ = load_warnings(OLD)
    a, b = spec.node("a"), spec.node("b")
    assert a.deadline_s == pytest.approx(0.005) and spec.pipeline_config.deadline_s == pytest.approx(0.05)
    assert isinstance(a.restart, Exponential)
    assert (a.restart.base_s, a.restart.max_s) == pytest.approx((0.01, 0.08))
    assert b.restart is None and b.breaker == CircuitBreakerSettings(failure_threshold=2,
                                                                      reset_timeout_s=0.25)
    # round trip: the loaded spec is written with the new names only
    text = json.dumps(spec.to_json_dict())
    assert "_ms" not in text and "CircuitBreaker" not in text


def test_each_old_name_warns_once_with_its_json_path_and_new_name():
    _, messages = load_warnings(OLD)
    expected = [
        ("$.pipeline_config.deadline_ms:", "'deadline_s'"),
        ("$.nodes[0].deadline_ms:", "'deadline_s'"),
        ("$.nodes[0].restart.base_ms:", "'base_s'"),
        ("$.nodes[0].restart.max_ms:", "'max_s'"),
        ("$.nodes[1].restart:", "$.nodes[1].breaker"),
        ("$.nodes[1].breaker.reset_timeout_ms:", "'reset_timeout_s'"),
    ]
    for path, new in expected:
        hits = [m for m in messages if m.startswith(path)]
        assert len(hits) == 1, (path, messages)
        assert new in hits[0] and "deprecated" in hits[0]
    assert len(messages) == len(expected)


def test_new_names_do_not_warn():
    cfg = chain_config({"type": "Passthrough", "deadline_s": 0.005,
                        "restart": {"strategy": "Exponential", "base_s": 0.01},
                        "breaker": {"failure_threshold": 2, "reset_timeout_s": 0.25}},
                       settings={"deadline_s": 0.05})
    _, messages = load_warnings(cfg)
    assert messages == []


def test_old_and_new_name_together_is_a_config_error_at_the_old_path():
    cfg = chain_config({"type": "Passthrough", "deadline_ms": 5, "deadline_s": 0.005})
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert [p.path for p in info.value.problems] == ["$.nodes[1].deadline_ms"]


def test_old_breaker_form_runs_as_a_breaker():
    node = {"type": "FaultInjector", "config": {"every": 1},
            "restart": {"strategy": "CircuitBreaker", "failure_threshold": 1,
                        "reset_timeout_ms": 60_000}}
    with pytest.warns(DeprecationWarning, match=r"\$\.nodes\[1\]\.restart"):
        pipe = AsyncPipeline(chain_config(node))
    r = pipe.built.nodes["n"]
    assert r.breaker is not None and isinstance(r.strategy, Never)
    assert isinstance(r.policy, SkipFrame)  # a breaker without a policy skips
    assert r.breaker_settings == CircuitBreakerSettings(failure_threshold=1, reset_timeout_s=60.0)


def test_python_construction_with_old_names_warns_and_converts():
    with pytest.warns(DeprecationWarning, match="'base_ms' is deprecated, use 'base_s'"):
        s = Exponential(base_ms=10, max_ms=80)
    assert s == Exponential(base_s=0.01, max_s=0.08)
    assert CircuitBreakerStrategy is CircuitBreakerSettings
    assert not isinstance(CircuitBreakerSettings(), RestartStrategy)


def test_set_override_accepts_an_old_name():
    with pytest.warns(DeprecationWarning, match=r"\$\.nodes\[1\]\.deadline_ms"):
        spec = load_config(chain_config({"type": "Passthrough"}), overrides=["nodes.n.deadline_ms=5"])
    assert spec.node("n").deadline_s == pytest.approx(0.005)


def test_cli_prints_each_deprecation_once_without_traceback(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(OLD))
    r = subprocess.run([sys.executable, "-m", "streamlab", "validate", str(path)],
                       capture_output=True, text=True, timeout=120, env={"PYTHONPATH": SRC})
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 6 and len(set(lines)) == 6
    assert "warning: $.nodes[0].restart.base_ms: 'base_ms' is deprecated, use 'base_s'" in r.stderr
    assert "Traceback" not in r.stderr and "DeprecationWarning" not in r.stderr


# -- the schema has only the new names -------------------------------------------------------
def test_schema_lists_only_the_new_names():
    schema = pipeline_json_schema()
    defs = schema["$defs"]
    node, settings = defs["NodeSpec"]["properties"], defs["PipelineSettings"]["properties"]
    assert "deadline_s" in node and "deadline_ms" not in node and "breaker" in node
    assert "deadline_s" in settings and "deadline_ms" not in settings and "breaker" in settings
    assert set(defs["Exponential"]["properties"]) >= {"base_s", "max_s"}
    assert not {"base_ms", "max_ms"} & set(defs["Exponential"]["properties"])
    assert set(defs["CircuitBreakerSettings"]["properties"]) == {"failure_threshold",
                                                                 "reset_timeout_s"}
    strategies = json.dumps(node["restart"])
    assert "CircuitBreaker" not in strategies


# -- rules between settings, checked at load time with their path ------------------------------
@pytest.mark.parametrize("node,settings,path", [
    ({"error_policy": {"policy": "Propagate"}, "restart": {"strategy": "Immediate"}}, {},
     "$.nodes[1].restart"),
    ({"error_policy": {"policy": "Propagate"}, "breaker": {}}, {}, "$.nodes[1].breaker"),
    ({"error_policy": {"policy": "Propagate"}}, {"restart": {"strategy": "Exponential"}},
     "$.nodes[1].error_policy"),
    ({}, {"error_policy": {"policy": "Propagate"}, "restart": {"strategy": "Immediate"}},
     "$.pipeline_config.restart"),
    ({}, {"error_policy": {"policy": "Propagate"}, "breaker": {"failure_threshold": 3}},
     "$.pipeline_config.breaker"),
    ({"restart": {"strategy": "Immediate"}}, {"error_policy": {"policy": "Propagate"}},
     "$.nodes[1].restart"),
])
def test_restart_or_breaker_with_propagate_is_reported_by_the_loader(node, settings, path):
    cfg = chain_config({"type": "Passthrough", **node}, settings=settings)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert [p.path for p in info.value.problems] == [path]
    assert "needs error_policy SkipFrame or UseDefault" in info.value.problems[0].message


@pytest.mark.parametrize("node,settings", [
    ({"restart": {"strategy": "Never"}, "error_policy": {"policy": "Propagate"}}, {}),
    ({"error_policy": {"policy": "SkipFrame"}},
     {"error_policy": {"policy": "Propagate"}, "restart": {"strategy": "Never"}}),
    ({"restart": {"strategy": "Immediate"}}, {}),  # no policy: SkipFrame
])
def test_consistent_settings_load(node, settings):
    load_config(chain_config({"type": "Passthrough", **node}, settings=settings))


def test_pipeline_breaker_default_reaches_every_node():
    cfg = chain_config({"type": "Passthrough"},
                       settings={"breaker": {"failure_threshold": 3, "reset_timeout_s": 0.5}})
    pipe = AsyncPipeline(cfg)
    assert all(r.breaker is not None and isinstance(r.policy, SkipFrame)
               for r in pipe.built.nodes.values())
