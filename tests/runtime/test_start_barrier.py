"""The start barrier: no source produces and no trigger is taken before every task of the
pipeline has started (its nodes' ``on_start`` ran), so the first frames of a paced source do
not wait for the rest of the pipeline to start up (an outlier of many times the later p99)."""

from __future__ import annotations

import asyncio

import pytest

from streamlab import AsyncPipeline, DataFrame
from streamlab.nodes.basic import Passthrough
from streamlab.nodes.generators import SineGenerator
from streamlab.registry import register_node, unregister_node
from tests.conftest import run

EVENTS: list[str] = []


class _RecordingSine(SineGenerator):
    """Records each production (free mode) or trigger taken (triggered mode)."""

    def process(self, frame: DataFrame | None):  # type: ignore[override]
        EVENTS.append("produce")
        return super().process(frame)


class _SlowStart(Passthrough):
    """Records when its (asynchronous, several-step) start-up has finished."""

    async def on_start(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        EVENTS.append(f"started:{self.context.node_id}")


TYPES = {"TestRecordingSine": _RecordingSine, "TestSlowStart": _SlowStart}


@pytest.fixture(autouse=True, scope="module")
def node_types():
    for name, cls in TYPES.items():
        register_node(cls, name=name)
    yield
    for name in TYPES:
        unregister_node(name)


@pytest.fixture(autouse=True)
def clear_events():
    EVENTS.clear()


def cfg(source: dict, fusion: bool = False) -> dict:
    return {"pipeline_config": {"fusion": fusion},
            "nodes": [{"id": "src", "type": "TestRecordingSine",
                       "config": {"frequency": 5.0, "sample_rate": 1000.0,
                                  "samples_per_frame": 1, **source}},
                      {"id": "a", "type": "TestSlowStart"},
                      {"id": "b", "type": "TestSlowStart"}],
            "connections": [{"from": "src", "to": "a"}, {"from": "a", "to": "b"}]}


def assert_started_first(n_frames: int) -> None:
    first = EVENTS.index("produce")
    assert sorted(EVENTS[:first]) == ["started:a", "started:b"], EVENTS[:6]
    assert EVENTS.count("produce") == n_frames


@pytest.mark.parametrize("fusion", [False, True])
def test_paced_source_produces_after_every_task_started(fusion):
    config = cfg({"mode": "free", "realtime": True, "max_frames": 5}, fusion)

    async def go():
        pipe = AsyncPipeline(config)
        report = await pipe.run()
        return pipe, report

    pipe, _ = run(go())
    assert_started_first(5)
    assert pipe.metrics["b"].end_to_end.count == 5


def test_unpaced_source_produces_after_every_task_started():
    run(AsyncPipeline(cfg({"mode": "free", "max_frames": 40})).run())
    assert_started_first(40)


def test_trigger_sent_at_once_is_taken_after_every_task_started():
    async def go():
        pipe = AsyncPipeline(cfg({}))
        await pipe.start()
        await pipe.trigger()  # queued before any task ran
        await pipe.trigger()
        pipe.close_triggers()
        return await pipe.join()

    report = run(go())
    assert_started_first(2)
    assert report.fates()["b"]["delivered"] == 2


def test_failing_start_still_ends_the_run():
    """A task that fails in on_start never reaches the barrier: the others must not hang."""

    class _BadStart(Passthrough):
        def on_start(self) -> None:
            raise RuntimeError("no device")

    register_node(_BadStart, name="TestBadStart")
    try:
        config = cfg({"mode": "free", "realtime": True, "max_frames": 5})
        config["nodes"][2]["type"] = "TestBadStart"

        async def go():
            pipe = AsyncPipeline(config)
            with pytest.raises(Exception, match="no device"):
                await asyncio.wait_for(pipe.run(), 60)
            return pipe

        pipe = run(go())
        assert "produce" not in EVENTS
        assert pipe.state == "failed"
    finally:
        unregister_node("TestBadStart")
