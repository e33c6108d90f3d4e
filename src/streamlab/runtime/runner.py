"""The loops that run inside pipeline tasks.

A :class:`ChainRunner` runs one node, or a fused linear chain of nodes, inside one task:
it takes every ready frame from the chain's :class:`~streamlab.channel.Inlet`, passes each
through the chain's nodes (each wrapped in a ResilientNode, which counts fates and applies
policies per node), and sends the results on the :class:`~streamlab.channel.Outlet`.

A :class:`FreeSourceRunner` drives a free-running source: it calls the source until it raises
EndOfStream, reaches ``max_frames``, or a graceful stop is requested, pacing frames in real
time if asked.

**End-to-end latency** (docs/metrics.md): a runner whose head is a source stamps every frame
that source emits with ``DataFrame.ingress_ns`` (the pipeline clock's monotonic time, in ns);
each stage passes the stamp from its inputs to outputs that have none (new frames a node
made: one output per input in order, else by relative position in the batch); the stage of a
terminal node records ``arrival - ingress_ns`` once per frame it receives, in
``NodeMetrics.end_to_end``, fused or not.

Both count, on cancellation (a forced stop or a failure elsewhere), every frame they hold as
``dropped_shutdown`` (or ``aborted`` when the pipeline failed), so ``received == sum of
fates`` holds for every node whatever ends the run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamlab.channel import Inlet, Outlet, WouldBlock
from streamlab.errors import EndOfStream
from streamlab.frame import DataFrame
from streamlab.node import SourceNode
from streamlab.resilience.resilient import ResilientNode, _maybe_await

__all__ = ["ChainRunner", "FreeSourceRunner", "CustomRunRunner", "uses_custom_run"]

_DataFrame = DataFrame
_BATCH_BYTES = 4 * 1024 * 1024


class _Resume(Exception):
    """Internal: a chain pass met a stage with a restart to await; resume it asynchronously."""

    def __init__(self, k: int, frames: list[DataFrame], done: list[DataFrame]) -> None:
        self.k, self.frames, self.done = k, frames, done


class _Flush(Exception):
    """Internal: stage ``k`` failed; its ``outputs`` made before the failure flow on first."""

    def __init__(self, exc: BaseException, k: int, outputs: list[DataFrame]) -> None:
        self.exc, self.k, self.outputs = exc, k, outputs


class _Runner:
    name: str
    stages: list[ResilientNode]
    ended = False  # a node of the chain raised EndOfStream: the chain stops after this pass
    _stamp_k = -1  # the stage whose outputs get a fresh ingress time (0: a source), or -1
    _e2e_k = -1    # the stage that is a terminal node (records end-to-end latency), or -1

    def __init__(self, aborting: Callable[[], bool]) -> None:
        self._aborting = aborting

    def _init_latency(self, is_sink: bool) -> None:
        """Which stage stamps ingress (a source head) and which records end-to-end latency
        (the tail, if it is a terminal node and not itself the source)."""
        mono = self.stages[0].clock.monotonic
        self._now_ns: Callable[[], int] = lambda: int(mono() * 1e9)
        head_is_source = not self.stages[0].node.context.inputs
        self._stamp_k = 0 if head_is_source else -1
        last = len(self.stages) - 1
        self._e2e_k = last if is_sink and not (head_is_source and last == 0) else -1

    def _arrived(self, frames: list[DataFrame]) -> None:
        """End-to-end latency of ``frames`` reaching the terminal stage: one record each
        (frames without an ingress time, from a node that owns its ``run`` loop, are skipped)."""
        h = self.stages[self._e2e_k].metrics.end_to_end
        now = self._now_ns()
        for f in frames:
            t = f.ingress_ns
            if t is not None:
                h.record(now - t if now > t else 0)

    def _carry(self, k: int, ins: list[DataFrame], n: int, outs: list[DataFrame]) -> None:
        """Ingress times for ``outs``, made by stage k from the first ``n`` of ``ins``.

        A source stage stamps them now (a frame that already has one, e.g. handed in by
        ``run(frames=...)``, keeps it). Otherwise an output without one (a new frame) takes
        the ingress of its input: one output per input in order, else the input at the same
        relative position in the batch (exact for a node that makes one frame per j inputs
        or j frames per input; a frame made from inputs of an earlier batch gets a later one).
        """
        if k == self._stamp_k:
            now = self._now_ns()
            for o in outs:
                if o.ingress_ns is None:
                    o.ingress_ns = now
            return
        m = len(outs)
        if n == m:
            for o, i in zip(outs, ins):  # (ins may be longer than n: zip stops at m)
                if o.ingress_ns is None:
                    o.ingress_ns = i.ingress_ns
        elif n:
            for j in range(m):
                o = outs[j]
                if o.ingress_ns is None:
                    o.ingress_ns = ins[((j + 1) * n - 1) // m].ingress_ns

    def _carry_one(self, k: int, frame: DataFrame, outs: list[DataFrame], start: int) -> None:
        """:meth:`_carry` for ``outs[start:]``, made by stage k from the one input ``frame``."""
        t = self._now_ns() if k == self._stamp_k else frame.ingress_ns
        for j in range(start, len(outs)):
            if outs[j].ingress_ns is None:
                outs[j].ingress_ns = t

    def _drop_fate(self, exc: BaseException | None = None) -> str:
        """Fate of frames in hand when ``exc`` ends the loop (a node's own error: aborted)."""
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            return "aborted"
        return "aborted" if self._aborting() else "dropped_shutdown"

    def _lost_in_chain(self, k: int, unseen: int, outputs: list[DataFrame],
                       exc: BaseException) -> None:
        """Count frames in hand inside a chain when ``exc`` interrupts stage ``k``.

        ``unseen`` frames had not reached stage k yet; ``outputs`` of stage k had not reached
        stage k+1 (inside the chain: no channel holds them). Each gets one fate.
        """
        fate = self._drop_fate(exc)
        for m, n in ((self.stages[k].metrics, unseen),
                     (self.stages[k + 1].metrics if k + 1 < len(self.stages) else None,
                      len(outputs))):
            if m is not None and n:
                m.received += n
                setattr(m, fate, getattr(m, fate) + n)

    def _pass(self, k0: int, frames: list[DataFrame]) -> list[DataFrame]:
        """Frames through stages[k0:] of a chain of sync nodes, stage by stage, without awaiting.

        Raises :class:`_Resume` when a stage has a restart to await first (rare: after a
        failure); :meth:`_pass_async` then continues from there.
        """
        stages = self.stages
        for k in range(k0, len(stages)):
            nxt: list[DataFrame] = []
            frames = self._stage(k, frames, nxt)
            if not frames:
                return frames
        return frames

    def _stage(self, k: int, frames: list[DataFrame], nxt: list[DataFrame],
               resumed: bool = False) -> list[DataFrame]:
        """Stage k over ``frames``, outputs appended to ``nxt`` (returned); may raise _Resume.

        ``resumed``: ``frames`` already reached stage k once (a pass resumed after a restart),
        so their arrival is not recorded again.
        """
        st = self.stages[k]
        if k == self._e2e_k and not resumed:
            self._arrived(frames)
        if st.pending_restart:  # every frame after a failure meets a fresh instance
            raise _Resume(k, frames, nxt)
        try:
            taken = st.process_batch(frames, nxt)
        except EndOfStream:
            # The node has no more to give (e.g. a triggered source at the end of its data):
            # what it made so far flows on; the frames it did not use, the one that met the
            # end included, are counted dropped; the runner then ends the chain.
            if nxt:
                self._carry(k, frames, st.batch_consumed, nxt)
            unseen = len(frames) - st.batch_consumed
            st.metrics.received += unseen
            st.metrics.dropped_shutdown += unseen
            st.metrics.frames_out += len(nxt)
            self.ended = True
            return nxt
        except Exception as exc:
            # The frames it had not reached get their fate here; what it made before the
            # failure flows on (nothing already in flight is lost), then the error propagates.
            if nxt:
                self._carry(k, frames, st.batch_consumed, nxt)
            st.metrics.frames_out += len(nxt)
            self._lost_in_chain(k, len(frames) - st.batch_consumed, [], exc)
            raise _Flush(exc, k, nxt) from exc
        if nxt:
            self._carry(k, frames, taken, nxt)
        if taken < len(frames):
            raise _Resume(k, frames[taken:], nxt)
        st.metrics.frames_out += len(nxt)
        return nxt

    async def _pass_async(self, r: _Resume) -> list[DataFrame]:
        """Continue a chain pass interrupted by :class:`_Resume`, awaiting restarts.

        Outputs made before the failure flow on (through the rest of the chain, then out)
        before the restart's backoff, so a failure never holds back frames already processed.
        """
        while True:
            k = r.k
            if r.done:
                early, r.done = r.done, []
                self.stages[k].metrics.frames_out += len(early)
                if k + 1 < len(self.stages):
                    early = await self._run_pass(k + 1, early)
                await self._emit(early)
            st = self.stages[k]
            try:
                await st.restart()
            except BaseException as exc:
                self._lost_in_chain(k, len(r.frames), [], exc)
                raise
            try:
                rest = self._stage(k, r.frames, [], resumed=True)
                if rest and k + 1 < len(self.stages):
                    return self._pass(k + 1, rest)
                return rest
            except _Resume as again:
                r = again

    async def _resume(self, r: _Resume) -> list[DataFrame]:
        """:meth:`_pass_async`, with a failure on the way flushed then raised."""
        try:
            return await self._pass_async(r)
        except _Flush as fl:
            await self._flush(fl)
            raise AssertionError("unreachable") from None

    async def _run_pass(self, k: int, frames: list[DataFrame]) -> list[DataFrame]:
        """:meth:`_pass` with its slow paths: restarts awaited, failures flushed then raised."""
        try:
            return self._pass(k, frames)
        except _Resume as r:
            return await self._resume(r)
        except _Flush as fl:
            await self._flush(fl)
            raise AssertionError("unreachable") from None

    async def _flush(self, fl: _Flush) -> None:
        """Send on what a failing stage made before its failure, then raise the failure."""
        try:
            outs = fl.outputs
            if outs and fl.k + 1 < len(self.stages):
                outs = await self._run_pass(fl.k + 1, outs)
            if outs:
                await self._emit(outs)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: S110 - a second failure while flushing: it is counted by
            pass  # its own node; the first failure is the one the pipeline reports
        raise fl.exc

    async def _emit(self, outs: list[DataFrame]) -> None:
        """Send ``outs`` on the outlet; if cancelled midway, the unsent ones are accounted."""
        outlet = self.outlet  # type: ignore[attr-defined]
        unsent = len(outs)
        try:
            for o in outs:
                if not outlet.try_send(o):
                    await outlet.send(o)
                unsent -= 1
        except BaseException as exc:
            if unsent:
                self._unsent(unsent, self._drop_fate(exc))
            raise

    def _unsent(self, unsent: int, fate: str) -> None:
        """``unsent`` outputs of the tail never reached the outlet: move the tail's inputs that
        made them from delivered to ``fate`` (one input per output, at most what it delivered)."""
        m = self.stages[-1].metrics
        moved = min(unsent, m.delivered)
        m.frames_out -= unsent
        m.delivered -= moved
        setattr(m, fate, getattr(m, fate) + moved)

    async def _start_nodes(self) -> None:
        for st in self.stages:
            await _maybe_await(st.node.on_start())

    async def _stop_nodes(self) -> None:
        for st in self.stages:
            await _maybe_await(st.node.on_stop())


class ChainRunner(_Runner):
    """One task: inlet -> node(s) -> outlet."""

    def __init__(
        self,
        stages: list[ResilientNode],
        inlet: Inlet,
        outlet: Any,
        *,
        aborting: Callable[[], bool],
        dead_outlets: dict[int, Outlet] | None = None,
        is_sink: bool = False,
        clock_us: Callable[[], int] | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        super().__init__(aborting)
        self.stages = stages
        self.name = "+".join(st.node_id for st in stages)
        self.inlet = inlet
        self.outlet = outlet
        self.dead_outlets = dead_outlets or {}
        self.is_sink = is_sink
        # (clock_us is no longer read: end-to-end latency uses the stages' monotonic clock)
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self.executor = executor
        self._init_latency(is_sink)

    async def run(self) -> None:
        await self._start_nodes()
        try:
            await (self._loop_pipelined() if self._pipelines() else self._loop())
        finally:
            self.outlet.close()
            for o in self.dead_outlets.values():
                o.close()
            # on_stop runs after the outlet closed, so downstream can finish meanwhile.
            await self._stop_nodes()

    async def _loop(self) -> None:
        inlet = self.inlet
        stages = self.stages
        slow = self.executor is not None or any(st.is_async for st in stages) or self.dead_outlets
        head_m = stages[0].metrics
        head_ctx = stages[0].node.context
        fan_in = len(inlet.channels) > 1
        head_ctx.current_input = inlet.last_source
        while True:
            try:
                batch = await inlet.receive_batch()
            except EndOfStream:
                return
            if fan_in:
                head_ctx.current_input = inlet.last_source
            head_m.observe_batch(batch, inlet.last_source)  # stream health: gaps, regressions
            i = 0
            n = len(batch)
            try:
                if not slow:
                    # The fast path: the whole batch through the chain, stage by stage.
                    i = n
                    outs = await self._run_pass(0, batch)
                    if outs:
                        await self._emit(outs)
                    if self.ended:
                        for ch in inlet.channels:
                            ch.close_receiver()
                        return
                    continue
                while i < n:
                    frame = batch[i]
                    i += 1
                    outs = await self._feed_slow(frame)
                    if outs:
                        await self._emit(outs)
            except EndOfStream:
                # The node has no more to give (a triggered source at the end of its data):
                # frames it had taken but not used (the one that met the end included) and any
                # still coming are counted dropped.
                rest = n - i + 1
                if rest:
                    head_m.received += rest
                    head_m.dropped_shutdown += rest
                for ch in inlet.channels:
                    ch.close_receiver()
                return
            except BaseException as exc:  # cancelled, or a node error: count what is in hand
                fate = self._drop_fate(exc)
                rest = n - i
                if rest:
                    head_m.received += rest
                    setattr(head_m, fate, getattr(head_m, fate) + rest)
                raise

    async def _feed_slow(self, frame: DataFrame) -> list[DataFrame]:
        """The general path: async nodes, thread executor, dead letters."""
        frames: list[DataFrame] = [frame]
        loop = asyncio.get_running_loop()
        for k, st in enumerate(self.stages):
            if k == self._e2e_k:
                self._arrived(frames)
            nxt: list[DataFrame] = []
            j = 0
            try:
                for f in frames:
                    if st.pending_restart:  # every frame after a failure meets a fresh instance
                        await st.restart()
                    j += 1
                    if self.executor is not None and not st.is_async:
                        out = await loop.run_in_executor(self.executor, st.process, f)
                    elif st.is_async:
                        out = await st.process_async(f)
                    else:
                        out = st.process(f)
                    if st.dead_letters:
                        dead, st.dead_letters = st.dead_letters, []
                        outlet = self.dead_outlets.get(k)
                        if outlet is not None:
                            self._carry_one(k, f, dead, 0)  # a dead letter is its input's
                            await outlet.send_all(dead)
                    if out is None:
                        continue
                    start = len(nxt)
                    if type(out) is _DataFrame:
                        nxt.append(out)
                    else:
                        nxt.extend(out)
                    self._carry_one(k, f, nxt, start)
            except BaseException as exc:
                self._lost_in_chain(k, len(frames) - j, nxt, exc)
                raise
            st.metrics.frames_out += len(nxt)
            if not nxt:
                return nxt
            frames = nxt
        return frames

    def _pipelines(self) -> bool:
        """True for one node in a process executor: :meth:`_loop_pipelined` runs it."""
        from streamlab.runtime.executor import ProcessNode

        return (len(self.stages) == 1 and self.executor is None
                and isinstance(self.stages[0].node, ProcessNode))

    async def _loop_pipelined(self) -> None:
        """The loop of one process-executor node: several frames in flight.

        Frames k+1.. (up to ``ProcessNode.pipeline_depth`` in all) go to the worker
        (``ProcessNode.submit``) before the result of frame k is awaited, so the worker
        computes while this process runs the rest of the pipeline.
        Results come back one per frame, in order, through the per-frame path
        (:meth:`_feed_slow`: policy, metrics, restarts, dead letters). Frames taken from the
        inlet and not yet fed get their fate like the rest of a batch in :meth:`_loop`.
        Nothing is sent ahead to a node with a circuit breaker (admission is per frame) or
        with a restart pending (the next frame must meet the fresh instance).
        """
        from streamlab.runtime.executor import ProcessNode

        inlet, st = self.inlet, self.stages[0]
        m = st.metrics
        ctx = st.node.context
        pending: deque[DataFrame] = deque()
        ended = False
        ahead = ProcessNode.pipeline_depth - 1  # frames sent beyond the one awaited
        try:
            while True:
                if not pending:
                    if ended:
                        return
                    try:
                        batch = await inlet.receive_batch()
                    except EndOfStream:
                        return
                    self._took(batch, ctx)
                    pending.extend(batch)
                while len(pending) <= ahead and not ended:  # top up without waiting
                    try:
                        pending.append(inlet.receive_nowait())
                    except WouldBlock:
                        break
                    except EndOfStream:
                        ended = True
                    else:
                        self._took([pending[-1]], ctx)
                frame = pending.popleft()
                node = st.node
                if st.breaker is None and not st.pending_restart and isinstance(node, ProcessNode):
                    try:
                        if node.submit(frame):
                            for k in range(min(ahead, len(pending))):
                                if not node.submit(pending[k]):
                                    break  # (frames go in order: none after one held back)
                    except Exception:  # noqa: S110 - the same error comes from process() below,
                        pass  # where the node's policy applies to it
                outs = await self._feed_slow(frame)
                if outs:
                    await self._emit(outs)
        except EndOfStream:  # the node ended: the frame that met the end and the rest dropped
            rest = len(pending) + 1
            m.received += rest
            m.dropped_shutdown += rest
            for ch in inlet.channels:
                ch.close_receiver()
        except BaseException as exc:  # cancelled, or a node error: count what is in hand
            if pending:
                fate = self._drop_fate(exc)
                m.received += len(pending)
                setattr(m, fate, getattr(m, fate) + len(pending))
            raise

    def _took(self, frames: list[DataFrame], ctx: Any) -> None:
        """Per frames taken from the inlet: current input, stream health."""
        ctx.current_input = self.inlet.last_source
        self.stages[0].metrics.observe_batch(frames, self.inlet.last_source)


class FreeSourceRunner(_Runner):
    """One task: a source that produces on its own, and the nodes fused after it.

    Runs until the source raises EndOfStream, reaches ``max_frames``, or a graceful stop is
    requested; with ``realtime`` frames are paced on the clock by the source's frame period.
    """

    def __init__(
        self,
        stages: list[ResilientNode],
        outlet: Any,
        *,
        aborting: Callable[[], bool],
        stop_requested: asyncio.Event,
        dead_outlet: Outlet | None = None,
    ) -> None:
        super().__init__(aborting)
        self.stages = stages
        self.name = "+".join(st.node_id for st in stages)
        self.outlet = outlet
        self.stop_requested = stop_requested
        self.dead_outlet = dead_outlet
        self._init_latency(not stages[-1].node.context.outputs)

    async def run(self) -> None:
        await self._start_nodes()
        try:
            await self._loop()
        finally:
            self.outlet.close()
            if self.dead_outlet is not None:
                self.dead_outlet.close()
            await self._stop_nodes()

    async def _loop(self) -> None:
        st = self.stages[0]
        node = st.node
        cfg = node.config
        limit = getattr(cfg, "max_frames", None)
        realtime = bool(getattr(cfg, "realtime", False))
        clock = st.clock
        period = node.frame_period() if isinstance(node, SourceNode) and realtime else None
        start = clock.monotonic()
        produced = 0
        since_yield = 0
        outlet = self.outlet
        stop = self.stop_requested
        chained = len(self.stages) > 1
        # Unpaced, a source heading a fused chain makes a few frames before passing them on
        # together: the chain then works stage by stage on a batch, as after a channel.
        # Batches are capped at 4 MiB of payload (measured on the first frame), so large
        # frames do not inflate memory beyond what the fused edges' capacities allow.
        most = 1 if (period or not chained) else 16
        sized = most == 1
        ended = False
        while not ended and not stop.is_set() and (limit is None or produced < limit):
            outs: list[DataFrame] = []
            want = most if limit is None else min(most, limit - produced)
            if want > 1 and not st.is_async and not st.pending_restart and not st.dead_letters:
                made, ended = st.produce_batch(want, outs)  # the fast path: no waiting
                produced += made
                want = 0
                if st.dead_letters and self.dead_outlet is not None:
                    dead, st.dead_letters = st.dead_letters, []
                    self._carry(0, dead, len(dead), dead)  # failed productions: ingress now
                    await self.dead_outlet.send_all(dead)
            for _ in range(want):
                if st.pending_restart:
                    if outs:
                        break  # what was made before the failure goes first
                    await st.restart()
                if period:
                    wait = start + produced * period - clock.monotonic()
                    if wait > 0:
                        await clock.sleep(wait)
                        since_yield = 0
                try:
                    out = await st.produce_async() if st.is_async else st.produce()
                except EndOfStream:
                    ended = True
                    break
                produced += 1
                if st.dead_letters and self.dead_outlet is not None:
                    dead, st.dead_letters = st.dead_letters, []
                    self._carry(0, dead, len(dead), dead)  # failed productions: ingress now
                    await self.dead_outlet.send_all(dead)
                if out is None:
                    continue
                if type(out) is _DataFrame:
                    outs.append(out)
                else:
                    outs.extend(out)
            if outs:
                self._carry(0, outs, len(outs), outs)  # the source emits them: ingress now
            st.metrics.frames_out += len(outs)
            if not sized and outs:
                sized = True
                nbytes = max(1, outs[0].payload.nbytes())
                most = max(1, min(most, _BATCH_BYTES // nbytes))
            if chained and outs:
                outs = await self._run_pass(1, outs)
            if outs and not (len(outs) == 1 and outlet.try_send(outs[0])):
                await self._emit(outs)
                since_yield = 0
            if self.ended:
                return
            since_yield += 1
            if since_yield >= 32:  # never starve the loop when downstream keeps up
                since_yield = 0
                await asyncio.sleep(0)


class CustomRunRunner(_Runner):
    """One task for a node that overrides ``run(rx, tx)``: the node owns its loop.

    Frames the node takes are counted ``delivered`` when it returns normally; if it fails,
    the frame it was holding is ``aborted`` and the others delivered.
    """

    def __init__(self, stage: ResilientNode, inlet: Inlet, outlet: Any, *,
                 aborting: Callable[[], bool]) -> None:
        super().__init__(aborting)
        self.stages = [stage]
        self.name = stage.node_id
        self.inlet = inlet
        self.outlet = outlet

    async def run(self) -> None:
        st = self.stages[0]
        m = st.metrics
        await self._start_nodes()
        base_taken = self.inlet.taken
        base_sent = self.outlet.sent
        try:
            await st.node.run(self.inlet, self.outlet)
            taken = self.inlet.taken - base_taken
            m.received += taken
            m.delivered += taken
        except asyncio.CancelledError:
            taken = self.inlet.taken - base_taken
            m.received += taken
            m.delivered += max(0, taken - 1)
            if taken:
                fate = self._drop_fate()
                setattr(m, fate, getattr(m, fate) + 1)
            raise
        except Exception as exc:
            taken = self.inlet.taken - base_taken
            m.received += taken
            m.delivered += max(0, taken - 1)
            m.aborted += 1 if taken else 0
            m.record_error(exc)
            from streamlab.errors import NodeError

            raise NodeError(st.node_id, f"{type(exc).__name__}: {exc}") from exc
        finally:
            m.frames_out += self.outlet.sent - base_sent
            self.outlet.close()
            await self._stop_nodes()


def uses_custom_run(stage: ResilientNode) -> bool:
    """True if the node overrides ``run`` (the runtime then hands it the channels)."""
    from streamlab.node import overrides_run

    return overrides_run(stage.node)
