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
