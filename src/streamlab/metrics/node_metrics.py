"""NodeMetrics: per-node counters, frame fates and a latency histogram, cheap on the hot path.

Counters are plain int attributes. Only the task that runs a node writes its metrics (one
writer), and readers (monitor, Prometheus scrape) read whole ints, which CPython reads
atomically: no locks are needed, and an increment costs tens of nanoseconds.

**Frame fates.** Every frame that enters a node ends as exactly one fate (see
``shared/RELIABILITY.md``): ``delivered`` (processed successfully, whatever it emitted),
``skipped`` (failed, dropped by SkipFrame), ``defaulted`` (failed, replaced by UseDefault),
``rejected`` (refused by an open circuit breaker), ``dropped_overflow`` (evicted by a leaky
edge's overflow policy before the node saw it), ``dropped_shutdown`` (still queued or in hand
at a forced stop) and ``aborted`` (the pipeline failed). Once a run ends,
``received == sum of fates``: :meth:`NodeMetrics.check_accounting` verifies it.

**Budgets.** A node's ``deadline_ms`` is counted by the runtime in ``deadline_misses``. The
pipeline's end-to-end budget (``pipeline_config.deadline_ms``) is counted at terminal nodes by a
:class:`BudgetHistogram` installed with :meth:`NodeMetrics.set_end_to_end_budget` (the
:class:`~streamlab.metrics.MetricsCollector` installs it when it registers a pipeline).

**End-to-end latency** (``end_to_end``, terminal nodes only): from the moment the frame
entered the pipeline (the runtime stamps ``DataFrame.ingress_ns`` on the pipeline clock's
monotonic time when a source emits it; nodes' new frames inherit their input's) to its arrival
at the terminal node, recorded once per frame the node receives, whether it is fused with its
upstream nodes or not. It does not depend on frame timestamps. In a snapshot the times are
None while nothing was measured.

**Stream health.** :meth:`NodeMetrics.observe_batch` counts gaps in ``sequence_id`` and
timestamps that go backwards, separately per input edge, so a fan-in node does not see the
interleaving of its inputs as gaps.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from streamlab.events import EVENT_FATES

__all__ = ["FATES", "Histogram", "BudgetHistogram", "NodeMetrics", "NodeMetricsSnapshot",
           "AccountingError"]

FATES = (
    "delivered",
    "skipped",
    "defaulted",
    "rejected",
    "dropped_overflow",
    "dropped_shutdown",
    "aborted",
)

_SUB_BITS = 3
_SUB = 1 << _SUB_BITS          # 8 sub-buckets per power of two: about 6% resolution
_NBUCKETS = _SUB * 63          # covers every duration below 2**64 ns (585 years)


class AccountingError(AssertionError):
    """``received != sum of fates`` for a node at the end of a run (a StreamLab bug)."""


def _bucket(v: int) -> int:
    if v < _SUB:
        return v if v > 0 else 0
    e = v.bit_length() - 1
    return _SUB * (e - _SUB_BITS + 1) + ((v >> (e - _SUB_BITS)) & (_SUB - 1))


def _bounds(idx: int) -> tuple[int, int]:
    """[lower, upper) of bucket ``idx`` in ns."""
    if idx < _SUB:
        return idx, idx + 1
    e = idx // _SUB + _SUB_BITS - 1
    m = idx % _SUB
    shift = e - _SUB_BITS
    return (_SUB + m) << shift, (_SUB + m + 1) << shift


#: Per bucket: lowest value, highest value (inclusive) and midpoint, in ns (read side only).
_LOW = tuple(_bounds(i)[0] for i in range(_NBUCKETS))
_HIGH = tuple(_bounds(i)[1] - 1 for i in range(_NBUCKETS))
_MID = tuple((lo + hi) / 2 for lo, hi in zip(_LOW, _HIGH))


class Histogram:
    """A log-linear histogram of durations in ns (about 6% resolution), with exact max/sum
    (:meth:`record_batch` attributes a batch's mean to each of its frames: max of the means).

    ``record(ns)`` (``ns >= 0``) is a few integer operations and three attribute updates:
    the bucket index of ``ns >= 16`` is ``8*s + (ns >> s)`` with ``s = ns.bit_length() - 4``
    (the same as :func:`_bucket`), and smaller values are their own bucket. ``count`` is the
    sum of the buckets, computed when read. Quantiles return the midpoint of the bucket holding
    the requested rank, clamped to the exact max.
    """

    __slots__ = ("counts", "total_ns", "max_ns")

    def __init__(self) -> None:
        self.counts = [0] * _NBUCKETS
        self.total_ns = 0
        self.max_ns = 0

    def record(self, ns: int) -> None:
        s = ns.bit_length() - 4
        if s > 0:
            self.counts[(s << 3) + (ns >> s)] += 1
        else:
            self.counts[ns if ns > 0 else 0] += 1
        self.total_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns

    def record_batch(self, total_ns: int, n: int) -> None:
        """``n`` observations (``n > 0``) sharing ``total_ns``: each is attributed the mean
        (one clock read per batch instead of one per frame); the sum stays exact."""
        ns = total_ns // n
        s = ns.bit_length() - 4
        if s > 0:
            self.counts[(s << 3) + (ns >> s)] += n
        else:
            self.counts[ns if ns > 0 else 0] += n
        self.total_ns += total_ns
        if ns > self.max_ns:
            self.max_ns = ns

    def record_each(self, values: Iterable[int]) -> None:
        """:meth:`record` for each of ``values`` (each ``>= 0``), in one call."""
        counts = self.counts
        total = 0
        top = self.max_ns
        for ns in values:
            s = ns.bit_length() - 4
            if s > 0:
                counts[(s << 3) + (ns >> s)] += 1
            else:
                counts[ns if ns > 0 else 0] += 1
            total += ns
            if ns > top:
                top = ns
        self.total_ns += total
        self.max_ns = top

    @property
    def count(self) -> int:
        """Number of observations."""
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """The q-quantile in seconds (0.0 when empty)."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: tuple[float, ...]) -> list[float]:
        """Several quantiles in seconds from one consistent copy of the buckets."""
        cum = list(accumulate(self.counts))
        count = cum[-1]
        if count == 0:
            return [0.0] * len(qs)
        top = self.max_ns
        out = []
        for q in qs:
            rank = max(1, int(q * count + 0.999999))
            i = bisect_left(cum, min(rank, count))
            out.append(min(_MID[i], top) / 1e9)
        return out

    @property
    def mean(self) -> float:
        """Mean in seconds."""
        count = self.count
        return self.total_ns / count / 1e9 if count else 0.0

    def cumulative(self, bounds_s: list[float]) -> list[int]:
        """Counts of observations <= each bound (seconds), for Prometheus ``le`` buckets.

        A fine bucket counts under a bound when its upper edge is at or below it, so a count
        is never overstated (a value within about 6% below a bound may be counted above it).
        """
        cum = list(accumulate(self.counts))  # one consistent copy: a scrape may run elsewhere
        out = []
        for b in bounds_s:
            i = bisect_right(_HIGH, b * 1e9)  # buckets 0 .. i-1 lie entirely at or below b
            out.append(cum[i - 1] if i else 0)
        return out

    def count_above(self, threshold_ns: int) -> int:
        """Observations certainly above ``threshold_ns`` (buckets whose lower edge exceeds it)."""
        return sum(self.counts[bisect_right(_LOW, threshold_ns):])

    def copy(self) -> Histogram:
        """An independent copy (same class, same counts)."""
        h = Histogram()
        h.counts = list(self.counts)
        h.total_ns, h.max_ns = self.total_ns, self.max_ns
        return h

    def merge(self, other: Histogram) -> None:
        """Add another histogram's observations into this one."""
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.total_ns += other.total_ns
        self.max_ns = max(self.max_ns, other.max_ns)

    def summary(self) -> dict[str, float]:
        """count, mean, p50, p90, p99 and max (seconds)."""
        p50, p90, p99 = self.quantiles((0.50, 0.90, 0.99))
        return {
            "count": self.count,
            "mean_s": self.mean,
            "p50_s": p50,
            "p90_s": p90,
            "p99_s": p99,
            "max_s": self.max_ns / 1e9,
        }


class BudgetHistogram(Histogram):
    """A Histogram that also counts, exactly, the observations above a budget (``over_budget``).

    Used for end-to-end latency at terminal nodes when the pipeline declares ``deadline_ms``.
    """

    __slots__ = ("budget_ns", "over_budget")

    def __init__(self, budget_ns: int) -> None:
        super().__init__()
        self.budget_ns = budget_ns
        self.over_budget = 0

    def record(self, ns: int) -> None:
        if ns > self.budget_ns:
            self.over_budget += 1
        s = ns.bit_length() - 4  # Histogram.record, inlined: this runs once per frame at sinks
        if s > 0:
            self.counts[(s << 3) + (ns >> s)] += 1
        else:
            self.counts[ns if ns > 0 else 0] += 1
        self.total_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns

    def record_each(self, values: Iterable[int]) -> None:
        values = values if isinstance(values, list) else list(values)
        budget = self.budget_ns
        self.over_budget += sum(1 for ns in values if ns > budget)
        super().record_each(values)

    def record_batch(self, total_ns: int, n: int) -> None:
        if total_ns // n > self.budget_ns:
            self.over_budget += n
        super().record_batch(total_ns, n)

    def copy(self) -> BudgetHistogram:
        h = BudgetHistogram(self.budget_ns)
        h.counts = list(self.counts)
        h.total_ns, h.max_ns, h.over_budget = self.total_ns, self.max_ns, self.over_budget
        return h


def _measured(summary: dict[str, float]) -> dict[str, float | None]:
    """``summary`` with its times None when it has no observations (unmeasured, not 0)."""
    if summary["count"]:
        return dict(summary)
    return {k: (v if k == "count" else None) for k, v in summary.items()}


@dataclass(frozen=True)
class NodeMetricsSnapshot:
    """Plain data copy of a node's metrics."""

    pipeline: str
    node: str
    node_type: str
    received: int
    frames_out: int
    errors: int
    restarts: int
    fates: dict[str, int]
    latency: dict[str, float]
    #: count, mean_s, p50_s, p90_s, p99_s, max_s; the times are None while count is 0
    #: (not a terminal node, or no frame reached it): unmeasured, not zero.
    end_to_end: dict[str, float | None]
    blocked_seconds: float
    deadline_misses: int
    sequence_gaps: int
    timestamp_regressions: int
    busy_seconds: float
    end_to_end_deadline_misses: int = 0
    events_received: int = 0
    events_emitted: int = 0
    event_fates: dict[str, int] = field(default_factory=dict)
    #: Live changes (docs/live.md): the node's config version (0: as started) and the changes
    #: tried on it, by ``"kind/result"`` (kind update|replace|add|remove, result applied|refused).
    config_version: int = 0
    config_changes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class NodeMetrics:
    """Counters of one node instance. See the module docstring for the fates."""

    __slots__ = (
        "pipeline", "node", "node_type", "received", "frames_out", "errors", "restarts",
        "delivered", "skipped", "defaulted", "rejected", "dropped_overflow", "dropped_shutdown",
        "aborted", "latency", "end_to_end", "blocked_seconds", "deadline_misses",
        "sequence_gaps", "timestamp_regressions", "last_seq", "last_ts", "error_types",
        "streams", "events_received", "events_emitted", "event_fates", "config_version",
        "config_changes",
    )

    def __init__(self, node: str = "node", pipeline: str = "pipeline", node_type: str = "") -> None:
        self.pipeline = pipeline
        self.node = node
        self.node_type = node_type
        self.received = 0
        self.frames_out = 0
        self.errors = 0
        self.restarts = 0
        self.delivered = 0
        self.skipped = 0
        self.defaulted = 0
        self.rejected = 0
        self.dropped_overflow = 0
        self.dropped_shutdown = 0
        self.aborted = 0
        self.latency = Histogram()
        self.end_to_end = Histogram()
        self.blocked_seconds = 0.0
        self.deadline_misses = 0
        self.sequence_gaps = 0
        self.timestamp_regressions = 0
        self.last_seq: int | None = None
        self.last_ts: int | None = None
        self.error_types: dict[str, int] = {}
        self.streams: dict[str | None, list[int]] = {}  # input -> [last sequence_id, last timestamp]
        self.events_received = 0   # events on frames that entered the node
        self.events_emitted = 0    # events on frames the node emitted
        self.event_fates: dict[str, int] = dict.fromkeys(EVENT_FATES, 0)
        self.config_version = 0    # live changes applied (docs/live.md)
        self.config_changes: dict[str, int] = {}  # "kind/result" -> live changes tried

    @property
    def end_to_end_deadline_misses(self) -> int:
        """Frames that reached this terminal node later than the pipeline's end-to-end budget.

        Exact when :meth:`set_end_to_end_budget` was called before the run; 0 without a budget.
        """
        h = self.end_to_end
        return h.over_budget if isinstance(h, BudgetHistogram) else 0

    def set_end_to_end_budget(self, seconds: float) -> None:
        """Count end-to-end latencies above ``seconds`` (replaces ``end_to_end``, keeping its counts).

        Call it before the pipeline starts: the runtime keeps a reference to the histogram it
        records into, so a later call only affects runs started afterwards.
        """
        h = BudgetHistogram(int(seconds * 1e9))
        h.merge(self.end_to_end)
        self.end_to_end = h

    def settle(self, fate: str, n: int = 1, *, received: int | None = None) -> None:
        """The ledger: ``n`` frames end as ``fate``. The one place a fate counter is written.

        ``received`` (default ``n``) is how many of them enter the count of received frames
        here: 0 for frames already counted, or when a fate is corrected (a negative ``n``
        takes frames back out of a fate, e.g. outputs that never left a node at a forced stop).
        """
        if fate == "delivered":  # the common fate, settled once per batch per node: no setattr
            self.delivered += n
        else:
            setattr(self, fate, getattr(self, fate) + n)
        self.received += n if received is None else received

    def settle_events(self, fate: str, n: int = 1, *, received: int | None = None) -> None:
        """The event ledger: ``n`` events end as ``fate`` (one of :data:`EVENT_FATES`).

        ``received`` (default ``n``) is how many of them enter ``events_received`` here.
        """
        if n:
            self.event_fates[fate] += n
        self.events_received += n if received is None else received

    def count_change(self, kind: str, result: str) -> None:
        """One live change of ``kind`` tried on this node, ``result`` applied or refused."""
        key = f"{kind}/{result}"
        self.config_changes[key] = self.config_changes.get(key, 0) + 1

    def fates(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in FATES}

    def accounted(self) -> int:
        return (self.delivered + self.skipped + self.defaulted + self.rejected
                + self.dropped_overflow + self.dropped_shutdown + self.aborted)

    def check_accounting(self) -> None:
        """Raise AccountingError unless ``received == sum of fates``."""
        if self.received != self.accounted():
            raise AccountingError(
                f"node {self.node!r}: received {self.received} frames but fates sum to "
                f"{self.accounted()} {self.fates()}"
            )
        settled = sum(self.event_fates.values())
        if self.events_received != settled:
            raise AccountingError(
                f"node {self.node!r}: received {self.events_received} events but event fates "
                f"sum to {settled} {dict(self.event_fates)}"
            )

    def record_error(self, exc: BaseException) -> None:
        self.errors += 1
        name = type(exc).__name__
        self.error_types[name] = self.error_types.get(name, 0) + 1

    def observe_stream(self, sequence_id: int, timestamp: int) -> None:
        """Stream health: count sequence gaps and timestamps that go backwards."""
        last = self.last_seq
        if last is not None:
            if sequence_id != last + 1 and sequence_id > last:
                self.sequence_gaps += 1
            if timestamp < self.last_ts:  # type: ignore[operator]
                self.timestamp_regressions += 1
        self.last_seq = sequence_id
        self.last_ts = timestamp

    def observe_batch(self, frames: list[Any], source: str | None = None) -> None:
        """Stream health for a batch of frames from one input (``source``: the upstream node).

        Counts a gap when a ``sequence_id`` jumps forward by more than one, and a regression
        when a timestamp is below the previous one on the same input. About 0.1 µs per frame.
        """
        state = self.streams.get(source)
        if state is None:
            if not frames:
                return
            first = frames[0]
            state = self.streams[source] = [first.sequence_id - 1, first.timestamp]
        last_seq, last_ts = state
        gaps = regressions = 0
        for f in frames:
            seq = f.sequence_id
            if seq > last_seq + 1:
                gaps += 1
            ts = f.timestamp
            if ts < last_ts:
                regressions += 1
            last_seq, last_ts = seq, ts
        state[0], state[1] = last_seq, last_ts
        if gaps:
            self.sequence_gaps += gaps
        if regressions:
            self.timestamp_regressions += regressions

    def merge(self, other: NodeMetrics) -> None:
        """Add another instance's counts and histograms into this one (retired pool instances)."""
        for name in ("received", "frames_out", "errors", "restarts", "deadline_misses",
                     "sequence_gaps", "timestamp_regressions", "events_received",
                     "events_emitted", *FATES):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for fate, n in other.event_fates.items():
            self.event_fates[fate] += n
        self.blocked_seconds += other.blocked_seconds
        self.latency.merge(other.latency)
        if isinstance(other.end_to_end, BudgetHistogram) and not isinstance(
                self.end_to_end, BudgetHistogram):
            self.set_end_to_end_budget(other.end_to_end.budget_ns / 1e9)
        self.end_to_end.merge(other.end_to_end)
        if isinstance(self.end_to_end, BudgetHistogram):
            self.end_to_end.over_budget += other.end_to_end_deadline_misses
        for k, v in other.error_types.items():
            self.error_types[k] = self.error_types.get(k, 0) + v
        for k, v in other.config_changes.items():
            self.config_changes[k] = self.config_changes.get(k, 0) + v

    def snapshot(self) -> NodeMetricsSnapshot:
        return NodeMetricsSnapshot(
            pipeline=self.pipeline, node=self.node, node_type=self.node_type,
            received=self.received, frames_out=self.frames_out, errors=self.errors,
            restarts=self.restarts, fates=self.fates(), latency=self.latency.summary(),
            end_to_end=_measured(self.end_to_end.summary()), blocked_seconds=self.blocked_seconds,
            deadline_misses=self.deadline_misses, sequence_gaps=self.sequence_gaps,
            timestamp_regressions=self.timestamp_regressions,
            busy_seconds=self.latency.total_ns / 1e9,
            end_to_end_deadline_misses=self.end_to_end_deadline_misses,
            events_received=self.events_received, events_emitted=self.events_emitted,
            event_fates=dict(self.event_fates),
            config_version=self.config_version, config_changes=dict(self.config_changes),
        )

    def __repr__(self) -> str:
        return (f"<NodeMetrics {self.node!r} received={self.received} out={self.frames_out} "
                f"errors={self.errors} delivered={self.delivered}>")
