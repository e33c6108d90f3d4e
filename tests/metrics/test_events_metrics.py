"""Event accounting where frame fates show: the monitor (text and rich) and Prometheus."""

from __future__ import annotations

import io

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamlab import AsyncPipeline
from streamlab.events import EVENT_FATES
from streamlab.metrics import MetricsCollector, PipelineMonitor
from streamlab.metrics.prometheus import render_text
from tests.conftest import run
from tests.event_nodes import event_nodes  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("event_nodes")  # TestMark, TestDropOdd


SINE = {"frequency": 5.0, "sample_rate": 100.0, "samples_per_frame": 10, "channels": ["a"]}


def config(mark: bool = True) -> dict:
    nodes = [{"id": "src", "type": "SineGenerator", "config": SINE},
             {"id": "mark", "type": "TestMark" if mark else "Passthrough"},
             {"id": "drop", "type": "TestDropOdd",
              "error_policy": {"policy": "SkipFrame"}},
             {"id": "sink", "type": "Passthrough"}]
    ids = [n["id"] for n in nodes]
    return {"name": "ev", "pipeline_config": {"debug": True}, "nodes": nodes,
            "connections": [{"from": a, "to": b} for a, b in zip(ids, ids[1:])]}


def finished(mark: bool = True, triggers: int = 6):
    pipe = AsyncPipeline(config(mark))
    collector = MetricsCollector()
    collector.register(pipe)
    run(pipe.run(triggers=triggers))
    return collector


def test_plain_text_report_has_an_events_line_per_node_that_saw_events():
    monitor = PipelineMonitor(finished())
    text = monitor.format_text(monitor.final())
    lines = [ln for ln in text.splitlines() if "events at" in ln]
    assert lines == ["  events at mark: in=0 out=6",
                     "  events at drop: in=6 out=3 carried=3 dropped=3",
                     "  events at sink: in=3 out=3 carried=3"]
    rows = {r.node: r for r in monitor.last.rows}
    assert rows["drop"].event_fates == {"carried": 3, "dropped": 3}
    assert not rows["src"].has_events
    assert monitor.last.to_dict()["nodes"][2]["events_received"] == 6


def test_event_free_pipeline_report_is_unchanged():
    monitor = PipelineMonitor(finished(mark=False))
    assert "events" not in monitor.format_text(monitor.final())
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    console.print(monitor.table())
    assert "events" not in console.export_text()


def test_rich_table_has_an_events_column_when_events_flow():
    from rich.console import Console

    monitor = PipelineMonitor(finished())
    for compact in (False, True):
        console = Console(file=io.StringIO(), width=250, record=True, color_system=None)
        console.print(monitor.table(monitor.final(), compact=compact))
        text = console.export_text()
        assert "events" in text
        assert "in=6 out=3 carried=3 dropped=3" in text


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_prometheus_exports_event_counters_and_every_event_fate():
    s = _samples(render_text(finished()))

    def node(name: str, n: str, **kw: str) -> float:
        return s[(name, frozenset({"pipeline": "ev", "node": n, **kw}.items()))]

    assert node("streamlab_node_events_received_total", "drop") == 6
    assert node("streamlab_node_events_emitted_total", "drop") == 3
    assert node("streamlab_node_events_emitted_total", "mark") == 6
    assert node("streamlab_node_events_received_total", "src") == 0
    for fate in EVENT_FATES:  # all fates, zeros included, like frame fates
        want = {"carried": 3, "dropped": 3}.get(fate, 0)
        assert node("streamlab_node_event_fates_total", "drop", fate=fate) == want
    # Every node's events received equal the sum over its event fates (the ledger).
    for n in ("src", "mark", "drop", "sink"):
        assert node("streamlab_node_events_received_total", n) == sum(
            node("streamlab_node_event_fates_total", n, fate=f) for f in EVENT_FATES)
