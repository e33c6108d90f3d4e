"""asyncio hygiene: no "exception was never retrieved", no "never awaited", no leaked tasks.

In process, every scenario runs under :func:`harness.run_guarded` (a loop exception handler
records reports; leaked tasks fail). In a subprocess, the same scenarios run under
``python -X dev -W error::RuntimeWarning`` and stderr is checked.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from streamlab import AsyncPipeline, PipelinePool
from streamlab.errors import PipelineError
from tests.reliability import harness
from tests.reliability.harness import chain_config, run_guarded, stamp

ROOT = Path(__file__).parents[2]


async def failing_run() -> None:
    pipe = AsyncPipeline(harness.diamond_config("propagate-never", 3, p=0.05))
    with pytest.raises(PipelineError):
        await pipe.run(frames=[stamp(s) for s in range(300)])


async def forced_stop() -> None:
    cfg = chain_config({"type": "FaultInjector", "config": {"every": 5, "mode": "hang"}})
    pipe = AsyncPipeline(cfg)
    await pipe.start()
    for s in range(20):
        await pipe.trigger(stamp(s))
    await asyncio.sleep(0.01)
    await pipe.stop(timeout=0.01)


async def failure_while_sources_block() -> None:
    cfg = chain_config({"type": "FaultInjector", "config": {"at": [40]}},
                       settings={"channel_capacity": 2})
    pipe = AsyncPipeline(cfg)
    with pytest.raises(PipelineError):
        await pipe.run(frames=[stamp(s) for s in range(200)])


async def pool_cancellations() -> None:
    pool = PipelinePool(chain_config({"type": "RelSleep", "config": {"delay": 0.001}}),
                        max_concurrent=2)
    tasks = [pool.execute(triggers=3) for _ in range(12)]
    await asyncio.sleep(0.003)
    for t in tasks[::3]:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await pool.close()


SCENARIOS = [failing_run, forced_stop, failure_while_sources_block, pool_cancellations]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_no_unretrieved_exceptions_or_leaked_tasks(scenario):
    run_guarded(scenario)


def test_under_python_dev_mode():
    code = (
        "import asyncio, sys\n"
        "from tests.reliability import harness, test_hygiene as t\n"
        "harness.register_test_nodes()\n"
        "for s in t.SCENARIOS:\n"
        "    harness.run_guarded(s)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-X", "dev", "-X", "faulthandler",
                           "-W", "error::RuntimeWarning", "-c", code],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
    for bad in ("never retrieved", "was never awaited", "Task was destroyed"):
        assert bad not in proc.stderr, proc.stderr[-3000:]
