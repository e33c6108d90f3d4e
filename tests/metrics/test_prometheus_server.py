"""A real Prometheus server scrapes a running pipeline; PromQL sees the exact frame counts.

Needs the ``prometheus`` binary (Debian package; ``scripts/system-deps.sh`` installs it). The
server runs on 127.0.0.1 with a temporary config (scrape every 1 s) and storage folder and is
killed in a ``finally``. Every wait is a bounded poll: readiness takes ~0.1 s, the first scrape
about 5 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamlab import AsyncPipeline
from streamlab.metrics import MetricsCollector
from streamlab.metrics.prometheus import MetricsExporter

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus")
DASHBOARD = Path(__file__).parents[2] / "examples" / "monitoring" / "grafana-dashboard.json"

CONFIG = {
    "name": "scraped",
    "nodes": [
        {"id": "sine", "type": "SineGenerator",
         "config": {"mode": "free", "realtime": True, "max_frames": 5000, "frequency": 5.0,
                    "sample_rate": 25600.0, "samples_per_frame": 256,
                    "channels": [f"c{i}" for i in range(8)]}},
        {"id": "gain", "type": "Gain", "config": {"gain": 0.5}},
        {"id": "sink", "type": "Passthrough"},
    ],
    # an explicit capacity keeps sine -> gain a real edge (a fused chain has no queues)
    "connections": [{"from": "sine", "to": "gain", "capacity": 16},
                    {"from": "gain", "to": "sink"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (urllib.error.URLError, ConnectionError, KeyError, IndexError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Server:
    """A Prometheus server process on 127.0.0.1 scraping one target every second."""

    def __init__(self, tmp: Any, target_port: int) -> None:
        self.port = free_port()
        conf = tmp / "prometheus.yml"
        conf.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: streamlab\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
            return bytes(r.read())

    def query(self, promql: str) -> float | None:
        data = json.loads(self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
        result = data["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def kill(self) -> str:
        self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        return err.decode(errors="replace")[-2000:]


def dashboard_queries() -> list[str]:
    """The example Grafana dashboard's queries, with its variables filled in."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    subst = {"$__rate_interval": "1m", "$pipeline": ".*", "$node": ".*"}
    return [re.sub(r"\$__rate_interval|\$pipeline|\$node", lambda m: subst[m.group()], e)
            for e in exprs]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary not found: run "
                    "scripts/system-deps.sh (installs the Debian package 'prometheus')")
@pytest.mark.timeout(90)
def test_real_prometheus_scrapes_a_running_pipeline(tmp_path):
    pipe = AsyncPipeline(CONFIG, outputs="discard")
    collector = MetricsCollector()
    collector.register(pipe)
    stop = threading.Event()
    failure: list[BaseException] = []

    async def drive() -> None:
        await pipe.start()
        while not stop.is_set() and pipe.metrics["sink"].received < 5000:
            await asyncio.sleep(0.05)
        await pipe.stop()

    def runner() -> None:
        try:
            asyncio.run(drive())
        except BaseException as exc:  # reported in the main thread
            failure.append(exc)

    thread = threading.Thread(target=runner, name="pipeline")
    server = None
    with MetricsExporter(collector) as exporter:
        thread.start()
        try:
            server = Server(tmp_path, exporter.port)
            poll("/-/ready", lambda: server.get("/-/ready"), 15)
            poll("up == 1", lambda: server.query('up{job="streamlab"}') == 1.0, 20)
            poll("a scrape while running",
                 lambda: server.query('streamlab_pipeline_running{pipeline="scraped"}') == 1.0, 15)
            stop.set()
            thread.join(timeout=15)
            assert not thread.is_alive() and not failure, failure
            report = pipe.report
            assert report is not None and report.state == "completed"
            processed = report.nodes["gain"].received
            assert processed == sum(report.nodes["gain"].fates.values()) > 0
            got = poll("the final frame count",
                       lambda: server.query('sum(streamlab_node_frames_total{node="gain"})')
                       == processed, 15)
            assert got
            assert server.query('streamlab_node_latency_seconds_count{node="gain"}') == processed
            assert server.query('streamlab_edge_capacity{from="sine",to="gain"}') == 16
            for expr in dashboard_queries():  # the example dashboard's PromQL is valid
                data = json.loads(server.get("/api/v1/query?" + urllib.parse.urlencode(
                    {"query": expr})))
                assert data["status"] == "success", (expr, data)
        finally:
            stop.set()
            thread.join(timeout=15)
            if server is not None:
                server.kill()
