"""PipelineMonitor: rates, text and rich rendering, deadline messages; `streamlab run --monitor`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamlab import AsyncPipeline
from streamlab.cli.observe import progress_of
from streamlab.metrics import MetricsCollector, PipelineMonitor
from streamlab.metrics.monitor import format_seconds
from tests.conftest import run

CHAIN = {
    "name": "chain",
    "nodes": [{"id": "src", "type": "Passthrough"},
              {"id": "slow", "type": "TestSlow", "config": {"delay": 0.001}, "deadline_s": 1e-05},
              {"id": "sink", "type": "Passthrough"}],
    "connections": [{"from": "src", "to": "slow", "capacity": 4}, {"from": "slow", "to": "sink"}],
}


def finished(cfg=CHAIN, triggers=20):
    pipe = AsyncPipeline(cfg)
    collector = MetricsCollector()
    collector.register(pipe)
    report = run(pipe.run(triggers=triggers))
    return pipe, report, PipelineMonitor(collector)


def test_final_rates_are_averages_over_the_run():
    pipe, report, monitor = finished()
    final = monitor.final()
    rows = {r.node: r for r in final.rows}
    assert set(rows) == {"src", "slow", "sink"}
    for node in rows:
        assert rows[node].rate_hz == pytest.approx(20 / report.duration_s)
        assert rows[node].received == 20 and rows[node].fates == {"delivered": 20}
    assert rows["slow"].p50_s >= 0.001 and rows["slow"].max_s >= rows["slow"].p99_s
    assert rows["slow"].queue_capacity == 4 and rows["sink"].terminal
    assert rows["sink"].e2e_p99_s is not None and rows["src"].e2e_p99_s is None
    assert final.pipelines["chain"]["state"] == "completed"
    json.dumps(final.to_dict())  # plain data


def test_update_rates_are_measured_between_snapshots():
    _, report, monitor = finished()
    first = {r.node: r.rate_hz for r in monitor.update().rows}
    assert first["slow"] == pytest.approx(20 / report.duration_s)
    second = {r.node: r.rate_hz for r in monitor.update().rows}
    assert second == {"src": 0.0, "slow": 0.0, "sink": 0.0}  # nothing moved since
    assert monitor.last is not None


def test_deadline_messages_once_per_increase():
    _, _, monitor = finished()
    monitor.update()
    msgs = monitor.deadline_messages()
    assert len(msgs) == 1 and "'slow': 20 deadline misses" in msgs[0]
    monitor.update()
    assert monitor.deadline_messages() == []


def test_end_to_end_budget_messages():
    cfg = {**CHAIN, "pipeline_config": {"deadline_s": 1e-06}}
    _, _, monitor = finished(cfg)
    monitor.update()
    msgs = monitor.deadline_messages()
    assert any("20 frames over the end-to-end budget" in m and "'sink'" in m for m in msgs)


def test_plain_text_report():
    _, _, monitor = finished()
    text = monitor.format_text(monitor.final())
    lines = text.splitlines()
    assert lines[0].startswith("pipeline 'chain': completed")
    assert lines[1].split()[:4] == ["node", "rate/s", "p50", "p99"]
    slow = next(line for line in lines if line.strip().startswith("slow"))
    assert "0/4" in slow and "delivered=20" in slow and "20 late" in slow
    assert any(line.strip().startswith("end-to-end at sink") for line in lines)
    line = monitor.format_line()
    assert "chain completed:" in line and "slow" in line and "q 0/4" in line


def test_rich_table_and_progress():
    from rich.console import Console

    _, _, monitor = finished()
    buf = io.StringIO()
    console = Console(file=buf, width=200, record=True, color_system=None)
    console.print(monitor.renderable(monitor.update(), progress=(10, 20)))
    text = console.export_text()
    assert "10/20 triggers (50%)" in text
    for word in ("rate/s", "p99", "queue", "drops", "src", "slow", "sink", "TestSlow", "0/4"):
        assert word in text
    assert "missed" in text  # the slow node misses its deadline on every frame
    console.print(monitor.table())
    assert "Passthrough" in console.export_text()
    narrow = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    narrow.print(monitor.renderable(compact=True))
    text = narrow.export_text()
    assert "TestSlow" not in text and "blocked" not in text and "…" not in text
    assert all(w in text for w in ("rate/s", "p99", "queue", "missed", "slow"))


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 5e-7, 1.5e-5, 0.0042, 3.0)] == [
        "0", "500ns", "15.0µs", "4.20ms", "3.00s"]


def test_progress_of_triggered_and_free_sources():
    pipe, _, _ = finished()
    assert progress_of(pipe, 20) == (20, 20, "triggers")
    free = {"nodes": [{"id": "sine", "type": "SineGenerator",
                       "config": {"mode": "free", "max_frames": 7, "frequency": 1.0,
                                  "sample_rate": 100.0, "samples_per_frame": 10}}]}
    pipe = AsyncPipeline(free)

    async def go():
        await pipe.start()
        pipe.close_triggers()
        return await pipe.join()

    run(go())
    assert progress_of(pipe, 0) == (7, 7, "frames")
    pipe = AsyncPipeline({**free, "nodes": [{**free["nodes"][0], "config": {
        **free["nodes"][0]["config"], "max_frames": None}}]})
    assert progress_of(pipe, 0) is None


PACED = {
    "name": "paced",
    "pipeline_config": {"deadline_s": 1.0},
    "nodes": [
        {"id": "sine", "type": "SineGenerator",
         "config": {"mode": "free", "realtime": True, "max_frames": 40, "frequency": 1.0,
                    "sample_rate": 1000.0, "samples_per_frame": 10}},
        {"id": "gain", "type": "Gain", "config": {"gain": 2.0}},
    ],
    "connections": [{"from": "sine", "to": "gain"}],
}


def streamlab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "streamlab", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_monitor_without_a_terminal_prints_plain_lines(tmp_path):
    cfg = tmp_path / "paced.json"
    cfg.write_text(json.dumps(PACED))
    summary = tmp_path / "s.json"
    res = streamlab("run", str(cfg), "--monitor", "--monitor-interval", "0.1",
                    "--summary", str(summary), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    periodic = [line for line in lines if line.startswith("[") and "paced running:" in line]
    assert len(periodic) >= 2, res.stderr  # 0.4 s run, 0.1 s interval
    assert "sine " in periodic[-1] and "gain " in periodic[-1]
    assert any(line.startswith("pipeline 'paced': completed") for line in lines)
    assert "\x1b[" not in res.stderr  # no terminal control codes
    data = json.loads(summary.read_text())
    assert data["nodes"]["gain"]["fates"]["delivered"] == 40
    rows = {r["node"]: r for r in data["monitor"]["nodes"]}
    assert rows["gain"]["received"] == 40 and rows["sine"]["frames_out"] == 40
    assert data["monitor"]["pipelines"]["paced"]["end_to_end_budget_s"] == 1.0
    # a realtime source fused with its terminal node: every frame's end-to-end latency is
    # measured once (it was 0 frames before #9), in the summary and in the final text report
    assert data["nodes"]["gain"]["end_to_end"]["count"] == 40
    assert rows["gain"]["e2e_count"] == 40 and rows["gain"]["e2e_p99_s"] is not None
    assert data["nodes"]["sine"]["end_to_end"]["p50_s"] is None  # not a terminal: unmeasured
    assert "end-to-end at gain: 40 frames" in res.stderr


def test_cli_quiet_prints_no_report(tmp_path):
    cfg = tmp_path / "paced.json"
    cfg.write_text(json.dumps({**PACED, "nodes": [{**PACED["nodes"][0], "config": {
        **PACED["nodes"][0]["config"], "realtime": False}}, PACED["nodes"][1]]}))
    res = streamlab("run", str(cfg), "-q", cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == ""
