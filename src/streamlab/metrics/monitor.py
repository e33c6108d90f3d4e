"""PipelineMonitor: a human-readable report of a MetricsCollector, as text or a rich Table.

Each :meth:`PipelineMonitor.update` takes a collector snapshot and derives one row per node:
rate (frames per second since the previous update), latency p50/p99/max, errors, input queue
depth and peak, drops, time blocked on full output queues, deadline misses, non-zero fates and,
at terminal nodes, end-to-end latency. :meth:`PipelineMonitor.final` gives the same rows with
rates averaged over each pipeline's whole run, for the summary at the end.

**Events** (:mod:`streamlab.events`): a node that received or emitted events gets a line
``events at NODE: in=N out=M carried=.. epoched=..`` (its non-zero event fates) in
:meth:`format_text`, and the rich table an ``events`` column; both appear only when some node
saw events, so the report of an event-free pipeline is unchanged.

A node's *rate* counts frames received; for a source (whose only input is the trigger channel,
or nothing) it counts frames out, so a free-running source has a rate too.

Rendering: :meth:`format_text` (a plain table), :meth:`format_line` (one compact line per
pipeline, for logs and non-terminal output) and :meth:`table` / :meth:`renderable` (rich,
imported lazily; ``missing_extra("rich", "ui")`` when absent). The monitor is not thread-safe:
call it from one thread (the event loop); the collector it reads is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from streamlab.errors import missing_extra
from streamlab.metrics.collector import CollectorSnapshot, MetricsCollector, PipelineSnapshot

__all__ = ["PipelineMonitor", "MonitorReport", "NodeRow", "format_seconds"]


@dataclass(frozen=True)
class NodeRow:
    """One node's line of the report (times in seconds)."""

    pipeline: str
    node: str
    node_type: str
    rate_hz: float
    received: int
    frames_out: int
    errors: int
    restarts: int
    p50_s: float
    p99_s: float
    max_s: float
    queue_depth: int
    queue_capacity: int
    queue_peak: int
    dropped: int
    blocked_s: float
    deadline_misses: int
    sequence_gaps: int
    timestamp_regressions: int
    fates: dict[str, int]
    terminal: bool
    e2e_p50_s: float | None = None  # None: not a terminal node, or nothing measured yet
    e2e_p99_s: float | None = None
    e2e_late: int = 0
    e2e_count: int = 0              # frames whose end-to-end latency was measured
    events_received: int = 0        # events on frames that entered the node
    events_emitted: int = 0         # events on frames it emitted
    event_fates: dict[str, int] = field(default_factory=dict)  # the non-zero ones

    @property
    def has_events(self) -> bool:
        """The node received or emitted events (its events line/cell is shown)."""
        return bool(self.events_received or self.events_emitted)


@dataclass(frozen=True)
class MonitorReport:
    """All rows at one instant, with each pipeline's state and elapsed time."""

    elapsed_s: float
    pipelines: dict[str, dict[str, Any]]
    rows: tuple[NodeRow, ...]
    snapshot: CollectorSnapshot = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: pipelines, and one dict per node row."""
        return {"elapsed_s": self.elapsed_s, "pipelines": self.pipelines,
                "nodes": [asdict(r) for r in self.rows]}


def format_seconds(s: float) -> str:
    """A duration with a readable unit: ``850ns``, ``12.3µs``, ``4.56ms``, ``1.20s``."""
    if s <= 0:
        return "0"
    if s < 1e-6:
        return f"{s * 1e9:.0f}ns"
    if s < 1e-3:
        return f"{s * 1e6:.1f}µs"
    if s < 1.0:
        return f"{s * 1e3:.2f}ms"
    return f"{s:.2f}s"


def _queue(r: NodeRow) -> str:
    """``depth/capacity`` of a node's input queues; ``-`` for a node fused with its upstream."""
    return f"{r.queue_depth}/{r.queue_capacity}" if r.queue_capacity else "-"


#: What an end-to-end cell says at a terminal node before any frame has been measured.
NOT_MEASURED = "n/a"


def _e2e_cell(r: NodeRow) -> str:
    if not r.terminal:
        return ""
    if r.e2e_p99_s is None:
        return NOT_MEASURED
    late = f" [red]{r.e2e_late} late[/]" if r.e2e_late else ""
    return format_seconds(r.e2e_p99_s) + late


def _events(r: NodeRow) -> str:
    """``in=6 out=6 carried=6``: events received, emitted, and the non-zero event fates."""
    fates = "".join(f" {k}={v}" for k, v in r.event_fates.items())
    return f"in={r.events_received} out={r.events_emitted}{fates}"


def _count(p: PipelineSnapshot, node: str) -> int:
    """Frames a node has handled: received, or frames out for a source."""
    ns = p.nodes[node]
    m = ns.metrics
    is_source = all(e.source == "trigger" for e in p.edges if e.target == node)
    return max(m.received, m.frames_out) if is_source else m.received


class PipelineMonitor:
    """Turns collector snapshots into reports; remembers the previous one for rates."""

    def __init__(self, collector: MetricsCollector) -> None:
        self.collector = collector
        self._prev: CollectorSnapshot | None = None
        self._first: float | None = None
        self._last: MonitorReport | None = None
        self._misses: dict[tuple[str, str], tuple[int, int]] = {}

    @property
    def last(self) -> MonitorReport | None:
        """The report of the latest :meth:`update` (None before the first)."""
        return self._last

    def update(self) -> MonitorReport:
        """Take a snapshot; rates are measured since the previous update."""
        snap = self.collector.snapshot()
        if self._first is None:
            self._first = snap.time
        prev = self._prev
        rows = []
        for name, p in snap.pipelines.items():
            before = prev.pipelines.get(name) if prev is not None else None
            dt = snap.time - prev.time if prev is not None else 0.0
            for node in p.nodes:
                n = _count(p, node)
                if before is not None and node in before.nodes and dt > 0:
                    rate = (n - _count(before, node)) / dt
                else:
                    rate = n / p.duration_s if p.duration_s > 0 else 0.0
                rows.append(self._row(p, node, rate))
        self._prev = snap
        self._last = self._report(snap, rows)
        return self._last

    def final(self) -> MonitorReport:
        """A report whose rates are averages over each pipeline's whole run."""
        snap = self.collector.snapshot()
        rows = []
        for p in snap.pipelines.values():
            for node in p.nodes:
                rate = _count(p, node) / p.duration_s if p.duration_s > 0 else 0.0
                rows.append(self._row(p, node, rate))
        self._last = self._report(snap, rows)
        return self._last

    def _report(self, snap: CollectorSnapshot, rows: list[NodeRow]) -> MonitorReport:
        pipes = {n: {"state": p.state, "duration_s": p.duration_s,
                     "end_to_end_budget_s": p.end_to_end_budget_s, "instances": p.instances}
                 for n, p in snap.pipelines.items()}
        return MonitorReport(snap.time - (self._first or snap.time), pipes, tuple(rows), snap)

    @staticmethod
    def _row(p: PipelineSnapshot, node: str, rate: float) -> NodeRow:
        ns = p.nodes[node]
        m = ns.metrics
        e2e = m.end_to_end if ns.terminal and m.end_to_end.get("count") else None
        return NodeRow(
            pipeline=p.name, node=node, node_type=m.node_type, rate_hz=rate,
            received=m.received, frames_out=m.frames_out, errors=m.errors, restarts=m.restarts,
            p50_s=m.latency["p50_s"], p99_s=m.latency["p99_s"], max_s=m.latency["max_s"],
            queue_depth=ns.queue_depth, queue_capacity=ns.queue_capacity,
            queue_peak=ns.queue_peak, dropped=ns.dropped, blocked_s=ns.blocked_seconds,
            deadline_misses=m.deadline_misses, sequence_gaps=m.sequence_gaps,
            timestamp_regressions=m.timestamp_regressions,
            fates={k: v for k, v in m.fates.items() if v}, terminal=ns.terminal,
            e2e_p50_s=e2e["p50_s"] if e2e else None, e2e_p99_s=e2e["p99_s"] if e2e else None,
            e2e_late=m.end_to_end_deadline_misses,
            e2e_count=int(m.end_to_end.get("count") or 0) if ns.terminal else 0,
            events_received=m.events_received, events_emitted=m.events_emitted,
            event_fates={k: v for k, v in m.event_fates.items() if v},
        )

    # -- deadlines ------------------------------------------------------------------------
    def deadline_messages(self) -> list[str]:
        """One message per node whose deadline misses grew since the previous call.

        Covers per-node ``deadline_ms`` misses and end-to-end budget misses at terminal nodes.
        Reads the latest report (call :meth:`update` first).
        """
        out: list[str] = []
        if self._last is None:
            return out
        for r in self._last.rows:
            key = (r.pipeline, r.node)
            node_before, e2e_before = self._misses.get(key, (0, 0))
            if r.deadline_misses > node_before:
                out.append(f"pipeline {r.pipeline!r} node {r.node!r}: "
                           f"{r.deadline_misses - node_before} deadline misses "
                           f"(total {r.deadline_misses}, p99 {format_seconds(r.p99_s)})")
            if r.e2e_late > e2e_before:
                budget = self._last.pipelines[r.pipeline]["end_to_end_budget_s"] or 0.0
                out.append(f"pipeline {r.pipeline!r} node {r.node!r}: {r.e2e_late - e2e_before} "
                           f"frames over the end-to-end budget of {format_seconds(budget)} "
                           f"(total {r.e2e_late})")
            self._misses[key] = (r.deadline_misses, r.e2e_late)
        return out

    # -- plain text -----------------------------------------------------------------------
    _COLUMNS = ("node", "rate/s", "p50", "p99", "max", "errors", "queue", "peak", "drops",
                "blocked", "fates")

    def format_text(self, report: MonitorReport | None = None) -> str:
        """A plain-text table per pipeline (uses the latest report if none is given)."""
        report = report or self._last or self.update()
        lines: list[str] = []
        for name, info in report.pipelines.items():
            rows = [r for r in report.rows if r.pipeline == name]
            lines.append(f"pipeline {name!r}: {info['state']}, {info['duration_s']:.2f} s"
                         + (f", {info['instances']} instances" if info["instances"] != 1 else ""))
            cells = [self._cells(r) for r in rows]
            table = [list(self._COLUMNS)] + cells
            widths = [max(len(row[i]) for row in table) for i in range(len(self._COLUMNS))]
            for row in table:
                left = f"{row[0]:<{widths[0]}}"
                mid = " ".join(f"{c:>{w}}" for c, w in zip(row[1:-1], widths[1:-1]))
                lines.append(f"  {left} {mid}  {row[-1]}".rstrip())
            for r in rows:
                if r.e2e_p50_s is not None:
                    late = f", {r.e2e_late} late" if info["end_to_end_budget_s"] else ""
                    lines.append(f"  end-to-end at {r.node}: {r.e2e_count} frames, "
                                 f"p50 {format_seconds(r.e2e_p50_s)} "
                                 f"p99 {format_seconds(r.e2e_p99_s or 0.0)}{late}")
                elif r.terminal:
                    lines.append(f"  end-to-end at {r.node}: {NOT_MEASURED} (no frame measured)")
                if r.sequence_gaps or r.timestamp_regressions:
                    lines.append(f"  stream health at {r.node}: {r.sequence_gaps} sequence gaps, "
                                 f"{r.timestamp_regressions} timestamp regressions")
            for r in rows:  # only nodes that saw events: event-free output is unchanged
                if r.has_events:
                    lines.append(f"  events at {r.node}: {_events(r)}")
        return "\n".join(lines)

    @staticmethod
    def _cells(r: NodeRow) -> list[str]:
        fates = " ".join(f"{k}={v}" for k, v in r.fates.items())
        errors = str(r.errors) + (f" ({r.restarts} restarts)" if r.restarts else "")
        if r.deadline_misses:
            errors += f" {r.deadline_misses} late"
        return [r.node, f"{r.rate_hz:.1f}", format_seconds(r.p50_s), format_seconds(r.p99_s),
                format_seconds(r.max_s), errors, _queue(r),
                str(r.queue_peak), str(r.dropped), format_seconds(r.blocked_s), fates]

    def format_line(self, report: MonitorReport | None = None) -> str:
        """One compact line per pipeline: ``name state: node rate p99 q drops err | ...``."""
        report = report or self._last or self.update()
        lines = []
        for name, info in report.pipelines.items():
            parts = [f"{r.node} {r.rate_hz:.1f}/s p99 {format_seconds(r.p99_s)} "
                     f"q {_queue(r)} drops {r.dropped} err {r.errors}"
                     for r in report.rows if r.pipeline == name]
            lines.append(f"[{report.elapsed_s:7.2f}s] {name} {info['state']}: " + " | ".join(parts))
        return "\n".join(lines)

    # -- rich -----------------------------------------------------------------------------
    #: Columns of the rich table; the ones marked False are left out when ``compact``.
    _RICH_COLUMNS = (("node", True), ("type", False), ("rate/s", True), ("p50", True),
                     ("p99", True), ("max", False), ("errors", True), ("missed", False),
                     ("queue", True),
                     ("peak", False), ("drops", True), ("blocked", False), ("e2e p99", True),
                     ("fates", True), ("events", True))

    def table(self, report: MonitorReport | None = None, *, compact: bool = False) -> Any:
        """A ``rich.table.Table`` of the report (one section per pipeline).

        ``compact`` leaves out type, max, peak and blocked (for terminals under ~120 columns).
        The ``events`` column is there only when some node received or emitted events.
        """
        try:
            from rich import box
            from rich.table import Table
        except ImportError as exc:
            raise missing_extra("rich", "ui") from exc
        report = report or self._last or self.update()
        missed = any(r.deadline_misses for r in report.rows)
        events = any(r.has_events for r in report.rows)
        cols = [c for c, essential in self._RICH_COLUMNS
                if (essential or not compact or (c == "missed" and missed))
                and (c != "events" or events)]
        t = Table(expand=False, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
        for c in cols:
            if c in ("node", "type"):
                t.add_column(c, no_wrap=True, style="dim" if c == "type" else None)
            elif c in ("fates", "events"):
                t.add_column(c, overflow="fold", min_width=8)
            else:
                t.add_column(c, justify="right", no_wrap=True)
        multi = len(report.pipelines) > 1
        for name, info in report.pipelines.items():
            if multi:
                t.add_row(f"[bold]{name}[/] {info['state']}")
            for r in (r for r in report.rows if r.pipeline == name):
                cells = self._rich_cells(r)
                t.add_row(*(cells[c] for c in cols))
            if multi:
                t.add_section()
        return t

    @staticmethod
    def _rich_cells(r: NodeRow) -> dict[str, str]:
        full = r.queue_capacity and r.queue_depth >= r.queue_capacity
        fates = " ".join(f"{k}={v}" for k, v in r.fates.items()
                         if k not in ("delivered", "dropped_overflow"))
        errors = f"[red]{r.errors}[/]" if r.errors else "0"
        missed = f"[yellow]{r.deadline_misses}[/]" if r.deadline_misses else "0"
        return {
            "node": r.node, "type": r.node_type,
            "rate/s": f"{r.rate_hz:,.0f}" if r.rate_hz >= 100 else f"{r.rate_hz:.1f}",
            "p50": format_seconds(r.p50_s), "p99": format_seconds(r.p99_s),
            "max": format_seconds(r.max_s), "errors": errors, "missed": missed,
            "queue": f"[yellow]{_queue(r)}[/]" if full else _queue(r),
            "peak": str(r.queue_peak), "drops": f"[red]{r.dropped}[/]" if r.dropped else "0",
            "blocked": format_seconds(r.blocked_s), "e2e p99": _e2e_cell(r),
            "fates": fates or ("ok" if r.fates else ""),
            "events": _events(r) if r.has_events else "",
        }

    def renderable(self, report: MonitorReport | None = None,
                   progress: tuple[int, int] | None = None, unit: str = "triggers",
                   *, compact: bool = False) -> Any:
        """The live view: a header line, a progress bar when ``(done, total)`` is known, the table."""
        try:
            from rich.console import Group
            from rich.progress_bar import ProgressBar
            from rich.table import Table
        except ImportError as exc:
            raise missing_extra("rich", "ui") from exc
        report = report or self._last or self.update()
        states = ", ".join(f"{n} {i['state']}" for n, i in report.pipelines.items())
        head = Table.grid(padding=(0, 1))
        head.add_column()
        head.add_column()
        head.add_column()
        if progress is not None and progress[1] > 0:
            done, total = progress
            head.add_row(f"[bold]{states}[/] {report.elapsed_s:6.1f}s",
                         ProgressBar(total=total, completed=min(done, total), width=30),
                         f"{done}/{total} {unit} ({100 * done / total:.0f}%)")
        else:
            head.add_row(f"[bold]{states}[/] {report.elapsed_s:6.1f}s", "", "")
        return Group(head, self.table(report, compact=compact))
