"""PipelinePool under cancellation: never above the limit, no leaked permits, honest stats."""

from __future__ import annotations

import asyncio
import random

from streamlab import PipelinePool
from tests.reliability.harness import run_guarded

CONFIG = {
    "name": "pooled",
    "nodes": [{"id": "src", "type": "Passthrough"},
              {"id": "work", "type": "RelSleep", "config": {"delay": 0.002}}],
    "connections": [{"from": "src", "to": "work"}],
}


def test_200_submissions_30_percent_cancelled():
    rng = random.Random(42)

    async def go():
        pool = PipelinePool(CONFIG, max_concurrent=4)
        observed: list[int] = []
        pool.on_instance = lambda pipe: observed.append(pool.running)
        tasks = [pool.execute(triggers=rng.randint(1, 4)) for _ in range(200)]
        victims = rng.sample(tasks, 60)
        for k, t in enumerate(victims):
            if k % 2:
                await asyncio.sleep(rng.uniform(0, 0.004))  # some while running
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await pool.join()
        await pool.close()
        return pool, tasks, results, observed

    pool, tasks, results, observed = run_guarded(go)
    stats = pool.statistics()
    cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
    completed = sum(not isinstance(r, BaseException) for r in results)
    assert cancelled > 0 and completed > 0
    assert stats.peak_running <= 4 and max(observed) <= 4
    assert pool._sem._value == 4  # no leaked permits
    assert stats.running == 0 and stats.waiting == 0
    assert stats.submitted == 200
    assert stats.completed == completed and stats.cancelled == cancelled
    assert stats.completed + stats.cancelled + stats.failed == 200
    for r in results:
        if not isinstance(r, BaseException):
            fates = r.report.fates()["work"]
            assert fates["received"] == fates["delivered"]
