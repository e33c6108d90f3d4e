"""The loops that run inside pipeline tasks.

A :class:`ChainRunner` runs one node, or a fused linear chain of nodes, inside one task:
it takes every ready frame from the chain's :class:`~streamlab.channel.Inlet`, passes each
through the chain's nodes (each wrapped in a ResilientNode, which counts fates and applies
policies per node), and sends the results on the :class:`~streamlab.channel.Outlet`.

A :class:`FreeSourceRunner` drives a free-running source: it calls the source until it raises
EndOfStream, reaches ``max_frames``, or a graceful stop is requested, pacing frames in real
time if asked.

Both count, on cancellation (a forced stop or a failure elsewhere), every frame they hold as
``dropped_shutdown`` (or ``aborted`` when the pipeline failed), so ``received == sum of
fates`` holds for every node whatever ends the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamlab.channel import Inlet, Outlet
from streamlab.errors import EndOfStream
from streamlab.frame import DataFrame
from streamlab.node import SourceNode
from streamlab.resilience.resilient import ResilientNode, _maybe_await

__all__ = ["ChainRunner", "FreeSourceRunner", "CustomRunRunner", "uses_custom_run"]

_DataFrame = DataFrame


class _Resume(Exception):
    """Internal: a chain pass met a stage with a restart to await; resume it asynchronously."""

    def __init__(self, k: int, frames: list[DataFrame], done: list[DataFrame]) -> None:
        self.k, self.frames, self.done = k, frames, done


class _Runner:
    name: str
    stages: list[ResilientNode]

    def __init__(self, aborting: Callable[[], bool]) -> None:
        self._aborting = aborting

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
        """Frames through stages[k0:] of a chain of sync nodes, without awaiting.

        Raises :class:`_Resume` when a stage has a restart to await first (rare: after a
        failure); :meth:`_pass_async` then continues from there.
        """
        stages = self.stages
        for k in range(k0, len(stages)):
            st = stages[k]
            nxt: list[DataFrame] = []
            j = 0
            try:
                for f in frames:
                    if st.pending_restart:  # every frame after a failure meets a fresh instance
                        raise _Resume(k, frames[j:], nxt)
                    j += 1
                    out = st.process(f)
                    if out is None:
                        continue
                    if type(out) is _DataFrame:
                        nxt.append(out)
                    else:
                        nxt.extend(out)
            except _Resume:
                raise
            except BaseException as exc:
                self._lost_in_chain(k, len(frames) - j, nxt, exc)
                raise
            st.metrics.frames_out += len(nxt)
            if not nxt:
                return nxt
            frames = nxt
        return frames

    async def _pass_async(self, r: _Resume) -> list[DataFrame]:
        """Continue a chain pass interrupted by :class:`_Resume`, awaiting restarts."""
        while True:
            st = self.stages[r.k]
            try:
                await st.restart()
            except BaseException as exc:
                self._lost_in_chain(r.k, len(r.frames), r.done, exc)
                raise
            # Finish stage k for the frames it had not seen, then go on with the rest.
            done = r.done
            try:
                rest = self._pass_one(r.k, r.frames, done)
                return self._pass(r.k + 1, rest) if rest and r.k + 1 < len(self.stages) else rest
            except _Resume as again:
                r = again

    def _pass_one(self, k: int, frames: list[DataFrame], nxt: list[DataFrame]) -> list[DataFrame]:
        """Stage k alone, appending to ``nxt``; raises _Resume like :meth:`_pass`."""
        st = self.stages[k]
        j = 0
        try:
            for f in frames:
                if st.pending_restart:
                    raise _Resume(k, frames[j:], nxt)
                j += 1
                out = st.process(f)
                if out is None:
                    continue
                if type(out) is _DataFrame:
                    nxt.append(out)
                else:
                    nxt.extend(out)
        except _Resume:
            raise
        except BaseException as exc:
            self._lost_in_chain(k, len(frames) - j, nxt, exc)
            raise
        st.metrics.frames_out += len(nxt)
        return nxt

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
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self.executor = executor

    async def run(self) -> None:
        await self._start_nodes()
        try:
            await self._loop()
        finally:
            self.outlet.close()
            for o in self.dead_outlets.values():
                o.close()
            # on_stop runs after the outlet closed, so downstream can finish meanwhile.
            await self._stop_nodes()

    async def _loop(self) -> None:
        inlet, outlet = self.inlet, self.outlet
        stages = self.stages
        single = stages[0] if len(stages) == 1 else None
        slow = self.executor is not None or any(st.is_async for st in stages) or self.dead_outlets
        head_m = stages[0].metrics
        tail_m = stages[-1].metrics
        e2e = tail_m.end_to_end if self.is_sink else None
        clock_us = self._clock_us
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
            if e2e is not None:
                now = clock_us()
                for f in batch:
                    lat = now - f.timestamp
                    e2e.record(lat * 1000 if lat > 0 else 0)
            i = 0
            n = len(batch)
            sending = False
            unsent = 0  # outputs of the current frame not yet in the outlet
            try:
                while i < n:
                    if single is not None and not slow and single.pending_restart:
                        await single.restart()  # before taking the frame: a cancel leaves it in rest
                    frame = batch[i]
                    i += 1
                    if slow:
                        outs = await self._feed_slow(frame)
                    elif single is not None:
                        out = single.process(frame)
                        if out is None:
                            continue
                        if type(out) is _DataFrame:
                            single.metrics.frames_out += 1
                            if not outlet.try_send(out):
                                sending, unsent = True, 1
                                await outlet.send(out)
                                sending = False
                            continue
                        outs = list(out)
                        single.metrics.frames_out += len(outs)
                    else:
                        try:
                            outs = self._pass(0, [frame])
                        except _Resume as r:
                            outs = await self._pass_async(r)
                    if outs:
                        sending, unsent = True, len(outs)
                        for o in outs:
                            if not outlet.try_send(o):
                                await outlet.send(o)
                            unsent -= 1
                        sending = False
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
                if sending:  # the current frame's outputs did not all leave
                    tail_m.frames_out -= unsent
                    tail_m.delivered -= 1
                    setattr(tail_m, fate, getattr(tail_m, fate) + 1)
                raise

    async def _feed_slow(self, frame: DataFrame) -> list[DataFrame]:
        """The general path: async nodes, thread executor, dead letters."""
        frames: list[DataFrame] = [frame]
        loop = asyncio.get_running_loop()
        for k, st in enumerate(self.stages):
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
                            await outlet.send_all(dead)
                    if out is None:
                        continue
                    if type(out) is _DataFrame:
                        nxt.append(out)
                    else:
                        nxt.extend(out)
            except BaseException as exc:
                self._lost_in_chain(k, len(frames) - j, nxt, exc)
                raise
            st.metrics.frames_out += len(nxt)
            if not nxt:
                return nxt
            frames = nxt
        return frames


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
        tail_m = self.stages[-1].metrics
        while not stop.is_set() and (limit is None or produced < limit):
            if st.pending_restart:
                await st.restart()
            if period:
                wait = start + produced * period - clock.monotonic()
                if wait > 0:
                    await clock.sleep(wait)
                    since_yield = 0
            try:
                out = await st.produce_async() if st.is_async else st.produce()
            except EndOfStream:
                return
            produced += 1
            if st.dead_letters and self.dead_outlet is not None:
                dead, st.dead_letters = st.dead_letters, []
                await self.dead_outlet.send_all(dead)
            if out is None:
                continue
            outs = [out] if type(out) is _DataFrame else list(out)
            st.metrics.frames_out += len(outs)
            if chained:
                try:
                    outs = self._pass(1, outs)
                except _Resume as r:
                    outs = await self._pass_async(r)
            unsent = len(outs)
            try:
                for o in outs:
                    if not outlet.try_send(o):
                        await outlet.send(o)
                        since_yield = 0
                    unsent -= 1
            except BaseException as exc:
                if chained and unsent:  # the tail's outputs for this frame did not all leave
                    fate = self._drop_fate(exc)
                    tail_m.frames_out -= unsent
                    tail_m.delivered -= 1
                    setattr(tail_m, fate, getattr(tail_m, fate) + 1)
                raise
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
