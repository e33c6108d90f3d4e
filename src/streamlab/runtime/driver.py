"""The node driver: the one loop that moves frames through a node or a fused chain of nodes.

A :class:`NodeDriver` runs inside one pipeline task. Its **feed** gives it batches of frames:
an :class:`InletFeed` takes every ready frame from the task's input channels; a
:class:`SourceFeed` calls the task's free-running source (paced in real time if asked) until
it ends, reaches ``max_frames`` or a graceful stop is requested. The driver passes each batch
through the chain's stages (each a :class:`~streamlab.resilience.ResilientNode`, which counts
fates and decides what a failure means) and sends the results on the task's outlet.

How one stage runs its frames is a small strategy chosen from the plan's executor:
``inline`` (a synchronous batch call, no await), ``async`` (the node's coroutine, one frame at
a time), ``thread`` (the node's ``process`` in a worker thread) and ``process`` (a worker
process, up to ``ProcessNode.pipeline_depth`` frames in flight). Each returns how many frames
the stage took and an *outcome*: nothing, the end of the node's data, or the error that ends
the run. A restart, skip or substitute is decided by the stage itself (a value, see
:mod:`streamlab.resilience.decision`); the driver only awaits a pending restart before the next
frame. Outputs made before a failure or a restart always flow on first.

**Accounting.** Every frame the driver holds when something ends the loop (a node's error, a
cancellation by a forced stop or a failure elsewhere) is settled in its node's ledger as
``aborted`` (the pipeline failed) or ``dropped_shutdown``, so ``received == sum of fates``
holds for every node whatever ends the run. Frames a node left unused after its end of data
are ``dropped_shutdown``.

**End-to-end latency** (docs/metrics.md): a driver whose head is a source stamps every frame
that source emits with ``DataFrame.ingress_ns`` (the pipeline clock's monotonic time, in ns);
each stage passes the stamp from its inputs to outputs that have none (new frames a node
made: one output per input in order, else by relative position in the batch); the stage of a
terminal node records ``arrival - ingress_ns`` once per frame it receives, fused or not.

A node that overrides ``run(rx, tx)`` owns its loop: :class:`CustomRunDriver` hands it the
channels and settles what it took.

**Live changes** (docs/live.md): :meth:`NodeDriver.at_boundary` runs a synchronous *commit*
(swap a stage's node, insert a stage) between two batches: at once when the driver is not
inside :meth:`NodeDriver.push` (it waits for a batch, or on a full outlet with a batch every
stage is through with), else right after the current batch has left its stages. So every frame meets one configuration per
node, and a chain's stage list never changes under a batch. A stage with a tap
(``ResilientNode.tap``) offers it each batch of outputs (one attribute test per stage call
without a tap).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter
from typing import Any, Protocol

from streamlab import frame as _frame
from streamlab.channel import Inlet, Outlet
from streamlab.clock import Clock
from streamlab.errors import EndOfStream, NodeError
from streamlab.frame import DataFrame
from streamlab.node import SourceNode
from streamlab.resilience.resilient import ResilientNode, _maybe_await
from streamlab.runtime.plan import TaskPlan

__all__ = ["NodeDriver", "CustomRunDriver", "InletFeed", "SourceFeed", "Latency", "Sender",
           "StartBarrier", "stage_runner", "ENDED", "Driver", "make_driver"]

_DataFrame = DataFrame
_events_of = attrgetter("events")
_INGRESS = attrgetter("ingress_ns")
_BATCH_BYTES = 4 * 1024 * 1024  # most payload a free source makes in one batch
_SMALL_BATCH, _SMALL_BYTES = 64, 64 * 1024  # frames this small go 64 a batch (cache-sized)


class _Ended:
    """The outcome of a stage whose node has no more to give (it raised EndOfStream)."""

    def __repr__(self) -> str:
        return "ENDED"


ENDED = _Ended()
Outcome = BaseException | _Ended | None
#: ``(stage, frames, i, outs) -> (taken, outcome)``: stage runs frames[i:], outputs appended.
StageRun = Callable[[ResilientNode, list[DataFrame], int, list[DataFrame]],
                    Awaitable[tuple[int, Outcome]]]


class Sender(Protocol):
    """Where a task's outputs go: an Outlet, or a terminal collector."""

    sent: int

    def try_send(self, frame: DataFrame) -> bool: ...
    async def send(self, frame: DataFrame) -> None: ...
    async def send_all(self, frames: Sequence[DataFrame]) -> None: ...
    def close(self) -> None: ...


# -- how one stage runs its frames -----------------------------------------------------------
def _run_inline(st: ResilientNode, frames: list[DataFrame], i: int,
                outs: list[DataFrame]) -> tuple[int, Outcome]:
    """A synchronous node: the whole batch in one call, without awaiting."""
    try:
        return st.process_batch(frames if i == 0 else frames[i:], outs), None
    except EndOfStream:
        return st.batch_consumed, ENDED
    except Exception as exc:  # NodeError: the error propagates, the frame is settled
        return st.batch_consumed, exc


def _each(call: Callable[[ResilientNode, DataFrame], Awaitable[Any]]) -> StageRun:
    """A stage run that takes one frame per call (its outputs flow on before the next)."""

    async def run(st: ResilientNode, frames: list[DataFrame], i: int,
                  outs: list[DataFrame]) -> tuple[int, Outcome]:
        try:
            out = await call(st, frames[i])
        except EndOfStream:
            return 0, ENDED
        except Exception as exc:
            return 1, exc
        if out is not None:
            if type(out) is _DataFrame:
                outs.append(out)
            else:
                outs.extend(out)
        return 1, None

    return run


async def _call_async(st: ResilientNode, frame: DataFrame) -> Any:
    return await st.process_async(frame)


def _call_thread(pool: ThreadPoolExecutor) -> Callable[[ResilientNode, DataFrame], Awaitable[Any]]:
    async def call(st: ResilientNode, frame: DataFrame) -> Any:
        if st.is_async:
            return await st.process_async(frame)
        return await asyncio.get_running_loop().run_in_executor(pool, st.process, frame)

    return call


async def _call_process(st: ResilientNode, frame: DataFrame) -> Any:
    return await st.process_async(frame)


def _process_run() -> StageRun:
    """The process executor: the frames after this one go to the worker before it is awaited,
    so the worker computes while this process runs the rest of the pipeline.

    Up to ``ProcessNode.pipeline_depth`` frames are kept in flight, across batch boundaries:
    when the batch has fewer frames left, the stage takes frames already waiting on its
    (single) input without waiting (:meth:`InletFeed.more`) and appends them to the batch, so
    the worker is not left to drain while the loop finishes the batch and fetches the next
    one. Appended frames are the driver's like any other of the batch (a cancellation or a
    failure settles them). Nothing is sent ahead to a node with a circuit breaker (admission
    is per frame) or with a restart pending (the next frame must meet the fresh instance).
    """
    from streamlab.runtime.executor import ProcessNode

    each = _each(_call_process)

    async def run(st: ResilientNode, frames: list[DataFrame], i: int,
                  outs: list[DataFrame]) -> tuple[int, Outcome]:
        node = st.node
        if st.breaker is None and not st.pending_restart and isinstance(node, ProcessNode):
            depth = ProcessNode.pipeline_depth
            if len(frames) - i < depth:
                feed = _TOP_UP.get(st)
                if feed is not None and frames is feed.batch:
                    frames += feed.more(i + depth - len(frames))
            try:
                if node.submit(frames[i]):
                    for f in frames[i + 1:i + depth]:
                        if not node.submit(f):
                            break  # frames go in order: none after one held back
            except Exception:  # noqa: S110 - the same error comes from process() below,
                pass  # where the node's policy applies to it
        return await each(st, frames, i, outs)

    return run


def stage_runner(executor: str, pool: ThreadPoolExecutor | None = None) -> StageRun | None:
    """The strategy for a plan's executor name; None for ``inline`` (a synchronous call)."""
    if executor == "inline":
        return None
    if executor == "thread":
        assert pool is not None, "a thread executor needs its pool"
        return _each(_call_thread(pool))
    if executor == "process":
        return _process_run()
    return _each(_call_async)


# -- end-to-end latency -----------------------------------------------------------------------
class Latency:
    """Ingress stamps and end-to-end records for one chain (see the module docstring).

    ``stamp_k``: the stage whose outputs get a fresh ingress time (0: the head is a source),
    or -1; ``record_k``: the stage that is a terminal node, or -1.
    """

    def __init__(self, stages: list[ResilientNode], terminal: bool) -> None:
        mono = stages[0].clock.monotonic
        self.now_ns: Callable[[], int] = lambda: int(mono() * 1e9)
        head_is_source = not stages[0].node.context.inputs
        self.stamp_k = 0 if head_is_source else -1
        last = len(stages) - 1
        self.record_k = last if terminal and not (head_is_source and last == 0) else -1
        self._tail = stages[-1].metrics

    def arrived(self, frames: Sequence[DataFrame]) -> None:
        """One record per frame reaching the terminal stage (frames without a stamp, from a
        node that owns its ``run`` loop, are skipped)."""
        h = self._tail.end_to_end  # read each time: a collector may install a budget
        now = self.now_ns()
        if len(frames) == 1:  # the paced path: a frame alone
            t = frames[0].ingress_ns
            if t is not None:
                h.record(now - t if now > t else 0)
            return
        h.record_each([now - t if now > t else 0 for t in map(_INGRESS, frames) if t is not None])

    def carry(self, k: int, ins: Sequence[DataFrame], outs: list[DataFrame]) -> None:
        """Ingress times for ``outs``, made by stage k from ``ins``.

        A source stage stamps them now (a frame that already has one keeps it). Otherwise an
        output without one takes the ingress of its input: one output per input in order,
        else the input at the same relative position in the batch (exact for a node that
        makes one frame per j inputs or j frames per input).
        """
        if None not in map(_INGRESS, outs):  # usual: passed on, or derived from its input
            return
        if k == self.stamp_k:
            now = self.now_ns()
            for o in outs:
                if o.ingress_ns is None:
                    o.ingress_ns = now
            return
        n, m = len(ins), len(outs)
        if n == m:
            for o, i in zip(outs, ins):
                if o.ingress_ns is None:
                    o.ingress_ns = i.ingress_ns
        elif n:
            for j in range(m):
                o = outs[j]
                if o.ingress_ns is None:
                    o.ingress_ns = ins[((j + 1) * n - 1) // m].ingress_ns


# -- start ------------------------------------------------------------------------------------
class StartBarrier:
    """Holds every task of a pipeline until all of them have started (their nodes' ``on_start``
    ran), so no source produces and no trigger is taken while a task downstream is not yet
    running: otherwise a paced source's first frames wait for the others' start-up.

    A task that fails or is cancelled before it arrives never releases the others; the
    pipeline cancels them on a failure or a stop, which ends their wait.
    """

    def __init__(self, parties: int) -> None:
        self._left = parties
        self._all = asyncio.Event()

    async def arrive(self) -> None:
        """This task has started: wait until every task has."""
        self._left -= 1
        if self._left <= 0:
            self._all.set()
        else:
            await self._all.wait()


# -- feeds ------------------------------------------------------------------------------------
class InletFeed:
    """Batches from the task's input channels; per batch: current input and stream health."""

    first_stage = 0

    def __init__(self, inlet: Inlet, head: ResilientNode) -> None:
        self.inlet = inlet
        self.head = head
        self._ctx = head.node.context
        self._fan_in = len(inlet.channels) > 1
        self._ctx.current_input = inlet.last_source
        self.batch: list[DataFrame] | None = None  # the batch last returned by next()

    async def next(self) -> list[DataFrame] | None:
        """The next batch (at least one frame), or None once every input has ended."""
        inlet = self.inlet
        try:
            batch = await inlet.receive_batch()
        except EndOfStream:
            self.batch = None
            return None
        if self._fan_in:
            self._ctx.current_input = inlet.last_source
        self.head.metrics.observe_batch(batch, inlet.last_source)
        self.batch = batch
        return batch

    def more(self, limit: int) -> list[DataFrame]:
        """Up to ``limit`` frames already waiting on the input, without waiting (maybe none).

        The caller appends them to the current batch (they are its frames from now on). Only
        for a single input (with several, ``current_input`` belongs to the whole batch), and
        never once the input is empty or closed: the frames still in hand stay counted
        against the channel's capacity until the next take.
        """
        if self._fan_in or limit <= 0:
            return []
        ch = self.inlet.channels[0]
        if not ch.depth:
            return []
        got = ch.take_ready(limit)
        self.inlet.taken += len(got)
        self.head.metrics.observe_batch(got, self.inlet.last_source)
        return got

    def close(self) -> None:
        """The chain ended before its inputs: frames still coming are counted by the channels."""
        for ch in self.inlet.channels:
            ch.close_receiver()


#: Stage -> the feed of its task, for a process stage that tops up its batch (see
#: ``_process_run``); set by ``NodeDriver.run`` for a head stage that is not a terminal node.
_TOP_UP: weakref.WeakKeyDictionary[ResilientNode, InletFeed] = weakref.WeakKeyDictionary()


def _batch_size(most: int, nbytes: int) -> int:
    """Frames per batch of a free source whose frames hold ``nbytes`` of payload: up to
    ``most``, at most 4 MiB; tiny frames (64 of them within 64 KiB) go 64 a batch, which
    spreads the chain's per-batch bookkeeping over more frames while staying in cache."""
    if nbytes * _SMALL_BATCH <= _SMALL_BYTES:
        return _SMALL_BATCH
    return max(1, min(most, _BATCH_BYTES // max(1, nbytes)))


class SourceFeed:
    """Outputs of the task's free-running source (stage 0), in batches.

    Unpaced, a source heading a fused chain makes up to 16 frames per batch (capped at 4 MiB
    of payload, measured on the first frame; 64 for tiny frames, see :func:`_batch_size`), so
    the chain works stage by stage on a batch; a
    paced (``realtime``) source makes one frame per batch, on time. A failed production goes
    through the source's policy like any frame's failure.
    """

    first_stage = 1

    def __init__(self, source: ResilientNode, *, chained: bool, stop_requested: asyncio.Event,
                 clock: Clock, send_dead: Callable[[int], Awaitable[None]],
                 latency: Latency) -> None:
        self.st = source
        self.latency = latency
        node = source.node
        cfg = node.config
        self.limit: int | None = getattr(cfg, "max_frames", None)
        realtime = bool(getattr(cfg, "realtime", False))
        self.period = node.frame_period() if isinstance(node, SourceNode) and realtime else None
        self.stop = stop_requested
        self.clock = clock
        self._send_dead = send_dead
        self.most = 1 if (self.period or not chained) else 16
        self._sized = self.most == 1
        self.produced = 0
        self.ended = False
        self._start: float | None = None
        self._since_yield = 0

    async def next(self) -> list[DataFrame] | None:
        """The next outputs of the source (possibly empty), or None once it has ended."""
        if self.ended or self.stop.is_set() or (self.limit is not None and self.produced >= self.limit):
            return None
        if self._start is None:
            self._start = self.clock.monotonic()
        self._since_yield += 1
        if self._since_yield >= 32:  # never starve the loop when downstream keeps up
            self._since_yield = 0
            await asyncio.sleep(0)
        st = self.st
        outs: list[DataFrame] = []
        want = self.most if self.limit is None else min(self.most, self.limit - self.produced)
        if want > 1 and not st.is_async and not st.pending_restart and not st.dead_letters:
            made, self.ended = st.produce_batch(want, outs)  # the fast path: no waiting
            self.produced += made
        else:
            await self._produce(want, outs)
        if st.dead_letters:
            self.latency.carry(0, (), st.dead_letters)  # failed productions: ingress now
            await self._send_dead(0)
        if outs:
            self.latency.carry(0, (), outs)
            if _frame.events_seen and any(map(_events_of, outs)):
                count_events(st, (), outs)
            if st.tap is not None:
                st.tap.offer(outs)
        st.metrics.frames_out += len(outs)
        if not self._sized and outs:
            self._sized = True
            self.most = _batch_size(self.most, outs[0].payload.nbytes())
        return outs

    async def _produce(self, want: int, outs: list[DataFrame]) -> None:
        st = self.st
        for _ in range(want):
            if st.pending_restart:
                if outs:
                    return  # what was made before the failure goes first
                await st.restart()
            if self.period:
                wait = self._start + self.produced * self.period - self.clock.monotonic()  # type: ignore[operator]
                if wait > 0:
                    await self.clock.sleep(wait)
                    self._since_yield = 0
            try:
                out = await st.produce_async() if st.is_async else st.produce()
            except EndOfStream:
                self.ended = True
                return
            self.produced += 1
            if out is not None:
                if type(out) is _DataFrame:
                    outs.append(out)
                else:
                    outs.extend(out)

    def close(self) -> None:
        self.ended = True

    def reconfigure(self) -> None:
        """The source's node was swapped by a live change: read its pacing and limit again
        (frames already produced count against the new ``max_frames``)."""
        node = self.st.node
        cfg = node.config
        self.limit = getattr(cfg, "max_frames", None)
        realtime = bool(getattr(cfg, "realtime", False))
        period = node.frame_period() if isinstance(node, SourceNode) and realtime else None
        if period != self.period:
            self.period = period
            self._start = self.clock.monotonic() - self.produced * (period or 0.0)
        if self.period:
            self.most = 1


Feed = InletFeed | SourceFeed


# -- the driver -------------------------------------------------------------------------------
class NodeDriver:
    """One task: feed -> stages -> outlet. See the module docstring."""

    def __init__(self, stages: list[ResilientNode], outlet: Sender, *,
                 runs: Sequence[StageRun | None], aborting: Callable[[], bool],
                 dead_outlets: dict[int, Outlet] | None = None, terminal: bool = False) -> None:
        self.stages = stages
        self.latency = Latency(stages, terminal)
        self.name = "+".join(st.node_id for st in stages)
        self.outlet = outlet
        self.feed: Feed | None = None
        self._runs = list(runs)
        self._aborting = aborting
        self.dead_outlets = dead_outlets or {}
        self.ended = False  # a node of the chain ended its data: the task ends after this batch
        self.barrier: StartBarrier | None = None  # set by the pipeline when it starts the tasks
        self.terminal = terminal
        self.pushing = False  # inside push(): live commits wait for the batch boundary
        self._commits: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []

    # -- live changes (docs/live.md) ------------------------------------------------------------
    def at_boundary(self, commit: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``commit`` (synchronous) between two batches; the future gets its result or
        its exception. At once when no batch is being pushed, else after the current one."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.pushing:
            self._commits.append((commit, fut))
        else:
            _settle(fut, commit)
        return fut

    def cancel_commit(self, fut: asyncio.Future[Any]) -> bool:
        """Withdraw a commit that has not run yet (True if it was still waiting)."""
        for i, (_, f) in enumerate(self._commits):
            if f is fut:
                del self._commits[i]
                return True
        return False

    def _run_commits(self) -> None:
        commits, self._commits = self._commits, []
        for commit, fut in commits:
            _settle(fut, commit)

    def _fail_commits(self) -> None:
        from streamlab.errors import PipelineStopped

        commits, self._commits = self._commits, []
        for _, fut in commits:
            if not fut.done():
                fut.set_exception(PipelineStopped(f"task {self.name!r} ended before a live "
                                                  "change could be applied"))

    def set_run(self, k: int, run: StageRun | None) -> None:
        """Stage ``k`` runs with ``run`` from now on (a swapped node of another kind)."""
        self._runs[k] = run

    def run_of(self, k: int) -> StageRun | None:
        return self._runs[k]

    def insert_stage(self, k: int, st: ResilientNode, run: StageRun | None) -> None:
        """Put ``st`` at index ``k`` of the chain (a live add; call at a batch boundary)."""
        self.stages.insert(k, st)
        self._runs.insert(k, run)
        self.dead_outlets = {(i + 1 if i >= k else i): o for i, o in self.dead_outlets.items()}
        self._relink()
        feed = self.feed
        if k == 0 and isinstance(feed, InletFeed):
            feed.head = st
            feed._ctx = st.node.context

    def _relink(self) -> None:
        """Name and latency bookkeeping after the stage list changed."""
        self.name = "+".join(st.node_id for st in self.stages)
        self.latency = Latency(self.stages, self.terminal)
        if isinstance(self.feed, SourceFeed):
            self.feed.latency = self.latency

    async def run(self) -> None:
        assert self.feed is not None, "a driver needs a feed"
        for st in self.stages:
            await _maybe_await(st.node.on_start())
        if isinstance(self.feed, InletFeed) and self.latency.record_k != 0:
            # (frames a head stage appends to its batch would miss the terminal's record)
            _TOP_UP[self.stages[0]] = self.feed
        try:
            if self.barrier is not None:
                await self.barrier.arrive()
            await self._loop(self.feed)
        finally:
            self.pushing = False
            self._fail_commits()
            self.outlet.close()
            for o in self.dead_outlets.values():
                o.close()
            # on_stop runs after the outlet closed, so downstream can finish meanwhile.
            for st in self.stages:
                await _maybe_await(st.node.on_stop())

    async def _loop(self, feed: Feed) -> None:
        k0 = feed.first_stage
        while not self.ended:
            batch = await feed.next()
            if batch is None:
                return
            if batch:
                self.pushing = True
                try:
                    await self.push(k0, batch)
                finally:
                    self.pushing = False
                if self._commits:
                    self._run_commits()
                    await asyncio.sleep(0)  # let the changer go on before the next batch
        feed.close()

    async def push(self, k: int, frames: list[DataFrame], nested: bool = False) -> None:
        """``frames`` into stage ``k``, on through the chain, then out of the task: stage by
        stage while each takes the whole batch; a stage that stops early (a restart pending, its
        node ended or failed) lets its outputs flow on first, then restarts or ends the task."""
        n, stages, runs, record_k = len(self.stages), self.stages, self._runs, self.latency.record_k
        i = 0            # frames[:i] have been taken by stage k
        calling = False  # a per-frame stage call is in progress (its frame is counted by it)
        try:
            while k < n:
                st = stages[k]
                if k == record_k and i == 0:  # first arrival at the terminal stage
                    self.latency.arrived(frames)
                if st.pending_restart:
                    await st.restart()
                outs: list[DataFrame] = []
                run = runs[k]
                calling = run is not None
                taken, outcome = (_run_inline(st, frames, i, outs) if run is None
                                  else await run(st, frames, i, outs))
                calling = False
                i = self._made(k, frames, i, taken, outs)
                if st.dead_letters:
                    await self.send_dead(k)
                if outcome is None and i == len(frames):  # the whole batch went through stage k
                    if not outs:
                        return
                    k, frames, i = k + 1, outs, 0
                    continue
                if outs:
                    await self.push(k + 1, outs, True)
                if outcome is not None or self.ended:
                    unused, i = frames[i:], len(frames)
                    return self._stop_stage(k, unused, outcome)  # raises a node's error
            i = len(frames)
            await self._emit(frames, not nested)
        except BaseException as exc:
            if k < n and len(frames) - i - calling > 0:
                self._lose(k, frames[i + calling:], self._drop_fate(exc))
            raise

    def _made(self, k: int, frames: list[DataFrame], i: int, taken: int,
              outs: list[DataFrame]) -> int:
        """Stage k took ``frames[i:i + taken]`` and made ``outs`` (and maybe dead letters):
        carry their ingress stamps, count the outputs. Returns ``i + taken``."""
        st = self.stages[k]
        dead = st.dead_letters
        ins = frames[i:i + taken] if i or taken < len(frames) else frames
        if outs or dead:
            if outs:
                if None in map(_INGRESS, outs):  # usually every output has its stamp already
                    self.latency.carry(k, ins, outs)
                st.metrics.frames_out += len(outs)
            if dead:  # each dead letter takes its input's ingress
                self.latency.carry(k, ins[-len(dead):] if len(ins) >= len(dead) else ins, dead)
            if outs and st.tap is not None:
                st.tap.offer(outs)
        if _frame.events_seen and (any(map(_events_of, ins)) or any(map(_events_of, outs))):
            count_events(st, ins, outs + dead if dead else outs)  # exact once events exist
        return i + taken

    def _stop_stage(self, k: int, unused: list[DataFrame], outcome: Outcome) -> None:
        """Settle the ``unused`` frames of stage ``k`` when its node ended or failed; raise
        the node's error, if that is what ended it."""
        if outcome is None or isinstance(outcome, _Ended):
            # The node has no more to give (e.g. a triggered source at the end of its data):
            # the frames it did not use, the one that met the end included, are dropped.
            self.ended = True
            fate = "dropped_shutdown"
        else:
            fate = self._drop_fate(outcome)
        if unused:
            self._lose(k, unused, fate)
        if isinstance(outcome, BaseException):
            raise outcome

    def _lose(self, k: int, frames: list[DataFrame], fate: str) -> None:
        """``frames`` never reached stage ``k``'s node: settle them (and their events)."""
        m = self.stages[k].metrics
        m.settle(fate, len(frames))
        lost = sum(len(f.events) for f in frames)
        if lost:
            m.settle_events("dropped", lost)

    def _drop_fate(self, exc: BaseException | None = None) -> str:
        """Fate of frames in hand when ``exc`` ends the loop (a node's own error: aborted)."""
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            return "aborted"
        return "aborted" if self._aborting() else "dropped_shutdown"

    async def send_dead(self, k: int) -> None:
        """Send stage ``k``'s dead letters to its dead-letter node (if it has one)."""
        st = self.stages[k]
        dead, st.dead_letters = st.dead_letters, []
        outlet = self.dead_outlets.get(k)
        if outlet is not None:
            await outlet.send_all(dead)

    async def _emit(self, outs: list[DataFrame], done: bool = False) -> None:
        """Send ``outs`` on the outlet; if cancelled midway, the unsent ones are accounted.

        ``done``: every stage is through with the batch (the end of a top-level push), so
        while this waits on a full outlet the task is at a batch boundary: live commits run.
        """
        outlet = self.outlet
        if len(outs) == 1 and outlet.try_send(outs[0]):
            return
        tail = self.stages[-1].metrics  # the node that made outs, whatever a commit inserts
        unsent = len(outs)
        try:
            for o in outs:
                if not outlet.try_send(o):
                    if done:
                        self.pushing = False
                        if self._commits:
                            self._run_commits()
                        try:
                            await outlet.send(o)
                        finally:
                            self.pushing = True
                    else:
                        await outlet.send(o)
                unsent -= 1
        except BaseException as exc:
            if unsent:
                self._unsent(outs[len(outs) - unsent:], self._drop_fate(exc), tail)
            raise

    def _unsent(self, unsent: list[DataFrame], fate: str, m: Any) -> None:
        """``unsent`` outputs of the tail never left: move the tail's inputs that made them from
        delivered to ``fate`` (one input per output, at most what it delivered); their events
        from carried to dropped."""
        moved = min(len(unsent), m.delivered)
        m.frames_out -= len(unsent)
        m.settle("delivered", -moved, received=0)
        m.settle(fate, moved, received=0)
        lost = min(sum(len(f.events) for f in unsent), m.event_fates["carried"])
        if lost:
            m.settle_events("carried", -lost, received=0)
            m.settle_events("dropped", lost, received=0)


def count_events(st: ResilientNode, ins: Sequence[DataFrame], outs: Sequence[DataFrame]) -> None:
    """The event ledger of one stage call: events on ``ins`` are received; those found on
    ``outs`` (the same Event objects) are ``carried``, the rest ``dropped`` (lost with a
    skipped frame, or not kept by the node). A node that handles events itself
    (``handles_events``) settles their fates through ``context.settle_events``; only its
    received count is kept here. Events on outputs are counted as emitted."""
    m = st.metrics
    emitted = [e for o in outs for e in o.events]
    m.events_emitted += len(emitted)
    received = sum(len(f.events) for f in ins)
    if not received:
        return
    if st.node.handles_events:
        m.events_received += received
        return
    kept = {id(e) for e in emitted}
    carried = sum(1 for f in ins for e in f.events if id(e) in kept)
    m.settle_events("carried", carried)
    m.settle_events("dropped", received - carried)


def _settle(fut: asyncio.Future[Any], commit: Callable[[], Any]) -> None:
    try:
        fut.set_result(commit())
    except Exception as exc:  # handed to the caller of the live change (not swallowed)
        fut.set_exception(exc)


class CustomRunDriver:
    """One task for a node that overrides ``run(rx, tx)``: the node owns its loop.

    Frames the node takes are settled ``delivered`` when it returns normally; if it fails or
    is cancelled, the frame it was holding is ``aborted`` (or dropped at a forced stop) and the
    others delivered.
    """

    def __init__(self, stage: ResilientNode, inlet: Inlet, outlet: Sender, *,
                 aborting: Callable[[], bool]) -> None:
        self.stages = [stage]
        self.name = stage.node_id
        self.inlet = inlet
        self.outlet = outlet
        self._aborting = aborting
        self.barrier: StartBarrier | None = None  # set by the pipeline when it starts the tasks

    def at_boundary(self, commit: Callable[[], Any]) -> asyncio.Future[Any]:
        """The node owns its loop: a live commit runs at once (between two of its awaits)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        _settle(fut, commit)
        return fut

    def cancel_commit(self, fut: asyncio.Future[Any]) -> bool:
        return False

    async def run(self) -> None:
        st = self.stages[0]
        m = st.metrics
        await _maybe_await(st.node.on_start())
        if self.barrier is not None:
            await self.barrier.arrive()
        base_taken, base_sent = self.inlet.taken, self.outlet.sent
        holding = "delivered"
        try:
            await st.node.run(self.inlet, self.outlet)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            holding = "aborted" if self._aborting() else "dropped_shutdown"
            raise
        except Exception as exc:
            holding = "aborted"
            m.record_error(exc)
            raise NodeError(st.node_id, f"{type(exc).__name__}: {exc}") from exc
        finally:
            taken = self.inlet.taken - base_taken
            m.settle("delivered", taken if holding == "delivered" else max(0, taken - 1))
            if holding != "delivered" and taken:
                m.settle(holding)
            m.frames_out += self.outlet.sent - base_sent
            self.outlet.close()
            await _maybe_await(st.node.on_stop())


Driver = NodeDriver | CustomRunDriver


def make_driver(task: TaskPlan, stages: list[ResilientNode], inlet: Inlet, outlet: Sender, *,
                dead_outlets: dict[int, Outlet], aborting: Callable[[], bool],
                stop_requested: asyncio.Event, clock: Clock,
                executors: list[ThreadPoolExecutor]) -> Driver:
    """The driver of one planned task: its executor strategy and its feed, as the plan says.
    A thread executor's pool is appended to ``executors`` (the pipeline shuts them down)."""
    if task.executor == "custom" and task.feed == "inlet":
        return CustomRunDriver(stages[0], inlet, outlet, aborting=aborting)
    pool = None
    if task.executor == "thread":
        pool = ThreadPoolExecutor(1, thread_name_prefix=f"streamlab-{task.nodes[0]}")
        executors.append(pool)
    runs = [stage_runner(task.executor, pool)] + [None] * (len(stages) - 1)
    driver = NodeDriver(stages, outlet, runs=runs, aborting=aborting,
                        dead_outlets=dead_outlets, terminal=task.terminal)
    if task.feed == "source":
        driver.feed = SourceFeed(stages[0], chained=len(stages) > 1,
                                 stop_requested=stop_requested, clock=clock,
                                 send_dead=driver.send_dead, latency=driver.latency)
    else:
        driver.feed = InletFeed(inlet, stages[0])
    return driver
