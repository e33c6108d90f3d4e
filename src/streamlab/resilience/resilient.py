"""ResilientNode: applies an ErrorPolicy and a RestartStrategy around any ProcessingNode.

The runtime wraps every node in one (the default policy is Propagate with Never, so an
unconfigured node behaves as in Phase 2), which makes it the single place where frame fates
are counted into the node's :class:`~streamlab.metrics.NodeMetrics`.

Per input frame, :meth:`ResilientNode.process`:

1. counts the frame as received; with a circuit breaker, asks it for admission (a rejected
   frame is counted ``rejected`` and gets the policy's substitute under UseDefault);
2. calls the node's ``process`` and times it (latency histogram, deadline misses);
3. on success counts ``delivered``; on failure records the error, then either propagates
   (``aborted``; a :class:`~streamlab.errors.NodeError` naming the node, the exception as cause)
   or handles it (``skipped`` / ``defaulted``), sends the failed frame to the dead-letter list,
   and schedules a restart if the strategy restarts.

A scheduled restart is performed by :meth:`restart`, which the runtime awaits before the next
frame: it waits the backoff delay on the clock, then builds a fresh instance
(``on_create`` with the same config, then ``on_start``). Frames wait meanwhile in the edge
channel, which outlives the instance. Cancelling ``restart`` (a forced stop) cancels the
restart. Escalation (max_attempts exhausted, or more than ``max_restarts`` restarts within
``within_s``) raises NodeError: the pipeline fails, naming the node.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
import warnings
from collections.abc import Callable
from operator import length_hint
from typing import Any

import numpy as np

from streamlab.clock import SYSTEM_CLOCK, Clock
from streamlab.errors import EndOfStream, NodeError
from streamlab.frame import DataFrame, Payload
from streamlab.metrics.node_metrics import NodeMetrics
from streamlab.node import ProcessingNode
from streamlab.resilience.breaker import CircuitBreaker
from streamlab.resilience.decision import RestartHistory, decide
from streamlab.resilience.policy import (
    CircuitBreakerSettings,
    ErrorPolicy,
    Never,
    Propagate,
    RestartStrategy,
    UseDefault,
)

__all__ = ["ResilientNode"]

_perf_ns = time.perf_counter_ns
_REJECTED = object()  # the breaker turned the frame away (see ResilientNode._admit)


class ResilientNode:
    """Wraps a node (built by ``factory``) with an error policy, a restart strategy, an optional
    circuit breaker (``breaker``: its settings; the instance is kept while it is open) and metrics."""

    #: Live changes (runtime/live.py): wraps the node's ``process`` (stamps outputs with the
    #: config version) when set; a latest-value tap the driver offers each stage's outputs to.
    stamp: Callable[[Callable[[Any], Any], bool], Callable[[Any], Any]] | None = None
    tap: Any = None

    def __init__(
        self,
        factory: Callable[[], ProcessingNode],
        *,
        policy: ErrorPolicy | None = None,
        strategy: RestartStrategy | None = None,
        breaker: CircuitBreakerSettings | None = None,
        metrics: NodeMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        deadline_s: float | None = None,
        collect_dead_letters: bool = False,
    ) -> None:
        strategy, breaker = _breaker_apart(strategy, breaker)
        self._factory = factory
        self._bind(factory())
        self.policy = policy or Propagate()
        self.strategy = strategy or Never()
        self.metrics = metrics or NodeMetrics(self.node.context.node_id, node_type=type(self.node).__name__)
        self.node.context.metrics = self.metrics  # the node's event ledger (settle_events)
        self.clock = clock
        self.deadline_ns = int(deadline_s * 1e9) if deadline_s else 0
        self.breaker_settings = breaker
        self.breaker: CircuitBreaker | None = (None if breaker is None else CircuitBreaker(
            breaker.failure_threshold, breaker.reset_timeout_s))
        self._rng = random.Random(getattr(self.strategy, "seed", None))
        self._use_default = isinstance(self.policy, UseDefault)
        self._per_frame = bool(self.breaker is not None or self.deadline_ns or self._use_default)
        self.batch_consumed = 0
        self._last_good: DataFrame | None = None
        self.history = RestartHistory()        # restart attempts, last failure, recent restarts
        self.restart_delays: list[float] = []  # seconds waited before each restart, in order
        self._restart_due = 0.0
        self.dead_letters: list[DataFrame] = []
        self._collect_dead = collect_dead_letters
        self.last_error: BaseException | None = None
        #: Fate of a frame whose processing is cancelled (the runtime says which).
        self.cancel_fate: Callable[[], str] = lambda: "dropped_shutdown"

    def _bind(self, node: ProcessingNode) -> None:
        """Run ``node`` from now on (the first instance, or a restart's fresh one)."""
        self.node = node
        self.is_async = inspect.iscoroutinefunction(node.process)
        # sources are called with None, async nodes return awaitables: checked at run time
        self._process: Callable[[Any], Any] = node.process
        if self.stamp is not None:
            self._process = self.stamp(node.process, self.is_async)

    def swap(self, node: ProcessingNode, factory: Callable[[], ProcessingNode]) -> ProcessingNode:
        """A live change: run ``node`` (built and started by the caller) from the next frame,
        and build later restarts with ``factory``. Returns the old instance: the caller stops
        it. Metrics, policy and restart history are kept."""
        old = self.node
        self._factory = factory
        self._bind(node)
        node.context.metrics = self.metrics
        return old

    @property
    def node_id(self) -> str:
        return self.node.context.node_id

    @property
    def pending_restart(self) -> bool:
        """A failure scheduled a fresh instance: :meth:`restart` must run before the next frame."""
        return self.history.pending

    @property
    def attempts(self) -> int:
        """Restart attempts since the last healthy period."""
        return self.history.attempts

    # -- per frame ------------------------------------------------------------------------
    def process(self, frame: DataFrame) -> Any:
        """Process one frame under the policy (sync nodes). See the module docstring."""
        ticket = self._admit()
        if ticket is _REJECTED:
            return self._rejected(frame)
        t0 = _perf_ns()
        try:
            out = self._process(frame)
        except Exception as exc:
            return self._failed(frame, exc, t0, ticket)
        return self._succeeded(out, t0, ticket)

    def _admit(self) -> Any:
        """The breaker's ticket for the next frame: None without a breaker, ``_REJECTED``
        when the open breaker turns the frame away."""
        if self.breaker is None:
            return None
        ticket = self.breaker.admit(self.clock.monotonic())
        return _REJECTED if ticket is None else ticket

    def _succeeded(self, out: Any, t0: int, ticket: Any) -> Any:
        """Time, settle and remember a frame the node processed (started at ``t0``)."""
        m = self.metrics
        dt = _perf_ns() - t0
        m.latency.record(dt)
        if self.deadline_ns and dt > self.deadline_ns:
            m.deadline_misses += 1
        m.settle("delivered")
        if ticket is not None:
            self.breaker.record(ticket, True, self.clock.monotonic())  # type: ignore[union-attr]
        if self._use_default and out is not None:
            self._last_good = out if isinstance(out, DataFrame) else (out[-1] if out else None)
        return out

    def process_batch(self, frames: list[Any], out: list[DataFrame], *,
                      produce: bool = False) -> int:
        """Process ``frames`` in order (sync nodes), appending their outputs to ``out``.

        The same fates, errors and policies as :meth:`process` per frame, with two clock reads
        per batch instead of two per frame: each frame of the batch is attributed the batch's
        mean time in the latency histogram (exact sum; the max is the largest batch mean). A
        frame alone (a paced source) is timed exactly. Returns how many frames were consumed:
        fewer than ``len(frames)`` when a failure scheduled a restart (the rest must meet the
        fresh instance, after :meth:`restart`). On an exception, ``batch_consumed`` says how
        many frames had been taken, the failing one included. With ``produce`` (a free-running
        source: ``frames`` are Nones) no input fates are counted, as in :meth:`produce`.
        """
        self.batch_consumed = 0
        if self._per_frame and not produce:  # breaker, deadline or UseDefault: per frame
            return self._process_each(frames, out)
        proc, append, frame_type = self._process, out.append, DataFrame
        it = iter(frames)  # no per-frame index: which frame failed is len - what is left - 1
        t0 = _perf_ns()
        try:
            for f in it:
                r = proc(f)
                if r is not None:
                    if type(r) is frame_type:
                        append(r)
                    else:
                        out.extend(r)
        except EndOfStream:
            i = len(frames) - length_hint(it) - 1
            self._tally(0 if produce else i, i, _perf_ns() - t0)
            self.batch_consumed = i
            raise
        except Exception as exc:
            i = len(frames) - length_hint(it) - 1
            return self._batch_failed(frames, i, out, exc, t0, produce)
        n = len(frames)
        self._tally(0 if produce else n, n, _perf_ns() - t0)
        return n

    def _process_each(self, frames: list[DataFrame], out: list[DataFrame]) -> int:
        """:meth:`process_batch` one :meth:`process` call per frame (breaker, deadline...)."""
        for i, f in enumerate(frames):
            self.batch_consumed = i + 1
            r = self.process(f)
            if r is not None:
                if type(r) is DataFrame:
                    out.append(r)
                else:
                    out.extend(r)
            if self.pending_restart:
                return i + 1
        return len(frames)

    def _batch_failed(self, frames: list[Any], i: int, out: list[DataFrame], exc: Exception,
                      t0: int, produce: bool) -> int:
        """Frame ``i`` of a batch failed: frames before it were delivered; apply the policy,
        then go on with the rest unless a restart is pending (see :meth:`process_batch`)."""
        dt = _perf_ns() - t0
        share = dt * i // (i + 1)  # the delivered frames' part of the time, by attribution
        self._tally(0 if produce else i, i, share)
        self.batch_consumed = taken = i + 1
        r = self._failed(DataFrame() if produce else frames[i], exc, t0 + share, None)
        if r is not None:
            out.append(r)
        if self.pending_restart or taken == len(frames):
            return taken
        try:
            return taken + self.process_batch(frames[taken:], out, produce=produce)
        except BaseException:
            self.batch_consumed += taken  # counted from this batch's start, not the rest's
            raise

    def _tally(self, delivered: int, n: int, total_ns: int) -> None:
        """Settle ``delivered`` frames and attribute ``total_ns`` to ``n`` latency records."""
        if delivered:
            self.metrics.settle("delivered", delivered)
        if n:
            self.metrics.latency.record_batch(total_ns, n)

    async def process_async(self, frame: DataFrame) -> Any:
        """Process one frame under the policy (async nodes); the same steps as :meth:`process`.
        Cancelled: the frame gets :attr:`cancel_fate`."""
        ticket = self._admit()
        if ticket is _REJECTED:
            return self._rejected(frame)
        t0 = _perf_ns()
        try:
            out = await self._process(frame)
        except asyncio.CancelledError:
            self.metrics.settle(self.cancel_fate())
            raise
        except Exception as exc:
            return self._failed(frame, exc, t0, ticket)
        return self._succeeded(out, t0, ticket)

    def produce(self) -> Any:
        """One output of a free-running source (sync): errors go through the policy.

        A source has no input frame, so no fate is counted; EndOfStream ends the source.
        """
        t0 = _perf_ns()
        try:
            out = self._process(None)
        except Exception as exc:  # a failed production attempt is accounted as a frame
            return self._failed(DataFrame(), exc, t0, None)
        self.metrics.latency.record(_perf_ns() - t0)
        return out

    def produce_batch(self, n: int, out: list[DataFrame]) -> tuple[int, bool]:
        """Up to ``n`` outputs of a free-running source (sync), appended to ``out``.

        Returns ``(calls made, ended)``; stops early at EndOfStream (``ended``) or when a
        failure scheduled a restart. Errors go through the policy as in :meth:`produce`.
        """
        try:
            return self.process_batch([None] * n, out, produce=True), False
        except EndOfStream:
            return self.batch_consumed, True

    async def produce_async(self) -> Any:
        """:meth:`produce` for sources whose ``process`` is async (devices, network)."""
        t0 = _perf_ns()
        try:
            out = await self._process(None)
        except Exception as exc:
            return self._failed(DataFrame(), exc, t0, None)
        self.metrics.latency.record(_perf_ns() - t0)
        return out

    # -- failure paths ----------------------------------------------------------------------
    def _rejected(self, frame: DataFrame) -> Any:
        self.metrics.settle("rejected")
        self._events_not_handled(frame, "carried" if self._use_default else "rejected")
        if self._use_default:
            return self._substitute(frame)
        return None

    def _events_not_handled(self, frame: DataFrame, fate: str) -> None:
        """A frame that never reached (or failed in) a node that settles its own events:
        its events get ``fate`` here (``carried`` when a substitute carries them on). For
        other nodes the runtime settles events from what leaves the node."""
        if frame.events and self.node.handles_events:
            self.node.context.settle_events(fate, len(frame.events))

    def _failed(self, frame: DataFrame, exc: Exception, t0: int, ticket: Any) -> Any:
        """Perform the policy's decision for ``frame`` (see :mod:`.decision`).

        Returns the substitute frame (UseDefault) or None; raises NodeError when the error
        propagates or the strategy gives up: the frame is then ``aborted`` and the run fails.
        EndOfStream (a source's end of data, not a failed frame) is re-raised untouched.
        """
        if isinstance(exc, EndOfStream):
            raise exc
        m = self.metrics
        m.latency.record(_perf_ns() - t0)
        m.record_error(exc)
        self.last_error = exc
        now = self.clock.monotonic()
        if ticket is not None:
            self.breaker.record(ticket, False, now)  # type: ignore[union-attr]
        decision, self.history = decide(self.policy, self.strategy, self.history, exc, now,
                                        self._rng)
        m.settle(decision.fate)
        self._events_not_handled(frame, "carried" if decision.outcome == "substitute" else "dropped")
        if decision.outcome == "propagate":
            raise NodeError(self.node_id, f"{type(exc).__name__}: {exc}") from exc
        if decision.escalation is not None:
            raise NodeError(self.node_id, f"{decision.escalation}; last error "
                                          f"{type(exc).__name__}: {exc}") from exc
        if decision.restart_in is not None:
            self._restart_due = now + decision.restart_in
            self.restart_delays.append(decision.restart_in)
        if self._collect_dead:
            self.dead_letters.append(frame.with_metadata(
                error_type=type(exc).__name__, error_message=str(exc)[:500],
                error_node=self.node_id, error_policy=self.policy.name))
        return self._substitute(frame) if decision.outcome == "substitute" else None

    def _substitute(self, frame: DataFrame) -> DataFrame:
        policy: UseDefault = self.policy  # type: ignore[assignment]
        if policy.last_good and self._last_good is not None:
            good = self._last_good
            return DataFrame._make(frame.timestamp, frame.sequence_id, good.payload, good.metadata,
                                   frame.events)
        fill = np.nan if policy.fill_value is None else policy.fill_value
        p = frame.payload
        if p.is_block:
            block = np.full(p.block().shape, fill)
            payload = Payload.from_block(p.names, block)
        else:
            payload = Payload({n: np.full(len(p[n]), fill) for n in p.names})
        return DataFrame._make(frame.timestamp, frame.sequence_id, payload, frame.metadata,
                               frame.events)

    async def restart(self) -> None:
        """Perform a scheduled restart: wait the backoff, then a fresh instance. Cancellable."""
        if not self.pending_restart:
            return
        wait = self._restart_due - self.clock.monotonic()
        if wait > 0:
            await self.clock.sleep(wait)
        old = self.node
        await _maybe_await(old.on_stop())
        self._bind(self._factory())
        await _maybe_await(self.node.on_start())
        self.metrics.restarts += 1
        h = self.history
        self.history = RestartHistory(h.attempts, h.last_failure, h.recent, False)

    def __repr__(self) -> str:
        return (f"<ResilientNode {self.node_id!r} policy={self.policy.name} "
                f"strategy={self.strategy.name} restarts={self.metrics.restarts}>")


def _breaker_apart(strategy: RestartStrategy | CircuitBreakerSettings | None,
                   breaker: CircuitBreakerSettings | None,
                   ) -> tuple[RestartStrategy | None, CircuitBreakerSettings | None]:
    """``(strategy, breaker)``, accepting the pre-0.2 spelling ``strategy=<breaker>`` with a
    DeprecationWarning; TypeError if a breaker is given both ways."""
    if not isinstance(strategy, CircuitBreakerSettings):
        return strategy, breaker
    if breaker is not None:
        raise TypeError("ResilientNode: a circuit breaker given both as strategy= and "
                        "breaker=; pass it as breaker= only")
    warnings.warn("ResilientNode(strategy=CircuitBreakerStrategy(...)) is deprecated: the "
                  "breaker is a setting of its own, pass breaker=", DeprecationWarning,
                  stacklevel=3)
    return None, strategy


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
