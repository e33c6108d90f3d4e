"""RayBackend: pipeline instances inside Ray actors, one whole instance per actor call.

Each actor is a :class:`PipelineWorker` (a Ray *async* actor): it runs many instances at once
on its own event loop, each an :class:`~streamlab.runtime.AsyncPipeline` with every node in
that process. Nodes never talk across actors: an actor call costs about 1.7 ms, a frame inside
a pipeline microseconds. Work goes to the live actor with the fewest running instances;
admission (``max_concurrent``) is the driver's :class:`~streamlab.distributed.DistributedPool`.

**Start.** :meth:`RayBackend.start` joins the Ray cluster already initialised in this process,
or the one at ``address`` (or ``$RAY_ADDRESS``), or else starts a private local one on loopback with
:func:`init_local_ray` (capped object store, no dashboard) and shuts it down in
:meth:`RayBackend.aclose`. Starting Ray blocks the event loop for the 3-5 s ``ray.init`` takes.
Ray is imported only then; without it, :func:`streamlab.errors.missing_extra` says what to
install.

**Failure.** A pipeline that fails raises PipelineError on the driver with the worker's
message. An actor that dies (killed, out of memory) fails every instance it was running with a
BackendError naming the instance and the actor. The backend then finds out whether Ray restarts
it: it reads the actor's state from Ray's control store (``ALIVE``, ``RESTARTING``, ``DEAD``)
and asks the actor for its pid, again and again for up to ``start_timeout`` seconds while the
actor is restarting (a call can reach the old process before Ray has noticed its death, and a
restart takes seconds on a busy machine). An actor that answers was restarted (``__init__``
runs again) and takes new work; one that Ray reports ``DEAD``, or that does not answer in
time, is dropped, and when no actor is left every run raises BackendError.

**Cancellation.** A cancelled run calls ``ray.cancel`` on its actor task and asks the actor to
cancel the run by its token (``PipelineWorker.cancel``: Ray can miss a cancel that arrives
before the actor has scheduled the coroutine); inside the actor the run's coroutine is
cancelled and AsyncPipeline forces the instance to stop. The driver waits up to ``cancel_timeout`` seconds for that; an actor that does not confirm is killed
(and restarted if it may be), so no cancelled instance keeps running unseen.

**Node types.** Workers build pipelines from their own registry: built-in nodes and those of
installed ``streamlab.nodes`` entry points. ``worker_imports`` names modules each actor imports
first (modules that call ``register_node``), for node types defined in your own code.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from streamlab.distributed.backend import (
    InstanceResult,
    InstanceRunner,
    InstanceSnapshot,
    PackedFrames,
    RunRequest,
    pack_frames,
    unpack_frames,
)
from streamlab.errors import BackendError, ConfigError, PipelineError, missing_extra

__all__ = ["PipelineWorker", "RayBackend", "import_ray", "init_local_ray"]

log = logging.getLogger("streamlab.distributed")

#: Object store cap for a private local cluster: results are copied out, so little is needed.
DEFAULT_OBJECT_STORE_BYTES = 128 * 1024 * 1024


def import_ray() -> Any:
    """Import Ray, keeping a local cluster on loopback; BackendError naming the extra if missing."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:
        raise missing_extra("ray", "ray") from exc
    return ray


def init_local_ray(num_cpus: int = 2, object_store_memory: int = DEFAULT_OBJECT_STORE_BYTES,
                   **options: Any) -> Any:
    """Start a private single-machine Ray cluster bound to 127.0.0.1; returns the ray module.

    Every Ray process listens on loopback only, even if ``ray`` was imported before
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` could be set. No dashboard, a capped object store, Ray's own logging left alone. ``options`` go to
    ``ray.init`` (and override these defaults). Blocks for the few seconds Ray needs.
    """
    ray = import_ray()
    consts = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if getattr(consts, "ENABLE_RAY_CLUSTER", False):
        # Ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set; Ray reads it
        # once, at import, and would otherwise bind every interface (checked by the tests).
        consts.ENABLE_RAY_CLUSTER = False  # type: ignore[union-attr]
    settings: dict[str, Any] = dict(
        address="local", num_cpus=num_cpus, object_store_memory=object_store_memory,
        include_dashboard=False, _node_ip_address="127.0.0.1", configure_logging=False,
    )
    settings.update(options)
    ray.init(**settings)
    return ray


class PipelineWorker:
    """The actor: runs instances of any config it is sent; Ray makes it async (one loop).

    Wire format: frames travel as :class:`PackedFrames`; a reply is a dict with ``ok``. A
    failed pipeline or a config this worker cannot build is a reply (``ok`` false), not an
    exception, so the driver raises StreamLab's own errors with the worker's message.
    """

    _CANCELLED_KEPT = 1024  # tokens cancelled before (or after) their run: a bounded memory

    def __init__(self, index: int, imports: Sequence[str] = ()) -> None:
        for module in imports:
            importlib.import_module(module)
        self.label = f"ray-worker-{index} (pid {os.getpid()})"
        self._runner = InstanceRunner(self.label)
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._cancelled: dict[str, None] = {}

    async def info(self) -> dict[str, Any]:
        """Who and where this worker is (also a liveness probe)."""
        return {"label": self.label, "pid": os.getpid(), "running": len(self._runner.running)}

    async def run(self, token: str, instance: str, config: Mapping[str, Any], key: str,
                  triggers: int, frames: PackedFrames | None,
                  options: Mapping[str, Any]) -> dict[str, Any]:
        """Run one instance to its end; cancelled (``ray.cancel`` or :meth:`cancel`), forced."""
        if token in self._cancelled:
            del self._cancelled[token]
            raise asyncio.CancelledError(f"{instance!r} was cancelled before it started")
        task = asyncio.current_task()
        assert task is not None
        self._tasks[token] = task
        trigger_frames = None if frames is None else unpack_frames(frames)
        try:
            report, results = await self._runner.run(instance, config, key, triggers,
                                                     trigger_frames, options)
        except ConfigError as exc:
            return {"ok": False, "kind": "config", "error": str(exc), "worker": self.label}
        except PipelineError as exc:
            return {"ok": False, "kind": "pipeline", "error": str(exc), "node_id": exc.node_id,
                    "worker": self.label}
        finally:
            del self._tasks[token]
        return {"ok": True, "worker": self.label, "report": report,
                "outputs": {k: pack_frames(v) for k, v in results.items()}}

    async def cancel(self, token: str) -> bool:
        """Cancel the run ``token`` (True), or make it end at once if it has not begun (False).

        The driver calls this as well as ``ray.cancel``: Ray can miss a cancel that arrives
        before the actor has scheduled the task's coroutine (ray-project/ray#52628).
        """
        task = self._tasks.get(token)
        if task is not None:
            task.cancel()
            return True
        if len(self._cancelled) >= self._CANCELLED_KEPT:
            self._cancelled.pop(next(iter(self._cancelled)))
        self._cancelled[token] = None
        return False

    async def snapshot(self) -> list[dict[str, Any]]:
        """Plain-data metrics of the instances running in this worker now."""
        return self._runner.snapshot()


class _Slot:
    """The driver's view of one actor."""

    __slots__ = ("index", "actor", "label", "running", "alive")

    def __init__(self, index: int, actor: Any) -> None:
        self.index = index
        self.actor = actor
        self.label = f"ray-worker-{index}"
        self.running = 0
        self.alive = True


class RayBackend:
    """Runs instances in ``actors`` Ray actors. See the module docstring for the behaviour."""

    name = "ray"

    def __init__(
        self,
        actors: int = 2,
        *,
        address: str | None = None,
        max_restarts: int = 0,
        cpus_per_actor: float = 1.0,
        cancel_timeout: float = 5.0,
        start_timeout: float = 60.0,
        worker_imports: Sequence[str] = (),
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
            raise BackendError(f"actors must be an int >= 1, got {actors!r}")
        if max_restarts < -1:
            raise BackendError(f"max_restarts must be >= -1 (-1: always), got {max_restarts!r}")
        self.actors = actors
        self.address = address
        self.max_restarts = max_restarts
        self.cpus_per_actor = cpus_per_actor
        self.cancel_timeout = cancel_timeout
        self.start_timeout = start_timeout
        self.worker_imports = tuple(worker_imports)
        self.init_options = dict(init_options or {})
        self._ray: Any = None
        self._owns_ray = False
        self._slots: list[_Slot] = []
        self._turn = itertools.count()
        self._tokens = itertools.count()
        self._closed = False

    @property
    def workers(self) -> int:
        return sum(s.alive for s in self._slots)

    async def start(self) -> None:
        """Join or start Ray and wait (``start_timeout``) until every actor answers."""
        if self._closed:
            raise BackendError("the Ray backend is closed")
        if self._slots:
            return
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")
            if address is None:
                init_local_ray(**self.init_options)
            else:
                ray.init(address=address, **self.init_options)
            self._owns_ray = True
        cls = ray.remote(num_cpus=self.cpus_per_actor, max_restarts=self.max_restarts)(
            PipelineWorker)
        slots = [_Slot(i, cls.remote(i, self.worker_imports)) for i in range(self.actors)]
        try:
            infos = await asyncio.wait_for(
                asyncio.gather(*(s.actor.info.remote() for s in slots)), self.start_timeout)
        except (TimeoutError, ray.exceptions.RayError) as exc:
            for s in slots:
                ray.kill(s.actor, no_restart=True)
            raise BackendError(f"Ray actors did not start within {self.start_timeout} s: "
                               f"{type(exc).__name__}: {exc}") from exc
        for s, info in zip(slots, infos):
            s.label = info["label"]
        self._slots = slots

    def _pick(self, instance: str) -> _Slot:
        live = [s for s in self._slots if s.alive]
        if not live:
            raise BackendError(f"instance {instance!r}: no Ray worker left "
                               f"(all {self.actors} actors died; max_restarts={self.max_restarts})")
        least = min(s.running for s in live)
        ties = [s for s in live if s.running == least]
        return ties[next(self._turn) % len(ties)]

    async def run(self, request: RunRequest) -> InstanceResult:
        """Run on the least busy live actor; see the module docstring for failures."""
        if self._closed:
            raise BackendError(f"instance {request.instance!r}: the Ray backend is closed")
        if not self._slots:
            raise BackendError(f"instance {request.instance!r}: start() the Ray backend first")
        ray = self._ray
        slot = self._pick(request.instance)
        packed = None if request.frames is None else pack_frames(request.frames)
        token = f"{request.instance}@{next(self._tokens)}"
        slot.running += 1
        try:
            ref = slot.actor.run.remote(token, request.instance, dict(request.config),
                                        request.config_key, request.triggers, packed,
                                        dict(request.options))
            try:
                reply = await ref
            except asyncio.CancelledError:
                await self._cancel(slot, ref, token, request.instance)
                raise
            except ray.exceptions.RayActorError as exc:
                raise await self._actor_died(slot, request.instance, exc) from exc
            except ray.exceptions.RayError as exc:
                raise BackendError(f"instance {request.instance!r} on {slot.label}: "
                                   f"{type(exc).__name__}: {exc}") from exc
        finally:
            slot.running -= 1
        return self._result(request.instance, reply)

    @staticmethod
    def _result(instance: str, reply: dict[str, Any]) -> InstanceResult:
        if not reply["ok"]:
            if reply["kind"] == "pipeline":
                raise PipelineError(reply["error"], node_id=reply["node_id"])
            raise BackendError(f"instance {instance!r}: worker {reply['worker']} could not "
                               f"build the pipeline: {reply['error']}")
        results = {k: unpack_frames(v) for k, v in reply["outputs"].items()}
        return InstanceResult(instance, reply["report"], results, reply["worker"])

    async def _cancel(self, slot: _Slot, ref: Any, token: str, instance: str) -> None:
        """Cancel the remote run and wait (bounded) for it; kill a worker that ignores it."""
        ray = self._ray
        ray.cancel(ref)
        slot.actor.cancel.remote(token)  # its reply does not matter; the run's end does
        done, _ = await asyncio.wait({asyncio.wrap_future(ref.future())},
                                     timeout=self.cancel_timeout)
        for fut in done:
            fut.exception()  # the expected TaskCancelledError (or the run's own end)
        if not done:
            log.warning("instance %r on %s did not stop within %s s of ray.cancel: killing the "
                        "actor (its other instances fail with BackendError)",
                        instance, slot.label, self.cancel_timeout)
            ray.kill(slot.actor, no_restart=False)

    async def _actor_died(self, slot: _Slot, instance: str, exc: BaseException) -> BackendError:
        """The error for a run whose actor died; finds out (bounded) whether Ray restarted it."""
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        label, fate = slot.label, "it is gone"
        if slot.alive and self.max_restarts != 0:
            info = await self._await_restart(slot)
            if info is None:
                slot.alive = False
            else:
                slot.label = info["label"]
                fate = f"Ray restarted it as {slot.label}"
        else:
            slot.alive = False
        if not slot.alive:
            fate = f"it is gone; {self.workers} of {self.actors} workers remain"
        return BackendError(f"instance {instance!r}: Ray actor {label} died while running "
                            f"it ({reason}); {fate}")

    async def _await_restart(self, slot: _Slot) -> dict[str, Any] | None:
        """The restarted actor's ``info``, or None if it is dead for good (or not back in time).

        A restarting actor is not a dead one: a probe sent just after the death can fail
        (it reached the old process, or Ray reports the actor unavailable) although Ray is
        restarting it. So probe until ``start_timeout``, and give up early only when Ray's
        control store says ``DEAD`` (no restart left, or killed with ``no_restart``).
        """
        ray = self._ray
        deadline = time.monotonic() + self.start_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                return await asyncio.wait_for(slot.actor.info.remote(), left)
            except TimeoutError:
                return None
            except ray.exceptions.RayActorError:
                pass  # dead, or restarting: Ray's control store tells which
            except ray.exceptions.RayError:
                return None  # any other failure to answer: not a worker to send work to
            if await self._actor_state(slot) == "DEAD":
                return None
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def _actor_state(self, slot: _Slot) -> str | None:
        """The actor's state in Ray's control store (``ALIVE``, ``RESTARTING``, ``DEAD``...).

        None if Ray cannot say (the call is Ray's developer API): the probe loop then waits
        for an answer until ``start_timeout``, which is slower for a dead actor but not wrong.
        """
        try:
            from ray._private import state as ray_state

            actor_id = slot.actor._actor_id.hex()
            info = await asyncio.to_thread(ray_state.actors, actor_id)
        except Exception as exc:  # noqa: BLE001 - a developer API: unknown state is the policy
            log.debug("state of %s unknown: %s: %s", slot.label, type(exc).__name__, exc)
            return None
        state = info.get("State") if isinstance(info, dict) else None
        return state if isinstance(state, str) else None

    async def snapshot(self) -> dict[str, InstanceSnapshot]:
        """Live metrics from every live actor (each asked at most ``cancel_timeout`` s)."""
        ray = self._ray
        live = [s for s in self._slots if s.alive]
        if not live:
            return {}
        replies = await asyncio.wait_for(
            asyncio.gather(*(s.actor.snapshot.remote() for s in live), return_exceptions=True),
            self.cancel_timeout)
        out: dict[str, InstanceSnapshot] = {}
        for slot, reply in zip(live, replies):
            if isinstance(reply, ray.exceptions.RayActorError):
                continue  # a dying actor: its runs report the death themselves
            if isinstance(reply, BaseException):
                raise BackendError(f"snapshot from {slot.label} failed: {reply}") from reply
            out.update({s["instance"]: InstanceSnapshot(**s) for s in reply})
        return out

    async def aclose(self) -> None:
        """Kill the actors; shut Ray down if this backend started it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        ray, slots = self._ray, self._slots
        self._slots = []
        for s in slots:
            ray.kill(s.actor, no_restart=True)
        if self._owns_ray and ray is not None:
            ray.shutdown()

    async def __aenter__(self) -> RayBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        running = sum(s.running for s in self._slots)
        return (f"<RayBackend actors={self.workers}/{self.actors} running={running} "
                f"max_restarts={self.max_restarts}>")
