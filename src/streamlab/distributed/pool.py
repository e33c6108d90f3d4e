"""DistributedPool: PipelinePool's shape, with instances run by a backend (in-process or Ray).

The config is validated once, on the driver, when the pool is made; workers re-validate it
once per config (cheap, cached) before building their own :class:`AsyncPipeline`.
:meth:`DistributedPool.execute` returns at once with an :class:`asyncio.Task`; await it for an
:class:`~streamlab.distributed.backend.InstanceResult` (instance name, worker, the RunReport as
plain data, the collected outputs as frames).

**Admission** is on the driver: at most ``max_concurrent`` instances run at once across every
worker of the backend, whatever their number; the rest wait in submission order.

**Cancellation** is safe at every point: cancelled while waiting, the task never held a permit;
cancelled while running, the backend stops the remote instance (Ray: ``ray.cancel``, the actor
forces the pipeline to stop) before the permit is released.

**Failure** stays on its handle: a failed pipeline raises PipelineError, a dead worker raises
BackendError naming the instance; other instances go on.

The pool starts its backend on first use (or in ``async with``). It closes the backend when it
leaves, if it made the backend itself (``backend=None``) or was told to (``close_backend=True``);
a backend passed in is otherwise the caller's to close, so several pools can share workers.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streamlab.config import PipelineSpec, load_config
from streamlab.distributed.backend import (
    PIPELINE_OPTIONS,
    Backend,
    InProcessBackend,
    InstanceResult,
    InstanceSnapshot,
    RunRequest,
    config_key,
)
from streamlab.errors import BackendError, PoolError
from streamlab.frame import DataFrame

__all__ = ["DistributedPool", "DistributedStatistics"]


@dataclass(frozen=True)
class DistributedStatistics:
    """Counts of a DistributedPool; ``worker_failures`` are the failed runs due to a worker."""

    backend: str
    workers: int
    max_concurrent: int
    running: int
    waiting: int
    submitted: int
    completed: int
    failed: int
    worker_failures: int
    cancelled: int
    peak_running: int


class DistributedPool:
    """Admission control over many instances of one config, run by a :class:`Backend`."""

    def __init__(
        self,
        config: PipelineSpec | Mapping[str, Any] | str | os.PathLike[str],
        backend: Backend | None = None,
        max_concurrent: int = 4,
        *,
        close_backend: bool | None = None,
        **pipeline_options: Any,
    ) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise PoolError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        unknown = set(pipeline_options) - PIPELINE_OPTIONS
        if unknown:
            raise PoolError(f"unsupported pipeline options {sorted(unknown)}: a backend passes on "
                            f"only {sorted(PIPELINE_OPTIONS)}")
        if pipeline_options.get("outputs", "collect") not in ("collect", "discard"):
            raise PoolError(f"outputs must be 'collect' or 'discard' in a DistributedPool, got "
                            f"{pipeline_options['outputs']!r}")
        self.spec = load_config(config)
        self._config = self.spec.to_json_dict()
        self._key = config_key(self._config)
        self.backend: Backend = InProcessBackend() if backend is None else backend
        self._close_backend = backend is None if close_backend is None else close_backend
        self.max_concurrent = max_concurrent
        self._options = dict(pipeline_options)
        self._sem = asyncio.Semaphore(max_concurrent)
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task[InstanceResult]] = set()
        self._starting: asyncio.Task[None] | None = None
        self._closed = False
        self.running = 0
        self.waiting = 0
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.worker_failures = 0
        self.cancelled = 0
        self.peak_running = 0

    async def start(self) -> None:
        """Start the backend (once; later calls wait for the same start). Raises its error."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self.backend.start())
        await asyncio.shield(self._starting)

    def execute(
        self,
        trigger: DataFrame | None = None,
        *,
        triggers: int = 1,
        frames: Iterable[DataFrame] | None = None,
    ) -> asyncio.Task[InstanceResult]:
        """Schedule one instance; returns its task (await it for the InstanceResult)."""
        if self._closed:
            raise PoolError("the pool is closed")
        if trigger is not None:
            frames = [trigger]
        name = f"{self.spec.name}#{next(self._ids)}"
        request = RunRequest(name, self._config, self._key, triggers,
                             None if frames is None else tuple(frames), self._options)
        self.submitted += 1
        task = asyncio.create_task(self._run(request), name=f"streamlab-dpool:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[InstanceResult]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self.cancelled += 1
            return
        exc = task.exception()
        if exc is None:
            self.completed += 1
        else:
            self.failed += 1
            self.worker_failures += isinstance(exc, BackendError)

    async def _run(self, request: RunRequest) -> InstanceResult:
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        try:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            await self.start()
            return await self.backend.run(request)
        finally:
            self.running -= 1
            self._sem.release()

    async def snapshot(self) -> dict[str, InstanceSnapshot]:
        """Live metrics of the instances running now, by instance name (polls the workers)."""
        return await self.backend.snapshot()

    async def join(self) -> None:
        """Wait for every scheduled instance (results and errors stay on their tasks)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def aclose(self) -> None:
        """Refuse new work, cancel what is still scheduled, wait for it, close an owned backend."""
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._close_backend:
            await self.backend.aclose()

    close = aclose  # PipelinePool's name

    async def __aenter__(self) -> DistributedPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if exc[0] is None:
            await self.join()
        await self.aclose()

    def statistics(self) -> DistributedStatistics:
        return DistributedStatistics(
            self.backend.name, self.backend.workers, self.max_concurrent, self.running,
            self.waiting, self.submitted, self.completed, self.failed, self.worker_failures,
            self.cancelled, self.peak_running)

    def __repr__(self) -> str:
        return (f"<DistributedPool backend={self.backend.name} workers={self.backend.workers} "
                f"running={self.running} waiting={self.waiting} "
                f"max_concurrent={self.max_concurrent}>")
