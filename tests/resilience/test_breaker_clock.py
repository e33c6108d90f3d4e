"""A circuit breaker in a running pipeline: ``reset_timeout_s`` is seconds of the pipeline
clock (a mutant misreading its unit survived every other test, #9 item 21)."""

from __future__ import annotations

import asyncio

from streamlab import AsyncPipeline
from streamlab.resilience import BreakerState
from streamlab.testing import VirtualClock
from tests.reliability.harness import chain_config, run_guarded, value_frames


def test_breaker_probes_once_the_virtual_clock_passes_reset_timeout():
    clock = VirtualClock()
    node = {"type": "FaultInjector", "config": {"at": [0, 1]},
            "error_policy": {"policy": "SkipFrame"},
            "breaker": {"failure_threshold": 2,
                        "reset_timeout_s": 0.1}}
    pipe = AsyncPipeline(chain_config(node), clock=clock, debug=True)
    frames = value_frames(range(5))
    n = pipe.built.nodes["n"]

    async def settle(received: int) -> None:
        for _ in range(10_000):  # bounded: the node takes each frame within a few loop turns
            if n.metrics.received >= received:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"node n received {n.metrics.received}, expected {received}")

    async def go():
        await pipe.start()
        for f in frames[:2]:  # two failures: the breaker opens at virtual time 0
            await pipe.trigger(f)
        await settle(2)
        assert n.breaker.state is BreakerState.OPEN
        clock.advance(0.099)  # 99 ms: still open, the frame is rejected
        await pipe.trigger(frames[2])
        await settle(3)
        assert n.metrics.rejected == 1 and n.breaker.statistics().probes == 0
        clock.advance(0.002)  # 101 ms after opening: the next frame is a probe
        await pipe.trigger(frames[3])
        await settle(4)
        await pipe.trigger(frames[4])
        return await pipe.stop()

    report = run_guarded(go)
    f = report.fates()["n"]
    assert f == {**f, "received": 5, "skipped": 2, "rejected": 1, "delivered": 2}
    assert n.breaker.statistics().probes == 1
    assert n.breaker.state is BreakerState.CLOSED  # the probe succeeded
    assert [int(x.payload["x"][0]) for x in pipe.results["sink"]] == [3, 4]
