"""ErrorPolicy semantics: the exact output sequences of RELIABILITY.md, in every runtime."""

from __future__ import annotations

import asyncio

import pytest

from streamlab import AsyncPipeline, Pipeline
from streamlab.errors import ConfigError, PipelineError
from streamlab.nodes.fault import FaultInjected
from streamlab.resilience import Propagate, SkipFrame, UseDefault
from streamlab.resilience.policy import Exponential, Immediate, Never
from tests.reliability.harness import chain_config, run_guarded, value_frames, values

INPUT = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
SKIP = {"policy": "SkipFrame"}
DEFAULT0 = {"policy": "UseDefault", "fill_value": 0.0}
IMMEDIATE = {"strategy": "Immediate"}
EXPONENTIAL = {"strategy": "Exponential", "base_s": 1e-05, "max_s": 2e-05, "max_attempts": 5}

# (node type, error_policy, restart) -> the exact output sequence
CASES = [
    ("RelFailOn3", SKIP, None, [1, 2, 4, 5, 1, 2, 4, 5]),
    ("RelFailOn3", DEFAULT0, None, [1, 2, 0, 4, 5, 1, 2, 0, 4, 5]),
    ("RelAsyncFailOn3", SKIP, None, [1, 2, 4, 5, 1, 2, 4, 5]),
    ("RelAsyncFailOn3", DEFAULT0, None, [1, 2, 0, 4, 5, 1, 2, 0, 4, 5]),
    ("RelRunSum", SKIP, None, [1, 3, 7, 12, 13, 15, 19, 24]),
    ("RelRunSum", SKIP, {"strategy": "Never"}, [1, 3, 7, 12, 13, 15, 19, 24]),
    ("RelRunSum", SKIP, IMMEDIATE, [1, 3, 4, 9, 10, 12, 4, 9]),
    ("RelRunSum", SKIP, EXPONENTIAL, [1, 3, 4, 9, 10, 12, 4, 9]),
    ("RelRunSum", DEFAULT0, None, [1, 3, 0, 7, 12, 13, 15, 0, 19, 24]),
    ("RelRunSum", DEFAULT0, IMMEDIATE, [1, 3, 0, 4, 9, 10, 12, 0, 4, 9]),
    ("RelRunSum", {"policy": "UseDefault", "last_good": True}, None,
     [1, 3, 3, 7, 12, 13, 15, 15, 19, 24]),
]


def _node(kind: str, policy: dict, restart: dict | None) -> dict:
    spec = {"type": kind, "error_policy": policy}
    if restart is not None:
        spec["restart"] = restart
    return spec


@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("kind,policy,restart,expected", CASES)
def test_exact_sequence_async(kind, policy, restart, expected, fusion):
    pipe = AsyncPipeline(chain_config(_node(kind, policy, restart)), fusion=fusion, debug=True)
    report = run_guarded(lambda: pipe.run(frames=value_frames(INPUT)))
    assert values(pipe.results["sink"]) == expected
    fates = report.fates()["n"]
    failed = 2
    assert fates["received"] == 10
    assert fates["delivered"] == 10 - failed
    kind_fate = "defaulted" if policy["policy"] == "UseDefault" else "skipped"
    assert fates[kind_fate] == failed
    restarts = report.nodes["n"].restarts
    assert restarts == (failed if restart and restart["strategy"] != "Never" else 0)


@pytest.mark.parametrize("kind,policy,restart,expected", CASES)
def test_exact_sequence_phase1(kind, policy, restart, expected):
    pipe = Pipeline(chain_config(_node(kind, policy, restart)))

    async def go() -> list[float]:
        out = []
        for f in value_frames(INPUT):
            out += values((await pipe.process(f)).get("sink", []))
        await pipe.close()
        return out

    assert asyncio.run(go()) == expected
    m = pipe.metrics["n"]
    m.check_accounting()
    assert m.received == 10


def test_substitute_keeps_timestamp_sequence_and_shape():
    pipe = AsyncPipeline(chain_config(_node("RelFailOn3", DEFAULT0, None)))
    run_guarded(lambda: pipe.run(frames=value_frames(INPUT)))
    out = pipe.results["sink"]
    assert [f.sequence_id for f in out] == list(range(10))
    assert [f.timestamp for f in out] == [i * 1000 for i in range(10)]
    assert all(f.channels == ("x",) and f.n_samples == 1 for f in out)


def test_propagate_is_the_default_and_names_the_node():
    pipe = AsyncPipeline(chain_config({"type": "RelFailOn3"}))
    with pytest.raises(PipelineError) as info:
        run_guarded(lambda: pipe.run(frames=value_frames(INPUT)))
    assert info.value.node_id == "n"
    assert "'n'" in str(info.value) and "value 3" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)
    assert values(pipe.results["sink"]) == [1, 2]
    fates = pipe.report.fates()["n"]
    assert fates["aborted"] >= 1 and fates["received"] == sum(
        v for k, v in fates.items() if k != "received")


def test_propagate_in_phase1_raises_pipeline_error():
    pipe = Pipeline(chain_config({"type": "RelFailOn3"}))
    outs = [pipe.process_sync(f) for f in value_frames([1, 2])]
    assert [values(o["sink"]) for o in outs] == [[1], [2]]
    with pytest.raises(PipelineError) as info:
        pipe.process_sync(value_frames([3])[0])
    assert info.value.node_id == "n" and isinstance(info.value.__cause__, ValueError)


# -- exception-type filters -------------------------------------------------------------------
def test_on_filter_handles_only_named_types():
    policy = SkipFrame(on=("ValueError",))
    assert policy.handles(ValueError("x"))
    assert not policy.handles(KeyError("x"))
    assert SkipFrame(on=("LookupError",)).handles(KeyError("x"))  # bases match too
    assert not SkipFrame(propagate_on=("RuntimeError",)).handles(FaultInjected("x"))
    assert not Propagate().handles(ValueError("x"))
    assert SkipFrame().handles(ValueError("x"))


@pytest.mark.parametrize("policy,propagates", [
    ({"policy": "SkipFrame", "on": ["ValueError"]}, True),
    ({"policy": "SkipFrame", "on": ["RuntimeError"]}, False),
    ({"policy": "SkipFrame", "propagate_on": ["FaultInjected"]}, True),
    ({"policy": "UseDefault", "on": ["FaultInjected"]}, False),
])
def test_exception_filters_end_to_end(policy, propagates):
    node = {"type": "FaultInjector", "config": {"every": 3}, "error_policy": policy}
    pipe = AsyncPipeline(chain_config(node))
    if propagates:
        with pytest.raises(PipelineError) as info:
            run_guarded(lambda: pipe.run(frames=value_frames(range(6))))
        assert isinstance(info.value.__cause__, FaultInjected)
    else:
        run_guarded(lambda: pipe.run(frames=value_frames(range(6))))
        assert len(pipe.results["sink"]) == (6 if policy["policy"] == "UseDefault" else 4)


# -- specs ------------------------------------------------------------------------------------
def test_the_config_settings_are_the_runtime_settings():
    pipe = AsyncPipeline(chain_config({"type": "RelRunSum", "error_policy": DEFAULT0 | {"on": ["ValueError"]},
                                       "restart": EXPONENTIAL}))
    node = pipe.built.nodes["n"]
    assert node.strategy is pipe.spec.node("n").restart  # one object, not a copy
    assert isinstance(node.strategy, Exponential)
    assert node.strategy.base_s == 1e-05 and node.strategy.max_attempts == 5
    assert node.policy == UseDefault(on=("ValueError",), fill_value=0.0)
    assert isinstance(AsyncPipeline(chain_config({"type": "RelRunSum"})).built.nodes["n"].policy,
                      Propagate)
    assert Immediate().restarts and not Never().restarts


def test_pipeline_wide_defaults_apply_to_every_node():
    cfg = chain_config({"type": "RelRunSum"},
                       settings={"error_policy": SKIP, "restart": {"strategy": "Immediate"}})
    pipe = AsyncPipeline(cfg)
    run_guarded(lambda: pipe.run(frames=value_frames(INPUT)))
    assert values(pipe.results["sink"]) == [1, 3, 4, 9, 10, 12, 4, 9]
    assert all(isinstance(r.policy, SkipFrame) for r in pipe.built.nodes.values())


def test_node_policy_overrides_pipeline_default():
    cfg = chain_config({"type": "RelFailOn3", "error_policy": DEFAULT0},
                       settings={"error_policy": SKIP})
    pipe = AsyncPipeline(cfg)
    run_guarded(lambda: pipe.run(frames=value_frames(INPUT)))
    assert values(pipe.results["sink"]) == [1, 2, 0, 4, 5, 1, 2, 0, 4, 5]


def test_restart_with_propagate_is_a_config_error_with_its_path():
    cfg = chain_config({"type": "RelRunSum", "error_policy": {"policy": "Propagate"},
                        "restart": {"strategy": "Immediate"}})
    with pytest.raises(ConfigError) as info:
        AsyncPipeline(cfg)
    assert any(p.path == "$.nodes[1].restart" for p in info.value.problems)


def test_restart_without_policy_defaults_to_skipframe():
    pipe = AsyncPipeline(chain_config({"type": "RelRunSum", "restart": {"strategy": "Immediate"}}))
    assert isinstance(pipe.built.nodes["n"].policy, SkipFrame)
