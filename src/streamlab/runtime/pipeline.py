"""Pipeline (Phase 1): run the graph once per input frame, in topological order.

Each call of :meth:`Pipeline.process` sends one trigger frame into every source, then calls
every node's ``process()`` once per frame it received, in topological order, routing outputs
along the connections (fan-out and fan-in included). It returns the frames that reached each
terminal node. Node state persists across calls, so repeated calls stream a signal.

**End of data.** A source ends by raising :class:`~streamlab.errors.EndOfStream` (FileSource and
Replay in free mode at the end of their file); an ended source is not called
again. Once every source has ended, :attr:`Pipeline.exhausted` is True: the call during which
the last one ended still returns the frames it produced, and any later :meth:`process` raises
``EndOfStream``. So a file-driven graph is drained with::

    while not pipe.exhausted:
        outputs = pipe.process_sync()

A pipeline with a triggered generator never ends on its own (each trigger makes new data).

Error policies and restart strategies apply as in the async runtime; a ``Propagate`` failure
raises :class:`~streamlab.errors.PipelineError` naming the node. No tasks are started: this is
the simplest way to test a graph, or to run one inside code that owns its own loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from streamlab.clock import SYSTEM_CLOCK, Clock
from streamlab.config import PipelineSpec, load_config
from streamlab.errors import EndOfStream, NodeError, PipelineError
from streamlab.frame import DataFrame
from streamlab.metrics.node_metrics import NodeMetrics
from streamlab.node import SourceNode
from streamlab.resilience.resilient import _maybe_await
from streamlab.runtime.build import build_graph

__all__ = ["Pipeline"]


class Pipeline:
    """Sequential execution of a pipeline graph, one trigger at a time."""

    def __init__(
        self,
        config: PipelineSpec | Mapping[str, Any] | str | os.PathLike[str],
        *,
        clock: Clock = SYSTEM_CLOCK,
        metrics: dict[str, NodeMetrics] | None = None,
    ) -> None:
        self.spec = load_config(config)
        self.name = self.spec.name
        self.clock = clock
        self.built = build_graph(self.spec, clock=clock, pipeline_name=self.name, metrics=metrics)
        self.graph = self.built.graph
        self.order = self.graph.topological_order()
        self.metrics = {k: r.metrics for k, r in self.built.nodes.items()}
        self._started = False
        self._closed = False
        self._next_trigger = 0
        #: Sources that raised EndOfStream (never called again).
        self.ended_sources: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def exhausted(self) -> bool:
        """True once every source has ended (raised EndOfStream); process() then raises it."""
        return all(s in self.ended_sources for s in self.graph.sources)

    @classmethod
    def from_config(cls, config: PipelineSpec | Mapping[str, Any] | str | os.PathLike[str],
                    **kw: Any) -> Pipeline:
        return cls(config, **kw)

    async def start(self) -> None:
        """Call every node's ``on_start`` (done automatically by the first ``process``)."""
        if not self._started:
            self._started = True
            for n in self.order:
                await _maybe_await(self.built.nodes[n].node.on_start())

    async def process(self, trigger: DataFrame | None = None) -> dict[str, list[DataFrame]]:
        """Run the graph once; returns ``{terminal node id: [frames]}``.

        Raises EndOfStream if every source had already ended (:attr:`exhausted`), and
        PipelineError if the pipeline is closed or a node failed under ``Propagate``.
        """
        if self._closed:
            raise PipelineError(f"pipeline {self.name!r} is closed")
        if self.exhausted:
            raise EndOfStream(f"pipeline {self.name!r}: every source has ended")
        await self.start()
        if trigger is None:
            trigger = DataFrame(self.clock.time_us(), self._next_trigger)
        self._next_trigger += 1
        inbox: dict[str, list[DataFrame]] = {n: [] for n in self.order}
        for src in self.graph.sources:
            inbox[src].append(trigger)
        results: dict[str, list[DataFrame]] = {}
        dead = self.built.dead_letter_edges
        for n in self.order:
            outs = await self._run_node(n, inbox)
            for t in self.graph.outputs[n]:
                if dead.get(n) != t:
                    inbox[t].extend(outs)
            if not self.graph.outputs[n]:
                results[n] = outs
        return results

    async def _run_node(self, n: str, inbox: dict[str, list[DataFrame]]) -> list[DataFrame]:
        """Node ``n`` on every frame in its inbox (a free source: one call); its outputs.

        Dead letters go to the dead-letter node's inbox; a ``Propagate`` failure raises
        PipelineError; a source's EndOfStream marks it ended.
        """
        res = self.built.nodes[n]
        outs: list[DataFrame] = []
        free = isinstance(res.node, SourceNode) and res.node.free_running()
        frames: list[DataFrame | None] = [] if n in self.ended_sources else (
            [None] if free else list(inbox[n]))
        for f in frames:
            if res.pending_restart:
                await res.restart()
            try:
                out = (res.produce() if f is None else
                       await res.process_async(f) if res.is_async else res.process(f))
            except EndOfStream:
                if n in self.graph.sources:
                    self.ended_sources.add(n)
                continue
            except NodeError as exc:
                err = PipelineError(f"pipeline {self.name!r} failed: {exc}", node_id=n)
                raise err from (exc.__cause__ or exc)
            if res.dead_letters:
                target = self.built.dead_letter_edges.get(n)
                if target is not None:
                    inbox[target].extend(res.dead_letters)
                res.dead_letters = []
            if out is not None:
                outs.extend([out] if isinstance(out, DataFrame) else out)
        res.metrics.frames_out += len(outs)
        return outs

    def process_sync(self, trigger: DataFrame | None = None) -> dict[str, list[DataFrame]]:
        """:meth:`process` for code without an event loop (scripts, tests, notebooks' cells).

        Runs on a private event loop, closed by :meth:`close_sync`. Inside a running loop, use
        ``await pipeline.process()`` instead (PipelineError says so).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise PipelineError(
                f"pipeline {self.name!r}: an event loop is running here; use 'await pipeline.process()'")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self.process(trigger))

    def close_sync(self) -> None:
        """:meth:`close` without an event loop."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self.close())
        finally:
            self._loop.close()

    async def close(self) -> None:
        """Call every node's ``on_stop``."""
        if not self._closed:
            self._closed = True
            if self._started:
                for n in self.order:
                    await _maybe_await(self.built.nodes[n].node.on_stop())

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r} nodes={len(self.order)} triggers={self._next_trigger}>"
