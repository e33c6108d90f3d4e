"""BufferPool: reuse the memory of large arrays that nodes produce over and over.

A node asks the pool for an array of a given shape (``pool.empty(shape)``) and fills it. The
array lives on a pooled buffer (a :class:`PooledBuffer`); the buffer goes back to the pool
when the *last* array that uses its memory is gone — the array itself, every frame holding it,
and every view made of it (numpy views of a view keep the owner alive) — never while any
reader still holds it. CPython frees by reference counting, so the return is immediate.

Reuse pays off only for large arrays: for an 8 x 256 float64 block ``np.empty`` (about 0.3 µs)
is cheaper than the pool's bookkeeping, while for multi-megabyte blocks a fresh allocation
costs page faults on every frame. Below ``min_bytes`` (default 256 KiB) :meth:`BufferPool.empty`
therefore just calls ``np.empty``; the benchmark ``benchmarks`` (buffer pool rows) shows the
figures.

Thread safety: buffers may come back from any thread (a worker thread dropping a frame), so
the free lists are guarded by a lock. Bounds: at most ``max_free`` idle buffers are kept per
size; with ``max_outstanding``, :meth:`acquire` raises :class:`BufferPoolExhausted` and
:meth:`acquire_async` waits until a buffer comes back.
"""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamlab.errors import StreamLabError

__all__ = ["BufferPool", "BufferPoolExhausted", "BufferPoolStatistics", "PooledBuffer"]


class BufferPoolExhausted(StreamLabError):
    """Every buffer allowed by ``max_outstanding`` is in use."""


@dataclass(frozen=True)
class BufferPoolStatistics:
    hits: int
    misses: int
    returned: int
    outstanding: int
    idle: int
    idle_bytes: int


class PooledBuffer:
    """One reusable block of memory (a bytearray) and the size class it belongs to."""

    __slots__ = ("memory", "nbytes", "generation")

    def __init__(self, nbytes: int) -> None:
        self.memory = bytearray(nbytes)
        self.nbytes = nbytes
        self.generation = 0  # bumped at each reuse; lets tests prove no shared ownership

    def __repr__(self) -> str:
        return f"<PooledBuffer {self.nbytes} bytes gen={self.generation}>"


class BufferPool:
    """A pool of reusable buffers keyed by size. See the module docstring."""

    def __init__(self, *, min_bytes: int = 256 * 1024, max_free: int = 64,
                 max_outstanding: int | None = None) -> None:
        if min_bytes < 0 or max_free < 0 or (max_outstanding is not None and max_outstanding < 1):
            raise ValueError("min_bytes, max_free >= 0 and max_outstanding >= 1 required")
        self.min_bytes = min_bytes
        self.max_free = max_free
        self.max_outstanding = max_outstanding
        self._free: dict[int, list[PooledBuffer]] = {}
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.hits = 0
        self.misses = 0
        self.returned = 0
        self.outstanding = 0

    def empty(self, shape: int | Sequence[int], dtype: np.dtype | type = np.float64) -> np.ndarray:
        """A writeable array: pooled if at least ``min_bytes``, else a plain ``np.empty``."""
        shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
        dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        nbytes = math.prod(shape_t) * dt.itemsize
        if nbytes < self.min_bytes or nbytes == 0:
            return np.empty(shape_t, dt)
        return self.acquire(shape_t, dt)

    def acquire(self, shape: int | Sequence[int], dtype: np.dtype | type = np.float64) -> np.ndarray:
        """A writeable array on a pooled buffer (contents undefined), whatever its size."""
        dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
        count = math.prod(shape_t)
        nbytes = max(1, count * dt.itemsize)
        with self._lock:
            if self.max_outstanding is not None and self.outstanding >= self.max_outstanding:
                raise BufferPoolExhausted(
                    f"all {self.max_outstanding} buffers are in use; frames holding them must be "
                    "released first (or raise max_outstanding)")
            free = self._free.get(nbytes)
            if free:
                buf = free.pop()
                buf.generation += 1
                self.hits += 1
            else:
                buf = PooledBuffer(nbytes)
                self.misses += 1
            self.outstanding += 1
        owner = np.frombuffer(buf.memory, dtype=dt, count=count)
        # Every view of the result keeps ``owner`` alive; when it dies, no reader is left.
        weakref.finalize(owner, self._give_back, buf)
        return owner.reshape(shape_t)

    async def acquire_async(self, shape: int | Sequence[int],
                            dtype: np.dtype | type = np.float64) -> np.ndarray:
        """Like :meth:`acquire`, but wait for a buffer to come back instead of raising."""
        while True:
            try:
                return self.acquire(shape, dtype)
            except BufferPoolExhausted:
                loop = asyncio.get_running_loop()
                fut = loop.create_future()
                with self._lock:
                    self._waiters.append((loop, fut))
                try:
                    await fut
                finally:
                    with self._lock:
                        self._waiters = [(lp, f) for lp, f in self._waiters if f is not fut]

    def _give_back(self, buf: PooledBuffer) -> None:
        with self._lock:
            self.outstanding -= 1
            self.returned += 1
            free = self._free.setdefault(buf.nbytes, [])
            if len(free) < self.max_free:
                free.append(buf)
            waiters = self._waiters[:1]
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_wake, fut)

    def clear(self) -> None:
        """Drop every idle buffer (outstanding ones come back later as usual)."""
        with self._lock:
            self._free.clear()

    def statistics(self) -> BufferPoolStatistics:
        with self._lock:
            idle = sum(len(v) for v in self._free.values())
            idle_bytes = sum(k * len(v) for k, v in self._free.items())
            return BufferPoolStatistics(self.hits, self.misses, self.returned, self.outstanding,
                                        idle, idle_bytes)

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"<BufferPool outstanding={s.outstanding} idle={s.idle} hits={s.hits} "
                f"misses={s.misses}>")


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
