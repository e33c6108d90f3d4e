"""MetricsCollector: counters against the reliability ledger, drops, backpressure, pools, budgets."""

from __future__ import annotations

import asyncio
import threading

import pytest

from streamlab import AsyncPipeline, DataFrame, PipelinePool
from streamlab.metrics import FATES, MetricsCollector
from streamlab.registry import register_node, unregister_node
from streamlab.testing.clock import VirtualClock
from tests.conftest import run
from tests.reliability import harness

FAULT = "MetricsRelFault"  # the reliability harness's FaultInjector, which records injections


@pytest.fixture(scope="module", autouse=True)
def fault_node():
    register_node(harness.RelFault, name=FAULT)
    yield
    unregister_node(FAULT)


def diamond(combo: str, seed: int) -> dict:
    cfg = harness.diamond_config(combo, seed, p=0.03, name=f"metrics-{combo}-{seed}")
    for n in cfg["nodes"]:
        n["type"] = FAULT
    return cfg


def mismatches(collector: MetricsCollector, pipe: AsyncPipeline) -> list[str]:
    """Every difference between the collector's snapshot, the run report and the injections."""
    report = pipe.report
    assert report is not None
    snap = collector.snapshot().pipelines[pipe.name]
    out = []
    for nid, r in report.nodes.items():
        m = snap.nodes[nid].metrics
        for key in ("received", "frames_out", "errors", "restarts"):
            if getattr(m, key) != getattr(r, key):
                out.append(f"{nid}.{key}: {getattr(m, key)} != {getattr(r, key)}")
        for fate in FATES:
            if m.fates[fate] != r.fates[fate]:
                out.append(f"{nid}.{fate}: {m.fates[fate]} != {r.fates[fate]}")
        if m.received != sum(m.fates.values()):
            out.append(f"{nid}: received {m.received} != sum of fates {m.fates}")
        injected = len(harness.INJECTIONS.get((pipe.name, nid), []))
        if m.errors != injected:
            out.append(f"{nid}: errors {m.errors} != injected {injected}")
    for e in snap.edges:
        ch = report.channels[f"{e.source}->{e.target}"]
        for key in ("sent", "received", "dropped", "discarded", "peak_depth", "capacity"):
            if getattr(e, key) != getattr(ch, key):
                out.append(f"edge {ch.name}.{key}: {getattr(e, key)} != {getattr(ch, key)}")
    sink = snap.nodes["sink"].metrics
    if sink.frames_out != len(pipe.results["sink"]):
        out.append(f"sink frames_out {sink.frames_out} != outputs {len(pipe.results['sink'])}")
    return out


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("combo", list(harness.COMBOS))
def test_counters_match_the_ledger(combo, seed):
    pipe = AsyncPipeline(diamond(combo, seed))
    collector = MetricsCollector()
    collector.register(pipe)
    harness.reset_injections(pipe.name)

    async def go():
        try:
            return await pipe.run(frames=[harness.stamp(s) for s in range(300)])
        except Exception:
            assert combo.startswith("propagate")
            return pipe.report

    report = harness.run_guarded(go)
    harness.check_ledger(pipe, report, 300)
    assert mismatches(collector, pipe) == []
    assert sum(len(v) for k, v in harness.INJECTIONS.items() if k[0] == pipe.name) > 0
    harness.reset_injections(pipe.name)


SLOW = {
    "name": "slow",
    "nodes": [{"id": "src", "type": "Passthrough"},
              {"id": "slow", "type": "TestSlow", "config": {"delay": 0.002}}],
    "connections": [{"from": "src", "to": "slow", "capacity": 2, "overflow": "drop_newest"}],
}


def test_drops_are_live_per_edge_and_equal_the_final_fate():
    pipe = AsyncPipeline(SLOW)
    collector = MetricsCollector()
    collector.register(pipe)
    live = []

    async def go():
        await pipe.start()
        for _ in range(40):
            await pipe.trigger()
        await asyncio.sleep(0.005)
        live.append(collector.snapshot())
        return await pipe.stop()

    report = run(go())
    during = live[0].pipelines["slow"]
    edge = next(e for e in during.edges if e.source == "src")
    assert edge.dropped > 0 and during.nodes["slow"].dropped == edge.dropped
    assert during.nodes["slow"].queue_capacity == 2
    final = collector.snapshot().pipelines["slow"]
    assert final.nodes["slow"].dropped == report.nodes["slow"].fates["dropped_overflow"] > 0
    assert final.nodes["slow"].metrics.fates == report.nodes["slow"].fates


def test_backpressure_is_attributed_to_the_sender():
    cfg = {**SLOW, "connections": [{"from": "src", "to": "slow", "capacity": 1}]}
    pipe = AsyncPipeline(cfg)
    collector = MetricsCollector()
    collector.register(pipe)
    report = run(pipe.run(triggers=15))
    snap = collector.snapshot().pipelines["slow"]
    blocked = report.channels["src->slow"].blocked_seconds
    assert blocked > 0
    assert snap.nodes["src"].blocked_seconds == blocked
    assert snap.nodes["slow"].blocked_seconds == 0
    assert snap.nodes["slow"].queue_peak == 1


def aged(clock: VirtualClock, seq: int, age_ms: float) -> DataFrame:
    """A frame that entered the pipeline ``age_ms`` ago (ingress time preset: the source keeps it)."""
    f = DataFrame(clock.time_us(), seq)
    f.ingress_ns = round((clock.monotonic() - age_ms / 1000) * 1e9)
    return f


def test_end_to_end_latency_and_budget_on_the_virtual_clock():
    clock = VirtualClock()
    lat_ms = list(range(1, 101))  # one frame per latency, 1 .. 100 ms
    cfg = {"name": "e2e", "pipeline_config": {"deadline_s": 0.005},
           "nodes": [{"id": "src", "type": "Passthrough"}, {"id": "sink", "type": "Passthrough"}],
           "connections": [{"from": "src", "to": "sink"}]}
    pipe = AsyncPipeline(cfg, clock=clock)
    collector = MetricsCollector()
    collector.register(pipe)
    run(pipe.run(frames=[aged(clock, i, k) for i, k in enumerate(lat_ms)]))
    snap = collector.snapshot().pipelines["e2e"]
    sink = snap.nodes["sink"]
    assert sink.terminal and not snap.nodes["src"].terminal
    e2e = sink.metrics.end_to_end
    assert e2e["count"] == 100 and e2e["max_s"] == pytest.approx(0.1)
    for q, want in (("p50_s", 0.050), ("p90_s", 0.090), ("p99_s", 0.099)):
        assert abs(e2e[q] - want) <= want / 16
    assert sink.metrics.end_to_end_deadline_misses == 95  # 6 .. 100 ms are over 5 ms
    assert snap.end_to_end_budget_s == 0.005
    assert sink.end_to_end_hist is not None and sink.end_to_end_hist.count == 100


def test_budget_registered_after_start_falls_back_to_a_lower_bound():
    clock = VirtualClock()
    cfg = {"name": "late", "pipeline_config": {"deadline_s": 0.005},
           "nodes": [{"id": "src", "type": "Passthrough"}, {"id": "sink", "type": "Passthrough"}],
           "connections": [{"from": "src", "to": "sink"}]}
    pipe = AsyncPipeline(cfg, clock=clock)
    collector = MetricsCollector()

    async def go():
        await pipe.start()
        collector.register(pipe)
        for i, k in enumerate(range(1, 101)):
            await pipe.trigger(aged(clock, i, k))
        return await pipe.stop()

    run(go())
    late = collector.snapshot().pipelines["late"].nodes["sink"].metrics.end_to_end_deadline_misses
    assert 85 <= late <= 95


def test_pool_instances_are_labelled_and_old_ones_retired():
    async def go():
        pool = PipelinePool(SLOW | {"connections": [{"from": "src", "to": "slow"}]},
                            max_concurrent=3)
        collector = MetricsCollector(keep_finished=3)
        seen = []
        pool.on_instance = lambda p: seen.append(p.name)
        collector.attach_pool(pool)
        handles = [pool.execute(triggers=5) for _ in range(12)]
        mid = collector.snapshot()
        await asyncio.gather(*handles)
        return collector, seen, mid

    collector, seen, mid = run(go())
    assert len(seen) == 12  # the previous on_instance callback still runs
    assert all(name.startswith("slow#") for name in mid.pipelines)
    snap = collector.snapshot()
    assert sorted(snap.pipelines) == sorted(["slow#9", "slow#10", "slow#11", "slow#retired"])
    retired = snap.pipelines["slow#retired"]
    assert retired.instances == 9 and retired.state == "retired"
    total = sum(p.nodes["slow"].metrics.received for p in snap.pipelines.values())
    assert total == 12 * 5
    assert retired.nodes["slow"].metrics.fates["delivered"] == 9 * 5
    edge = next(e for e in retired.edges if e.source == "src")
    assert edge.sent == 9 * 5
    again = collector.snapshot()  # folding is idempotent
    assert again.pipelines["slow#retired"].instances == 9


def test_snapshot_from_another_thread_while_running():
    pipe = AsyncPipeline(harness.chain_config({"type": "Passthrough"}, name="threads"))
    collector = MetricsCollector()
    collector.register(pipe)
    stop = threading.Event()
    errors: list[BaseException] = []
    count = [0]

    def reader():
        while not stop.is_set():
            try:
                collector.snapshot()
                count[0] += 1
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        run(pipe.run(triggers=3000))
    finally:
        stop.set()
        t.join()
    assert errors == [] and count[0] > 0
    assert collector.snapshot().pipelines["threads"].nodes["sink"].metrics.received == 3000


def test_register_unregister_and_plain_data():
    pipe = AsyncPipeline(harness.chain_config({"type": "Passthrough"}, name="plain"))
    collector = MetricsCollector()
    collector.register(pipe, name="mine")
    assert collector.names == ["mine"] and collector.pipelines() == [pipe]
    run(pipe.run(triggers=3))
    d = collector.snapshot().to_dict()
    assert d["pipelines"]["mine"]["nodes"]["sink"]["metrics"]["received"] == 3
    assert d["pipelines"]["mine"]["state"] == "completed"
    collector.unregister("mine")
    assert collector.snapshot().pipelines == {}
    with pytest.raises(KeyError):
        collector.unregister("mine")
    with pytest.raises(ValueError):
        MetricsCollector(keep_finished=-1)
