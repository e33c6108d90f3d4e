"""End-to-end latency at terminal nodes: defined once (entry into the pipeline -> arrival at
the terminal node, see docs/metrics.md), counted once per frame that reaches the node, with
and without fusion, for triggered, free-running (file) and realtime (paced) sources."""

from __future__ import annotations

import numpy as np
import pytest

from streamlab import AsyncPipeline, DataFrame
from streamlab.metrics import MetricsCollector, PipelineMonitor
from streamlab.testing import VirtualClock
from tests.conftest import run

BOUND_NS = 60 * 10**9  # generous: a busy machine, never a wall-clock assertion

SINE = {"frequency": 5.0, "sample_rate": 1000.0, "samples_per_frame": 10}


def source(kind: str, tmp_path) -> dict:
    if kind == "file":
        path = tmp_path / "x.npy"
        # timestamps far ahead of the clock: latency must not depend on them
        np.save(path, np.arange(2000.0).reshape(1000, 2))
        return {"id": "src", "type": "FileSource",
                "config": {"path": str(path), "samples_per_frame": 10, "sample_rate": 1000.0,
                           "start_timestamp": 4_000_000_000_000_000}}
    if kind == "realtime":
        return {"id": "src", "type": "SineGenerator",
                "config": {**SINE, "mode": "free", "realtime": True, "max_frames": 25}}
    return {"id": "src", "type": "SineGenerator", "config": SINE}


def chain(kind: str, tmp_path, fusion: bool) -> dict:
    # Gain makes new frames (no ingress of their own): it must be carried from the input.
    return {"pipeline_config": {"fusion": fusion},
            "nodes": [source(kind, tmp_path), {"id": "a", "type": "Passthrough"},
                      {"id": "g", "type": "Gain", "config": {"gain": 2}},
                      {"id": "sink", "type": "Passthrough"}],
            "connections": [{"from": "src", "to": "a"}, {"from": "a", "to": "g"},
                            {"from": "g", "to": "sink"}]}


def run_chain(cfg: dict, kind: str, **kw):
    async def go():
        pipe = AsyncPipeline(cfg, **kw)
        report = await (pipe.run(triggers=20) if kind == "triggered" else pipe.run())
        return pipe, report

    return run(go())


def assert_measured_once_each(pipe, node: str = "sink") -> int:
    m = pipe.built.nodes[node].metrics
    h = m.end_to_end
    assert m.received == m.delivered > 0
    assert h.count == m.received  # exactly once per frame that reached the terminal node
    assert 0 <= h.max_ns < BOUND_NS
    for other, st in pipe.built.nodes.items():
        if other != node:
            assert st.metrics.end_to_end.count == 0  # not a terminal node
    return h.count


@pytest.mark.parametrize("fusion", [True, False])
@pytest.mark.parametrize("kind", ["triggered", "file", "realtime"])
def test_count_equals_frames_delivered_fused_or_not(kind, fusion, tmp_path):
    pipe, report = run_chain(chain(kind, tmp_path, fusion), kind)
    assert report.state == "completed"
    assert len(pipe.chains) == (1 if fusion else 4)
    n = assert_measured_once_each(pipe)
    assert n == {"triggered": 20, "file": 100, "realtime": 25}[kind]
    assert report.nodes["sink"].end_to_end["count"] == n
    assert report.nodes["sink"].end_to_end["p50_s"] is not None
    assert report.nodes["a"].end_to_end["p50_s"] is None  # not measured, not 0


@pytest.mark.parametrize("fusion", [True, False])
def test_triggered_source_that_ends_early_counts_the_frames_that_arrived(fusion, tmp_path):
    # 3 frames in the file, 20 triggers: 3 frames reach the sink (the bug counted 20)
    path = tmp_path / "short.npy"
    np.save(path, np.zeros((30, 1)))
    cfg = chain("triggered", tmp_path, fusion)
    cfg["nodes"][0] = {"id": "src", "type": "FileSource",
                       "config": {"path": str(path), "samples_per_frame": 10,
                                  "sample_rate": 1000.0, "mode": "triggered"}}
    pipe, _ = run_chain(cfg, "triggered")
    assert assert_measured_once_each(pipe) == 3


@pytest.mark.parametrize("fusion", [True, False])
def test_latency_is_entry_to_arrival_on_the_pipeline_clock(fusion):
    # A 5 ms delay (on the virtual clock) between source and sink: every frame's end-to-end
    # latency is at least 5 ms, whatever its timestamp (here an hour in the future).
    clock = VirtualClock()
    cfg = {"pipeline_config": {"fusion": fusion},
           "nodes": [{"id": "src", "type": "Passthrough"},
                     {"id": "slow", "type": "FaultInjector",
                      "config": {"every": 1, "mode": "delay", "delay_ms": 5}},
                     {"id": "sink", "type": "Passthrough"}],
           "connections": [{"from": "src", "to": "slow"}, {"from": "slow", "to": "sink"}]}
    frames = [DataFrame(clock.time_us() + 3_600_000_000, i) for i in range(10)]

    async def go():
        pipe = AsyncPipeline(cfg, clock=clock)
        await pipe.run(frames=frames)
        return pipe

    pipe = run(go())
    h = pipe.built.nodes["sink"].metrics.end_to_end
    assert h.count == 10
    assert h.count_above(4_500_000) == 10  # all >= 5 ms (bucket resolution ~6%)
    assert h.max_ns <= 10 * 5_000_000 + 1_000  # at most the ten delays in a row


@pytest.mark.parametrize("fusion", [True, False])
def test_new_frames_made_from_several_inputs_are_measured(fusion, tmp_path):
    # Window makes one new frame from three inputs: it takes an input's ingress time.
    cfg = chain("triggered", tmp_path, fusion)
    cfg["nodes"][2] = {"id": "g", "type": "Window", "config": {"size": 30}}
    pipe, _ = run_chain(cfg, "triggered")
    assert assert_measured_once_each(pipe) == 6  # 200 samples in windows of 30


def test_monitor_and_summary_say_not_measured_instead_of_zero():
    cfg = {"name": "idle", "nodes": [{"id": "src", "type": "Passthrough"},
                                     {"id": "sink", "type": "Passthrough"}],
           "connections": [{"from": "src", "to": "sink"}]}
    pipe = AsyncPipeline(cfg)
    collector = MetricsCollector()
    collector.register(pipe)
    report = run(pipe.run(triggers=0))
    monitor = PipelineMonitor(collector)
    final = monitor.final()
    rows = {r.node: r for r in final.rows}
    assert rows["sink"].terminal and rows["sink"].e2e_count == 0
    assert rows["sink"].e2e_p50_s is None
    text = monitor.format_text(final)
    assert "end-to-end at sink: n/a" in text and "end-to-end at src" not in text
    assert monitor._rich_cells(rows["sink"])["e2e p99"] == "n/a"
    assert monitor._rich_cells(rows["src"])["e2e p99"] == ""
    e2e = report.nodes["sink"].end_to_end
    assert e2e["count"] == 0 and e2e["p50_s"] is None and e2e["max_s"] is None


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_measured_through_thread_and_process_executors(executor, tmp_path):
    # the per-frame path: the node's output (a new frame from another process, for "process")
    # takes the ingress time of the frame it was made from
    cfg = chain("triggered", tmp_path, True)
    cfg["nodes"][2]["executor"] = executor
    pipe, report = run_chain(cfg, "triggered")
    assert report.state == "completed"
    assert assert_measured_once_each(pipe) == 20


def test_dead_letters_reaching_a_terminal_node_are_measured(tmp_path):
    cfg = chain("triggered", tmp_path, True)
    cfg["nodes"][2] = {"id": "g", "type": "FaultInjector", "config": {"every": 4},
                       "error_policy": {"policy": "SkipFrame"}, "dead_letter": "dl"}
    cfg["nodes"].append({"id": "dl", "type": "Passthrough"})
    pipe, _ = run_chain(cfg, "triggered")
    for node, n in (("sink", 15), ("dl", 5)):
        m = pipe.built.nodes[node].metrics
        assert m.received == m.end_to_end.count == n
        assert 0 <= m.end_to_end.max_ns < BOUND_NS


@pytest.mark.parametrize("fusion", [True, False])
def test_prometheus_counts_every_frame_at_the_terminal_node(fusion, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from streamlab.metrics.prometheus import render_text

    cfg = {**chain("realtime", tmp_path, fusion), "name": "rt"}
    pipe = AsyncPipeline(cfg)
    collector = MetricsCollector()
    collector.register(pipe)
    run(pipe.run())
    counts = {s.labels["node"]: s.value
              for fam in text_string_to_metric_families(render_text(collector))
              for s in fam.samples if s.name == "streamlab_end_to_end_latency_seconds_count"}
    assert counts == {"sink": 25.0}  # terminal nodes only, every frame once
