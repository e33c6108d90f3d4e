"""PipelinePool: many instances of one pipeline, at most ``max_concurrent`` at a time.

This is the one admission machine of StreamLab; where an instance runs is the pool's
*backend*:

* ``backend=None`` (the default): each instance is an :class:`AsyncPipeline` on this event
  loop, built with any AsyncPipeline keyword (a clock, a stream of outputs...), and
  :attr:`PipelinePool.on_instance` sees it when it starts. ``PoolResult.report`` is the
  :class:`RunReport` itself.
* ``backend=<Backend>`` (``streamlab.distributed``: in-process, Ray, fake): each instance is
  handed to the backend as a :class:`~streamlab.distributed.backend.RunRequest`; only the
  keywords that can travel are accepted (``PIPELINE_OPTIONS``) and ``PoolResult.report`` is
  ``RunReport.to_dict()`` (plain data: it may have crossed a process).
  :class:`~streamlab.distributed.DistributedPool` is this pool with an in-process backend by
  default.

The config is validated once, when the pool is made. Each :meth:`PipelinePool.execute` call
returns at once with an :class:`asyncio.Task` (await it for a :class:`PoolResult`); the task
waits for a permit (in submission order), runs the instance to its end, and releases the permit.

Cancellation is safe at every point: cancelled while waiting, the task never held a permit;
cancelled while running, its pipeline is forced to stop (a backend stops the remote instance)
before the permit is released. A failed instance's task raises its PipelineError (a dead worker:
BackendError, counted in ``worker_failures``); other instances go on.

:meth:`PipelinePool.aclose` (alias ``close``) refuses new work, cancels what is still scheduled,
waits for it, and closes the backend if the pool owns it (``close_backend``, default: only a
backend the pool made itself).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from streamlab.config import PipelineSpec, load_config
from streamlab.errors import BackendError, PoolError
from streamlab.frame import DataFrame
from streamlab.runtime.async_pipeline import AsyncPipeline, RunReport

if TYPE_CHECKING:
    from streamlab.distributed.backend import Backend, InstanceSnapshot

__all__ = ["PipelinePool", "PoolResult", "PoolStatistics"]


@dataclass(frozen=True)
class PoolResult:
    """One finished instance: its name, run report, collected outputs and where it ran.

    ``report`` is the :class:`RunReport` when the instance ran on this loop (no backend), and
    ``RunReport.to_dict()`` when a backend ran it (plain data, the same on every backend).
    """

    instance: str
    report: RunReport | dict[str, Any]
    results: dict[str, list[DataFrame]]
    worker: str = "local"


@dataclass(frozen=True)
class PoolStatistics:
    """Counts of a pool; ``worker_failures`` are the failed runs due to a worker (BackendError)."""

    max_concurrent: int
    running: int
    waiting: int
    submitted: int
    completed: int
    failed: int
    cancelled: int
    peak_running: int
    backend: str = "local"
    workers: int = 1
    worker_failures: int = 0


class PipelinePool:
    """Admission control over many instances of one config, run here or by a backend."""

    _kind = "PipelinePool"

    def __init__(
        self,
        config: PipelineSpec | Mapping[str, Any] | str | os.PathLike[str],
        max_concurrent: int = 4,
        *,
        backend: Backend | None = None,
        close_backend: bool | None = None,
        **pipeline_options: Any,
    ) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise PoolError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        if backend is not None:
            _check_backend_options(pipeline_options)
        self.spec = load_config(config)
        self.backend = backend
        # A backend passed in is the caller's (pools may share workers) unless told otherwise.
        self._close_backend = bool(close_backend)
        self.max_concurrent = max_concurrent
        self._options = dict(pipeline_options)
        self._config: dict[str, Any] | None = None
        self._key = ""
        if backend is not None:
            from streamlab.distributed.backend import config_key  # cycle: distributed -> runtime

            self._config = self.spec.to_json_dict()
            self._key = config_key(self._config)
        self._sem = asyncio.Semaphore(max_concurrent)
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task[PoolResult]] = set()
        self._starting: asyncio.Task[None] | None = None
        self._live: dict[int, AsyncPipeline] = {}  # instances running on this loop, by id
        self._closed = False
        # The counts PoolStatistics reports: instances now running or waiting for a permit
        # (and the most ever running), then instances by how their run ended.
        self.running = self.waiting = self.peak_running = 0
        self.submitted = self.completed = self.failed = self.cancelled = self.worker_failures = 0
        self.on_instance: Any = None  # callback(AsyncPipeline) when an instance starts here

    # -- the backend ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the backend (once; later calls wait for the same start). Raises its error."""
        if self.backend is None:
            return
        if self._starting is None:
            self._starting = asyncio.ensure_future(self.backend.start())
        await asyncio.shield(self._starting)

    async def snapshot(self) -> dict[str, InstanceSnapshot]:
        """Live metrics of the instances running now, by instance name (polls the workers)."""
        if self.backend is None:
            from streamlab.distributed.backend import InstanceSnapshot

            return {p.name: InstanceSnapshot(p.name, "local", p.state, {
                k: m.snapshot().to_dict() for k, m in p.metrics.items()})
                for p in list(self._live.values())}
        return await self.backend.snapshot()

    # -- admission -----------------------------------------------------------------------------
    def execute(
        self,
        trigger: DataFrame | None = None,
        *,
        triggers: int = 1,
        frames: Iterable[DataFrame] | None = None,
    ) -> asyncio.Task[PoolResult]:
        """Schedule one instance; returns its task (await it for the PoolResult).

        Raises PoolError at once if the pool is closed.
        """
        if self._closed:
            raise PoolError("the pool is closed")
        if trigger is not None:
            frames = [trigger]
        name = f"{self.spec.name}#{next(self._ids)}"
        if self.backend is None:
            run: Callable[[], Awaitable[PoolResult]] = partial(self._run_here, name, triggers,
                                                               frames)
        else:
            from streamlab.distributed.backend import RunRequest

            assert self._config is not None
            request = RunRequest(name, self._config, self._key, triggers,
                                 None if frames is None else tuple(frames), self._options)
            run = partial(self._run_backend, request)
        self.submitted += 1
        task = asyncio.create_task(self._admit(run), name=f"streamlab-pool:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[PoolResult]) -> None:
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

    async def _admit(self, run: Callable[[], Awaitable[PoolResult]]) -> PoolResult:
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        try:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            return await run()
        finally:
            self.running -= 1
            self._sem.release()

    async def _run_here(self, name: str, triggers: int,
                        frames: Iterable[DataFrame] | None) -> PoolResult:
        pipe = AsyncPipeline(self.spec, instance=name, **self._options)
        if self.on_instance is not None:
            self.on_instance(pipe)
        self._live[id(pipe)] = pipe
        try:
            report = await pipe.run(triggers=triggers, frames=frames)
        except asyncio.CancelledError:
            await pipe.stop(timeout=0)
            raise
        finally:
            del self._live[id(pipe)]
        return PoolResult(name, report, pipe.results)

    async def _run_backend(self, request: Any) -> PoolResult:
        assert self.backend is not None
        await self.start()
        r = await self.backend.run(request)
        return PoolResult(r.instance, r.report, r.results, r.worker)

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
        if self.backend is not None and self._close_backend:
            await self.backend.aclose()

    close = aclose  # both names, on every pool

    async def __aenter__(self) -> PipelinePool:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if exc[0] is None:
            await self.join()
        await self.aclose()

    def statistics(self) -> PoolStatistics:
        b = self.backend
        return PoolStatistics(
            self.max_concurrent, self.running, self.waiting, self.submitted, self.completed,
            self.failed, self.cancelled, self.peak_running,
            "local" if b is None else b.name, 1 if b is None else b.workers, self.worker_failures)

    def __repr__(self) -> str:
        where = "" if self.backend is None else (
            f" backend={self.backend.name} workers={self.backend.workers}")
        return (f"<{self._kind}{where} running={self.running} waiting={self.waiting} "
                f"max_concurrent={self.max_concurrent}>")


def _check_backend_options(options: Mapping[str, Any]) -> None:
    from streamlab.distributed.backend import PIPELINE_OPTIONS

    unknown = set(options) - PIPELINE_OPTIONS
    if unknown:
        raise PoolError(f"unsupported pipeline options {sorted(unknown)}: a backend passes on "
                        f"only {sorted(PIPELINE_OPTIONS)}")
    if options.get("outputs", "collect") not in ("collect", "discard"):
        raise PoolError(f"outputs must be 'collect' or 'discard' with a backend, got "
                        f"{options['outputs']!r}")
