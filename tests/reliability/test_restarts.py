"""Restarts through the runtime: exact budgets, exact backoff on a virtual clock, escalation."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamlab import AsyncPipeline
from streamlab.errors import PipelineError
from streamlab.nodes.fault import FaultInjected
from streamlab.testing import VirtualClock
from tests.reliability.harness import chain_config, run_guarded, stamp

SKIP = {"policy": "SkipFrame"}


def fault(config: dict, restart: dict) -> dict:
    return {"type": "FaultInjector", "config": config, "error_policy": SKIP, "restart": restart}


@pytest.mark.parametrize("fusion", [True, False])
def test_every_40th_survives_exactly_the_budgeted_restarts(fusion):
    restart = {"strategy": "Immediate", "max_restarts": 5, "within_s": 3600}
    ok = AsyncPipeline(chain_config(fault({"every": 40}, restart)), fusion=fusion, debug=True)
    report = run_guarded(lambda: ok.run(frames=[stamp(s) for s in range(5 * 40 + 39)]))
    assert report.nodes["n"].restarts == 5 and report.fates()["n"]["skipped"] == 5
    assert len(ok.results["sink"]) == 5 * 40 + 39 - 5

    over = AsyncPipeline(chain_config(fault({"every": 40}, restart)), fusion=fusion, debug=True)
    with pytest.raises(PipelineError) as info:
        run_guarded(lambda: over.run(frames=[stamp(s) for s in range(6 * 40)]))
    assert info.value.node_id == "n"
    assert "restart intensity exceeded: more than 5 restarts" in str(info.value)
    assert over.report.nodes["n"].restarts == 5
    # every good frame is delivered or counted aborted: at the sink (queued for it, or made
    # in the same fused batch) or at n (made in the batch that failed, never sent); the one
    # failing frame is n's own abort
    delivered = len(over.results["sink"])
    fates = over.report.fates()
    assert delivered + fates["sink"]["aborted"] + fates["n"]["aborted"] - 1 == 6 * 39


@pytest.mark.parametrize("fusion", [True, False])
def test_permanent_failure_escalates_after_max_attempts_with_exact_delays(fusion):
    clock = VirtualClock()
    restart = {"strategy": "Exponential", "base_s": 0.01, "max_s": 0.08, "max_attempts": 5}
    pipe = AsyncPipeline(chain_config(fault({"every": 1}, restart)), clock=clock, fusion=fusion)
    with pytest.raises(PipelineError) as info:
        run_guarded(lambda: pipe.run(frames=[stamp(s) for s in range(20)]))
    res = pipe.built.nodes["n"]
    assert res.restart_delays == [0.01, 0.02, 0.04, 0.08, 0.08]
    assert clock.sleeps == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08], abs=1e-12)
    assert pipe.report.nodes["n"].restarts == 5 and pipe.report.nodes["n"].errors == 6
    assert info.value.node_id == "n" and "gave up after 5 restarts" in str(info.value)
    assert isinstance(info.value.__cause__, FaultInjected)
    for nid, f in pipe.report.fates().items():
        assert f["received"] == sum(v for k, v in f.items() if k != "received"), nid


def test_exponential_jitter_never_exceeds_max_in_a_run():
    clock = VirtualClock()
    restart = {"strategy": "Exponential", "base_s": 0.01, "max_s": 0.05, "max_attempts": 8,
               "jitter": 0.5, "seed": 3}
    pipe = AsyncPipeline(chain_config(fault({"every": 1}, restart)), clock=clock)
    with pytest.raises(PipelineError):
        run_guarded(lambda: pipe.run(frames=[stamp(s) for s in range(20)]))
    delays = pipe.built.nodes["n"].restart_delays
    assert len(delays) == 8 and max(delays) <= 0.05
    for k, d in enumerate(delays, 1):
        raw = 0.01 * 2 ** (k - 1)
        assert min(0.05, raw * 0.5) <= d <= min(0.05, raw * 1.5)


def test_healthy_period_resets_attempts_in_a_run():
    clock = VirtualClock()
    # every 3rd frame fails; each restart waits 1 s (virtual) which is the healthy period
    restart = {"strategy": "Exponential", "base_s": 1.0, "max_s": 1.0, "max_attempts": 1,
               "healthy_after_s": 1.0}
    pipe = AsyncPipeline(chain_config(fault({"every": 3}, restart)), clock=clock, debug=True)
    report = run_guarded(lambda: pipe.run(frames=[stamp(s) for s in range(30)]))
    res = pipe.built.nodes["n"]
    assert res.restart_delays == [1.0] * 10  # never escalates: attempt 1 each time
    assert report.nodes["n"].errors == 10 and len(pipe.results["sink"]) == 20
    assert report.nodes["n"].restarts == 9  # the last failure's restart had no frame left


def test_stopping_during_a_backoff_wait_cancels_the_restart():
    restart = {"strategy": "Exponential", "base_s": 60.0, "max_s": 60.0}
    pipe = AsyncPipeline(chain_config(fault({"every": 2}, restart)), debug=True)

    async def go():
        await pipe.start()
        for s in range(5):
            await pipe.trigger(stamp(s))
        await asyncio.sleep(0.05)  # frame 1 failed; frame 2 waits for the 60 s backoff
        t0 = time.monotonic()
        report = await pipe.stop(timeout=0.2)
        return report, time.monotonic() - t0

    report, took = run_guarded(go)
    assert took < 0.2 + 0.5
    assert report.state == "forced" and "n" in report.forced_nodes
    assert report.nodes["n"].restarts == 0
    f = report.fates()["n"]
    # the fused chain passes the batch stage by stage: frames 2-4 had all passed src and
    # were waiting at n for the restart, so they are dropped there
    assert (f["delivered"], f["skipped"], f["dropped_shutdown"]) == (1, 1, 3)
    assert sum(v["dropped_shutdown"] for v in report.fates().values()) == 3
    assert len(pipe.results["sink"]) == 1
