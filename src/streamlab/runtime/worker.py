"""The worker side of the process executor, and what both sides share.

:class:`~streamlab.runtime.executor.ProcessNode` (the proxy in the main process) runs a node in
a worker process; this module owns that worker and the pieces both processes use:

* :class:`Region`: a shared-memory file mapped into a process (input and output slots), and
  :func:`new_region` to create one; the worker unlinks each file once it has mapped it.
* :class:`Link`: length-prefixed pickled messages over a socket, one ``recv`` per wake-up;
  :func:`pack` / :func:`unpack`: a frame as picklable parts (for frames not sent as a block).
* :func:`worker_main` and the worker's loop: build the node (``init``), run it on each frame
  (``call`` with a block in an input slot, ``pcall`` pickled), reply with the output block in
  an output slot (or pickled), hold after an error until ``resume``, run ``on_stop`` (``stop``).
  The worker ignores SIGINT and exits when its socket to the main process closes.
* Starting workers: :func:`worker_context` (a ``forkserver`` preloading numpy, StreamLab,
  ``scipy.signal``, the node's module and the main script; ``spawn`` where there is none),
  :func:`launcher` (threads that start workers off the event loop) and :data:`start_lock`.

The worker is started with :func:`worker_main` as its target, pickled by reference to this
module, which :data:`PRELOAD` names for the forkserver. This module never imports
:mod:`streamlab.runtime.executor` (the dependency is one-way).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import mmap
import multiprocessing as mp
import os
import pickle
import signal
import socket
import struct
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

import numpy as np

from streamlab.errors import EndOfStream, FrameError
from streamlab.frame import DataFrame, Payload
from streamlab.node import NodeContext, ProcessingNode

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
_ids = itertools.count()
F64 = np.dtype(np.float64)
NO_META: Any = MappingProxyType({})
_HIGHEST = pickle.HIGHEST_PROTOCOL


class Region:
    """A shared-memory file mapped into this process."""

    __slots__ = ("idx", "path", "size", "map", "_views")

    def __init__(self, idx: int, path: str, size: int, create: bool) -> None:
        self.idx, self.path, self.size = idx, path, size
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._views: dict[tuple[int, ...], np.ndarray] = {}

    def array(self, shape: tuple[int, ...]) -> np.ndarray:
        """A new writeable array over the start of the region."""
        count = 1
        for d in shape:
            count *= d
        return np.frombuffer(self.map, dtype=F64, count=count).reshape(shape)

    def view(self, shape: tuple[int, ...]) -> np.ndarray:
        """A cached writeable array (for the writer's side only: it keeps the region alive)."""
        v = self._views.get(shape)
        if v is None:
            v = self._views[shape] = self.array(shape)
        return v

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def new_region(size: int) -> Region:
    base = _SHM_DIR or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, f"streamlab-{os.getpid()}-{next(_ids)}")
    return Region(next(_ids), path, max(size, 8), create=True)



def pack(frame: DataFrame) -> tuple[Any, ...]:
    """A frame as picklable parts (its arrays are copied by pickling)."""
    return (frame.timestamp, frame.sequence_id, dict(frame.metadata),
            [(n, np.asarray(a)) for n, a in frame.payload.items()])


def unpack(parts: tuple[Any, ...]) -> DataFrame:
    ts, seq, meta, channels = parts
    return DataFrame(ts, seq, dict(channels), meta)



_HEADER = struct.Struct("<I")
_perf = time.perf_counter
_iscoroutine = asyncio.iscoroutine
_CHUNK = 1 << 16


class Link:
    """Length-prefixed pickled messages over a stream socket: one ``recv`` per wake-up.

    (``multiprocessing.Connection`` reads a header and a body with two system calls and blocks
    until a message is whole; this halves the per-message cost and never blocks the reader.)
    """

    __slots__ = ("sock", "buf", "need")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()   # the start of a message not yet whole
        self.need = _CHUNK       # bytes to ask for next

    def send(self, msg: tuple[Any, ...]) -> None:
        data = pickle.dumps(msg, _HIGHEST)
        self.sock.sendall(_HEADER.pack(len(data)) + data)

    def receive(self) -> list[Any]:
        """Every message completed by one ``recv`` (maybe none); EOFError once closed."""
        chunk = self.sock.recv(self.need)
        if not chunk:
            raise EOFError("the other side closed the link")
        buf: bytes | bytearray
        if self.buf:
            self.buf += chunk
            buf = self.buf
        else:
            buf = chunk
        out = []
        pos, end = 0, len(buf)
        self.need = _CHUNK
        while end - pos >= 4:
            (n,) = _HEADER.unpack_from(buf, pos)
            if end - pos - 4 < n:
                self.need = max(_CHUNK, min(n + 4 - (end - pos), 1 << 24))
                break
            out.append(pickle.loads(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        if pos == end:
            self.buf = bytearray()
        elif pos or buf is not self.buf:  # (a partial message keeps growing in place)
            self.buf = bytearray(buf[pos:])
        return out

    def close(self) -> None:
        self.sock.close()



# -- worker side ----------------------------------------------------------------------------
def worker_main(sock: socket.socket) -> None:  # pragma: no cover - runs in the child process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process to handle
    _Worker(Link(sock)).run()


class _Worker:  # pragma: no cover - runs in the child process
    """The loop of a worker process: one message in, at most one reply out, in order."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.regions: dict[int, Region] = {}
        self.node: ProcessingNode | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.hold = False                       # after an error: skip frames until "resume"
        self.meta: Any = NO_META               # last metadata / names received (cache)
        self.names: tuple[str, ...] = ()
        self.out_meta: Any = None               # last metadata / names replied (cache)
        self.out_names: tuple[str, ...] | None = None
        self.watch: dict[int, weakref.ref[np.ndarray]] = {}  # input slots maybe still referenced
        self.idle = 0.0                         # seconds waiting for a message
        self.process: Callable[[DataFrame], Any] = lambda frame: None
        self.in_process = 0.0                   # seconds in the node's process()

    def run(self) -> None:
        receive, send = self.link.receive, self.link.send
        perf = time.perf_counter
        while True:
            t0 = perf()
            try:
                msgs = receive()
            except (EOFError, OSError):
                return  # the main process is gone
            self.idle += perf() - t0
            for msg in msgs:
                reply = self.handle(msg)
                if reply is not None:
                    send(reply)
                    if reply[0] == "stopped" or msg[0] == "stop":
                        return

    def handle(self, msg: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One message; the reply to send, if it has one."""
        kind = msg[0]
        if kind == "call" or kind == "pcall":
            return self.call(msg)
        if kind == "map":
            self.regions[msg[1]] = r = Region(msg[1], msg[2], msg[3], create=False)
            r.unlink()  # both sides have it mapped: no file needs to outlive us
        elif kind == "unmap":
            self.regions.pop(msg[1], None)
        elif kind == "resume":
            self.hold = False
        elif kind == "init":
            return self.init(msg)
        else:  # "stop"
            return self.stop()
        return None

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        out = fn(*args)
        return self._resolve(out) if _iscoroutine(out) else out

    def _resolve(self, coro: Any) -> Any:
        """Run an async node's coroutine to its result on the worker's own event loop."""
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(coro)

    def _held(self) -> tuple[int, ...]:
        if not self.watch:
            return ()
        for idx in [i for i, ref in self.watch.items() if ref() is None]:
            del self.watch[idx]
        return tuple(self.watch)

    def init(self, msg: tuple[Any, ...]) -> tuple[Any, ...]:
        try:
            cls, config, fields = msg[1], msg[2], msg[3]
            self.node = cls.create(config, NodeContext(**fields))
            self.process = self.node.process
            self._call(self.node.on_start)
        except Exception as exc:
            return ("error", (), type(exc).__name__, str(exc), traceback.format_exc(limit=8))
        return ("ready", ())

    def stop(self) -> tuple[Any, ...]:
        try:
            if self.node is not None:
                self._call(self.node.on_stop)
        except Exception as exc:
            return ("error", (), type(exc).__name__, str(exc), traceback.format_exc(limit=8))
        return ("stopped", (), time.process_time(), self.idle, self.in_process)

    def call(self, msg: tuple[Any, ...]) -> tuple[Any, ...]:
        if msg[0] == "call":
            _, ts, seq, meta, names, shape, in_idx, out_idx = msg
            if meta is not None:  # caches follow every message, held or not
                self.meta = MappingProxyType(meta) if meta else NO_META
            if names is not None:
                self.names = names
            if self.hold:
                return ("held", self._held())
            arr = self.regions[in_idx].array(shape)
            arr.setflags(write=False)
            ref = weakref.ref(arr)
            frame = DataFrame._make(ts, seq, Payload._of_block(self.names, arr), self.meta)
            del arr
        else:
            if self.hold:
                return ("held", self._held())
            frame, out_idx, in_idx, ref = unpack(msg[1]), msg[2], -1, None
        try:
            t0 = _perf()
            out = self.process(frame)
            if _iscoroutine(out):
                out = self._resolve(out)
            self.in_process += _perf() - t0
            del frame
            reply = self.encode(out, out_idx)
            del out
        except EndOfStream:
            self.hold = True
            reply = ("eos",)
        except Exception as exc:
            self.hold = True
            reply = ("error", type(exc).__name__, str(exc), traceback.format_exc(limit=8))
        if ref is not None and ref() is not None:
            self.watch[in_idx] = ref  # the node kept (part of) its input: not reusable yet
        return (reply[0], self._held(), *reply[1:])

    def encode(self, out: Any, out_idx: int) -> tuple[Any, ...]:
        want = 0
        if out is None:
            return ("none",)
        if type(out) is DataFrame and out.payload.names:
            try:
                block = out.payload.block()
            except FrameError:
                block = None
            if block is not None and block.dtype == F64:
                r = self.regions[out_idx]
                if block.nbytes <= r.size:
                    np.copyto(r.view(block.shape), block)
                    meta = out.metadata
                    if meta is self.out_meta:
                        meta_field = None
                    else:
                        self.out_meta, meta_field = meta, dict(meta)
                    names: tuple[str, ...] | None = out.payload.names
                    if names == self.out_names:
                        names = None
                    else:
                        self.out_names = names
                    return ("block", out.timestamp, out.sequence_id, meta_field, names,
                            block.shape)
                want = block.nbytes
        if isinstance(out, DataFrame):
            return ("pickled", pack(out), want)
        return ("list", [pack(f) for f in out])



# -- starting workers -----------------------------------------------------------------------
_launch_lock = threading.Lock()
start_lock = threading.Lock()  # Process.start() from several threads at once is not safe
_launch_pool: ThreadPoolExecutor | None = None


def launcher() -> ThreadPoolExecutor:
    """Threads that start workers (off the event loop: a first forkserver start is slow)."""
    global _launch_pool
    with _launch_lock:
        if _launch_pool is None:
            _launch_pool = ThreadPoolExecutor(2, thread_name_prefix="streamlab-launch")
        return _launch_pool


PRELOAD = ["numpy", "streamlab.frame", "streamlab.node", "streamlab.runtime.worker",
            "scipy.signal"]  # scipy.signal: what heavy DSP nodes import in on_create


def worker_context(target: type[ProcessingNode]) -> Any:
    """The multiprocessing context for workers (forkserver with preloads, else spawn)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    from multiprocessing import forkserver

    if getattr(forkserver._forkserver, "_forkserver_pid", None) is None:  # not started yet
        # "__main__" spares each worker re-importing the main script; a module that is not
        # installed is skipped by the forkserver
        mods = ["__main__", *PRELOAD, target.__module__]
        ctx.set_forkserver_preload(list(dict.fromkeys(mods)))
    return ctx

