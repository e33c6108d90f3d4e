"""AsyncPipeline (Phase 2): every node (or fused chain of nodes) runs as its own asyncio task.

Edges are bounded :class:`~streamlab.channel.Channel` objects (``channel_capacity``, or the
connection's ``capacity``), so a slow node throttles everything upstream (backpressure).
Fan-out hands the same frame to every branch (payloads are read-only: no copies); fan-in
merges channels. Source nodes (no inputs) receive trigger frames, except free-running sources
which produce on their own.

Lifecycle::

    async with AsyncPipeline.from_config("pipeline.json") as pipe:   # start()
        await pipe.trigger()                                          # one trigger frame
        ...
    # leaving the block is a graceful stop(): nothing in flight is lost

* :meth:`stop` (graceful): sources stop (triggers close, free-running sources are asked to
  stop), every frame in flight reaches the sinks, then the tasks end. With ``timeout`` the
  rest is forced after that many seconds: tasks are cancelled and every frame they or their
  channels held is counted ``dropped_shutdown``; the report names the forced nodes.
* :meth:`join` waits until the pipeline ends on its own (every source exhausted).
* **Failure**: a node error under ``Propagate`` (or an escalated restart) cancels the other
  tasks, counts what was in flight as ``aborted``, and :meth:`join`/:meth:`stop`/:meth:`run`
  raise :class:`~streamlab.errors.PipelineError` naming the node, with the node's exception as
  ``__cause__``. No task outlives ``stop()``; no exception is swallowed.

**Live changes** (docs/live.md, :mod:`streamlab.runtime.live`): while running,
:meth:`update` changes a node's config, :meth:`replace_node`, :meth:`add_node` and
:meth:`remove_node` change the graph, each between two batches of the node's task, validated
first (a refused change leaves the graph untouched); :meth:`tap` gives a latest-value view of a
node's outputs; :meth:`graph`, :meth:`node_config`, :meth:`node_schema`,
:meth:`config_version` and :attr:`changes` describe the running graph.

Outputs of terminal nodes are collected per node (``outputs="collect"``, the default; read
:attr:`results`), streamed through :meth:`outputs` as they arrive (``"stream"``, bounded:
an unread stream applies backpressure), or counted and discarded (``"discard"``). A frame
that reached a terminal node stays in the stream when the run fails or is forced: the reader
gets every one of them (they are the report's ``outputs``), then the end of the stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from streamlab.channel import Channel, ChannelClosed, ChannelStatistics, Inlet, Outlet
from streamlab.clock import SYSTEM_CLOCK, Clock
from streamlab.config import PipelineSpec, load_config
from streamlab.errors import EndOfStream, NodeError, PipelineError, PipelineStopped
from streamlab.frame import DataFrame
from streamlab.metrics.node_metrics import NodeMetrics, NodeMetricsSnapshot
from streamlab.runtime.build import BuiltGraph, build_graph
from streamlab.runtime.driver import Driver, StartBarrier, make_driver
from streamlab.runtime.live import ChangeRecord, LiveControl, Tap
from streamlab.runtime.plan import TRIGGER, TaskPlan, make_plan

__all__ = ["AsyncPipeline", "RunReport", "PipelineStatistics", "OutputMode"]

log = logging.getLogger("streamlab.runtime")
_NO_PAYLOAD = DataFrame().payload
_NO_METADATA = DataFrame().metadata
_FORCE_GRACE_S = 0.4  # how long a forced stop keeps cancelling tasks that swallow cancellation
OutputMode = Literal["collect", "stream", "discard"]


@dataclass(frozen=True)
class RunReport:
    """What a run did: per-node metrics (fates included), channel statistics, how it ended."""

    pipeline: str
    duration_s: float
    #: "completed"; "stopped" (a graceful stop asked with request_stop(), e.g. Ctrl-C, or stop()
    #: before start); "forced" (a stop cancelled nodes); "failed"
    state: str
    forced_nodes: tuple[str, ...]
    failed_node: str | None
    error: str | None
    nodes: dict[str, NodeMetricsSnapshot]
    channels: dict[str, ChannelStatistics]
    outputs: dict[str, int]

    def fates(self) -> dict[str, dict[str, int]]:
        """Per node: ``received`` and every fate count."""
        return {n: {"received": s.received, **s.fates} for n, s in self.nodes.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "duration_s": self.duration_s,
            "state": self.state,
            "forced_nodes": list(self.forced_nodes),
            "failed_node": self.failed_node,
            "error": self.error,
            "nodes": {n: s.to_dict() for n, s in self.nodes.items()},
            "channels": {n: c.__dict__.copy() for n, c in self.channels.items()},
            "outputs": dict(self.outputs),
        }


@dataclass(frozen=True)
class PipelineStatistics:
    """A live snapshot: state, tasks, channels."""

    state: str
    tasks_running: int
    tasks: tuple[str, ...]
    channels: dict[str, ChannelStatistics] = field(default_factory=dict)


class _CollectOutlet:
    """Terminal outlet that keeps every frame (outputs="collect")."""

    __slots__ = ("frames", "sent")

    def __init__(self) -> None:
        self.frames: list[DataFrame] = []
        self.sent = 0

    def try_send(self, frame: DataFrame) -> bool:
        self.frames.append(frame)
        self.sent += 1
        return True

    async def send(self, frame: DataFrame) -> None:
        self.try_send(frame)

    async def send_all(self, frames: Iterable[DataFrame]) -> None:
        for f in frames:
            self.try_send(f)

    def close(self) -> None:
        pass


class _DiscardOutlet(_CollectOutlet):
    """Terminal outlet that only counts (outputs="discard")."""

    __slots__ = ()

    def try_send(self, frame: DataFrame) -> bool:
        self.sent += 1
        return True


class AsyncPipeline:
    """A running instance of a pipeline graph. See the module docstring for the lifecycle."""

    def __init__(
        self,
        config: PipelineSpec | Mapping[str, Any] | str | os.PathLike[str],
        *,
        clock: Clock = SYSTEM_CLOCK,
        outputs: OutputMode = "collect",
        instance: str | None = None,
        metrics: dict[str, NodeMetrics] | None = None,
        fusion: bool | None = None,
        debug: bool | None = None,
        output_capacity: int | None = None,
        stamp_config_version: bool | None = None,
    ) -> None:
        self.spec = load_config(config)
        settings = self.spec.pipeline_config
        self.name = instance or self.spec.name
        self.clock = clock
        self.output_mode: OutputMode = outputs
        self.fusion = settings.fusion if fusion is None else fusion
        self.debug = settings.debug if debug is None else debug
        self._capacity = settings.channel_capacity
        self._output_capacity = output_capacity or self._capacity
        self._stop_requested = asyncio.Event()
        self._stop_asked = False  # request_stop() was called: the run ends "stopped"
        self.built: BuiltGraph = build_graph(self.spec, clock=clock, pipeline_name=self.name,
                                             metrics=metrics)
        for ctx in self.built.contexts.values():
            ctx.stop_requested = self._stop_requested
        for res in self.built.nodes.values():
            res.cancel_fate = self._cancel_fate
        self.metrics: dict[str, NodeMetrics] = {k: r.metrics for k, r in self.built.nodes.items()}
        self._init_run_state()
        self.plan = make_plan(self.built, fusion=self.fusion, capacity=self._capacity)
        self.chains = self.plan.chains
        self._wire()
        stamp = settings.stamp_config_version if stamp_config_version is None else stamp_config_version
        #: Live changes and taps (docs/live.md).
        self.live = LiveControl(self, stamp=stamp)

    def _init_run_state(self) -> None:
        """The state of the one run: tasks, failure, lifecycle, channels, drivers."""
        self._tasks: list[asyncio.Task[None]] = []
        self._executors: list[ThreadPoolExecutor] = []
        self._failure: tuple[str | None, BaseException] | None = None
        self._aborting = False
        self._state = "created"
        self._forced: list[str] = []
        self._started_at = 0.0
        self._finished_at: float | None = None
        self._finalized = False
        self._report: RunReport | None = None
        self._next_trigger = 0
        self.channels: dict[tuple[str, str], Channel] = {}
        self.trigger_channels: dict[str, Channel] = {}
        self._sink_outlets: dict[str, Any] = {}
        self._runners: list[Driver] = []

    @classmethod
    def from_config(cls, config: PipelineSpec | Mapping[str, Any] | str | os.PathLike[str],
                    **kw: Any) -> AsyncPipeline:
        """Load, validate and instantiate (see ``__init__`` for the keywords)."""
        return cls(config, **kw)

    # -- wiring -----------------------------------------------------------------------------
    def _wire(self) -> None:
        """Channels and one driver per task, as the plan says."""
        plan = self.plan
        for e in plan.edges:
            self.channels[(e.source, e.target)] = Channel(e.capacity, overflow=e.overflow,  # type: ignore[arg-type]
                                                          name=e.name)
        for e in plan.triggers:
            self.trigger_channels[e.target] = Channel(e.capacity, name=e.name)
        for task in plan.tasks:
            self._runners.append(self._driver(task))

    def _driver(self, task: TaskPlan) -> Driver:
        b = self.built
        stages = [b.nodes[n] for n in task.nodes]
        for n in task.nodes[1:]:  # a fused node has exactly one input
            b.contexts[n].current_input = b.contexts[n].inputs[0]
        head, tail = task.nodes[0], task.nodes[-1]
        if task.outputs:
            outlet: Any = Outlet([self.channels[(tail, c)] for c in task.outputs], list(task.outputs))
        else:
            outlet = self._make_sink_outlet(tail)
        inlet = Inlet([self.trigger_channels[head] if a == TRIGGER else self.channels[(a, head)]
                       for a in task.inputs], list(task.inputs))
        dead = {k: Outlet([self.channels[(n, target)]], [target])
                for k, target in task.dead_letters for n in (task.nodes[k],)}
        return make_driver(task, stages, inlet, outlet, dead_outlets=dead,
                           aborting=self._is_aborting, stop_requested=self._stop_requested,
                           clock=self.clock, executors=self._executors)

    def _make_sink_outlet(self, node_id: str) -> Any:
        if self.output_mode == "collect":
            out: Any = _CollectOutlet()
        elif self.output_mode == "discard":
            out = _DiscardOutlet()
        else:
            out = Outlet([Channel(self._output_capacity, name=f"{node_id}->output")], [node_id])
        self._sink_outlets[node_id] = out
        return out

    def _is_aborting(self) -> bool:
        return self._aborting

    def _cancel_fate(self) -> str:
        return "aborted" if self._aborting else "dropped_shutdown"

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """created, running, stopping, completed, stopped, forced or failed."""
        return self._state

    @property
    def sources(self) -> tuple[str, ...]:
        return self.built.graph.sources

    @property
    def sinks(self) -> tuple[str, ...]:
        return self.built.graph.sinks

    async def start(self) -> None:
        """Start one task per node or fused chain. A pipeline starts once."""
        if self._state != "created":
            raise PipelineStopped(f"pipeline {self.name!r} was already started (state {self._state})")
        self._state = "running"
        self._started_at = time.perf_counter()
        barrier = StartBarrier(len(self._runners))  # no frame moves before every task runs
        for runner in self._runners:
            runner.barrier = barrier
            task = asyncio.create_task(self._guard(runner), name=f"streamlab:{self.name}:{runner.name}")
            self._tasks.append(task)

    async def _guard(self, runner: Driver) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # recorded and re-raised by join()/stop(): not swallowed
            node_id = exc.node_id if isinstance(exc, NodeError) else runner.name
            self._fail(node_id, exc)

    def _fail(self, node_id: str | None, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = (node_id, exc)
            log.debug("pipeline %r: node %r failed: %s", self.name, node_id, exc)
        self._aborting = True
        self._stop_requested.set()
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current and not t.done():
                t.cancel()
        # Release anyone blocked on a channel whose receiver is gone. The output stream keeps
        # its frames: they reached a terminal node, and outputs() hands them out before the
        # failure (_finish closes those channels so the reader is never left waiting).
        for ch in self._internal_channels():
            ch.close_receiver()

    def _all_channels(self) -> list[Channel]:
        return self._internal_channels() + self._output_channels()

    def _internal_channels(self) -> list[Channel]:
        """Edges and trigger channels (not the output stream)."""
        return list(self.channels.values()) + list(self.trigger_channels.values())

    def _output_channels(self) -> list[Channel]:
        """The channels of the output stream (outputs="stream"), one per terminal node."""
        chans: list[Channel] = []
        for out in self._sink_outlets.values():
            if isinstance(out, Outlet):
                chans.extend(out.channels)
        return chans

    def _check_running(self) -> None:
        if self._failure is not None:
            raise self._pipeline_error()
        if self._state not in ("running",):
            raise PipelineStopped(f"pipeline {self.name!r} is {self._state}, not running")

    async def trigger(self, frame: DataFrame | None = None) -> DataFrame:
        """Send one trigger frame to every triggered source; waits if a source is behind.

        Without ``frame``, an empty frame stamped with the clock's time and the next trigger
        sequence id is sent. Returns the frame sent. If a stop closes the triggers while this
        waits, raises PipelineStopped (the frame did not enter).
        """
        self._check_running()
        if frame is None:
            frame = DataFrame._make(self.clock.time_us(), self._next_trigger, _NO_PAYLOAD,
                                    _NO_METADATA)
        accepted = 0
        try:
            for ch in self.trigger_channels.values():
                if not ch.closed:
                    await ch.send(frame)
                    accepted += 1
        except ChannelClosed:
            raise PipelineStopped(
                f"pipeline {self.name!r} stopped while a trigger was waiting") from None
        finally:
            if accepted or not self.trigger_channels:
                self._next_trigger += 1
        return frame

    async def _trigger_many(self, count: int) -> None:
        """``count`` triggers: queued without a coroutine each while the channels have room."""
        chans = [ch for ch in self.trigger_channels.values() if not ch.closed]
        clock = self.clock
        for _ in range(count):
            if self._failure is not None or self._state != "running":
                self._check_running()
            frame = DataFrame._make(clock.time_us(), self._next_trigger, _NO_PAYLOAD,
                                    _NO_METADATA)
            if all(not ch.full for ch in chans):
                for ch in chans:
                    ch.try_send(frame)
                self._next_trigger += 1
            else:
                await self.trigger(frame)

    def request_stop(self) -> None:
        """Begin a graceful stop without waiting: sources stop, frames in flight drain.

        Safe to call from a signal handler; await :meth:`join` or :meth:`stop` afterwards.
        The run then ends in state "stopped" (unless it is forced or fails).
        """
        self._stop_asked = True
        self._stop_requested.set()
        self.close_triggers()

    def close_triggers(self) -> None:
        """No more triggers: triggered sources end once they have processed the queued ones."""
        for ch in self.trigger_channels.values():
            ch.close()

    async def wait_free_sources(self) -> None:
        """Wait until every free-running source (with the nodes fused after it) has ended:
        at the end of its data, at ``max_frames``, after a stop, or when the pipeline fails."""
        tasks = [t for t, task in zip(self._tasks, self.plan.tasks, strict=True)
                 if task.feed == "source"]
        if tasks:
            await asyncio.wait(tasks)

    async def join(self) -> RunReport:
        """Wait until every task has ended on its own; the report, or PipelineError."""
        if self._state == "created":
            raise PipelineStopped(f"pipeline {self.name!r} was never started")
        pending = {t for t in self._tasks if not t.done()}
        while pending:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if pending and self._failure is not None:
                # _fail() cancelled the rest; a node that swallows cancellation must not hang us.
                await self._cancel_bounded(pending)
                break
        return self._finish("completed")

    async def stop(self, timeout: float | None = None) -> RunReport:
        """Graceful stop; after ``timeout`` seconds (if given) force the rest. See module doc."""
        if self._state == "created":
            self._state = "stopped"
            return self._finish("stopped")
        if self._finalized:
            return self._finish(self._state)
        if self._state == "running":
            self._state = "stopping"
        self._stop_requested.set()
        self.close_triggers()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            done, still = await asyncio.wait(pending, timeout=timeout)
            if still:
                await self._force(still)
        return self._finish("completed")

    async def _force(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        tasks = list(tasks)
        by_task = {t: r for t, r in zip(self._tasks, self._runners)}
        # node ids, not task names: a fused chain's task is named "a+b+c"
        self._forced = [st.node_id for t in tasks if t in by_task for st in by_task[t].stages]
        log.warning("pipeline %r: forcing %s", self.name, ", ".join(self._forced))
        for t in tasks:
            t.cancel()
        for ch in self._internal_channels():  # the output stream keeps what was delivered
            ch.close_receiver()
        await self._cancel_bounded(tasks)

    async def _cancel_bounded(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """Cancel ``tasks`` and wait for them, re-cancelling, for at most _FORCE_GRACE_S.

        A node may swallow a cancellation: stop(timeout) still returns within timeout + 0.5 s,
        and a failed run still ends, whatever nodes do.
        """
        tasks = list(tasks)
        for t in tasks:
            t.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _FORCE_GRACE_S
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.02)
            if pending and loop.time() >= deadline:
                log.error("pipeline %r: tasks ignore cancellation and are left running: %s",
                          self.name, ", ".join(t.get_name() for t in pending))
                break
            for t in pending:
                t.cancel()

    async def abort(self) -> RunReport:
        """Stop at once: cancel every task; everything in flight is counted dropped."""
        return await self.stop(timeout=0)

    async def run(self, triggers: int = 1, frames: Iterable[DataFrame] | None = None,
                  timeout: float | None = None) -> RunReport:
        """Start, send ``triggers`` trigger frames (or the given ``frames``), then finish.

        After the last trigger the triggers close, and the run waits until every source has
        ended (free-running sources at the end of their data or ``max_frames``) and every frame
        in flight has reached the sinks. With ``timeout`` (seconds) what is still running then
        is forced, and its frames are counted as dropped.
        """
        await self.start()
        try:
            if frames is not None:
                for f in frames:
                    await self.trigger(f)
            else:
                await self._trigger_many(triggers)
        except PipelineError:
            pass  # the failure is raised by _finish() below, with its cause
        except BaseException:
            await self.stop(timeout=0)
            raise
        self.close_triggers()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            try:
                _, still = await asyncio.wait(pending, timeout=timeout)
            except BaseException:
                await self.stop(timeout=0)
                raise
            if still:
                await self._force(still)
        return self._finish("completed")

    async def __aenter__(self) -> AsyncPipeline:
        await self.start()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.stop()
        else:
            try:
                await self.stop(timeout=0)
            except PipelineError:
                if not issubclass(exc_type, PipelineError):
                    raise

    # -- outputs ----------------------------------------------------------------------------
    @property
    def results(self) -> dict[str, list[DataFrame]]:
        """Frames that reached each terminal node (outputs="collect")."""
        return {k: v.frames for k, v in self._sink_outlets.items() if isinstance(v, _CollectOutlet)
                and not isinstance(v, _DiscardOutlet)}

    async def outputs(self) -> AsyncIterator[tuple[str, DataFrame]]:
        """``(node_id, frame)`` for each frame reaching a terminal node, as it arrives.

        Needs ``outputs="stream"``. Ends when every terminal node has finished, or once the
        run is over (failed or forced: the frames queued before are handed out first); then
        raises PipelineError if the pipeline failed.
        """
        if self.output_mode != "stream":
            raise PipelineError('outputs() needs AsyncPipeline(..., outputs="stream")')
        chans = [o.channels[0] for o in self._sink_outlets.values()]
        inlet = Inlet(chans, list(self._sink_outlets))
        while True:
            try:
                node_id, frame = await inlet.receive_from()
            except EndOfStream:
                break
            yield node_id, frame
        if self._failure is not None:
            raise self._pipeline_error()

    # -- live changes (docs/live.md) --------------------------------------------------------
    async def update(self, node_id: str, changes: Mapping[str, Any]) -> ChangeRecord:
        """Change config fields of a running node, between two of its batches.

        Validated against the node's config model merged with its current config; a bad
        change raises ConfigError (JSON paths) and the old config keeps running. In place when
        the node's ``on_update`` takes it (state kept), else a fresh instance; queued frames
        stay queued. NodeNotFound for an unknown node, PipelineStopped when not running.
        """
        return await self.live.update(node_id, changes)

    async def replace_node(self, node_id: str, spec: Mapping[str, Any]) -> ChangeRecord:
        """Run ``spec`` (``{"type": ..., "config": ...}``) in the node's place: same id, same
        edges and queues; the replacement takes the next frame."""
        return await self.live.replace_node(node_id, spec)

    async def add_node(self, node_id: str, spec: Mapping[str, Any], *, after: str,
                       before: str | None = None) -> ChangeRecord:
        """Insert a new node on the edge ``after -> before`` (``before=None``: between
        ``after`` and all its outputs)."""
        return await self.live.add_node(node_id, spec, after=after, before=before)

    async def remove_node(self, node_id: str) -> ChangeRecord:
        """Take a node (one input, some outputs) out: its input is spliced to its outputs."""
        return await self.live.remove_node(node_id)

    def node_config(self, node_id: str) -> dict[str, Any]:
        """The node's current config (JSON-able, defaults included)."""
        return self.live.node_config(node_id)

    def node_schema(self, node_id: str) -> dict[str, Any]:
        """The JSON Schema of the node's config model."""
        return self.live.node_schema(node_id)

    def config_version(self, node_id: str) -> int:
        """0 as started, +1 per applied live change."""
        return self.live.config_version(node_id)

    @property
    def changes(self) -> list[ChangeRecord]:
        """Every live change tried, applied or refused, in order."""
        return list(self.live.records)

    def graph(self) -> dict[str, Any]:
        """The running graph: nodes (id, type, config, version) and edges (from, to, queue
        depth, capacity, dropped; ``fused`` edges have no queue)."""
        return self.live.graph()

    def tap(self, node_id: str, history: int = 0) -> Tap:
        """A latest-value view of the node's outputs (costs the node nothing once closed);
        ``history=N`` also keeps the last N frames for ``Tap.frames_since``."""
        return self.live.tap(node_id, history)

    # -- results ----------------------------------------------------------------------------
    def _pipeline_error(self) -> PipelineError:
        assert self._failure is not None
        node_id, exc = self._failure
        cause = exc.__cause__ if isinstance(exc, NodeError) and exc.__cause__ else exc
        detail = str(exc) if isinstance(exc, NodeError) else f"node {node_id!r}: {type(exc).__name__}: {exc}"
        err = PipelineError(f"pipeline {self.name!r} failed: {detail}", node_id=node_id)
        err.__cause__ = cause
        return err

    def _finish(self, state: str) -> RunReport:
        if not self._finalized:
            self._finalized = True
            self._finished_at = time.perf_counter()
            for ex in self._executors:
                ex.shutdown(wait=False, cancel_futures=True)
            self._account_channels()
            # The run is over: a reader of outputs() gets what is queued, then the end (a
            # sink task cancelled before it ever ran never closes its channel itself).
            for ch in self._output_channels():
                ch.close()
            if self._failure is not None:
                self._state = "failed"
            elif self._forced:
                self._state = "forced"
            elif self._stop_asked and state == "completed":
                self._state = "stopped"
            else:
                self._state = state
            if self.debug:
                for m in self.metrics.values():
                    m.check_accounting()
            self._report = self._make_report()
        if self._failure is not None:
            raise self._pipeline_error()
        assert self._report is not None
        return self._report

    def _account_channels(self) -> None:
        """Give every frame still in a channel, dropped or discarded by one, its fate."""
        fate = "aborted" if self._failure is not None else "dropped_shutdown"
        edges = list(self.channels.items()) + [((None, k), ch) for k, ch in self.trigger_channels.items()]
        for (_, to), ch in edges:
            m = self.metrics[to]
            drained = ch.drain_nowait()
            left = len(drained)
            m.settle("dropped_overflow", ch.dropped)
            m.settle(fate, left + ch.discarded)
            ch.discarded += left
            m.settle_events("dropped", ch.lost_events + sum(len(f.events) for f in drained))

    def _make_report(self) -> RunReport:
        end = self._finished_at or time.perf_counter()
        failed_node, error = None, None
        if self._failure is not None:
            failed_node = self._failure[0]
            exc = self._failure[1]
            cause = exc.__cause__ if isinstance(exc, NodeError) and exc.__cause__ else exc
            error = f"{type(cause).__name__}: {cause}"
        return RunReport(
            pipeline=self.name,
            duration_s=end - self._started_at if self._started_at else 0.0,
            state=self._state,
            forced_nodes=tuple(self._forced),
            failed_node=failed_node,
            error=error,
            nodes={k: m.snapshot() for k, m in self.metrics.items()},
            channels={ch.name: ch.statistics() for ch in self._all_channels()},
            outputs={k: v.sent for k, v in self._sink_outlets.items()},
        )

    @property
    def report(self) -> RunReport | None:
        """The final report once the run has ended."""
        return self._report

    def statistics(self) -> PipelineStatistics:
        running = tuple(t.get_name() for t in self._tasks if not t.done())
        return PipelineStatistics(
            state=self._state, tasks_running=len(running), tasks=running,
            channels={ch.name: ch.statistics() for ch in self._all_channels()},
        )

    def __repr__(self) -> str:
        running = sum(1 for t in self._tasks if not t.done())
        return (f"<AsyncPipeline {self.name!r} {self._state} nodes={len(self.built.nodes)} "
                f"tasks={running}/{len(self._runners)}>")
