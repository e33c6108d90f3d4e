"""Dead letters end to end, and leaky edges (drop_oldest / drop_newest) counted, never silent."""

from __future__ import annotations

import asyncio

import pytest

from streamlab import AsyncPipeline, Pipeline
from streamlab.errors import ConfigError
from tests.reliability.harness import check_ledger, run_guarded, stamp


def dead_letter_config(policy: str = "SkipFrame") -> dict:
    return {
        "name": "dead",
        "pipeline_config": {"debug": True},
        "nodes": [
            {"id": "src", "type": "Passthrough"},
            {"id": "f", "type": "FaultInjector", "config": {"every": 4},
             "error_policy": {"policy": policy}, "dead_letter": "dlq"},
            {"id": "out", "type": "Passthrough"},
            {"id": "dlq", "type": "Passthrough"},
        ],
        "connections": [{"from": "src", "to": "f"}, {"from": "f", "to": "out"}],
    }


@pytest.mark.parametrize("fusion", [True, False])
def test_failed_frames_reach_the_dead_letter_node_with_the_error(fusion):
    pipe = AsyncPipeline(dead_letter_config(), fusion=fusion)
    report = run_guarded(lambda: pipe.run(frames=[stamp(s) for s in range(20)]))
    dead = pipe.results["dlq"]
    assert [f.sequence_id for f in dead] == [3, 7, 11, 15, 19]
    for f in dead:
        assert f.metadata["error_type"] == "FaultInjected"
        assert f"sequence_id={f.sequence_id}" in f.metadata["error_message"]
        assert f.metadata["error_node"] == "f" and f.metadata["error_policy"] == "SkipFrame"
        assert f.metadata["seq"] == str(f.sequence_id)  # the original frame, annotated
    assert len(pipe.results["out"]) == 15
    assert report.fates()["f"]["skipped"] == 5 and report.fates()["dlq"]["delivered"] == 5


def test_dead_letters_in_phase1():
    pipe = Pipeline(dead_letter_config())
    dead = []
    for s in range(8):
        dead += pipe.process_sync(stamp(s)).get("dlq", [])
    assert [f.sequence_id for f in dead] == [3, 7]


def test_dead_letter_to_unknown_node_is_a_config_error():
    cfg = dead_letter_config()
    cfg["nodes"][1]["dead_letter"] = "nowhere"
    with pytest.raises(ConfigError) as info:
        AsyncPipeline(cfg)
    assert [p.path for p in info.value.problems] == ["$.nodes[1].dead_letter"]


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
def test_leaky_edges_count_every_drop(overflow):
    cfg = {
        "name": "leaky",
        "pipeline_config": {"debug": True},
        "nodes": [{"id": "src", "type": "Passthrough"},
                  {"id": "slow", "type": "RelSleep", "config": {"delay": 0.002}}],
        "connections": [{"from": "src", "to": "slow", "capacity": 4, "overflow": overflow}],
    }
    pipe = AsyncPipeline(cfg)

    async def go():
        await pipe.start()
        for s in range(200):
            await pipe.trigger(stamp(s))
            if s % 20 == 0:
                await asyncio.sleep(0)
        return await pipe.stop()

    report = run_guarded(go)
    check_ledger(pipe, report, 200)
    ch = report.channels["src->slow"]
    f = report.fates()["slow"]
    got = [x.sequence_id for x in pipe.results["slow"]]
    assert ch.dropped > 0 and f["dropped_overflow"] == ch.dropped
    assert f["received"] == 200 == len(got) + ch.dropped
    assert ch.peak_depth <= 4
    assert got == sorted(got)
    if overflow == "drop_oldest":
        assert got[-1] == 199  # the newest frame always survives
    else:
        assert got[:4] == [0, 1, 2, 3]  # the oldest ones are kept
