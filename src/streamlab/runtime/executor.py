"""The process executor: run one node in a worker process, frames through shared memory.

``"executor": "process"`` on a node makes the runtime replace it by a :class:`ProcessNode`
proxy. The proxy starts a worker process (``spawn``), builds the real node there from the same
class and config (``on_create``, ``on_start``), and forwards each frame to it:

* The input block (channels x samples) is copied once into a shared-memory file in
  ``/dev/shm``; the worker wraps it as a read-only frame without copying.
* The worker copies its output block into an output slot, also shared memory, and the proxy
  wraps that slot as the output frame **without copying**. A slot is reused only after the last
  reader in the main process is gone (the same rule as :class:`~streamlab.buffers.BufferPool`),
  so downstream nodes may hold output frames as long as they like.
* Frames whose channels differ in length, and list outputs, fall back to pickling.

Order and state are preserved: the proxy sends one frame at a time and the worker processes
them in order, keeping the node's state between frames. The node's task waits on the worker
without blocking the event loop, so the rest of the pipeline runs meanwhile on the main core:
that is where the parallelism comes from (e.g. a heavy filter in the worker and an FFT on the
main process work on consecutive frames at the same time).

Errors raised by the node in the worker come back as :class:`RemoteNodeError` subclasses named
after the original exception type (so ``error_policy.on`` lists still match), and the node's
error policy applies as usual. If the worker dies, the pending frame fails with
``WorkerDied``; a restart strategy starts a fresh worker (a restart builds a new proxy).
The node class must be importable at module level in the worker (it is pickled by reference).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import mmap
import multiprocessing as mp
import os
import pickle
import traceback
import weakref
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from streamlab.errors import EndOfStream, NodeError, StreamLabError
from streamlab.frame import DataFrame, Payload
from streamlab.node import NodeContext, ProcessingNode

__all__ = ["ProcessNode", "RemoteNodeError", "WorkerDied"]

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
_ids = itertools.count()


class RemoteNodeError(StreamLabError):
    """An exception raised by a node running in a worker process."""


class WorkerDied(RemoteNodeError):
    """The worker process ended unexpectedly."""


_remote_types: dict[str, type[RemoteNodeError]] = {}


def _remote_error(type_name: str, message: str) -> RemoteNodeError:
    cls = _remote_types.get(type_name)
    if cls is None:
        cls = type(type_name, (RemoteNodeError,), {"__module__": __name__})
        _remote_types[type_name] = cls
    return cls(f"{message}")


class _Region:
    """A shared-memory file mapped into this process."""

    __slots__ = ("path", "size", "map")

    def __init__(self, path: str, size: int, create: bool) -> None:
        self.path = path
        self.size = size
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def array(self, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape)) if shape else 0
        return np.frombuffer(self.map, dtype=np.float64, count=count).reshape(shape)

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _new_region(size: int) -> _Region:
    base = _SHM_DIR or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, f"streamlab-{os.getpid()}-{next(_ids)}")
    return _Region(path, max(size, 8), create=True)


# -- worker side ----------------------------------------------------------------------------
def _worker_main(conn: Connection) -> None:  # pragma: no cover - runs in the child process
    regions: dict[str, _Region] = {}
    node: ProcessingNode | None = None
    loop = asyncio.new_event_loop()

    def call(fn: Any, *args: Any) -> Any:
        out = fn(*args)
        if asyncio.iscoroutine(out):
            out = loop.run_until_complete(out)
        return out

    def region(path: str, size: int) -> _Region:
        r = regions.get(path)
        if r is None or r.size != size:
            r = regions[path] = _Region(path, size, create=False)
        return r

    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        kind = msg[0]
        try:
            if kind == "init":
                cls, config, ctx_fields = msg[1], msg[2], msg[3]
                node = cls.create(config, NodeContext(**ctx_fields))
                call(node.on_start)
                conn.send(("ready",))
            elif kind == "call":
                _, ts, seq, meta, names, shape, inp, pickled, out_slot = msg
                if inp is not None:
                    arr = region(*inp).array(shape)
                    arr.flags.writeable = False
                    frame = DataFrame._make(ts, seq, Payload._of_block(tuple(names), arr), meta)
                else:
                    frame = pickle.loads(pickled)
                out = call(node.process, frame)  # type: ignore[union-attr]
                conn.send(_encode_result(out, out_slot, region))
            elif kind == "stop":
                if node is not None:
                    call(node.on_stop)
                conn.send(("stopped",))
                return
        except Exception as exc:
            conn.send(("error", type(exc).__name__, str(exc), traceback.format_exc(limit=8)))


def _encode_result(out: Any, out_slot: tuple[str, int] | None, region: Any) -> tuple[Any, ...]:
    if out is None:
        return ("none",)
    if isinstance(out, DataFrame) and out_slot is not None and out.channels:
        try:
            block = out.block()
        except Exception:
            block = None
        if block is not None and block.nbytes <= out_slot[1]:
            dst = region(*out_slot).array(block.shape)
            np.copyto(dst, block)
            return ("block", out.timestamp, out.sequence_id, dict(out.metadata),
                    list(out.channels), block.shape)
    return ("pickled", pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))


# -- main side ------------------------------------------------------------------------------
class _OutputSlots:
    """Output regions; one is reused only after every frame using it is gone."""

    def __init__(self) -> None:
        self.free: list[_Region] = []
        self.all: list[_Region] = []
        self.size = 0

    def take(self, nbytes: int) -> _Region:
        if nbytes > self.size:
            self.size = nbytes
            self.free = [r for r in self.free if r.size >= nbytes]
        if self.free:
            return self.free.pop()
        r = _new_region(self.size)
        self.all.append(r)
        return r

    def wrap(self, r: _Region, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        owner = np.frombuffer(r.map, dtype=np.float64, count=count)
        weakref.finalize(owner, self.free.append, r)  # back only when no reader is left
        owner.flags.writeable = False
        return owner.reshape(shape)

    def unlink_all(self) -> None:
        for r in self.all:
            r.unlink()


class ProcessNode(ProcessingNode):
    """Proxy that runs another node type in a worker process. See the module docstring."""

    def __init__(self, target: type[ProcessingNode], config: Any, context: NodeContext) -> None:
        super().__init__()
        self.target = target
        self.config = config
        self.context = context
        self._proc: Any = None
        self._conn: Connection | None = None
        self._input: _Region | None = None
        self._slots = _OutputSlots()
        self._pending: asyncio.Future[Any] | None = None
        self._reading = False
        try:
            pickle.dumps(target)
        except Exception as exc:
            raise NodeError(context.node_id, f"type {target.__name__} cannot run in a process "
                                             "executor: its class must be importable at module "
                                             f"level ({exc})") from exc

    @classmethod
    def description(cls) -> str:
        return "Runs a node in a worker process."

    async def on_start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_main, args=(child,), daemon=True,
                                 name=f"streamlab-{self.context.node_id}")
        self._proc.start()
        child.close()
        self._conn = parent
        fields = {"node_id": self.context.node_id, "pipeline": self.context.pipeline,
                  "inputs": self.context.inputs, "outputs": self.context.outputs}
        parent.send(("init", self.target, self.config, fields))
        reply = await self._receive()
        if reply[0] != "ready":
            raise self._error(reply)

    async def _receive(self) -> Any:
        loop = asyncio.get_running_loop()
        conn = self._conn
        assert conn is not None
        fut = loop.create_future()
        self._pending = fut

        def readable() -> None:
            if fut.done():
                return
            try:
                fut.set_result(conn.recv())
            except (EOFError, OSError) as exc:
                fut.set_exception(WorkerDied(f"worker of node {self.context.node_id!r} died "
                                             f"(exit code {self._proc.exitcode}): {exc}"))

        loop.add_reader(conn.fileno(), readable)
        try:
            return await fut
        finally:
            loop.remove_reader(conn.fileno())
            self._pending = None

    def _error(self, reply: tuple[Any, ...]) -> RemoteNodeError:
        if reply[0] == "error":
            err = _remote_error(reply[1], reply[2])
            err.remote_traceback = reply[3]  # type: ignore[attr-defined]
            return err
        return RemoteNodeError(f"unexpected reply {reply[0]!r} from the worker")

    async def process(self, frame: DataFrame) -> Any:
        conn = self._conn
        if conn is None:
            raise WorkerDied(f"worker of node {self.context.node_id!r} is not running")
        inp = pickled = None
        shape: tuple[int, ...] = ()
        names = list(frame.channels) if frame is not None else []
        try:
            block = frame.block() if frame is not None else None
        except Exception:
            block = None
        if block is not None and block.size:
            shape = block.shape
            if self._input is None or self._input.size < block.nbytes:
                if self._input is not None:
                    self._input.unlink()
                self._input = _new_region(block.nbytes)
            np.copyto(self._input.array(shape), block)
            inp = (self._input.path, self._input.size)
        else:
            pickled = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
        nbytes = block.nbytes if block is not None else 0
        slot = self._slots.take(max(nbytes, 8))
        if frame is None:
            conn.send(("call", 0, 0, {}, [], (), None, pickled, (slot.path, slot.size)))
        else:
            conn.send(("call", frame.timestamp, frame.sequence_id, dict(frame.metadata), names,
                       shape, inp, pickled, (slot.path, slot.size)))
        reply = await self._receive()
        kind = reply[0]
        if kind == "block":
            _, ts, seq, meta, out_names, out_shape = reply
            arr = self._slots.wrap(slot, tuple(out_shape))
            return DataFrame(ts, seq, Payload.from_block(out_names, arr), meta)
        self._slots.free.append(slot)
        if kind == "none":
            return None
        if kind == "pickled":
            return pickle.loads(reply[1])
        if kind == "error" and reply[1] == "EndOfStream":
            raise EndOfStream(self.context.node_id)
        raise self._error(reply)

    async def on_stop(self) -> None:
        conn, proc = self._conn, self._proc
        self._conn = None
        try:
            if conn is not None and proc is not None and proc.is_alive():
                conn.send(("stop",))
                with contextlib.suppress(Exception):
                    reply = await asyncio.wait_for(self._receive_on(conn), 10)
                    if reply[0] == "error":
                        raise self._error(reply)
        finally:
            await self._shutdown(proc, conn)

    async def _receive_on(self, conn: Connection) -> Any:
        self._conn = conn
        try:
            return await self._receive()
        finally:
            self._conn = None

    async def _shutdown(self, proc: Any, conn: Connection | None) -> None:
        if proc is not None:
            await asyncio.get_running_loop().run_in_executor(None, proc.join, 5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if conn is not None:
            conn.close()
        if self._input is not None:
            self._input.unlink()
        self._slots.unlink_all()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.is_alive():
            proc.kill()
        for r in getattr(self, "_slots", _OutputSlots()).all:
            r.unlink()
        if getattr(self, "_input", None) is not None:
            self._input.unlink()
