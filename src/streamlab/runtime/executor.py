"""The process executor: run one node in a worker process, frames through shared memory.

``"executor": "process"`` on a node makes the runtime replace it by a :class:`ProcessNode`
proxy. The proxy starts a worker process, builds the real node there from the same class and
config (``on_create``, ``on_start``), and forwards each frame to it:

* The input block (channels x samples) is copied once into an input slot, a shared-memory
  region; the worker wraps it as a read-only frame without copying. An input slot is reused
  only once the worker has answered for its frame *and* no object in the worker still refers
  to it (a node may keep its input frame as state).
* The worker copies its output block into an output slot, also shared memory, and the proxy
  wraps that slot as the output frame **without copying**. A slot is reused only after the last
  reader in the main process is gone (the same rule as :class:`~streamlab.buffers.BufferPool`),
  so downstream nodes may hold output frames as long as they like.
* Frames whose channels differ in length, and list outputs, are pickled instead (channel
  arrays, timestamps and metadata: a copy).
* Only small tuples go over the socket to the worker (timestamps, slot numbers; metadata and
  channel names only when they change), length-prefixed, one ``recv`` per wake-up.
* The shared memory has no name: each region is a ``memfd`` (Linux; elsewhere a ``/dev/shm``
  file unlinked as soon as it is opened) whose descriptor goes to the worker with the ``map``
  message. The kernel frees it when the last process using it ends, so nothing is left in
  ``/dev/shm`` however either process ends (killed, crashed), and no resource tracker is
  needed.

**Frames in flight.** :meth:`ProcessNode.submit` sends a frame to the worker at once;
:meth:`ProcessNode.process` (the node interface) collects the result of a submitted frame, or
submits and collects. The node driver's process strategy (``runtime/driver.py``) keeps up to
:attr:`ProcessNode.pipeline_depth` frames submitted before awaiting the oldest, so the worker
does not wait for the event loop; results still come back one per frame, in order. If frame k
fails, the worker *holds*: frames sent after it are not processed until the proxy is asked for
the next result; it then resumes the worker and sends them again, so under ``SkipFrame`` every
frame meets the node's state in order, and after a restart the frames in flight meet the
fresh instance, not the old one. A frame that must be pickled is sent only when no reply is
due (a large message each way could otherwise block both processes).

**Workers.** Processes come from a ``forkserver`` (``spawn`` where there is none) that preloads
numpy, StreamLab, ``scipy.signal`` (if installed), the node's module and the main script: the
first worker of a Python process waits about 1.5 s for the server (in a thread, off the event
loop), later ones about 15 ms. The forkserver is shared by the whole Python process and ends
with it; as with ``spawn``, a main script must guard its entry point with
``if __name__ == "__main__":``. Every worker is stopped by ``on_stop`` (the frames in flight are
finished and discarded, then ``on_stop`` runs in the worker); if that does not end it within
5 s, on a forced stop, a cancelled start or a failure, it is killed. A worker ignores SIGINT
(stopping is the main process's decision) and exits quietly (no traceback) as soon as the main
process is gone, even while its node is busy in ``process``: a thread in the worker watches the
socket for a hang-up. So a dead main process leaves no worker and no shared memory behind.

Errors raised by the node in the worker come back as :class:`RemoteNodeError` subclasses named
after the original exception type (so ``error_policy.on`` lists still match), with the remote
traceback in ``remote_traceback``; the node's error policy applies as usual. If the worker dies,
the pending frame fails with :class:`WorkerDied` (and so does every later frame); a restart
strategy builds a fresh proxy with a fresh worker. The node class must be importable at module
level (it is pickled by reference).

This module owns the main-process side: :class:`ProcessNode`, its input and output slots, its
statistics and the public errors. The worker's loop, the shared-memory regions, the message
link and how workers are started live in :mod:`streamlab.runtime.worker`, which this module
imports (never the other way round).
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamlab.errors import EndOfStream, NodeError, StreamLabError
from streamlab.frame import DataFrame
from streamlab.node import NodeContext, ProcessingNode
from streamlab.runtime.worker import (
    F64,
    Headers,
    Link,
    Region,
    block_of,
    launcher,
    new_region,
    pack,
    start_lock,
    unpack,
    worker_context,
    worker_main,
)

__all__ = ["ExecutorStatistics", "ProcessNode", "RemoteNodeError", "WorkerDied"]

STOP_TIMEOUT_S = 5.0


class RemoteNodeError(StreamLabError):
    """An exception raised by a node running in a worker process."""


class WorkerDied(RemoteNodeError):
    """The worker process ended unexpectedly."""


_remote_types: dict[str, type[RemoteNodeError]] = {}


def _remote_error(type_name: str, message: str, tb: str = "") -> RemoteNodeError:
    cls = _remote_types.get(type_name)
    if cls is None:
        cls = type(type_name, (RemoteNodeError,), {"__module__": __name__})
        _remote_types[type_name] = cls
    err = cls(message)
    err.remote_traceback = tb  # type: ignore[attr-defined]
    return err



class _Slots:
    """Shared-memory regions of one direction; a region too small for what is needed now is
    retired (unmapped in the worker, see ``retired``), never reused."""

    def __init__(self, announce: Callable[[Region], None]) -> None:
        self.free: list[Region] = []
        self.all: dict[int, Region] = {}
        self.announce = announce
        self.retired: list[int] = []

    def need(self, nbytes: int) -> int:
        """The size a region must have to hold ``nbytes``."""
        return nbytes

    def take(self, nbytes: int) -> Region:
        need = self.need(nbytes)
        while self.free:
            r = self.free.pop()
            if r.size >= need:
                return r
            self.retire(r)
        r = new_region(need)
        self.all[r.idx] = r
        self.announce(r)
        return r

    def retire(self, r: Region) -> None:
        self.all.pop(r.idx, None)
        self.retired.append(r.idx)


class _InputSlots(_Slots):
    """Input regions: one is reused once its frame is answered and the worker holds no view."""

    def __init__(self, announce: Callable[[Region], None]) -> None:
        super().__init__(announce)
        self.parked: dict[int, Region] = {}   # answered, but still referenced in the worker

    def release(self, r: Region, worker_holds: tuple[int, ...]) -> None:
        if r.idx in worker_holds:
            self.parked[r.idx] = r
        else:
            self.free.append(r)

    def update(self, worker_holds: tuple[int, ...]) -> None:
        for idx in [i for i in self.parked if i not in worker_holds]:
            self.free.append(self.parked.pop(idx))


class _OutputSlots(_Slots):
    """Output regions, all as large as the largest output seen; one is reused only after
    every frame using it is gone."""

    def __init__(self, announce: Callable[[Region], None]) -> None:
        super().__init__(announce)
        self.size = 8                           # bytes: the largest output seen so far
        self.lent: dict[int, tuple[Any, Region]] = {}  # slots held by frames, by weakref id

    def need(self, nbytes: int) -> int:
        if nbytes > self.size:
            self.size = nbytes
        return self.size

    def wrap(self, r: Region, shape: tuple[int, ...]) -> np.ndarray:
        count = 1
        for d in shape:
            count *= d
        owner = np.frombuffer(r.map, dtype=F64, count=count)
        ref = weakref.ref(owner, self._back)  # back only when no reader is left
        self.lent[id(ref)] = (ref, r)
        owner.setflags(write=False)
        return owner.reshape(shape)

    def _back(self, ref: weakref.ref[np.ndarray]) -> None:  # a weakref callback: no I/O here
        r = self.lent.pop(id(ref))[1]
        if r.size >= self.size:
            self.free.append(r)
        else:
            self.retire(r)


@dataclass(frozen=True)
class ExecutorStatistics:
    """A snapshot of a :class:`ProcessNode`; the ``worker_*`` times are known once it stopped.

    ``worker_idle_s``: seconds the worker waited for a frame; ``worker_process_s``: seconds in
    the node's ``process``; ``worker_cpu_s``: its CPU time, start-up included.
    """

    pid: int | None
    frames_sent: int
    in_flight: int
    max_in_flight: int
    input_slots: int
    output_slots: int
    worker_cpu_s: float | None
    worker_idle_s: float | None
    worker_process_s: float | None
    closed: bool
    died: str | None


class _Call:
    """One frame sent to the worker: its slots, and the future of its latest transmission."""

    __slots__ = ("frame", "inp", "out", "shape", "fut")

    def __init__(self, frame: DataFrame, inp: Region | None, out: Region,
                 shape: tuple[int, ...] = ()) -> None:
        self.frame, self.inp, self.out, self.shape = frame, inp, out, shape
        self.fut: asyncio.Future[Any] | None = None


class ProcessNode(ProcessingNode):
    """Proxy that runs another node type in a worker process. See the module docstring."""

    #: Frames the runtime keeps in flight with :meth:`submit` (the one awaited included).
    pipeline_depth = 4

    def __init__(self, target: type[ProcessingNode], config: Any, context: NodeContext) -> None:
        super().__init__()
        self.target = target
        self.config = config
        self.context = context
        self._proc: Any = None
        self._link: Link | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._died: str | None = None                      # why the worker is gone
        self._stopping = False                             # on_stop asked the worker to end
        self._awaiting: deque[asyncio.Future[Any]] = deque()  # one per message expecting a reply
        self._calls: deque[_Call] = deque()                # submitted, not yet collected
        self._inputs = _InputSlots(self._announce)
        self._outputs = _OutputSlots(self._announce)
        self._worker_holds: tuple[int, ...] = ()
        self._headers = Headers()                          # metadata / names sent and got
        self._sent = 0                                     # frames sent (resends not counted)
        self._max_in_flight = 0
        self._worker_times: tuple[float, ...] = ()        # CPU, idle, in process(): at stop
        try:
            pickle.dumps(target)
        except Exception as exc:
            raise NodeError(context.node_id, f"type {target.__name__} cannot run in a process "
                                             "executor: its class must be importable at module "
                                             f"level ({exc})") from exc

    @classmethod
    def description(cls) -> str:
        return "Runs a node in a worker process."

    def statistics(self) -> ExecutorStatistics:
        """Counts of the proxy: frames sent, in flight, slots, the worker's CPU time."""
        return ExecutorStatistics(
            pid=self._proc.pid if self._proc is not None else None,
            frames_sent=self._sent, in_flight=len(self._awaiting),
            max_in_flight=self._max_in_flight,
            input_slots=len(self._inputs.all), output_slots=len(self._outputs.all),
            worker_cpu_s=self._worker_times[0] if self._worker_times else None,
            worker_idle_s=self._worker_times[1] if self._worker_times else None,
            worker_process_s=self._worker_times[2] if self._worker_times else None,
            closed=self._closed, died=self._died)

    def __repr__(self) -> str:
        st = self.statistics()
        return (f"<ProcessNode {self.context.node_id!r} target={self.target.__name__} "
                f"pid={st.pid} sent={st.frames_sent} in_flight={st.in_flight} "
                f"closed={st.closed}>")

    # -- lifecycle --------------------------------------------------------------------------
    async def on_start(self) -> None:
        """Start the worker and build the node there; on any failure the worker is killed."""
        loop = asyncio.get_running_loop()
        launch = launcher().submit(self._launch)
        try:
            await asyncio.wrap_future(launch)
            if self._closed or self._link is None:
                raise WorkerDied(f"worker of node {self.context.node_id!r} was closed while starting")
            self._loop = loop
            loop.add_reader(self._link.sock.fileno(), self._on_readable)
            ctx = self.context
            fields = {"node_id": ctx.node_id, "pipeline": ctx.pipeline,
                      "inputs": ctx.inputs, "outputs": ctx.outputs, "upstream": ctx.upstream}
            reply = await self._request(("init", self.target, self.config, fields))
            if reply[0] != "ready":
                err = self._reply_error(reply)
                raise NodeError(ctx.node_id, f"starting in the worker failed: "
                                             f"{type(err).__name__}: {err}") from err
        except BaseException:
            self._closed = True
            with contextlib.suppress(BaseException):
                launch.result(timeout=60)  # let a launch in progress finish: then kill it
            self._close_now()
            raise

    def _launch(self) -> None:
        """Start the process (in a thread: the first forkserver start takes about a second)."""
        with start_lock:
            if self._closed:
                return
            ctx = worker_context(self.target)
            parent, child = socket.socketpair()
            try:
                proc = ctx.Process(target=worker_main, args=(child,), daemon=True,
                                   name=f"streamlab-{self.context.node_id}")
                proc.start()
            except BaseException:
                parent.close()
                raise
            finally:
                child.close()
            self._link, self._proc = Link(parent), proc
        if self._closed:  # closed meanwhile: _close_now may have missed the process
            self._close_now()

    async def on_stop(self) -> None:
        """Finish the frames in flight, run ``on_stop`` in the worker, end it (kill after 5 s).

        Raises the worker's ``on_stop`` error, if any, after the worker has ended.
        """
        error: BaseException | None = None
        try:
            if self._link is not None and not self._closed and self._died is None:
                self._stopping = True
                try:
                    reply = await asyncio.wait_for(self._request(("stop",)), STOP_TIMEOUT_S)
                except (TimeoutError, WorkerDied):
                    reply = ("stopped", ())
                if reply[0] == "error":
                    error = self._reply_error(reply)
                elif reply[0] == "stopped":
                    self._worker_times = reply[2:]
                self._unwatch()  # the worker ends now: its EOF is not a death
                await self._wait_exit(STOP_TIMEOUT_S)
        finally:
            self._close_now()
        if error is not None:
            raise error

    async def _wait_exit(self, timeout: float) -> None:
        proc = self._proc
        deadline = time.monotonic() + timeout
        while proc is not None and proc.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    def _close_now(self) -> None:
        """End the worker now (kill if alive), close the pipe. Idempotent.

        (The regions need no clean-up: they have no name; their memory goes with the last
        mapping, see :mod:`streamlab.runtime.worker`.)
        """
        self._closed = True
        link, proc = self._link, self._proc
        self._unwatch()
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(2)
        if link is not None:
            link.close()
        self._fail_waiters("the worker was stopped")

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            proc = getattr(self, "_proc", None)
            if proc is not None and proc.is_alive():
                proc.kill()

    # -- the pipe ---------------------------------------------------------------------------
    def _send(self, msg: tuple[Any, ...], fds: tuple[int, ...] = ()) -> None:
        if self._died is not None or self._link is None or self._closed:
            raise WorkerDied(self._died or f"worker of node {self.context.node_id!r} is not running")
        try:
            self._link.send(msg, fds)
        except OSError as exc:
            self._lost(f"sending failed: {exc}")
            raise WorkerDied(self._died or str(exc)) from exc

    def _request(self, msg: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Send ``msg``; the future gets its reply (replies come in the order of requests)."""
        self._send(msg)
        fut = self._loop.create_future()  # type: ignore[union-attr]
        self._awaiting.append(fut)
        return fut

    def _announce(self, r: Region) -> None:
        """Give the worker the new region: its descriptor travels with the message."""
        try:
            self._send(("map", r.idx, r.size), (r.fd,))  # type: ignore[arg-type]
        finally:
            r.handed_over()  # the worker has its own copy now (or is gone)

    def _on_readable(self) -> None:
        try:
            replies = self._link.receive()  # type: ignore[union-attr]
        except (EOFError, OSError) as exc:
            self._lost(f"{type(exc).__name__}")
            return
        for reply in replies:
            holds = reply[1]
            if holds or self._worker_holds:
                self._worker_holds = holds
                self._inputs.update(holds)
            if self._awaiting:
                fut = self._awaiting.popleft()
                if not fut.done():
                    fut.set_result(reply)
            if reply[0] == "stopped":  # the worker exits now: its EOF is not a death
                self._unwatch()
                return

    def _lost(self, why: str) -> None:
        """The worker is gone: every frame waiting fails with WorkerDied."""
        if self._died is not None:
            return
        if self._stopping and not self._awaiting:
            return  # we asked it to stop and wait for nothing more: a deliberate exit
        proc = self._proc
        code = None
        if proc is not None:
            proc.join(1)
            code = proc.exitcode
        self._died = f"worker of node {self.context.node_id!r} died (exit code {code}; {why})"
        self._unwatch()
        self._fail_waiters(self._died)

    def _unwatch(self) -> None:
        loop, link = self._loop, self._link
        if loop is not None and link is not None and not loop.is_closed() and link.sock.fileno() >= 0:
            loop.remove_reader(link.sock.fileno())

    def _fail_waiters(self, why: str) -> None:
        while self._awaiting:
            fut = self._awaiting.popleft()
            if not fut.done():
                fut.set_result(("died", (), why))

    def _reply_error(self, reply: tuple[Any, ...]) -> RemoteNodeError:
        if reply[0] == "error":
            return _remote_error(reply[2], reply[3], reply[4])
        if reply[0] == "died":
            return WorkerDied(reply[2])
        return RemoteNodeError(f"unexpected reply {reply[0]!r} from the worker of node "
                               f"{self.context.node_id!r}")

    # -- frames -----------------------------------------------------------------------------
    def submit(self, frame: DataFrame) -> bool:
        """Send ``frame`` to the worker now unless it is already in flight; never waits.

        Returns True if the frame is in flight. False: not sent (a frame that must be pickled
        goes only when no reply is due, so a large message in each direction never meet);
        the caller submits no later frame before this one. :meth:`process` collects results
        in the order frames were submitted. Raises WorkerDied if the worker is gone.
        """
        for c in self._calls:
            if c.frame is frame:
                return True
        block = block_of(frame)
        if block is None and self._awaiting:
            return False
        self._calls.append(self._new_call(frame, block))
        return True

    def in_flight(self) -> int:
        """Frames submitted and not yet collected."""
        return len(self._calls)

    def _new_call(self, frame: DataFrame, block: np.ndarray | None) -> _Call:
        if self._outputs.retired or self._inputs.retired:
            for idx in self._outputs.retired + self._inputs.retired:
                self._send(("unmap", idx))
            self._outputs.retired.clear()
            self._inputs.retired.clear()
        if block is not None:
            inp = self._inputs.take(block.nbytes)
            np.copyto(inp.view(block.shape), block)
            call = _Call(frame, inp, self._outputs.take(block.nbytes), block.shape)
        else:
            call = _Call(frame, None, self._outputs.take(8))
        self._transmit(call)
        self._sent += 1
        if len(self._awaiting) > self._max_in_flight:
            self._max_in_flight = len(self._awaiting)
        return call

    def _transmit(self, call: _Call) -> None:
        frame = call.frame
        if call.inp is not None:
            call.fut = self._request(("call", *self._headers.encode(frame), call.shape,
                                      call.inp.idx, call.out.idx))
        else:
            empty = frame is None
            call.fut = self._request(("pcall", pack(DataFrame() if empty else frame),
                                      call.out.idx))

    async def process(self, frame: DataFrame) -> Any:
        """The node's output for ``frame`` (submitted now unless :meth:`submit` did already).

        Raises the node's error as a RemoteNodeError subclass, EndOfStream if the node ended,
        WorkerDied if the worker is gone. Cancelled: the frame's result is discarded.
        """
        calls = self._calls
        if calls and calls[0].frame is frame:
            call = calls.popleft()
        elif calls:
            raise StreamLabError(f"node {self.context.node_id!r}: frames must be collected in "
                                 "the order they were submitted")
        else:
            call = self._new_call(frame, block_of(frame))
        while True:
            reply = await call.fut  # type: ignore[misc]
            if reply[0] != "held":
                break
            # An earlier frame failed and the node lives on: resume, then send again every
            # frame the worker skipped, in order.
            self._send(("resume",))
            for c in (call, *calls):
                self._transmit(c)
        return self._result(call, reply)

    def _result(self, call: _Call, reply: tuple[Any, ...]) -> Any:
        kind = reply[0]
        if call.inp is not None:
            self._inputs.release(call.inp, self._worker_holds)
        if kind == "block":
            _, _, ts, seq, meta, names, shape = reply
            self._headers.decode(meta, names)
            return self._headers.frame(ts, seq, self._outputs.wrap(call.out, shape))
        self._outputs.free.append(call.out)
        if kind == "none":
            return None
        if kind == "pickled":
            if reply[3]:
                self._outputs.size = max(self._outputs.size, reply[3])
            return unpack(reply[2])
        if kind == "list":
            return [unpack(p) for p in reply[2]]
        if kind == "eos":
            raise EndOfStream(self.context.node_id)
        raise self._reply_error(reply)
