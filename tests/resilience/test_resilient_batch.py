"""ResilientNode's batch and source paths: outputs, fates and latency, value for value.

``process_batch``, ``produce``, ``produce_batch`` and ``produce_async`` are what the runtime
calls per batch; these tests pin their return values, the frames they append, every fate
counter and the latency histogram (on a scripted ``perf_counter_ns``, so the durations are
known exactly), and ``NodeMetricsSnapshot.to_dict``.

The batch path reads the clock twice per batch: each frame of a batch is attributed the
batch's mean duration (``Histogram.record_batch``: exact sum, max = the largest batch mean);
the per-frame path (breaker, deadline, UseDefault) times every frame exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import streamlab.resilience.resilient as resilient_mod
from streamlab.errors import EndOfStream, NodeError
from streamlab.events import EVENT_FATES
from streamlab.frame import DataFrame
from streamlab.metrics.node_metrics import FATES, Histogram, NodeMetrics
from streamlab.node import NodeContext, ProcessingNode
from streamlab.resilience import (
    CircuitBreakerSettings,
    CircuitBreakerStrategy,
    Immediate,
    ResilientNode,
    SkipFrame,
    UseDefault,
)
from streamlab.testing import VirtualClock, make_frame

OK, NONE, LIST, FAIL, END = "ok", "none", "list", "fail", "end"


def scripted(script: list[str], *, is_async: bool = False) -> type[ProcessingNode]:
    """A node type whose n-th ``process`` call (over all instances) does ``script[n]``.

    ``ok`` returns the frame (a new one for a source), ``list`` returns it twice (the
    second with metadata ``last=yes``), ``empty`` returns ``[]``, ``none``
    returns None, ``fail`` raises ValueError("boom <n>"), ``end`` raises EndOfStream.
    """
    calls = iter(range(10_000))

    def act(frame: DataFrame | None) -> object:
        n = next(calls)
        what = script[n] if n < len(script) else OK
        src = frame if frame is not None else make_frame(x=[float(n)], sequence_id=1000 + n)
        if what == FAIL:
            raise ValueError(f"boom {n}")
        if what == END:
            raise EndOfStream()
        if what == NONE:
            return None
        if what == LIST:
            return [src, src.with_metadata(last="yes")]
        if what == "empty":
            return []
        return src

    if is_async:
        class AsyncScripted(ProcessingNode):
            async def process(self, frame):  # type: ignore[override]
                return act(frame)
        return AsyncScripted

    class Scripted(ProcessingNode):
        def process(self, frame):  # type: ignore[override]
            return act(frame)
    return Scripted


def wrap(script: list[str], *, is_async: bool = False, **kw) -> ResilientNode:
    node_type = scripted(script, is_async=is_async)
    ctx = NodeContext(node_id="n1", clock=kw.pop("clock", None) or VirtualClock())
    return ResilientNode(lambda: node_type.create({}, ctx), clock=ctx.clock, **kw)


def frames(n: int) -> list[DataFrame]:
    return [make_frame(x=[float(i)], sequence_id=i) for i in range(n)]


@pytest.fixture
def perf(monkeypatch) -> list[int]:
    """Script ``perf_counter_ns`` as read by ResilientNode: successive reads return these."""
    times: list[int] = []
    it: Iterator[int] = iter(())

    def fake() -> int:
        return next(it)

    def set_times(values: list[int]) -> None:
        nonlocal it
        times[:] = values
        it = iter(values)

    monkeypatch.setattr(resilient_mod, "_perf_ns", fake)
    fake.set = set_times  # type: ignore[attr-defined]
    return fake  # type: ignore[return-value]


def reference(durations: list[int]) -> Histogram:
    h = Histogram()
    for d in durations:
        h.record(d)
    return h


def fates(r: ResilientNode) -> dict[str, int]:
    return {k: v for k, v in r.metrics.fates().items() if v}


# -- process_batch, fast path -------------------------------------------------------------
def test_batch_outputs_fates_and_exact_latencies(perf):
    # two clock reads for the whole batch: 1_049_862 ns over 10 frames, each attributed the
    # mean 104_986 (floored); the sum stays exact.
    durations = [0, 1, 7, 16, 31, 31, 100, 100, 1000, 2**20]
    total = sum(durations)
    perf.set([1000, 1000 + total])
    r = wrap([OK, NONE, LIST, OK, OK, NONE, OK, OK, OK, OK])
    out: list[DataFrame] = []
    fs = frames(10)
    assert r.process_batch(fs, out) == 10
    assert [f.sequence_id for f in out] == [0, 2, 2, 3, 4, 6, 7, 8, 9]
    assert out[0] is fs[0] and out[2].metadata["last"] == "yes"
    m = r.metrics
    assert (m.received, m.delivered, m.errors) == (10, 10, 0)
    assert fates(r) == {"delivered": 10}
    assert total == 1_049_862
    ref = reference([104_986] * 10)
    assert m.latency.counts == ref.counts
    assert m.latency.count == 10
    assert m.latency.total_ns == 1_049_862
    assert m.latency.max_ns == 104_986
    m.check_accounting()


@pytest.mark.parametrize(("total", "n", "mean"), [
    (0, 3, 0), (2, 3, 0), (3, 3, 1), (45, 3, 15), (48, 3, 16), (49, 3, 16), (93, 3, 31),
    (300, 3, 100), (3000, 3, 1000), (3 * 2**20 + 2, 3, 2**20), (17, 1, 17),
])
def test_batch_mean_goes_to_the_bucket_histogram_record_would_use(perf, total, n, mean):
    # small means are their own bucket, larger ones go through the inlined bucket formula:
    # n records of the floored mean, exactly as Histogram.record would file them.
    perf.set([500, 500 + total])
    r = wrap([OK] * n)
    assert r.process_batch(frames(n), []) == n
    h = r.metrics.latency
    assert h.counts == reference([mean] * n).counts
    assert (h.count, h.total_ns, h.max_ns) == (n, total, mean)


def test_batch_latency_max_only_grows(perf):
    perf.set([0, 10])  # mean 5 < the max already there
    r = wrap([OK, OK])
    r.metrics.latency.max_ns = 50
    r.metrics.latency.total_ns = 3
    assert r.process_batch(frames(2), []) == 2
    assert r.metrics.latency.max_ns == 50
    assert r.metrics.latency.total_ns == 13


def test_batch_latency_max_is_the_largest_not_the_last(perf):
    # two batches of two: means 30 then 10
    perf.set([0, 60, 100, 120])
    r = wrap([OK] * 4)
    assert r.process_batch(frames(2), []) == 2
    assert r.process_batch(frames(2), []) == 2
    assert r.metrics.latency.max_ns == 30
    assert r.metrics.latency.total_ns == 80
    assert r.metrics.latency.counts == reference([30, 30, 10, 10]).counts


def test_empty_batch_counts_nothing():
    r = wrap([])
    out: list[DataFrame] = []
    assert r.process_batch([], out) == 0
    assert out == [] and r.metrics.received == 0 and r.metrics.latency.count == 0


def test_batch_skip_continues_after_a_failure():
    r = wrap([OK, FAIL, OK, LIST], policy=SkipFrame())
    fs = frames(4)
    out: list[DataFrame] = []
    assert r.process_batch(fs, out) == 4
    assert [f.sequence_id for f in out] == [0, 2, 3, 3]
    assert out[0] is fs[0] and out[1] is fs[2] and out[2] is fs[3]
    m = r.metrics
    assert fates(r) == {"delivered": 3, "skipped": 1}
    assert (m.received, m.errors, m.error_types) == (4, 1, {"ValueError": 1})
    assert m.latency.count == 4  # the failed call is timed too
    assert str(r.last_error) == "boom 1"
    m.check_accounting()


def test_batch_two_failures_in_a_row_and_last_frame_failing():
    r = wrap([FAIL, FAIL, OK, FAIL], policy=SkipFrame())
    out: list[DataFrame] = []
    fs = frames(4)
    assert r.process_batch(fs, out) == 4
    assert out == [fs[2]]
    assert fates(r) == {"delivered": 1, "skipped": 3}
    assert r.metrics.errors == 3
    r.metrics.check_accounting()


def test_batch_failure_scheduling_a_restart_stops_the_batch():
    r = wrap([OK, FAIL, OK, OK], policy=SkipFrame(), strategy=Immediate(),
             collect_dead_letters=True)
    fs = frames(4)
    out: list[DataFrame] = []
    assert r.process_batch(fs, out) == 2
    assert out == [fs[0]]
    assert r.pending_restart and r.batch_consumed == 2
    assert fates(r) == {"delivered": 1, "skipped": 1}
    assert [f.sequence_id for f in r.dead_letters] == [1]
    assert r.dead_letters[0].metadata["error_message"] == "boom 1"
    assert r.dead_letters[0].metadata["error_node"] == "n1"
    # the rest meets the fresh instance
    asyncio.run(r.restart())
    assert r.process_batch(fs[2:], out) == 2
    assert out == [fs[0], fs[2], fs[3]]
    assert fates(r) == {"delivered": 3, "skipped": 1} and r.metrics.restarts == 1


def test_batch_propagate_raises_node_error_with_consumed_count():
    r = wrap([OK, OK, FAIL, OK])
    out: list[DataFrame] = []
    fs = frames(4)
    with pytest.raises(NodeError) as ei:
        r.process_batch(fs, out)
    assert ei.value.node_id == "n1"
    assert "ValueError: boom 2" in str(ei.value)
    assert isinstance(ei.value.__cause__, ValueError)
    assert r.batch_consumed == 3
    assert out == [fs[0], fs[1]]
    assert fates(r) == {"delivered": 2, "aborted": 1}
    r.metrics.check_accounting()


def test_batch_end_of_stream_counts_the_frames_before_it():
    r = wrap([OK, OK, END])
    out: list[DataFrame] = []
    with pytest.raises(EndOfStream):
        r.process_batch(frames(4), out)
    assert r.batch_consumed == 2
    assert len(out) == 2
    assert fates(r) == {"delivered": 2}
    assert r.metrics.latency.count == 2


def test_batch_end_of_stream_latency_is_kept(perf):
    perf.set([0, 100, 300])
    r = wrap([OK, END])
    with pytest.raises(EndOfStream):
        r.process_batch(frames(3), [])
    assert r.metrics.latency.total_ns == 100 and r.metrics.latency.max_ns == 100


def test_batch_failure_latency_up_to_the_failure(perf):
    # reads: start 0; frame 2 fails, read at 90: the two delivered frames get 2/3 of it
    # (60, mean 30 each); _failed reads 100: the failed frame gets 100 - 60 = 40; the
    # recursive batch starts at 100 and frame 3 ends at 110.
    perf.set([0, 90, 100, 100, 110])
    r = wrap([OK, OK, FAIL, OK], policy=SkipFrame())
    assert r.process_batch(frames(4), []) == 4
    h = r.metrics.latency
    assert h.counts == reference([30, 30, 40, 10]).counts
    assert (h.count, h.total_ns, h.max_ns) == (4, 110, 40)
    assert fates(r) == {"delivered": 3, "skipped": 1}


# -- process_batch, per-frame path (breaker, deadline, UseDefault) ---------------------------
def test_batch_use_default_substitutes_in_order():
    r = wrap([OK, FAIL, LIST, NONE], policy=UseDefault(fill_value=-1.0))
    fs = frames(4)
    out: list[DataFrame] = []
    assert r.process_batch(fs, out) == 4
    assert len(out) == 4
    assert out[0] is fs[0] and out[2] is fs[2] and out[3].metadata["last"] == "yes"
    assert out[1].sequence_id == 1 and list(out[1].payload["x"]) == [-1.0]
    assert fates(r) == {"delivered": 3, "defaulted": 1}
    assert r.batch_consumed == 4


def test_batch_per_frame_path_stops_at_a_scheduled_restart():
    r = wrap([OK, FAIL, OK], policy=UseDefault(fill_value=0.0), strategy=Immediate())
    fs = frames(3)
    out: list[DataFrame] = []
    assert r.process_batch(fs, out) == 2
    assert r.batch_consumed == 2 and r.pending_restart
    assert [f.sequence_id for f in out] == [0, 1]
    assert fates(r) == {"delivered": 1, "defaulted": 1}


def test_batch_per_frame_deadline_counts_misses(perf):
    # per-frame path: two reads per frame; 5 ns then 2000 ns against a 1 µs deadline
    perf.set([0, 5, 10, 2010])
    r = wrap([OK, OK], deadline_s=1e-6)
    out: list[DataFrame] = []
    assert r.process_batch(frames(2), out) == 2
    assert r.metrics.deadline_misses == 1
    assert len(out) == 2 and r.metrics.latency.max_ns == 2000


def test_breaker_rejects_frames_while_open():
    clock = VirtualClock()
    r = wrap([FAIL, FAIL, OK], policy=SkipFrame(),
             breaker=CircuitBreakerSettings(failure_threshold=2, reset_timeout_s=1.0),
             clock=clock)
    out: list[DataFrame] = []
    assert r.process_batch(frames(5), out) == 5
    assert out == []
    assert fates(r) == {"skipped": 2, "rejected": 3}
    assert r.metrics.errors == 2 and r.metrics.received == 5
    r.metrics.check_accounting()


def test_breaker_rejection_under_use_default_substitutes():
    clock = VirtualClock()
    r = wrap([FAIL], policy=UseDefault(fill_value=7.0),
             breaker=CircuitBreakerSettings(failure_threshold=1, reset_timeout_s=1.0),
             clock=clock)
    a, b = frames(2)
    first = r.process(a)
    second = r.process(b)
    assert list(first.payload["x"]) == [7.0] and list(second.payload["x"]) == [7.0]
    assert second.sequence_id == 1
    assert fates(r) == {"defaulted": 1, "rejected": 1}


def test_breaker_rejection_async():
    clock = VirtualClock()
    r = wrap([FAIL], is_async=True, policy=SkipFrame(),
             breaker=CircuitBreakerSettings(failure_threshold=1, reset_timeout_s=1.0),
             clock=clock)

    async def go():
        return [await r.process_async(f) for f in frames(3)]

    assert asyncio.run(go()) == [None, None, None]
    assert fates(r) == {"skipped": 1, "rejected": 2}


# -- sources ------------------------------------------------------------------------------
def test_produce_counts_latency_but_no_fate(perf):
    perf.set([10, 35])
    r = wrap([OK])
    out = r.produce()
    assert isinstance(out, DataFrame) and list(out.payload["x"]) == [0.0]
    assert out.sequence_id == 1000
    m = r.metrics
    assert m.received == 0 and fates(r) == {}
    assert (m.latency.count, m.latency.total_ns, m.latency.max_ns) == (1, 25, 25)


def test_produce_failure_is_accounted_as_a_frame():
    r = wrap([FAIL, OK], policy=SkipFrame())
    assert r.produce() is None
    assert fates(r) == {"skipped": 1} and r.metrics.received == 1 and r.metrics.errors == 1
    assert r.produce() is not None
    assert fates(r) == {"skipped": 1}
    assert r.metrics.latency.count == 2


def test_produce_failure_propagates_as_node_error():
    r = wrap([FAIL])
    with pytest.raises(NodeError, match="ValueError: boom 0"):
        r.produce()


def test_produce_end_of_stream():
    r = wrap([END])
    with pytest.raises(EndOfStream):
        r.produce()
    assert r.metrics.latency.count == 0 and r.metrics.received == 0


def test_produce_batch_counts_calls_not_fates(perf):
    perf.set([0, 20])  # 3 calls in 20 ns: each attributed 6 (floored), sum exact
    r = wrap([OK, LIST, NONE])
    out: list[DataFrame] = []
    assert r.produce_batch(3, out) == (3, False)
    assert [f.sequence_id for f in out] == [1000, 1001, 1001]
    m = r.metrics
    assert m.received == 0 and fates(r) == {}
    assert m.latency.counts == reference([6, 6, 6]).counts
    assert (m.latency.total_ns, m.latency.max_ns) == (20, 6)


def test_produce_batch_stops_at_end_of_stream():
    r = wrap([OK, OK, END])
    out: list[DataFrame] = []
    assert r.produce_batch(5, out) == (2, True)
    assert len(out) == 2
    assert r.metrics.received == 0 and r.metrics.latency.count == 2


def test_produce_batch_failure_skipped_is_one_accounted_frame():
    r = wrap([OK, FAIL, OK], policy=SkipFrame())
    out: list[DataFrame] = []
    assert r.produce_batch(3, out) == (3, False)
    assert len(out) == 2
    assert fates(r) == {"skipped": 1} and r.metrics.received == 1


def test_produce_batch_failure_substituted_and_restart_stops():
    r = wrap([OK, FAIL, OK], policy=SkipFrame(), strategy=Immediate())
    out: list[DataFrame] = []
    assert r.produce_batch(3, out) == (2, False)
    assert len(out) == 1 and r.pending_restart


def test_produce_batch_use_default_appends_the_substitute():
    # produce=True takes the fast path even under UseDefault; the substitute of the empty
    # failed frame is appended.
    r = wrap([FAIL, OK], policy=UseDefault(fill_value=1.0))
    out: list[DataFrame] = []
    assert r.produce_batch(2, out) == (2, False)
    assert len(out) == 2
    assert out[0].payload.names == () and out[1].sequence_id == 1001
    assert fates(r) == {"defaulted": 1}


def test_produce_async(perf):
    perf.set([100, 160, 200, 230])
    r = wrap([OK, FAIL], is_async=True, policy=SkipFrame())

    async def go():
        return await r.produce_async(), await r.produce_async()

    first, second = asyncio.run(go())
    assert isinstance(first, DataFrame) and second is None
    m = r.metrics
    assert m.latency.count == 2 and m.latency.total_ns == 90 and m.latency.max_ns == 60
    assert fates(r) == {"skipped": 1} and m.errors == 1


def test_produce_async_end_and_propagate():
    r = wrap([END], is_async=True)
    with pytest.raises(EndOfStream):
        asyncio.run(r.produce_async())
    r2 = wrap([FAIL], is_async=True)
    with pytest.raises(NodeError, match="boom 0"):
        asyncio.run(r2.produce_async())
    assert fates(r2) == {"aborted": 1}


# -- process_async ------------------------------------------------------------------------
def test_process_async_fates_latency_and_deadline(perf):
    perf.set([0, 10, 20, 3020, 4000, 4001])
    r = wrap([OK, OK, FAIL], is_async=True, policy=SkipFrame(), deadline_s=1e-6)
    fs = frames(3)

    async def go():
        return [await r.process_async(f) for f in fs]

    assert asyncio.run(go()) == [fs[0], fs[1], None]
    m = r.metrics
    assert fates(r) == {"delivered": 2, "skipped": 1}
    assert m.deadline_misses == 1
    assert (m.latency.count, m.latency.total_ns, m.latency.max_ns) == (3, 3011, 3000)


def test_process_async_use_default_last_good():
    r = wrap([OK, NONE, FAIL], is_async=True, policy=UseDefault(last_good=True, fill_value=-1.0))
    fs = [make_frame(x=[5.0 + i], sequence_id=i, metadata={"i": str(i)}) for i in range(3)]

    async def go():
        return [await r.process_async(f) for f in fs]

    good, none, sub = asyncio.run(go())
    assert good is fs[0] and none is None
    assert sub.sequence_id == 2 and list(sub.payload["x"]) == [5.0]  # frame 0's payload
    assert sub.metadata == {"i": "0"}
    assert fates(r) == {"delivered": 2, "defaulted": 1}


def test_repr_names_policy_strategy_and_restarts():
    r = wrap([], policy=SkipFrame(), strategy=Immediate())
    assert repr(r) == "<ResilientNode 'n1' policy=SkipFrame strategy=Immediate restarts=0>"


# -- snapshot.to_dict -----------------------------------------------------------------------
def test_snapshot_to_dict_has_every_field_with_its_value():
    m = NodeMetrics("n", pipeline="p", node_type="T")
    m.settle("delivered", 3)
    m.settle("skipped")
    m.frames_out = 2
    m.latency.record(1000)
    d = m.snapshot().to_dict()
    assert list(d) == ["pipeline", "node", "node_type", "received", "frames_out", "errors",
                       "restarts", "fates", "latency", "end_to_end", "blocked_seconds",
                       "deadline_misses", "sequence_gaps", "timestamp_regressions",
                       "busy_seconds", "end_to_end_deadline_misses", "events_received",
                       "events_emitted", "event_fates", "config_version", "config_changes"]
    assert (d["pipeline"], d["node"], d["node_type"]) == ("p", "n", "T")
    assert (d["received"], d["frames_out"], d["errors"], d["restarts"]) == (4, 2, 0, 0)
    assert d["fates"] == {f: {"delivered": 3, "skipped": 1}.get(f, 0) for f in FATES}
    assert d["latency"]["count"] == 1 and d["latency"]["max_s"] == 1e-6
    assert d["end_to_end"]["count"] == 0 and d["end_to_end"]["p50_s"] is None
    assert d["busy_seconds"] == 1e-6 and d["end_to_end_deadline_misses"] == 0
    assert (d["events_received"], d["events_emitted"]) == (0, 0)
    assert d["event_fates"] == dict.fromkeys(EVENT_FATES, 0)


def test_batch_all_zero_durations_max_is_zero(perf):
    perf.set([5, 5, 5])
    r = wrap([OK, OK])
    r.process_batch(frames(2), [])
    assert (r.metrics.latency.max_ns, r.metrics.latency.total_ns) == (0, 0)
    assert r.metrics.latency.counts[0] == 2


# -- deadlines, breaker results, last good, substitutes --------------------------------------
@pytest.mark.parametrize("is_async", [False, True])
def test_deadline_miss_is_strictly_over(perf, is_async):
    # durations 1000 (== deadline: no miss), 1001, 5000 (misses)
    perf.set([0, 1000, 2000, 3001, 4000, 9000])
    r = wrap([OK, OK, OK], is_async=is_async, deadline_s=1e-6)

    async def go():
        return [await r.process_async(f) for f in frames(3)]

    if is_async:
        asyncio.run(go())
    else:
        [r.process(f) for f in frames(3)]
    assert r.metrics.deadline_misses == 2


@pytest.mark.parametrize("is_async", [False, True])
def test_breaker_success_resets_the_failure_count(is_async):
    r = wrap([FAIL, OK, FAIL, OK, FAIL, OK], is_async=is_async, policy=SkipFrame(),
             breaker=CircuitBreakerSettings(failure_threshold=2, reset_timeout_s=1.0))

    async def go():
        return [await r.process_async(f) for f in frames(6)]

    outs = asyncio.run(go()) if is_async else [r.process(f) for f in frames(6)]
    assert [o is not None for o in outs] == [False, True] * 3
    assert fates(r) == {"delivered": 3, "skipped": 3}
    assert r.breaker.state.name == "CLOSED"


@pytest.mark.parametrize("is_async", [False, True])
def test_breaker_probe_success_closes_it(is_async):
    clock = VirtualClock()
    r = wrap([FAIL, OK, OK], is_async=is_async, policy=SkipFrame(), clock=clock,
             breaker=CircuitBreakerSettings(failure_threshold=1, reset_timeout_s=1.0))
    fs = frames(4)

    async def one(f):
        return await r.process_async(f) if is_async else r.process(f)

    async def go():
        a = await one(fs[0])           # fails: opens
        b = await one(fs[1])           # rejected
        clock.advance(1.5)
        c = await one(fs[2])           # probe succeeds: closes
        d = await one(fs[3])
        return a, b, c, d

    assert asyncio.run(go()) == (None, None, fs[2], fs[3])
    assert fates(r) == {"skipped": 1, "rejected": 1, "delivered": 2}
    assert r.breaker.state.name == "CLOSED"


def test_breaker_rejection_async_under_use_default_substitutes():
    r = wrap([FAIL], is_async=True, policy=UseDefault(fill_value=3.0),
             breaker=CircuitBreakerSettings(failure_threshold=1, reset_timeout_s=1.0))

    async def go():
        return [await r.process_async(f) for f in frames(2)]

    first, second = asyncio.run(go())
    assert list(second.payload["x"]) == [3.0] and second.sequence_id == 1
    assert r.metrics.error_types == {"ValueError": 1}


@pytest.mark.parametrize("is_async", [False, True])
def test_last_good_is_the_last_frame_of_a_list(is_async):
    r = wrap([LIST, NONE, FAIL], is_async=is_async,
             policy=UseDefault(last_good=True, fill_value=-1.0))
    fs = frames(3)

    async def go():
        return [await r.process_async(f) for f in fs]

    outs = asyncio.run(go()) if is_async else [r.process(f) for f in fs]
    assert outs[1] is None
    sub = outs[2]
    assert sub.metadata == {"last": "yes"} and sub.sequence_id == 2
    assert list(sub.payload["x"]) == [0.0]


@pytest.mark.parametrize("is_async", [False, True])
def test_last_good_empty_list_first_falls_back_to_fill(is_async):
    r = wrap(["empty", FAIL], is_async=is_async,
             policy=UseDefault(last_good=True, fill_value=-1.0))
    fs = frames(2)

    async def go():
        return [await r.process_async(f) for f in fs]

    outs = asyncio.run(go()) if is_async else [r.process(f) for f in fs]
    assert list(outs[1].payload["x"]) == [-1.0]


def test_substitute_of_a_block_frame_keeps_shape_names_time_and_metadata():
    r = wrap([FAIL], policy=UseDefault(fill_value=9.0))
    import numpy as np
    block = np.arange(6, dtype=np.float64).reshape(2, 3)
    frame = DataFrame.from_block(["a", "b"], block, timestamp=123, sequence_id=4,
                                 metadata={"k": "v"})
    sub = r.process(frame)
    assert sub.payload.is_block
    assert sub.payload.names == ("a", "b")
    assert sub.payload.block().tolist() == [[9.0] * 3, [9.0] * 3]
    assert (sub.timestamp, sub.sequence_id, sub.metadata) == (123, 4, {"k": "v"})


def test_substitute_without_fill_value_is_nan():
    import math
    r = wrap([FAIL], policy=UseDefault(fill_value=None))
    sub = r.process(make_frame(x=[1.0, 2.0], timestamp=77, metadata={"m": "1"}))
    assert all(math.isnan(v) for v in sub.payload["x"]) and len(sub.payload["x"]) == 2
    assert sub.timestamp == 77 and sub.metadata == {"m": "1"}


# -- errors: policy match, rng, escalation ---------------------------------------------------
@pytest.mark.parametrize("is_async", [False, True])
def test_policy_applies_only_to_listed_errors(is_async):
    r = wrap([FAIL, FAIL], is_async=is_async, policy=SkipFrame(on=("KeyError",)))

    async def go():
        return await r.process_async(frames(1)[0])

    with pytest.raises(NodeError, match="ValueError: boom 0"):
        asyncio.run(go()) if is_async else r.process(frames(1)[0])
    assert fates(r) == {"aborted": 1}
    assert r.metrics.error_types == {"ValueError": 1}


def test_produce_failure_goes_to_dead_letters_and_substitutes():
    r = wrap([FAIL, FAIL], policy=UseDefault(fill_value=1.0), collect_dead_letters=True)
    sub = r.produce()
    assert isinstance(sub, DataFrame) and sub.payload.names == ()
    assert len(r.dead_letters) == 1
    assert r.dead_letters[0].metadata["error_type"] == "ValueError"
    r2 = wrap([FAIL], is_async=True, policy=SkipFrame(), collect_dead_letters=True)
    assert asyncio.run(r2.produce_async()) is None
    assert r2.dead_letters[0].metadata["error_message"] == "boom 0"


def test_jitter_is_reproducible_with_a_seed():
    from streamlab.resilience import Exponential

    def delays() -> list[float]:
        r = wrap([FAIL] * 3, policy=SkipFrame(),
                 strategy=Exponential(base_ms=100, max_ms=10_000, jitter=0.5, seed=42,
                                      max_attempts=10))
        for f in frames(3):
            r.process(f)
            asyncio.run(r.restart())
        return r.restart_delays

    first = delays()
    assert len(first) == 3 and first == delays()
    assert first != [0.1, 0.2, 0.4]


def test_escalation_message_names_the_last_error():
    from streamlab.resilience import Exponential
    r = wrap([FAIL, FAIL], policy=SkipFrame(), strategy=Exponential(max_attempts=1))
    r.process(frames(1)[0])
    asyncio.run(r.restart())
    with pytest.raises(NodeError) as ei:
        r.process(frames(1)[0])
    assert str(ei.value).startswith("node 'n1': ")
    assert str(ei.value).endswith("; last error ValueError: boom 1")


# -- restart ----------------------------------------------------------------------------------
def test_restart_stops_the_old_instance_and_starts_the_new_one_async_hooks():
    events: list[str] = []

    class Hooked(ProcessingNode):
        async def on_start(self):
            events.append(f"start {id(self)}")

        async def on_stop(self):
            events.append(f"stop {id(self)}")

        async def process(self, frame):  # type: ignore[override]
            raise ValueError("x")

    ctx = NodeContext(node_id="h", clock=VirtualClock())
    r = ResilientNode(lambda: Hooked.create({}, ctx), policy=SkipFrame(), strategy=Immediate(),
                      clock=ctx.clock)
    old = r.node
    asyncio.run(r.process_async(frames(1)[0]))
    assert r.pending_restart
    asyncio.run(r.restart())
    assert events == [f"stop {id(old)}", f"start {id(r.node)}"]
    assert r.is_async is True
    assert r.pending_restart is False
    asyncio.run(r.restart())  # nothing pending: nothing happens
    assert len(events) == 2 and r.metrics.restarts == 1


# -- construction defaults --------------------------------------------------------------------
def test_defaults_metrics_named_after_the_node_and_no_dead_letters():
    r = wrap([FAIL, FAIL], policy=SkipFrame())
    assert (r.metrics.node, r.metrics.node_type) == ("n1", "Scripted")
    assert r.last_error is None
    r.process(frames(1)[0])
    assert r.dead_letters == [] and isinstance(r.last_error, ValueError)


def test_deadline_in_seconds_is_exact(perf):
    perf.set([0, 2_000_000_000, 0, 2_000_000_001])
    r = wrap([OK, OK], deadline_s=2.0)
    r.process(frames(1)[0])
    assert r.metrics.deadline_misses == 0
    r.process(frames(1)[0])
    assert r.metrics.deadline_misses == 1


def breaker_from_milliseconds() -> CircuitBreakerSettings:
    with pytest.warns(DeprecationWarning, match="'reset_timeout_ms' is deprecated, use "
                      "'reset_timeout_s' in seconds"):
        return CircuitBreakerStrategy(failure_threshold=1, reset_timeout_ms=1000)


@pytest.mark.parametrize("settings", [
    lambda: CircuitBreakerSettings(failure_threshold=1, reset_timeout_s=1.0),
    breaker_from_milliseconds,  # the deprecated name, converted to seconds
], ids=["seconds", "deprecated_ms"])
def test_breaker_reset_timeout_in_seconds(settings):
    breaker = settings()
    assert CircuitBreakerStrategy is CircuitBreakerSettings  # the old name is an alias
    assert breaker == CircuitBreakerSettings(failure_threshold=1, reset_timeout_s=1.0)
    clock = VirtualClock()
    r = wrap([FAIL, OK], policy=SkipFrame(), clock=clock, breaker=breaker)
    assert r.breaker_settings is breaker
    r.process(frames(1)[0])
    clock.advance(0.9995)
    assert r.process(frames(1)[0]) is None and fates(r) == {"skipped": 1, "rejected": 1}
    clock.advance(0.001)
    assert r.process(frames(1)[0]) is not None


def test_last_good_before_any_good_frame_is_the_fill():
    r = wrap([FAIL], policy=UseDefault(last_good=True, fill_value=-2.0))
    assert list(r.process(frames(1)[0]).payload["x"]) == [-2.0]


def test_dead_letter_message_is_cut_at_500_characters():
    class Long(ProcessingNode):
        def process(self, frame):  # type: ignore[override]
            raise ValueError("e" * 600)

    ctx = NodeContext(node_id="l", clock=VirtualClock())
    r = ResilientNode(lambda: Long.create({}, ctx), policy=SkipFrame(), clock=ctx.clock,
                      collect_dead_letters=True)
    r.process(frames(1)[0])
    meta = r.dead_letters[0].metadata
    assert meta["error_message"] == "e" * 500
    assert (meta["error_type"], meta["error_node"], meta["error_policy"]) == (
        "ValueError", "l", "SkipFrame")


def test_a_breaker_passed_as_a_strategy_is_moved_to_breaker_with_a_deprecation():
    from streamlab.config.resilience import CircuitBreakerSettings
    from streamlab.nodes.basic import Passthrough
    from streamlab.resilience import ResilientNode

    settings = CircuitBreakerSettings(failure_threshold=2, reset_timeout_s=1.0)
    with pytest.warns(DeprecationWarning, match="pass breaker="):
        r = ResilientNode(lambda: Passthrough.create({}), strategy=settings)
    assert r.breaker is not None and r.breaker_settings is settings
    assert r.strategy.name == "Never"
    with pytest.raises(TypeError, match="both as strategy= and breaker="):
        ResilientNode(lambda: Passthrough.create({}), strategy=settings, breaker=settings)
