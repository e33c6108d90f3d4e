"""DistributedPool: admission, cancellation, failures, statistics (in-process and fake backends)."""

import asyncio
import random

import numpy as np
import pytest

from streamlab import BackendError, DataFrame, PipelineError, PipelinePool, PoolError
from streamlab.distributed import DistributedPool, FakeBackend, InProcessBackend
from tests.conftest import run
from tests.distributed.test_backend import FAIL, HANG, SINE

SLOW = {"name": "slow",
        "nodes": [{"id": "src", "type": "Passthrough"},
                  {"id": "slow", "type": "TestSlow", "config": {"delay": 0.002}}],
        "connections": [{"from": "src", "to": "slow"}]}


def test_results_match_pipeline_pool():
    async def go():
        async with DistributedPool(SINE, max_concurrent=2) as pool:
            ours = await asyncio.gather(*(pool.execute(triggers=4) for _ in range(3)))
        async with PipelinePool(SINE, max_concurrent=2) as ref:
            theirs = await asyncio.gather(*(ref.execute(triggers=4) for _ in range(3)))
        return pool, ours, theirs

    pool, ours, theirs = run(go())
    assert [r.instance for r in ours] == ["sine-gain#0", "sine-gain#1", "sine-gain#2"]
    for a, b in zip(ours, theirs):
        assert a.report["outputs"] == b.report.outputs == {"gain": 4}
        assert a.report["nodes"]["gain"]["fates"] == b.report.nodes["gain"].fates
        assert all(np.array_equal(x.block(), y.block())
                   for x, y in zip(a.results["gain"], b.results["gain"]))
    assert pool.backend.workers == 0  # made by the pool, closed by it


def test_admission_limit_across_workers_repr_and_statistics():
    async def go():
        fake = FakeBackend(workers=2)
        pool = DistributedPool(SLOW, fake, max_concurrent=3)
        fake.hold()
        handles = [pool.execute(DataFrame(0, i)) for i in range(8)]
        await asyncio.sleep(0.02)
        held = (repr(pool), pool.statistics(), len(fake.requests))
        fake.release()
        results = await asyncio.wait_for(asyncio.gather(*handles), 10)
        await pool.aclose()
        return pool, fake, held, results

    pool, fake, (text, st_held, requested), results = run(go())
    assert text == "<DistributedPool backend=fake workers=2 running=3 waiting=5 max_concurrent=3>"
    assert (st_held.running, st_held.waiting, requested) == (3, 5, 3)
    assert [r.results["slow"][0].sequence_id for r in results] == list(range(8))
    st = pool.statistics()
    assert (st.completed, st.running, st.waiting, st.failed, st.peak_running) == (8, 0, 0, 0, 3)
    assert pool._sem._value == 3
    assert fake.start_calls == 1 and fake.close_calls == 0  # not the pool's to close


def test_cancellation_while_waiting_or_running_never_leaks_permits():
    async def go():
        rng = random.Random(11)
        fake = FakeBackend()
        pool = DistributedPool(SLOW, fake, max_concurrent=4)
        handles = [pool.execute(triggers=rng.randint(1, 5)) for _ in range(120)]
        for _ in range(40):
            await asyncio.sleep(rng.random() * 0.004)
            rng.choice(handles).cancel()
        done = await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), 30)
        return pool, fake, done

    pool, fake, done = run(go())
    st = pool.statistics()
    cancelled = sum(isinstance(d, asyncio.CancelledError) for d in done)
    assert st.cancelled == cancelled > 0
    assert st.completed + st.cancelled == 120 and st.failed == 0
    assert st.peak_running <= 4 and st.running == 0 and st.waiting == 0
    assert pool._sem._value == 4
    assert set(fake.cancelled) <= {r.instance for r in fake.requests}


def test_cancelled_running_instance_is_stopped():
    async def go():
        pool = DistributedPool(HANG, max_concurrent=2)
        handle = pool.execute(triggers=3)
        for _ in range(200):
            if (await pool.snapshot()).get("hang#0"):
                break
            await asyncio.sleep(0.005)
        seen = await pool.snapshot()
        handle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(handle, 5)
        after = await pool.snapshot()
        await pool.aclose()
        return pool, seen, after

    pool, seen, after = run(go())
    assert list(seen) == ["hang#0"] and seen["hang#0"].nodes["src"]["received"] >= 1
    assert after == {} and pool.statistics().cancelled == 1


def test_failures_stay_on_their_handles():
    async def go():
        fake = FakeBackend()
        fake.kill("fail#1")
        async with DistributedPool(FAIL, fake, close_backend=True) as pool:
            handles = [pool.execute(triggers=1), pool.execute(triggers=1),
                       pool.execute(triggers=3)]
            done = await asyncio.gather(*handles, return_exceptions=True)
        return pool, fake, done

    pool, fake, (ok, dead, failed) = run(go())
    assert ok.report["state"] == "completed"
    assert isinstance(dead, BackendError) and "'fail#1'" in str(dead)
    assert isinstance(failed, PipelineError) and failed.node_id == "f"
    st = pool.statistics()
    assert (st.completed, st.failed, st.worker_failures) == (1, 2, 1)
    assert fake.close_calls == 1


def test_bad_arguments_and_closed_pool():
    with pytest.raises(PoolError, match="max_concurrent"):
        DistributedPool(SINE, max_concurrent=0)
    with pytest.raises(PoolError, match="unsupported pipeline options.*clock"):
        DistributedPool(SINE, clock=object())
    with pytest.raises(PoolError, match="'collect' or 'discard'"):
        DistributedPool(SINE, outputs="stream")

    async def go():
        pool = DistributedPool(SINE)
        await pool.aclose()
        pool.execute()

    with pytest.raises(PoolError, match="closed"):
        run(go())


def test_discard_outputs_and_a_failing_start():
    class BrokenStart(InProcessBackend):
        async def start(self):
            raise BackendError("no cluster here")

    async def go():
        async with DistributedPool(SINE, outputs="discard") as pool:
            r = await pool.execute(triggers=3)
        broken = DistributedPool(SINE, BrokenStart())
        done = await asyncio.gather(broken.execute(), broken.execute(), return_exceptions=True)
        await broken.aclose()
        return r, done

    r, done = run(go())
    assert r.results == {} and r.report["outputs"] == {"gain": 3}
    assert all(isinstance(d, BackendError) and "no cluster" in str(d) for d in done)
