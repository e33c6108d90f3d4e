"""Where a pipeline instance runs: the backend interface, an in-process default and a fake.

A :class:`Backend` has four methods (httpcore's network backend has three)::

    await backend.start()              bring the workers up (idempotent)
    await backend.run(request)         run one instance to its end on some worker
    await backend.snapshot()           live metrics of the instances running now
    await backend.aclose()             stop the workers (idempotent)

plus two read-only attributes: ``name`` (``"local"``, ``"fake"``, ``"ray"``) and ``workers``
(how many workers can take work now).

**The contract of** :meth:`Backend.run`. It returns an :class:`InstanceResult` once the instance
has ended (its report says ``completed`` or ``forced``). If the pipeline failed it raises
:class:`~streamlab.errors.PipelineError` with the same message a local run gives (the cause's
type and text are in the message; a foreign cause object may not cross a process boundary).
If the *worker* failed (a killed Ray actor, a worker that rejects the config because a node
type is not installed there) it raises :class:`~streamlab.errors.BackendError` naming the
instance and the worker. Cancelled, it stops the instance (forced: frames in flight are
counted dropped) before ``CancelledError`` propagates.

One instance runs inside one worker, all its nodes in one event loop: crossing a process
boundary costs about 1.7 ms per call with Ray, against microseconds per frame inside a
pipeline, so a backend never splits a pipeline across workers.

**Frames across a boundary.** Every frame goes through :mod:`streamlab.wire` (as pickle and
the process executor do); :func:`pack_frames` batches the parts of many frames into a few
arrays (one 3-D ``frames x channels x samples`` block when every frame has the same channels
and length, per-frame arrays otherwise; equal metadata is stored once) and
:func:`unpack_frames` rebuilds them. Ray moves numpy arrays without copying them through pickle.

:class:`InProcessBackend` (the default) runs instances as tasks on the caller's event loop,
like :class:`~streamlab.runtime.PipelinePool`. :class:`FakeBackend` is a test double: it runs
instances the same way after a pack/unpack round trip, and lets a test hold, release and
"kill" runs to drive a pool through every path without a cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streamlab import wire
from streamlab.config import PipelineSpec, load_config
from streamlab.errors import BackendError, ConfigError
from streamlab.frame import DataFrame
from streamlab.runtime.async_pipeline import AsyncPipeline
from streamlab.runtime.pool import PoolResult

__all__ = [
    "Backend",
    "FakeBackend",
    "InProcessBackend",
    "InstanceResult",
    "InstanceRunner",
    "InstanceSnapshot",
    "PackedFrames",
    "RunRequest",
    "config_key",
    "pack_frames",
    "unpack_frames",
]

#: AsyncPipeline keywords a backend passes on (a clock or a stream of outputs cannot travel).
PIPELINE_OPTIONS = frozenset({"outputs", "fusion", "debug", "output_capacity"})


@dataclass(frozen=True)
class RunRequest:
    """One instance to run: its name, the validated config as JSON data, and its triggers."""

    instance: str
    config: Mapping[str, Any]
    config_key: str
    triggers: int = 1
    frames: tuple[DataFrame, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


#: What :meth:`Backend.run` returns: the pool's one result shape, with ``report`` as
#: ``RunReport.to_dict()`` (plain data) and ``worker`` naming where the instance ran.
InstanceResult = PoolResult


@dataclass(frozen=True)
class InstanceSnapshot:
    """A running instance's live state: per node, ``NodeMetricsSnapshot.to_dict()``."""

    instance: str
    worker: str
    state: str
    nodes: dict[str, dict[str, Any]]


@runtime_checkable
class Backend(Protocol):
    """Runs pipeline instances somewhere. See the module docstring for the contract."""

    name: str

    @property
    def workers(self) -> int: ...

    async def start(self) -> None: ...

    async def run(self, request: RunRequest) -> InstanceResult: ...

    async def snapshot(self) -> dict[str, InstanceSnapshot]: ...

    async def aclose(self) -> None: ...


def config_key(config: Mapping[str, Any]) -> str:
    """A short stable digest of a config's JSON: workers cache validated specs under it."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# -- frames across a process boundary ----------------------------------------------------------
@dataclass(frozen=True)
class PackedFrames:
    """Frames as a few arrays and plain data (picklable; see :func:`pack_frames`)."""

    timestamps: np.ndarray                 # int64, one per frame
    sequence_ids: np.ndarray               # int64, one per frame
    names: tuple[str, ...] | None          # shared channel names when ``blocks`` is set
    blocks: np.ndarray | None              # frames x channels x samples, when uniform
    ragged: tuple[dict[str, np.ndarray], ...] | None  # per-frame channels otherwise
    metadata: tuple[Mapping[str, str], ...]   # equal neighbours share one dict (pickled once)
    events: tuple[tuple[Any, ...], ...] | None = None  # per frame, wire's event tuples (if any)

    def __len__(self) -> int:
        return len(self.timestamps)


def _uniform(frames: Sequence[DataFrame]) -> bool:
    names, n = frames[0].payload.names, frames[0].n_samples
    for f in frames:
        p = f.payload
        if p.names != names or f.n_samples != n:
            return False
        if not p.is_block and any(len(p[c]) != n for c in names):
            return False
    return True


def _as_block(data: np.ndarray | dict[str, np.ndarray], n_samples: int) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    return np.stack(list(data.values())) if data else np.empty((0, n_samples))


def pack_frames(frames: Iterable[DataFrame]) -> PackedFrames:
    """Pack frames for another process: each through :func:`streamlab.wire.frame_to_parts`,
    uniform ones stacked into one array (one copy of the samples)."""
    frames = list(frames)
    parts = [wire.frame_to_parts(f) for f in frames]
    ts = np.fromiter((p[0] for p in parts), np.int64, len(parts))
    seq = np.fromiter((p[1] for p in parts), np.int64, len(parts))
    metas: list[Mapping[str, str]] = []
    for p in parts:
        meta = p[4]  # already a fresh plain dict
        # equal neighbours share one dict: pickle writes it once
        metas.append(metas[-1] if metas and metas[-1] == meta else meta)
    events = (tuple(p[5] if len(p) > 5 else () for p in parts)
              if any(f.events for f in frames) else None)
    if frames and _uniform(frames):
        n = frames[0].n_samples
        blocks = np.stack([_as_block(p[3], n) for p in parts])
        return PackedFrames(ts, seq, parts[0][2], blocks, None, tuple(metas), events)
    ragged = tuple(p[3] if isinstance(p[3], dict) else dict(zip(p[2], p[3])) for p in parts)
    return PackedFrames(ts, seq, None, None, ragged, tuple(metas), events)


def unpack_frames(packed: PackedFrames) -> list[DataFrame]:
    """Rebuild the frames (:func:`streamlab.wire.frame_from_parts`); samples are copied once
    out of a (possibly shared) buffer."""
    proxies: dict[int, Mapping[str, str]] = {}
    metas = [proxies.setdefault(id(m), MappingProxyType(dict(m))) for m in packed.metadata]
    ts, seq = packed.timestamps.tolist(), packed.sequence_ids.tolist()
    ev: tuple[tuple[Any, ...], ...] = packed.events or ((),) * len(ts)

    def from_parts(i: int, *parts: Any) -> DataFrame:
        return wire.frame_from_parts(parts + ((ev[i],) if ev[i] else ()))

    if packed.blocks is not None:
        # Own the samples: a zero-copy array from Ray's object store would pin the store.
        blocks = np.array(packed.blocks, dtype=np.float64, copy=True)
        names = tuple(packed.names or ())
        return [from_parts(i, ts[i], seq[i], names, blocks[i], metas[i])
                for i in range(len(ts))]
    assert packed.ragged is not None
    return [from_parts(i, ts[i], seq[i], tuple(packed.ragged[i]),
                       {k: np.array(v, dtype=np.float64, copy=True)
                        for k, v in packed.ragged[i].items()}, metas[i])
            for i in range(len(ts))]


# -- the worker's core (plain Python: used in-process and inside a Ray actor) ------------------
class InstanceRunner:
    """Builds and runs instances inside one worker; caches validated specs; tracks live runs.

    :meth:`run` raises whatever the pipeline raises (PipelineError on a failed run); cancelled,
    AsyncPipeline.run forces the instance to stop before CancelledError propagates.
    """

    _CACHE_SIZE = 16

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._specs: dict[str, PipelineSpec] = {}
        self.running: dict[int, AsyncPipeline] = {}  # by id: pools sharing a worker may reuse names

    def spec(self, config: Mapping[str, Any], key: str) -> PipelineSpec:
        """The validated spec of ``config`` (validated once per key; ConfigError if invalid)."""
        spec = self._specs.get(key)
        if spec is None:
            if len(self._specs) >= self._CACHE_SIZE:
                self._specs.pop(next(iter(self._specs)))
            spec = self._specs[key] = load_config(config)
        return spec

    async def run(self, instance: str, config: Mapping[str, Any], key: str, triggers: int,
                  frames: Sequence[DataFrame] | None, options: Mapping[str, Any],
                  ) -> tuple[dict[str, Any], dict[str, list[DataFrame]]]:
        """Run one instance to its end; returns ``(report.to_dict(), results)``."""
        pipe = AsyncPipeline(self.spec(config, key), instance=instance, **options)
        self.running[id(pipe)] = pipe
        try:
            report = await pipe.run(triggers=triggers, frames=frames)
        finally:
            del self.running[id(pipe)]
        return report.to_dict(), pipe.results

    def snapshot(self) -> list[dict[str, Any]]:
        """Plain data for each running instance (see :class:`InstanceSnapshot`)."""
        return [{"instance": pipe.name, "worker": self.worker, "state": pipe.state,
                 "nodes": {k: m.snapshot().to_dict() for k, m in pipe.metrics.items()}}
                for pipe in list(self.running.values())]


class InProcessBackend:
    """The default backend: instances run as tasks on the caller's event loop (one worker)."""

    name = "local"

    def __init__(self) -> None:
        self._runner = InstanceRunner("local")
        self._closed = False

    @property
    def workers(self) -> int:
        return 0 if self._closed else 1

    async def start(self) -> None:
        """Nothing to start; refused once closed."""
        if self._closed:
            raise BackendError("the in-process backend is closed")

    async def run(self, request: RunRequest) -> InstanceResult:
        """Run the instance here; PipelineError if it fails, forced stop if cancelled."""
        if self._closed:
            raise BackendError(f"instance {request.instance!r}: the in-process backend is closed")
        report, results = await self._runner.run(
            request.instance, request.config, request.config_key, request.triggers,
            request.frames, request.options)
        return InstanceResult(request.instance, report, results, self._runner.worker)

    async def snapshot(self) -> dict[str, InstanceSnapshot]:
        return {s["instance"]: InstanceSnapshot(**s) for s in self._runner.snapshot()}

    async def aclose(self) -> None:
        """Refuse new runs (runs in progress belong to their callers, who cancel them)."""
        self._closed = True

    def __repr__(self) -> str:
        return f"<InProcessBackend running={len(self._runner.running)}>"


class FakeBackend(InProcessBackend):
    """Test double: runs instances in-process after a pack/unpack round trip, under control.

    ``hold()`` makes new runs wait before they start until ``release()``; ``kill(name)``
    makes a held (or later) run of that instance fail as if its worker died (BackendError);
    ``reject`` makes every run fail with a worker-side ConfigError. ``requests``, ``started``,
    ``cancelled`` and ``finished`` record what happened, in order.
    """

    name = "fake"

    def __init__(self, workers: int = 2) -> None:
        super().__init__()
        self._workers = workers
        self.requests: list[RunRequest] = []
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.killed: set[str] = set()
        self.reject: str | None = None
        self.start_calls = 0
        self.close_calls = 0
        self._gate = asyncio.Event()
        self._gate.set()

    @property
    def workers(self) -> int:
        return 0 if self._closed else self._workers

    async def start(self) -> None:
        self.start_calls += 1
        await super().start()

    def hold(self) -> None:
        """New and waiting runs wait before starting their pipelines."""
        self._gate.clear()

    def release(self) -> None:
        """Let every held run go on."""
        self._gate.set()

    def kill(self, instance: str) -> None:
        """The worker running ``instance`` "dies": its run raises BackendError when it resumes."""
        self.killed.add(instance)

    async def run(self, request: RunRequest) -> InstanceResult:
        self.requests.append(request)
        try:
            await self._gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(request.instance)
            raise
        worker = f"fake-{len(self.started) % max(self._workers, 1)}"
        if request.instance in self.killed:
            raise BackendError(f"instance {request.instance!r}: worker {worker!r} died "
                               "(killed by the test)")
        if self.reject is not None:
            raise BackendError(f"instance {request.instance!r}: worker {worker!r} rejected "
                               f"the config: {ConfigError(self.reject)}")
        self.started.append(request.instance)
        frames = None if request.frames is None else unpack_frames(pack_frames(request.frames))
        wire = RunRequest(request.instance, json.loads(json.dumps(request.config)),
                          request.config_key, request.triggers,
                          None if frames is None else tuple(frames), request.options)
        try:
            result = await super().run(wire)
        except asyncio.CancelledError:
            self.cancelled.append(request.instance)
            raise
        self.finished.append(request.instance)
        results = {k: unpack_frames(pack_frames(v)) for k, v in result.results.items()}
        return InstanceResult(result.instance, result.report, results, worker)

    async def aclose(self) -> None:
        self.close_calls += 1
        await super().aclose()

    def __repr__(self) -> str:
        return (f"<FakeBackend workers={self._workers} started={len(self.started)} "
                f"held={not self._gate.is_set()}>")
