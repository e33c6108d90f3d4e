import asyncio
import random

import pytest

from streamlab import DataFrame, PipelineError, PipelinePool, PoolError
from tests.conftest import run

SLOW = {"nodes": [{"id": "src", "type": "Passthrough"},
                  {"id": "slow", "type": "TestSlow", "config": {"delay": 0.002}}],
        "connections": [{"from": "src", "to": "slow"}]}


def test_limits_results_and_repr():
    async def go():
        pool = PipelinePool(SLOW, max_concurrent=3)
        peak = 0

        def watch(_pipe):
            nonlocal peak
            peak = max(peak, pool.running)

        pool.on_instance = watch
        handles = [pool.execute(DataFrame(0, i)) for i in range(10)]
        await asyncio.sleep(0)
        text = repr(pool)
        results = await asyncio.gather(*handles)
        return pool, results, peak, text

    pool, results, peak, text = run(go())
    assert text.startswith("<PipelinePool running=") and "max_concurrent=3" in text
    assert [r.results["slow"][0].sequence_id for r in results] == list(range(10))
    assert peak <= 3 and pool.statistics().peak_running == 3
    st = pool.statistics()
    assert (st.completed, st.running, st.waiting, st.failed) == (10, 0, 0, 0)
    assert pool._sem._value == 3


def test_cancellation_never_leaks_permits():
    async def go():
        rng = random.Random(7)
        pool = PipelinePool(SLOW, max_concurrent=4)
        handles = [pool.execute(triggers=rng.randint(1, 5)) for _ in range(200)]
        for _ in range(60):
            await asyncio.sleep(rng.random() * 0.004)
            rng.choice(handles).cancel()
        done = await asyncio.gather(*handles, return_exceptions=True)
        return pool, done

    pool, done = run(go())
    st = pool.statistics()
    cancelled = sum(isinstance(d, asyncio.CancelledError) for d in done)
    assert st.cancelled == cancelled > 0
    assert st.completed + st.cancelled == 200 and st.failed == 0
    assert st.peak_running <= 4 and st.running == 0 and st.waiting == 0
    assert pool._sem._value == 4


def test_failure_stays_on_its_handle():
    cfg = {"nodes": [{"id": "b", "type": "TestBoom", "config": {"fail_on": [1]}}]}

    async def go():
        async with PipelinePool(cfg, max_concurrent=2) as pool:
            ok = pool.execute(DataFrame(0, 0))
            bad = pool.execute(DataFrame(0, 1))
            with pytest.raises(PipelineError, match="boom at 1"):
                await bad
            return (await ok).report.state, pool.statistics()

    state, st = run(go())
    assert state == "completed" and st.failed == 1 and st.completed == 1


def test_bad_limits_and_closed_pool():
    with pytest.raises(PoolError):
        PipelinePool(SLOW, max_concurrent=0)

    async def go():
        pool = PipelinePool(SLOW, max_concurrent=1)
        await pool.close()
        with pytest.raises(PoolError, match="closed"):
            pool.execute()

    run(go())


def test_one_pool_runs_here_or_on_a_backend_with_one_result_shape():
    from streamlab.distributed import DistributedPool, FakeBackend
    from streamlab.runtime import PoolResult, PoolStatistics

    async def go():
        fake = FakeBackend(workers=2)
        async with PipelinePool(SLOW, max_concurrent=2, backend=fake) as remote:
            far = await asyncio.gather(*(remote.execute(DataFrame(0, i)) for i in range(3)))
            text = repr(remote)
        async with PipelinePool(SLOW, max_concurrent=2) as local:
            live: dict = {}

            def watch(pipe):
                live["snap"] = asyncio.ensure_future(local.snapshot())

            local.on_instance = watch
            near = await asyncio.gather(*(local.execute(DataFrame(0, i)) for i in range(3)))
            snap = await live["snap"]
        return fake, remote, local, far, near, text, snap

    fake, remote, local, far, near, text, snap = run(go())
    assert all(type(r) is PoolResult for r in far + near)
    assert [r.worker for r in near] == ["local"] * 3
    assert {r.worker for r in far} <= {"fake-0", "fake-1"}
    for a, b in zip(far, near):
        assert a.report["outputs"] == b.report.outputs and a.results == b.results
    assert text == "<PipelinePool backend=fake workers=2 running=0 waiting=0 max_concurrent=2>"
    assert fake.start_calls == 1 and fake.close_calls == 0  # a backend passed in: the caller's
    st, lst = remote.statistics(), local.statistics()
    assert type(st) is type(lst) is PoolStatistics
    assert (st.backend, st.workers, st.completed) == ("fake", 2, 3)
    assert (lst.backend, lst.workers, lst.completed) == ("local", 1, 3)
    assert list(snap) and all(s.worker == "local" for s in snap.values())
    assert issubclass(DistributedPool, PipelinePool)


def test_close_and_aclose_are_one_method_on_every_pool():
    from streamlab.distributed import DistributedPool

    for cls in (PipelinePool, DistributedPool):
        assert cls.close is cls.aclose

    async def go():
        pool = PipelinePool(SLOW, max_concurrent=1)
        handle = pool.execute(triggers=50)
        await pool.aclose()
        return handle, pool.statistics()

    handle, st = run(go())
    assert handle.cancelled() and st.cancelled == 1 and st.running == 0


def test_backend_pool_refuses_options_that_cannot_travel():
    from streamlab.distributed import FakeBackend

    with pytest.raises(PoolError, match="unsupported pipeline options.*clock"):
        PipelinePool(SLOW, backend=FakeBackend(), clock=object())
