"""MetricsCollector: every node and edge of every registered pipeline instance, as plain data.

The collector holds references to the live :class:`~streamlab.metrics.NodeMetrics` and
:class:`~streamlab.channel.Channel` objects of each registered
:class:`~streamlab.runtime.AsyncPipeline`; it adds nothing to the hot path. :meth:`snapshot`
reads them (from any thread: counters are plain ints, a histogram is copied before it is read)
and returns frozen dataclasses that the monitor and the Prometheus exporter render.

**What is derived here.**

* *Backpressure*: a channel's ``blocked_seconds`` is time its sender waited on a full queue;
  it is attributed to the sending node (``from``), summed over that node's output edges.
* *Drops*: per edge, live from the channel (``dropped``); the node's ``dropped_overflow`` fate
  is only filled in by the runtime when the run ends.
* *End-to-end budget*: when ``pipeline_config.deadline_ms`` is set, :meth:`register` installs a
  :class:`~streamlab.metrics.node_metrics.BudgetHistogram` on every terminal node, which counts
  late frames exactly. Register before ``start()``; for a pipeline registered later the count
  falls back to the histogram buckets above the budget (a lower bound).

**Finished instances.** A single pipeline keeps its final counts for as long as it stays
registered (so a last scrape and the final report see them). Pool instances are many: the
``keep_finished`` most recent finished instances stay visible under their own names, and
older ones are folded into one entry per pipeline name, ``"<name>#retired"``, whose counters
are the sums (histograms merged). Counter sums over all entries therefore never go backwards,
and memory stays bounded however many instances a pool runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from streamlab.metrics.node_metrics import (
    BudgetHistogram,
    Histogram,
    NodeMetrics,
    NodeMetricsSnapshot,
)

if TYPE_CHECKING:
    from streamlab.channel import Channel
    from streamlab.runtime.async_pipeline import AsyncPipeline
    from streamlab.runtime.pool import PipelinePool

__all__ = [
    "MetricsCollector",
    "CollectorSnapshot",
    "PipelineSnapshot",
    "NodeSnapshot",
    "EdgeSnapshot",
    "LATENCY_BUCKETS",
    "END_TO_END_BUCKETS",
]

#: Prometheus ``le`` bounds (seconds) of the per-node processing latency histogram.
LATENCY_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
                   5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Prometheus ``le`` bounds (seconds) of the end-to-end latency histogram.
END_TO_END_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25,
                      0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class HistogramData:
    """A histogram as plain data: cumulative counts at ``bounds`` (seconds), count and sum."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    sum_s: float

    @classmethod
    def of(cls, h: Histogram, bounds: tuple[float, ...]) -> HistogramData:
        h = h.copy()
        return cls(bounds, tuple(h.cumulative(list(bounds))), h.count, h.total_ns / 1e9)


@dataclass(frozen=True)
class NodeSnapshot:
    """One node: its metrics, backpressure attributed to it, and its input queues."""

    metrics: NodeMetricsSnapshot
    blocked_seconds: float          # sum over output edges of time spent waiting on a full queue
    queue_depth: int                # frames waiting on its input edges now
    queue_capacity: int
    queue_peak: int                 # max over input edges of the peak depth
    dropped: int                    # frames its input edges dropped (overflow policy), live
    terminal: bool
    latency_hist: HistogramData
    end_to_end_hist: HistogramData | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = self.metrics.to_dict()
        return d


@dataclass(frozen=True)
class EdgeSnapshot:
    """One edge (channel): ``source -> target``; ``source`` is ``"trigger"`` for trigger inputs."""

    source: str
    target: str
    capacity: int
    overflow: str
    depth: int
    peak_depth: int
    sent: int
    received: int
    dropped: int
    discarded: int
    blocked_seconds: float


@dataclass(frozen=True)
class PipelineSnapshot:
    """One registered pipeline instance (or a ``#retired`` aggregate)."""

    name: str
    state: str
    duration_s: float
    end_to_end_budget_s: float | None
    nodes: dict[str, NodeSnapshot]
    edges: tuple[EdgeSnapshot, ...]
    instances: int = 1              # > 1 for a "#retired" aggregate

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "state": self.state, "duration_s": self.duration_s,
            "end_to_end_budget_s": self.end_to_end_budget_s, "instances": self.instances,
            "nodes": {k: v.to_dict() for k, v in self.nodes.items()},
            "edges": [asdict(e) for e in self.edges],
        }


@dataclass(frozen=True)
class CollectorSnapshot:
    """Every registered pipeline at one instant (``time``: ``time.monotonic()``)."""

    time: float
    pipelines: dict[str, PipelineSnapshot] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "pipelines": {k: p.to_dict() for k, p in self.pipelines.items()}}


class _Entry:
    """What the collector keeps about one pipeline instance."""

    def __init__(self, pipe: AsyncPipeline | None, name: str, base: str) -> None:
        self.pipe = pipe
        self.name = name
        self.base = base
        self.registered_at = time.monotonic()
        self.finished_at: float | None = None
        self.instances = 1
        self.metrics: dict[str, NodeMetrics] = dict(pipe.metrics) if pipe is not None else {}
        self.terminal: tuple[str, ...] = pipe.sinks if pipe is not None else ()
        self.free_sources = _free_sources(pipe) if pipe is not None else frozenset()
        self.budget_s: float | None = None
        self.retired_edges: dict[tuple[str, str], EdgeSnapshot] = {}
        self.retired_duration = 0.0

    def channels(self) -> list[tuple[str, str, Channel]]:
        pipe = self.pipe
        if pipe is None:
            return []
        out = [(a, b, ch) for (a, b), ch in list(pipe.channels.items())]
        out += [("trigger", s, ch) for s, ch in list(pipe.trigger_channels.items())
                if s not in self.free_sources]
        return out

    def finished(self) -> bool:
        return self.pipe is not None and self.pipe.report is not None

    def state(self) -> str:
        return self.pipe.state if self.pipe is not None else "retired"

    def duration(self, now: float) -> float:
        pipe = self.pipe
        if pipe is None:
            return self.retired_duration
        if pipe.report is not None:
            return pipe.report.duration_s
        return now - self.registered_at


class MetricsCollector:
    """Registry of pipeline instances whose metrics are read at snapshot time.

    ``keep_finished``: how many finished instances stay visible under their own name before
    the oldest are folded into ``"<name>#retired"`` (see the module docstring).
    """

    def __init__(self, *, keep_finished: int = 8) -> None:
        if keep_finished < 0:
            raise ValueError(f"keep_finished must be >= 0, got {keep_finished}")
        self.keep_finished = keep_finished
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()  # register/snapshot only: never on the frame path

    # -- registration -------------------------------------------------------------------
    def register(self, pipeline: AsyncPipeline, *, name: str | None = None) -> None:
        """Start collecting a pipeline instance's metrics, under ``name`` (default its name).

        Installs the end-to-end budget counter on terminal nodes when the pipeline declares
        ``pipeline_config.deadline_ms`` (exact only if called before ``start()``). A name
        already registered is replaced.
        """
        key = name or pipeline.name
        entry = _Entry(pipeline, key, pipeline.spec.name)
        budget_ms = pipeline.spec.pipeline_config.deadline_ms
        if budget_ms:
            entry.budget_s = budget_ms / 1000
            if pipeline.state == "created":
                for node in entry.terminal:
                    entry.metrics[node].set_end_to_end_budget(entry.budget_s)
        with self._lock:
            self._entries[key] = entry

    def unregister(self, name: str) -> None:
        """Forget an instance (its counts leave every later snapshot). KeyError if unknown."""
        with self._lock:
            del self._entries[name]

    def attach_pool(self, pool: PipelinePool) -> None:
        """Register every instance a pool starts (chains any existing ``on_instance``)."""
        previous = pool.on_instance

        def on_instance(pipe: AsyncPipeline) -> None:
            self.register(pipe)
            if previous is not None:
                previous(pipe)

        pool.on_instance = on_instance

    @property
    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def pipelines(self) -> list[AsyncPipeline]:
        """The live pipeline objects registered (retired aggregates excluded)."""
        with self._lock:
            return [e.pipe for e in self._entries.values() if e.pipe is not None]

    # -- retiring -----------------------------------------------------------------------
    def _retire(self) -> None:
        """Fold finished instances beyond ``keep_finished`` into their ``#retired`` entry."""
        finished = [e for e in self._entries.values() if e.finished()]
        for e in finished:
            if e.finished_at is None:
                e.finished_at = time.monotonic()
        by_base: dict[str, list[_Entry]] = {}
        for e in finished:
            if e.name != e.base:  # a single pipeline under its own name is never folded
                by_base.setdefault(e.base, []).append(e)
        for base, entries in by_base.items():
            entries.sort(key=lambda e: e.finished_at or 0.0)
            for e in entries[: max(0, len(entries) - self.keep_finished)]:
                self._fold(base, e)

    def _fold(self, base: str, e: _Entry) -> None:
        key = f"{base}#retired"
        agg = self._entries.get(key)
        if agg is None:
            agg = self._entries[key] = _Entry(None, key, base)
            agg.instances = 0
            agg.terminal = e.terminal
            agg.budget_s = e.budget_s
        agg.instances += 1
        agg.retired_duration += e.duration(time.monotonic())
        for node, m in e.metrics.items():
            if node not in agg.metrics:
                agg.metrics[node] = NodeMetrics(node, key, m.node_type)
            agg.metrics[node].merge(m)
        for snap in _edges(e):
            k = (snap.source, snap.target)
            old = agg.retired_edges.get(k)
            agg.retired_edges[k] = snap if old is None else EdgeSnapshot(
                snap.source, snap.target, snap.capacity, snap.overflow, 0,
                max(old.peak_depth, snap.peak_depth), old.sent + snap.sent,
                old.received + snap.received, old.dropped + snap.dropped,
                old.discarded + snap.discarded, old.blocked_seconds + snap.blocked_seconds)
        del self._entries[e.name]

    # -- reading ------------------------------------------------------------------------
    def snapshot(self) -> CollectorSnapshot:
        """Plain data for every registered instance (safe from any thread)."""
        with self._lock:
            self._retire()
            entries = list(self._entries.values())
        now = time.monotonic()
        return CollectorSnapshot(now, {e.name: _pipeline_snapshot(e, now) for e in entries})


def _free_sources(pipe: AsyncPipeline) -> frozenset[str]:
    """Sources that produce on their own (their trigger channel is never used)."""
    from streamlab.node import SourceNode

    return frozenset(s for s in pipe.sources
                     if isinstance(n := pipe.built.nodes[s].node, SourceNode) and n.free_running())


def _edges(e: _Entry) -> list[EdgeSnapshot]:
    if e.pipe is None:
        return list(e.retired_edges.values())
    out = []
    for a, b, ch in e.channels():
        s = ch.statistics()
        out.append(EdgeSnapshot(a, b, s.capacity, s.overflow, s.depth, s.peak_depth, s.sent,
                                s.received, s.dropped, s.discarded, s.blocked_seconds))
    return out


def _pipeline_snapshot(e: _Entry, now: float) -> PipelineSnapshot:
    edges = _edges(e)
    if e.pipe is not None:  # nodes added while running (docs/live.md)
        for k, m in list(e.pipe.metrics.items()):
            e.metrics.setdefault(k, m)
    nodes: dict[str, NodeSnapshot] = {}
    for node_id, m in list(e.metrics.items()):
        ins = [x for x in edges if x.target == node_id]
        outs = [x for x in edges if x.source == node_id]
        terminal = node_id in e.terminal
        snap = m.snapshot()
        if terminal and e.budget_s and not isinstance(m.end_to_end, BudgetHistogram):
            # registered after start: a lower bound from the buckets (see module docstring)
            late = m.end_to_end.count_above(int(e.budget_s * 1e9))
            snap = _replace_snapshot(snap, end_to_end_deadline_misses=late)
        nodes[node_id] = NodeSnapshot(
            metrics=snap,
            blocked_seconds=sum(x.blocked_seconds for x in outs) + m.blocked_seconds,
            queue_depth=sum(x.depth for x in ins),
            queue_capacity=sum(x.capacity for x in ins),
            queue_peak=max((x.peak_depth for x in ins), default=0),
            dropped=sum(x.dropped for x in ins),
            terminal=terminal,
            latency_hist=HistogramData.of(m.latency, LATENCY_BUCKETS),
            end_to_end_hist=HistogramData.of(m.end_to_end, END_TO_END_BUCKETS) if terminal else None,
        )
    return PipelineSnapshot(e.name, e.state(), e.duration(now), e.budget_s, nodes, tuple(edges),
                            e.instances)


def _replace_snapshot(snap: NodeMetricsSnapshot, **changes: Any) -> NodeMetricsSnapshot:
    return replace(snap, **changes)
