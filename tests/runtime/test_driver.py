"""The node driver on its own: one feed, a chain of stages, an outlet; fates settled exactly."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from streamlab.channel import Channel, Inlet
from streamlab.errors import NodeError
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import NodeContext
from streamlab.nodes.basic import Passthrough
from streamlab.nodes.fault import FaultInjector
from streamlab.resilience import Immediate, ResilientNode, SkipFrame
from streamlab.runtime.driver import InletFeed, NodeDriver, stage_runner
from streamlab.testing import VirtualClock, make_frame
from tests.conftest import _Countdown, _Slow, run


class Collect:
    """A terminal outlet that keeps what it gets."""

    def __init__(self, capacity: int | None = None) -> None:
        self.frames: list = []
        self.sent = 0
        self.capacity = capacity
        self.room = asyncio.Event()

    def try_send(self, frame) -> bool:
        if self.capacity is not None and len(self.frames) >= self.capacity:
            return False
        self.frames.append(frame)
        self.sent += 1
        return True

    async def send(self, frame) -> None:
        while not self.try_send(frame):
            await self.room.wait()

    async def send_all(self, frames) -> None:
        for f in frames:
            await self.send(f)

    def close(self) -> None:
        pass


def stage(node_id: str, config: dict | None = None, node_type=Passthrough, **kw) -> ResilientNode:
    ctx = NodeContext(node_id=node_id, clock=kw.pop("clock", VirtualClock()), inputs=["up"])
    return ResilientNode(lambda: node_type.create(config or {}, ctx), clock=ctx.clock, **kw)


def driver(stages, frames, *, executor="inline", outlet=None, close=True):
    ch = Channel(max(1, len(frames)), name="up->x")
    for f in frames:
        ch.try_send(f)
    if close:
        ch.close()
    out = outlet or Collect()
    d = NodeDriver(stages, out, runs=[stage_runner(executor)] + [None] * (len(stages) - 1),
                   aborting=lambda: False)
    d.feed = InletFeed(Inlet([ch], ["up"]), stages[0])
    return d, out


def seqs(frames):
    return [f.sequence_id for f in frames]


def frames(n):
    return [make_frame(x=[float(i)], sequence_id=i) for i in range(n)]


def test_a_batch_goes_through_every_stage_in_order():
    stages = [stage("a"), stage("b"), stage("c")]
    d, out = driver(stages, frames(10))
    run(d.run())
    assert seqs(out.frames) == list(range(10))
    for st in stages:
        m = st.metrics
        assert (m.received, m.delivered, m.frames_out) == (10, 10, 10)


@pytest.mark.parametrize("executor", ["inline", "async"])
def test_outputs_before_a_failure_flow_on_then_the_failure_is_raised(executor):
    node_type = FaultInjector if executor == "inline" else _AsyncFault
    a, b = stage("a", {"at": [6]}, node_type=node_type), stage("b")
    d, out = driver([a, b], frames(10), executor=executor)
    with pytest.raises(NodeError, match="'a'"):
        run(d.run())
    assert seqs(out.frames) == [0, 1, 2, 3, 4, 5]  # made before the failure: all delivered
    fa = a.metrics.fates()
    assert a.metrics.received == 10 and fa["delivered"] == 6 and fa["aborted"] == 4
    assert b.metrics.received == b.metrics.delivered == 6


def test_a_restart_is_awaited_between_frames_and_the_rest_meets_the_fresh_instance():
    clock = VirtualClock()
    a = stage("a", {"at": [3]}, FaultInjector, policy=SkipFrame(), strategy=Immediate(),
              clock=clock)
    first = a.node
    d, out = driver([a, stage("b")], frames(8))
    run(d.run())
    assert seqs(out.frames) == [0, 1, 2, 4, 5, 6, 7]
    assert a.node is not first and a.metrics.restarts == 1
    assert a.metrics.fates()["skipped"] == 1 and a.metrics.received == 8


def test_a_node_at_the_end_of_its_data_ends_the_chain_and_drops_what_it_did_not_use():
    src = stage("src", {"count": 3}, node_type=_Countdown)
    d, out = driver([src, stage("b")], frames(5))
    run(d.run())
    assert len(out.frames) == 3
    m = src.metrics
    assert (m.received, m.delivered, m.dropped_shutdown) == (5, 3, 2)
    m.check_accounting()


def test_cancellation_settles_every_frame_in_hand():
    slow = stage("slow", {"delay": 0.05}, node_type=_Slow)
    d, out = driver([slow], frames(6), executor="async", close=False)

    async def go():
        task = asyncio.create_task(d.run())
        while slow.metrics.received < 1:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(go())
    m = slow.metrics
    assert m.received == 6 and m.delivered + m.dropped_shutdown == 6 and m.dropped_shutdown >= 1
    m.check_accounting()


def test_outputs_that_never_left_are_moved_from_delivered_at_a_forced_stop():
    a = stage("a")
    out = Collect(capacity=2)  # a full terminal: the third frame waits forever
    d, _ = driver([a], frames(5), outlet=out)

    async def go():
        task = asyncio.create_task(d.run())
        while a.metrics.delivered < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(go())
    m = a.metrics
    assert out.sent == 2 and m.frames_out == 2
    assert (m.received, m.delivered, m.dropped_shutdown) == (5, 2, 3)


class _AsyncFault(FaultInjector):
    async def process(self, frame):  # type: ignore[override]
        return FaultInjector.process(self, frame)


# -- the event ledger costs nothing while no frame has events ---------------------------------
class _Marker(Passthrough):
    """Test node: puts one event on every frame it passes."""

    def process(self, frame):
        return frame.with_events([Event(frame.timestamp, f"m{frame.sequence_id}")])


@pytest.fixture
def no_events_yet(monkeypatch):
    """This process as if no frame with events had been made yet; counts the event scans."""
    import streamlab.frame
    import streamlab.runtime.driver as drv

    monkeypatch.setattr(streamlab.frame, "events_seen", False)
    scans = []

    def events_of(frame):
        scans.append(frame)
        return frame.events

    monkeypatch.setattr(drv, "_events_of", events_of)
    return scans


def test_event_free_frames_are_never_scanned_for_events(no_events_yet):
    stages = [stage("a"), stage("b")]
    d, out = driver(stages, frames(10))
    run(d.run())
    assert seqs(out.frames) == list(range(10))
    assert no_events_yet == []  # no per-batch scan of frames or outputs
    for st in stages:
        m = st.metrics
        assert (m.received, m.delivered, m.events_received, m.events_emitted) == (10, 10, 0, 0)


def test_the_first_frame_with_events_turns_the_exact_event_ledger_on(no_events_yet):
    mark, b = stage("mark", node_type=_Marker), stage("b")
    d, out = driver([stage("a"), mark, b], frames(10))
    run(d.run())
    assert [e.label for f in out.frames for e in f.events] == [f"m{i}" for i in range(10)]
    assert (mark.metrics.events_received, mark.metrics.events_emitted) == (0, 10)
    assert b.metrics.events_received == 10 and b.metrics.event_fates["carried"] == 10


@pytest.mark.parametrize("make", [
    lambda: DataFrame(0, 0, {"x": [1.0]}, events=[Event(0, "e")]),
    lambda: make_frame(x=[1.0]).with_events([Event(0, "e")]),
    lambda: DataFrame._make(0, 0, make_frame(x=[1.0]).payload, {}, (Event(0, "e", sample=0),)),
    lambda: pickle.loads(pickle.dumps(DataFrame(0, 0, {"x": [1.0]}, events=[Event(0, "e")]))),
])
def test_every_way_of_making_a_frame_with_events_is_seen(monkeypatch, make):
    import streamlab.frame

    monkeypatch.setattr(streamlab.frame, "events_seen", False)
    make_frame(x=[1.0]).with_metadata(a="b")  # event-free frames leave it off
    assert streamlab.frame.events_seen is False
    assert make().events
    assert streamlab.frame.events_seen is True


# -- batch sizes of a free-running source ------------------------------------------------------
def _batch_sizes(monkeypatch, channels: int, samples: int, frames_: int = 200) -> list[int]:
    """Sizes of the batches the stage after a free source gets (W1/W5-like chain)."""
    from streamlab.runtime.async_pipeline import AsyncPipeline

    sizes: list[int] = []
    original = ResilientNode.process_batch

    def spy(self, frames, out, **kw):
        if self.node_id == "g" and not kw.get("produce"):
            sizes.append(len(frames))
        return original(self, frames, out, **kw)

    monkeypatch.setattr(ResilientNode, "process_batch", spy)
    cfg = {"nodes": [
        {"id": "src", "type": "SineGenerator",
         "config": {"mode": "free", "max_frames": frames_, "sample_rate": 1000.0,
                    "frequency": 1.0, "samples_per_frame": samples,
                    "channels": [f"c{i}" for i in range(channels)]}},
        {"id": "g", "type": "Gain", "config": {"gain": 2.0}}],
        "connections": [{"from": "src", "to": "g"}]}
    pipe = AsyncPipeline(cfg, outputs="discard")
    report = run(pipe.run())
    assert report.nodes["g"].received == frames_
    return sizes


def test_a_free_source_of_tiny_frames_makes_batches_of_64(monkeypatch):
    sizes = _batch_sizes(monkeypatch, 1, 1)
    assert sizes[:3] == [16, 64, 64] and sum(sizes) == 200  # sized on the first batch


def test_a_free_source_of_larger_frames_keeps_batches_of_16(monkeypatch):
    assert set(_batch_sizes(monkeypatch, 8, 256)[:-1]) == {16}
