"""The worker side of the process executor, and what both sides share.

:class:`~streamlab.runtime.executor.ProcessNode` (the proxy in the main process) runs a node in
a worker process; this module owns that worker and the pieces both processes use:

* :class:`Region`: anonymous shared memory mapped into a process (input and output slots), and
  :func:`new_region` to create one. A region never has a name anyone must remove: it is a
  ``memfd`` (Linux), or a ``/dev/shm`` file unlinked the moment it is opened, and the worker
  gets its file descriptor over the socket (``SCM_RIGHTS``) with the ``map`` message. The
  memory is freed by the kernel when the last process mapping it ends, however it ends.
* :class:`Link`: length-prefixed pickled messages over a socket, one ``recv`` per wake-up
  (``recvmsg`` on the worker's side, which receives file descriptors);
  :func:`pack` / :func:`unpack`: a frame as picklable parts (for frames not sent as a block).
* :func:`worker_main` and the worker's loop: build the node (``init``), run it on each frame
  (``call`` with a block in an input slot, ``pcall`` pickled), reply with the output block in
  an output slot (or pickled), hold after an error until ``resume``, run ``on_stop`` (``stop``).
  The worker ignores SIGINT and exits quietly when the main process is gone: a thread watches
  the socket for the main process's end (even while the node is busy in ``process``).
* Starting workers: :func:`worker_context` (a ``forkserver`` preloading numpy, StreamLab,
  ``scipy.signal``, the node's module and the main script; ``spawn`` where there is none),
  :func:`launcher` (threads that start workers off the event loop) and :data:`start_lock`.

The worker is started with :func:`worker_main` as its target, pickled by reference to this
module, which :data:`PRELOAD` names for the forkserver. This module never imports
:mod:`streamlab.runtime.executor` (the dependency is one-way).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import mmap
import multiprocessing as mp
import os
import pickle
import select
import signal
import socket
import struct
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

import numpy as np

from streamlab import wire
from streamlab.errors import EndOfStream, FrameError
from streamlab.frame import DataFrame, Payload
from streamlab.node import NodeContext, ProcessingNode

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
_ids = itertools.count()
F64 = np.dtype(np.float64)
NO_META: Any = MappingProxyType({})
_HIGHEST = pickle.HIGHEST_PROTOCOL


class Region:
    """Anonymous shared memory mapped into this process (see the module docstring).

    ``fd`` None: create it (the creator keeps :attr:`fd` open until :meth:`handed_over`, so it
    can be passed to the worker); else map the received descriptor and close it.
    """

    __slots__ = ("idx", "size", "map", "fd", "_views")

    def __init__(self, idx: int, size: int, fd: int | None = None) -> None:
        self.idx, self.size = idx, size
        create = fd is None
        if fd is None:
            fd = _anonymous_fd()
        try:
            if create:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        if create:
            self.fd: int | None = fd
        else:
            os.close(fd)
            self.fd = None
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

    def handed_over(self) -> None:
        """Close the creator's descriptor (once sent to the worker, or if it cannot be)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __del__(self) -> None:
        self.handed_over()


def _anonymous_fd() -> int:
    """A file descriptor of new shared memory that has no name (nothing to clean up)."""
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        with contextlib.suppress(OSError):
            return memfd("streamlab", os.MFD_CLOEXEC)
    # No memfd: a /dev/shm file unlinked at once (only a kill between these two lines leaks)
    base = _SHM_DIR or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, f"streamlab-{os.getpid()}-{next(_ids)}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(path)
    return fd


def new_region(size: int) -> Region:
    return Region(next(_ids), max(size, 8))



def pack(frame: DataFrame) -> tuple[Any, ...]:
    """A frame as picklable parts (:func:`streamlab.wire.frame_to_parts`)."""
    return wire.frame_to_parts(frame)


def unpack(parts: tuple[Any, ...]) -> DataFrame:
    """Inverse of :func:`pack` (:func:`streamlab.wire.frame_from_parts`)."""
    return wire.frame_from_parts(parts)


def block_of(frame: Any) -> np.ndarray | None:
    """The frame's float64 block if it can cross through shared memory (free for block
    payloads), else None: not a frame, no channels, channels of unequal length, events
    (those go pickled)."""
    if type(frame) is not DataFrame or not frame.payload.names or frame.events:
        return None
    try:
        block = frame.payload.block()
    except FrameError:
        return None
    return block if block.dtype == F64 and block.size else None


class Headers:
    """The header of a shared-memory frame, one instance per end of a link: metadata and
    channel names go over the socket only when they differ from the last ones sent
    (:meth:`encode`); the receiving end keeps the last ones got (:meth:`decode`)."""

    __slots__ = ("meta_sent", "names_sent", "meta", "names")

    def __init__(self) -> None:
        self.meta_sent: Any = None
        self.names_sent: tuple[str, ...] | None = None
        self.meta: Any = NO_META
        self.names: tuple[str, ...] = ()

    def encode(self, frame: DataFrame) -> tuple[Any, ...]:
        """``(timestamp, sequence_id, metadata or None, names or None)`` for ``frame``."""
        meta, names = frame.metadata, frame.payload.names
        meta_field = None if meta is self.meta_sent else dict(meta)
        names_field = None if names == self.names_sent else names
        self.meta_sent, self.names_sent = meta, names
        return (frame.timestamp, frame.sequence_id, meta_field, names_field)

    def decode(self, meta: dict[str, str] | None, names: tuple[str, ...] | None) -> None:
        """Take the fields of a received header (None: unchanged) as the current ones."""
        if meta is not None:
            self.meta = MappingProxyType(meta) if meta else NO_META
        if names is not None:
            self.names = names

    def frame(self, ts: int, seq: int, block: np.ndarray) -> DataFrame:
        """The received frame: ``block`` (read-only) under the current names and metadata."""
        return DataFrame._make(ts, seq, Payload._of_block(self.names, block), self.meta)


_HEADER = struct.Struct("<I")
_perf = time.perf_counter
_iscoroutine = asyncio.iscoroutine
_CHUNK = 1 << 16
_ANC_SPACE = socket.CMSG_SPACE(16 * array.array("i").itemsize)


class Link:
    """Length-prefixed pickled messages over a stream socket: one ``recv`` per wake-up.

    (``multiprocessing.Connection`` reads a header and a body with two system calls and blocks
    until a message is whole; this halves the per-message cost and never blocks the reader.)
    """

    __slots__ = ("sock", "buf", "need", "fds")

    def __init__(self, sock: socket.socket, fds: bool = False) -> None:
        self.sock = sock
        self.buf = bytearray()   # the start of a message not yet whole
        self.need = _CHUNK       # bytes to ask for next
        #: file descriptors received, in order (``fds=True``: the receiving side takes them)
        self.fds: deque[int] | None = deque() if fds else None

    def send(self, msg: tuple[Any, ...], fds: tuple[int, ...] = ()) -> None:
        """Send ``msg`` (blocking); ``fds`` travel with its first byte (SCM_RIGHTS)."""
        data = pickle.dumps(msg, _HIGHEST)
        data = _HEADER.pack(len(data)) + data
        if not fds:
            self.sock.sendall(data)
            return
        sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                           array.array("i", fds))])
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def receive(self) -> list[Any]:
        """Every message completed by one ``recv`` (maybe none); EOFError once closed."""
        if self.fds is None:
            chunk = self.sock.recv(self.need)
        else:
            # (the kernel ends a read at a message that carries descriptors, so they arrive
            # with their own "map" message and none is dropped for lack of room)
            chunk, anc, _, _ = self.sock.recvmsg(self.need, _ANC_SPACE)
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
                    self.fds.extend(fds)
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
    _watch_main(sock)
    _Worker(Link(sock, fds=True)).run()


def _watch_main(sock: socket.socket) -> None:  # pragma: no cover - runs in the child process
    """End this worker quietly as soon as the main process is gone, even mid-``process``.

    The main process's end of the socket closes when it ends, however it ends: ``poll`` then
    reports a hang-up (``POLLRDHUP``/``POLLHUP``: only those are asked, so pending messages
    do not wake the thread). Nobody is left to take a result, and a busy node could otherwise
    run on for as long as it likes. Shared memory needs nothing: it has no name (``Region``).
    Where ``POLLRDHUP`` is missing, the worker still ends at its next read or reply.
    """
    rdhup = getattr(select, "POLLRDHUP", None)
    if rdhup is None or not hasattr(select, "poll"):
        return
    poller = select.poll()
    poller.register(sock.fileno(), rdhup)

    def watch() -> None:
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            except OSError:
                return
            if any(ev & (rdhup | select.POLLHUP | select.POLLNVAL) for _, ev in events):
                os._exit(0)

    threading.Thread(target=watch, name="streamlab-watch-main", daemon=True).start()


class _Worker:  # pragma: no cover - runs in the child process
    """The loop of a worker process: one message in, at most one reply out, in order."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.regions: dict[int, Region] = {}
        self.node: ProcessingNode | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.hold = False                       # after an error: skip frames until "resume"
        self.headers = Headers()                # metadata / names last received and replied
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
                    try:
                        send(reply)
                    except OSError:
                        return  # the main process is gone: nobody to reply to
                    if reply[0] == "stopped" or msg[0] == "stop":
                        return

    def handle(self, msg: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One message; the reply to send, if it has one."""
        kind = msg[0]
        if kind == "call" or kind == "pcall":
            return self.call(msg)
        if kind == "map":  # its descriptor came with it
            self.regions[msg[1]] = Region(msg[1], msg[2], fd=self.link.fds.popleft())  # type: ignore[union-attr]
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
            self.headers.decode(meta, names)  # headers follow every message, held or not
            if self.hold:
                return ("held", self._held())
            arr = self.regions[in_idx].array(shape)
            arr.setflags(write=False)
            ref = weakref.ref(arr)
            frame = self.headers.frame(ts, seq, arr)
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
        """The reply for the node's output: its block copied into output slot ``out_idx``
        when it fits, else pickled (with the size the slots should grow to)."""
        if out is None:
            return ("none",)
        block = block_of(out)
        if block is not None and block.nbytes <= self.regions[out_idx].size:
            np.copyto(self.regions[out_idx].view(block.shape), block)
            return ("block", *self.headers.encode(out), block.shape)
        if isinstance(out, DataFrame):
            return ("pickled", pack(out), 0 if block is None else block.nbytes)
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

