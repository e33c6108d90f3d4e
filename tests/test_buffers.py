import asyncio
import gc
import threading

import numpy as np
import pytest

from streamlab import DataFrame
from streamlab.buffers import BufferPool, BufferPoolExhausted
from tests.conftest import run


def test_reused_only_after_every_reader_is_gone():
    pool = BufferPool(min_bytes=0)
    a = pool.acquire((2, 4))
    a[:] = 7.0
    frame = DataFrame.from_block(["x", "y"], a)
    view = frame.payload["y"][1:]          # a reader holding a view of a view
    del a, frame
    gc.collect()
    b = pool.acquire((2, 4))               # must not reuse the memory still seen through `view`
    assert not np.shares_memory(b, view)
    b[:] = -1.0
    assert view.tolist() == [7.0, 7.0, 7.0]
    assert pool.statistics().outstanding == 2
    del view
    st = pool.statistics()
    assert (st.outstanding, st.returned, st.idle) == (1, 1, 1)
    c = pool.acquire((8,))                  # same byte size: reuses the returned buffer
    assert pool.statistics().hits == 1
    del b, c


def test_small_arrays_bypass_the_pool():
    pool = BufferPool(min_bytes=1024)
    x = pool.empty((2, 8))                  # 128 bytes
    assert x.shape == (2, 8) and pool.statistics().misses == 0
    y = pool.empty((2, 100))                # 1600 bytes
    assert pool.statistics().misses == 1 and y.flags.writeable


def test_concurrent_threads_never_share_a_buffer():
    pool = BufferPool(min_bytes=0, max_free=4)
    errors = []

    def worker(stamp: float):
        for _ in range(300):
            arr = pool.acquire(64)
            arr[:] = stamp
            frame = DataFrame.from_block(["v"], arr.reshape(1, 64))
            if not np.all(frame.payload["v"] == stamp):
                errors.append(stamp)
            del arr, frame

    threads = [threading.Thread(target=worker, args=(float(i),)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    st = pool.statistics()
    assert st.outstanding == 0 and st.hits + st.misses == 1800 and st.returned == 1800
    assert st.idle <= 4


def test_exhaustion_raises_and_async_acquire_waits():
    pool = BufferPool(min_bytes=0, max_outstanding=2)
    held = [pool.acquire(16), pool.acquire(16)]
    with pytest.raises(BufferPoolExhausted, match="all 2 buffers are in use"):
        pool.acquire(16)

    async def go():
        waiter = asyncio.create_task(pool.acquire_async(16))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        held.pop()                          # a frame released its buffer: the waiter wakes
        got = await asyncio.wait_for(waiter, 1)
        return got.shape

    assert run(go()) == (16,)
    assert "outstanding=" in repr(pool)
