"""Prometheus export: the text exposition equals the snapshot; the exporter; the CLI option."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamlab import AsyncPipeline
from streamlab.errors import BackendError
from streamlab.metrics import FATES, MetricsCollector
from streamlab.metrics.collector import END_TO_END_BUCKETS, LATENCY_BUCKETS
from streamlab.metrics.prometheus import MetricsExporter, metric_families, render_text
from tests.conftest import run

FAULTY = {
    "name": "faulty",
    "pipeline_config": {"deadline_s": 1e-06},
    "nodes": [
        {"id": "src", "type": "Passthrough"},
        {"id": "fault", "type": "FaultInjector", "config": {"every": 7},
         "error_policy": {"policy": "SkipFrame"}, "restart": {"strategy": "Immediate"}},
        {"id": "slow", "type": "TestSlow", "config": {"delay": 0.0005}},
        {"id": "sink", "type": "Passthrough"},
    ],
    "connections": [{"from": "src", "to": "fault"},
                    {"from": "fault", "to": "slow", "capacity": 2, "overflow": "drop_oldest"},
                    {"from": "slow", "to": "sink"}],
}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def labels(**kw: str) -> frozenset:
    return frozenset(kw.items())


@pytest.fixture(scope="module")
def faulty():
    pipe = AsyncPipeline(FAULTY)
    collector = MetricsCollector()
    collector.register(pipe)
    report = run(pipe.run(triggers=70))
    return pipe, report, collector


def test_exposition_equals_the_snapshot(faulty):
    pipe, report, collector = faulty
    snap = collector.snapshot()
    got = samples(render_text(collector))
    p = snap.pipelines["faulty"]
    assert report.nodes["fault"].fates["skipped"] == 10  # every 7th of 70
    assert report.nodes["slow"].fates["dropped_overflow"] > 0
    for node, ns in p.nodes.items():
        m = ns.metrics
        lv = dict(pipeline="faulty", node=node)
        for fate in FATES:
            assert got[("streamlab_node_frames_total", labels(**lv, fate=fate))] == m.fates[fate]
        assert got[("streamlab_node_received_total", labels(**lv))] == m.received
        assert got[("streamlab_node_frames_out_total", labels(**lv))] == m.frames_out
        assert got[("streamlab_node_errors_total", labels(**lv))] == m.errors
        assert got[("streamlab_node_restarts_total", labels(**lv))] == m.restarts
        assert got[("streamlab_node_deadline_misses_total", labels(**lv))] == m.deadline_misses
        assert got[("streamlab_node_blocked_seconds_total", labels(**lv))] == ns.blocked_seconds
        assert got[("streamlab_node_queue_depth", labels(**lv))] == ns.queue_depth
        assert got[("streamlab_node_latency_seconds_count", labels(**lv))] == m.latency["count"]
        buckets = [got[("streamlab_node_latency_seconds_bucket", labels(**lv, le=le))]
                   for le in [repr(b) if b < 1 else str(b) for b in LATENCY_BUCKETS] + ["+Inf"]]
        assert buckets == sorted(buckets) and buckets[-1] == m.latency["count"]
        assert list(ns.latency_hist.cumulative) == buckets[:-1]
        if ns.terminal:
            arrived = report.nodes[node].received
            assert got[("streamlab_end_to_end_latency_seconds_count", labels(**lv))] == \
                m.end_to_end["count"] == arrived > 0
            assert got[("streamlab_end_to_end_deadline_misses_total", labels(**lv))] == \
                m.end_to_end_deadline_misses == arrived
        else:
            assert ("streamlab_end_to_end_latency_seconds_count", labels(**lv)) not in got
    assert got[("streamlab_node_errors_total", labels(pipeline="faulty", node="fault"))] == 10
    # the 10th failure is on the last frame: its restart is still pending when the run ends
    assert got[("streamlab_node_restarts_total", labels(pipeline="faulty", node="fault"))] == 9
    for e in p.edges:
        lv = {"pipeline": "faulty", "from": e.source, "to": e.target}
        assert got[("streamlab_edge_dropped_total", labels(**lv))] == e.dropped
        assert got[("streamlab_edge_capacity", labels(**lv))] == e.capacity
        assert got[("streamlab_edge_queue_peak_depth", labels(**lv))] == e.peak_depth
        assert got[("streamlab_edge_queue_depth", labels(**lv))] == e.depth
        assert got[("streamlab_edge_sent_total", labels(**lv))] == e.sent
    dropped = got[("streamlab_edge_dropped_total",
                   labels(pipeline="faulty", **{"from": "fault", "to": "slow"}))]
    assert dropped == report.nodes["slow"].fates["dropped_overflow"]
    assert got[("streamlab_pipeline_running", labels(pipeline="faulty"))] == 0


def test_families_have_types_and_help(faulty):
    _, _, collector = faulty
    fams = {f.name: f for f in metric_families(collector.snapshot())}
    assert fams["streamlab_node_frames"].type == "counter"
    assert fams["streamlab_node_latency_seconds"].type == "histogram"
    assert fams["streamlab_end_to_end_latency_seconds"].type == "histogram"
    assert fams["streamlab_edge_queue_depth"].type == "gauge"
    assert all(f.documentation for f in fams.values())
    assert len(END_TO_END_BUCKETS) > 10


def test_exporter_serves_loopback_and_stops(faulty):
    _, report, collector = faulty
    exporter = MetricsExporter(collector)  # port 0: a free one
    assert "stopped" in repr(exporter)
    with exporter:
        assert exporter._server.server_address[0] == "127.0.0.1"
        assert exporter.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(exporter.url, timeout=5) as resp:
            text = resp.read().decode()
        assert samples(text)[("streamlab_node_received_total",
                              labels(pipeline="faulty", node="sink"))] == \
            report.nodes["sink"].received > 0
        with pytest.raises(RuntimeError):
            exporter.start()
    port = exporter.port
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    exporter.stop()  # idempotent


def test_missing_prometheus_client_names_the_extra(monkeypatch, faulty):
    _, _, collector = faulty
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(BackendError, match=r"streamlab\[metrics\]"):
        render_text(collector)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_metrics_port_serves_the_run(tmp_path):
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps({
        "name": "cli", "nodes": [{"id": "src", "type": "Passthrough"},
                                 {"id": "gain", "type": "Gain", "config": {"gain": 2.0}}],
        "connections": [{"from": "src", "to": "gain"}]}))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlab", "run", str(cfg), "--triggers", "25",
         "--metrics-port", str(port), "--metrics-linger", "20"],
        stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 20
        value = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    got = samples(r.read().decode())
                value = sum(v for (name, lv), v in got.items()
                            if name == "streamlab_node_frames_total"
                            and ("node", "gain") in lv)
                if value == 25:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        assert value == 25
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_cli_metrics_port_in_use_is_a_usage_error(tmp_path):
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps({"nodes": [{"id": "src", "type": "Passthrough"}]}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "streamlab", "run", str(cfg),
                              "--metrics-port", str(port)], capture_output=True, text=True,
                             timeout=60)
    assert res.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in res.stderr
    assert "Traceback" not in res.stderr
