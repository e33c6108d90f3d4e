"""PipelinePool: many instances of one pipeline, at most ``max_concurrent`` at a time.

The config is validated once, when the pool is made. Each :meth:`PipelinePool.execute` call
returns at once with an :class:`asyncio.Task` (await it for a :class:`PoolResult`); the task
waits for a permit, builds a fresh :class:`AsyncPipeline`, sends its triggers, stops it
gracefully, and releases the permit.

Cancellation is safe at every point: cancelled while waiting, the task never held a permit;
cancelled while running, its pipeline is forced to stop (no task left behind) and the permit
is released. A failed instance's task raises its PipelineError; other instances go on.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streamlab.config import PipelineSpec, load_config
from streamlab.errors import PoolError
from streamlab.frame import DataFrame
from streamlab.runtime.async_pipeline import AsyncPipeline, RunReport

__all__ = ["PipelinePool", "PoolResult", "PoolStatistics"]


@dataclass(frozen=True)
class PoolResult:
    """One finished instance: its name, run report and collected outputs."""

    instance: str
    report: RunReport
    results: dict[str, list[DataFrame]]


@dataclass(frozen=True)
class PoolStatistics:
    max_concurrent: int
    running: int
    waiting: int
    submitted: int
    completed: int
    failed: int
    cancelled: int
    peak_running: int


class PipelinePool:
    """Admission control over many AsyncPipeline instances of one config."""

    def __init__(
        self,
        config: PipelineSpec | Mapping[str, Any] | str | os.PathLike[str],
        max_concurrent: int = 4,
        **pipeline_options: Any,
    ) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise PoolError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        self.spec = load_config(config)
        self.max_concurrent = max_concurrent
        self._options = pipeline_options
        self._sem = asyncio.Semaphore(max_concurrent)
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task[PoolResult]] = set()
        self._closed = False
        self.running = 0
        self.waiting = 0
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.peak_running = 0
        self.on_instance: Any = None  # callback(AsyncPipeline) when an instance starts

    def execute(
        self,
        trigger: DataFrame | None = None,
        *,
        triggers: int = 1,
        frames: Iterable[DataFrame] | None = None,
    ) -> asyncio.Task[PoolResult]:
        """Schedule one instance; returns its task (await it for the PoolResult)."""
        if self._closed:
            raise PoolError("the pool is closed")
        if trigger is not None:
            frames = [trigger]
        name = f"{self.spec.name}#{next(self._ids)}"
        self.submitted += 1
        task = asyncio.create_task(self._run(name, triggers, frames), name=f"streamlab-pool:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[PoolResult]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self.cancelled += 1
        elif task.exception() is not None:
            self.failed += 1
        else:
            self.completed += 1

    async def _run(self, name: str, triggers: int, frames: Iterable[DataFrame] | None) -> PoolResult:
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        try:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            pipe = AsyncPipeline(self.spec, instance=name, **self._options)
            if self.on_instance is not None:
                self.on_instance(pipe)
            try:
                report = await pipe.run(triggers=triggers, frames=frames)
            except asyncio.CancelledError:
                await pipe.stop(timeout=0)
                raise
            return PoolResult(name, report, pipe.results)
        finally:
            self.running -= 1
            self._sem.release()

    async def join(self) -> None:
        """Wait for every scheduled instance (results and errors stay on their tasks)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self) -> None:
        """Refuse new work, cancel what is still scheduled, and wait for it to end."""
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def __aenter__(self) -> PipelinePool:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if exc[0] is None:
            await self.join()
        await self.close()

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(self.max_concurrent, self.running, self.waiting, self.submitted,
                              self.completed, self.failed, self.cancelled, self.peak_running)

    def __repr__(self) -> str:
        return (f"<PipelinePool running={self.running} waiting={self.waiting} "
                f"max_concurrent={self.max_concurrent}>")
