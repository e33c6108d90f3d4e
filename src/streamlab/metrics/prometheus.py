"""Prometheus export: a custom collector that reads StreamLab's counters at scrape time.

Nothing is counted twice and nothing happens per frame: at each scrape,
:class:`PrometheusCollector` takes a :class:`~streamlab.metrics.MetricsCollector` snapshot and
yields metric families (``prometheus_client`` is imported lazily; ``missing_extra
("prometheus_client", "metrics")`` when it is absent). Every metric is documented, with its
labels, in ``docs/metrics.md``:

* per node ``{pipeline, node}``: ``streamlab_node_frames_total{fate}``,
  ``streamlab_node_received_total``, ``streamlab_node_frames_out_total``,
  ``streamlab_node_errors_total``, ``streamlab_node_restarts_total``,
  ``streamlab_node_latency_seconds`` (histogram), ``streamlab_node_blocked_seconds_total``,
  ``streamlab_node_deadline_misses_total``, ``streamlab_node_sequence_gaps_total``,
  ``streamlab_node_timestamp_regressions_total``, ``streamlab_node_queue_depth``,
  ``streamlab_node_events_received_total``, ``streamlab_node_event_fates_total{fate}`` (every
  event fate of :data:`~streamlab.events.EVENT_FATES`, zeros included, like frame fates),
  ``streamlab_node_events_emitted_total``;
* per terminal node: ``streamlab_end_to_end_latency_seconds`` (histogram),
  ``streamlab_end_to_end_deadline_misses_total``;
* per edge ``{pipeline, from, to}``: ``streamlab_edge_queue_depth``,
  ``streamlab_edge_queue_peak_depth``, ``streamlab_edge_capacity``,
  ``streamlab_edge_sent_total``, ``streamlab_edge_dropped_total``,
  ``streamlab_edge_blocked_seconds_total``;
* per live change tried ``{pipeline, node, kind, result}``: ``streamlab_config_changes_total``
  (kind ``update|replace|add|remove``, result ``applied|refused``; docs/live.md);
* per pipeline: ``streamlab_pipeline_running`` (1 while running), ``streamlab_pipeline_instances``.

:class:`MetricsExporter` serves ``/metrics`` over HTTP with its own ``CollectorRegistry`` (never
the global one) on **127.0.0.1** unless another address is given explicitly. ``stop()`` shuts
the server down and joins its thread; it is idempotent. A scrape runs in the server's thread:
the snapshot it takes is thread-safe (see the collector).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from streamlab.errors import missing_extra
from streamlab.events import EVENT_FATES
from streamlab.metrics.collector import CollectorSnapshot, HistogramData, MetricsCollector
from streamlab.metrics.node_metrics import FATES

__all__ = ["PrometheusCollector", "MetricsExporter", "metric_families", "render_text"]

log = logging.getLogger("streamlab.metrics")

_NODE = ["pipeline", "node"]
_EDGE = ["pipeline", "from", "to"]


def _client() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError as exc:
        raise missing_extra("prometheus_client", "metrics") from exc
    return prometheus_client


def _buckets(h: HistogramData) -> list[tuple[str, float]]:
    from prometheus_client.utils import floatToGoString

    out = [(floatToGoString(b), float(c)) for b, c in zip(h.bounds, h.cumulative)]
    out.append(("+Inf", float(h.count)))
    return out


def metric_families(snap: CollectorSnapshot) -> list[Any]:
    """The metric families of a snapshot (``prometheus_client.core`` objects)."""
    core = _client().core
    C, G, H = core.CounterMetricFamily, core.GaugeMetricFamily, core.HistogramMetricFamily

    def node_counter(name: str, doc: str) -> Any:
        return C(name, doc, labels=_NODE)

    frames = C("streamlab_node_frames", "Frames that entered a node, by fate (each frame has "
               "exactly one fate).", labels=_NODE + ["fate"])
    received = node_counter("streamlab_node_received", "Frames that entered a node.")
    out = node_counter("streamlab_node_frames_out", "Frames a node emitted.")
    errors = node_counter("streamlab_node_errors", "Exceptions raised by a node's process().")
    restarts = node_counter("streamlab_node_restarts", "Times a node was restarted by its strategy.")
    blocked = node_counter("streamlab_node_blocked_seconds",
                           "Time a node waited on full output queues (backpressure).")
    misses = node_counter("streamlab_node_deadline_misses",
                          "process() calls slower than the node's deadline_ms.")
    gaps = node_counter("streamlab_node_sequence_gaps",
                        "Forward jumps in sequence_id seen on a node's inputs.")
    regressions = node_counter("streamlab_node_timestamp_regressions",
                               "Timestamps lower than the previous one on the same input.")
    ev_in = node_counter("streamlab_node_events_received",
                         "Events on frames that entered a node.")
    ev_fates = C("streamlab_node_event_fates", "Events that entered a node, by event fate "
                 "(each event has exactly one fate).", labels=_NODE + ["fate"])
    ev_out = node_counter("streamlab_node_events_emitted", "Events on frames a node emitted.")
    qdepth = G("streamlab_node_queue_depth", "Frames waiting on a node's input edges.",
               labels=_NODE)
    latency = H("streamlab_node_latency_seconds", "Time of one process() call.", labels=_NODE)
    e2e = H("streamlab_end_to_end_latency_seconds",
            "From a frame's entry into the pipeline (its source emitted it) to its arrival "
            "at a terminal node.", labels=_NODE)
    e2e_late = node_counter("streamlab_end_to_end_deadline_misses",
                            "Frames that reached a terminal node later than the pipeline's "
                            "deadline_ms.")
    depth = G("streamlab_edge_queue_depth", "Frames queued on an edge now.", labels=_EDGE)
    peak = G("streamlab_edge_queue_peak_depth", "Highest queue depth of an edge so far.",
             labels=_EDGE)
    cap = G("streamlab_edge_capacity", "Capacity of an edge's queue (frames).", labels=_EDGE)
    sent = C("streamlab_edge_sent", "Frames accepted into an edge's queue.", labels=_EDGE)
    dropped = C("streamlab_edge_dropped", "Frames an edge dropped by its overflow policy.",
                labels=_EDGE)
    eblocked = C("streamlab_edge_blocked_seconds",
                 "Time the sender waited on an edge's full queue.", labels=_EDGE)
    changes = C("streamlab_config_changes", "Live changes tried on a node (docs/live.md), by "
                "kind and result.", labels=_NODE + ["kind", "result"])
    running = G("streamlab_pipeline_running", "1 while a pipeline instance runs, else 0.",
                labels=["pipeline"])
    instances = G("streamlab_pipeline_instances",
                  "Instances summed in this series (more than 1 for '#retired').",
                  labels=["pipeline"])

    for pname, p in snap.pipelines.items():
        running.add_metric([pname], 1.0 if p.state in ("running", "stopping") else 0.0)
        instances.add_metric([pname], float(p.instances))
        for node, ns in p.nodes.items():
            m = ns.metrics
            lv = [pname, node]
            for fate in FATES:
                frames.add_metric(lv + [fate], float(m.fates.get(fate, 0)))
            received.add_metric(lv, float(m.received))
            out.add_metric(lv, float(m.frames_out))
            errors.add_metric(lv, float(m.errors))
            restarts.add_metric(lv, float(m.restarts))
            blocked.add_metric(lv, ns.blocked_seconds)
            misses.add_metric(lv, float(m.deadline_misses))
            gaps.add_metric(lv, float(m.sequence_gaps))
            regressions.add_metric(lv, float(m.timestamp_regressions))
            qdepth.add_metric(lv, float(ns.queue_depth))
            ev_in.add_metric(lv, float(m.events_received))
            ev_out.add_metric(lv, float(m.events_emitted))
            for fate in EVENT_FATES:
                ev_fates.add_metric(lv + [fate], float(m.event_fates.get(fate, 0)))
            for key, n in sorted(m.config_changes.items()):
                kind, _, result = key.partition("/")
                changes.add_metric(lv + [kind, result], float(n))
            latency.add_metric(lv, _buckets(ns.latency_hist), ns.latency_hist.sum_s)
            if ns.end_to_end_hist is not None:
                e2e.add_metric(lv, _buckets(ns.end_to_end_hist), ns.end_to_end_hist.sum_s)
                e2e_late.add_metric(lv, float(m.end_to_end_deadline_misses))
        for e in p.edges:
            lv = [pname, e.source, e.target]
            depth.add_metric(lv, float(e.depth))
            peak.add_metric(lv, float(e.peak_depth))
            cap.add_metric(lv, float(e.capacity))
            sent.add_metric(lv, float(e.sent))
            dropped.add_metric(lv, float(e.dropped))
            eblocked.add_metric(lv, e.blocked_seconds)
    return [frames, received, out, errors, restarts, latency, blocked, misses, gaps, regressions,
            qdepth, ev_in, ev_fates, ev_out, e2e, e2e_late, depth, peak, cap, sent, dropped, eblocked, changes, running, instances]


class PrometheusCollector:
    """A ``prometheus_client`` Collector over a MetricsCollector (reads at scrape time)."""

    def __init__(self, collector: MetricsCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Any]:
        yield from metric_families(self.collector.snapshot())

    def describe(self) -> list[Any]:
        return []  # names are fixed; skip the registry's describe-by-collect at registration

    def registry(self) -> Any:
        """A fresh ``CollectorRegistry`` holding only this collector."""
        client = _client()
        from prometheus_client.registry import Collector

        Collector.register(PrometheusCollector)
        reg = client.CollectorRegistry(auto_describe=False)
        reg.register(self)
        return reg


def render_text(collector: MetricsCollector) -> str:
    """The Prometheus text exposition of the collector's current state."""
    client = _client()
    return str(client.generate_latest(PrometheusCollector(collector).registry()).decode())


class MetricsExporter:
    """Serves ``/metrics`` for a MetricsCollector over HTTP, in a daemon thread.

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). Binding an address
    other than loopback must be asked for explicitly (``addr``). Use as a context manager or
    call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, collector: MetricsCollector, port: int = 0, addr: str = "127.0.0.1") -> None:
        self.collector = collector
        self.addr = addr
        self._port = port
        self._server: Any = None
        self._thread: Any = None

    @property
    def port(self) -> int:
        """The bound port (the requested one until started)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> MetricsExporter:
        """Bind and serve. OSError (e.g. port in use) propagates; starting twice is an error."""
        if self._server is not None:
            raise RuntimeError(f"exporter already serving on {self.url}")
        client = _client()
        registry = PrometheusCollector(self.collector).registry()
        self._server, self._thread = client.start_http_server(self._port, addr=self.addr,
                                                              registry=registry)
        if self.addr not in ("127.0.0.1", "::1", "localhost"):
            log.warning("metrics exporter listening on %s (not loopback)", self.url)
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread (no-op if not serving)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    def __enter__(self) -> MetricsExporter:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"serving {self.url}" if self._server is not None else "stopped"
        return f"<MetricsExporter {state}>"
