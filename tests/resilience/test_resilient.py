"""ResilientNode on its own: fates, restarts, backoff on a virtual clock, escalation."""

from __future__ import annotations

import asyncio

import pytest

from streamlab.errors import NodeError
from streamlab.node import NodeContext
from streamlab.nodes.fault import FaultInjected, FaultInjector
from streamlab.resilience import (
    Exponential,
    Immediate,
    ResilientNode,
    SkipFrame,
    UseDefault,
)
from streamlab.testing import VirtualClock, make_frame
from tests.reliability.harness import RelRunSum

created: list[FaultInjector] = []


def wrap(config: dict, policy=None, strategy=None, clock=None, node_type=FaultInjector,
         **kw) -> ResilientNode:
    ctx = NodeContext(node_id="f", clock=clock or VirtualClock())

    def factory():
        node = node_type.create(config, ctx)
        created.append(node)
        return node

    return ResilientNode(factory, policy=policy, strategy=strategy, clock=ctx.clock, **kw)


def frames(n: int):
    return [make_frame(x=[float(i + 1)], sequence_id=i) for i in range(n)]


def test_fates_sum_to_received():
    r = wrap({"every": 3}, policy=SkipFrame())
    outs = [r.process(f) for f in frames(9)]
    assert sum(o is not None for o in outs) == 6
    m = r.metrics
    assert (m.received, m.delivered, m.skipped, m.errors) == (9, 6, 3, 3)
    m.check_accounting()


def test_restart_is_a_fresh_instance_from_the_same_config():
    created.clear()
    r = wrap({"every": 2}, policy=SkipFrame(), strategy=Immediate())
    first = r.node
    r.process(frames(1)[0])
    assert r.process(frames(2)[1]) is None and r.pending_restart
    asyncio.run(r.restart())
    assert r.node is not first and r.node.config == first.config
    assert r.node.received == 0 and r.metrics.restarts == 1 and not r.pending_restart
    assert len(created) == 2


def test_running_state_resets_only_on_restart():
    r = wrap({}, policy=SkipFrame(), strategy=Immediate(), node_type=RelRunSum)
    out = [r.process(f) for f in [make_frame(x=[v]) for v in (1.0, 2.0)]]
    assert [float(o.payload["x"][0]) for o in out] == [1.0, 3.0]
    assert r.process(make_frame(x=[3.0])) is None
    asyncio.run(r.restart())
    assert float(r.process(make_frame(x=[4.0])).payload["x"][0]) == 4.0


def test_permanent_failure_escalates_after_exactly_max_attempts():
    clock = VirtualClock()
    r = wrap({"every": 1}, policy=SkipFrame(), clock=clock,
             strategy=Exponential(base_s=0.01, max_s=0.08, max_attempts=5))

    async def go():
        for f in frames(10):
            await r.restart()
            r.process(f)

    with pytest.raises(NodeError) as info:
        asyncio.run(go())
    assert r.restart_delays == [0.01, 0.02, 0.04, 0.08, 0.08]
    assert clock.sleeps == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08])
    assert r.metrics.restarts == 5 and r.metrics.errors == 6
    assert "gave up after 5 restarts" in str(info.value) and info.value.node_id == "f"
    assert isinstance(info.value.__cause__, FaultInjected)
    m = r.metrics
    assert (m.skipped, m.aborted) == (5, 1)  # the frame that ends the run is aborted
    m.check_accounting()


def test_failure_while_restart_pending_uses_no_extra_attempt():
    r = wrap({"every": 1}, policy=SkipFrame(),
             strategy=Exponential(base_s=0.01, max_s=0.08, max_attempts=5))
    for f in frames(3):  # no restart performed in between
        assert r.process(f) is None
    assert r.attempts == 1 and r.restart_delays == [0.01]
    r.metrics.check_accounting()


def test_intensity_limit_escalates():
    clock = VirtualClock()
    r = wrap({"every": 1}, policy=SkipFrame(), clock=clock,
             strategy=Immediate(max_restarts=3, within_s=10.0))

    async def go():
        for f in frames(10):
            await r.restart()
            r.process(f)
            clock.advance(1.0)

    with pytest.raises(NodeError, match="restart intensity exceeded: more than 3 restarts"):
        asyncio.run(go())
    assert r.metrics.restarts == 3


def test_restarts_spread_out_stay_under_the_intensity_limit():
    clock = VirtualClock()
    r = wrap({"every": 1}, policy=SkipFrame(), clock=clock,
             strategy=Immediate(max_restarts=3, within_s=10.0))

    async def go():
        for f in frames(10):
            await r.restart()
            r.process(f)
            clock.advance(4.0)  # at most 3 restarts in any 10 s window

    asyncio.run(go())
    assert r.metrics.restarts == 9


def test_attempts_reset_after_a_healthy_period():
    clock = VirtualClock()
    r = wrap({"every": 1}, policy=SkipFrame(), clock=clock,
             strategy=Exponential(base_s=0.01, max_s=0.08, max_attempts=2, healthy_after_s=5.0))

    async def go():
        for k, f in enumerate(frames(8)):
            await r.restart()
            r.process(f)
            if k % 2 == 1:
                clock.advance(5.0)  # healthy for healthy_after_s after every second failure

    asyncio.run(go())
    assert r.restart_delays == [0.01, 0.02] * 4


def test_use_default_last_good_and_fill():
    r = wrap({"at": [1]}, policy=UseDefault(last_good=True))
    r.process(make_frame(x=[5.0], sequence_id=0))
    b = r.process(make_frame(x=[6.0], sequence_id=1, timestamp=99))
    assert float(b.payload["x"][0]) == 5.0 and b.sequence_id == 1 and b.timestamp == 99
    r2 = wrap({"at": [0]}, policy=UseDefault(fill_value=None))
    out = r2.process(make_frame(x=[1.0, 2.0], y=[3.0, 4.0]))
    assert out.channels == ("x", "y") and all(v != v for v in out.payload["y"])  # NaN
    assert r2.metrics.defaulted == 1


def test_dead_letters_carry_the_error():
    r = wrap({"at": [1]}, policy=SkipFrame(), collect_dead_letters=True)
    for f in frames(3):
        r.process(f)
    (dead,) = r.dead_letters
    assert dead.sequence_id == 1
    assert dead.metadata["error_type"] == "FaultInjected"
    assert "sequence_id=1" in dead.metadata["error_message"]
    assert dead.metadata["error_node"] == "f" and dead.metadata["error_policy"] == "SkipFrame"


def test_cancelled_backoff_leaves_the_instance_and_the_restart_pending():
    from streamlab.clock import SYSTEM_CLOCK

    r = wrap({"every": 1}, policy=SkipFrame(), clock=SYSTEM_CLOCK,
             strategy=Exponential(base_s=60.0, max_s=60.0))
    before = r.node
    r.process(frames(1)[0])

    async def go():
        task = asyncio.create_task(r.restart())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert r.node is before and r.pending_restart and r.metrics.restarts == 0


def test_async_node_cancelled_mid_frame_is_counted():
    r = wrap({"every": 1, "mode": "hang"}, policy=SkipFrame())
    assert r.is_async

    async def go():
        task = asyncio.create_task(r.process_async(frames(1)[0]))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert r.metrics.received == 1 and r.metrics.dropped_shutdown == 1
