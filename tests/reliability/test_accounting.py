"""Frame accounting under random faults at every node of a diamond graph.

Every frame that enters a node ends as exactly one fate; per node ``received == sum of
fates``; per edge, what the senders emitted is what the receivers received; no frame is
lost or duplicated; every injected fault is accounted once (RELIABILITY.md, "accounting").
The default run is small; ``-m slow`` (and ``scripts/reliability.py``) runs 20 seeds x 10,000.
"""

from __future__ import annotations

import pytest

from streamlab import AsyncPipeline
from streamlab.metrics.node_metrics import AccountingError
from tests.reliability import harness
from tests.reliability.harness import COMBOS, run_diamond, run_guarded

SEEDS = range(5)


def _assert_clean(r: dict) -> None:
    assert r["lost"] == 0, r
    assert r["duplicated"] == 0, r
    assert r["corrupt"] == 0, r
    assert r["unaccounted"] == 0, r
    if not r["combo"].startswith("propagate"):
        assert r["state"] == "completed" and r["injected"] > 0, r


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("combo", list(COMBOS))
def test_diamond_accounting(combo, seed):
    _assert_clean(run_guarded(lambda: run_diamond(combo, seed, 1000, p=0.02)))


@pytest.mark.parametrize("combo", ["skip-never", "default-exponential", "propagate-never"])
def test_diamond_accounting_unfused_and_debug(combo):
    r = run_guarded(lambda: run_diamond(combo, 7, 1000, p=0.02, fusion=False, debug=True))
    _assert_clean(r)


def test_fused_chain_accounting_with_faults_in_the_middle():
    nodes = [{"id": f"n{k}", "type": "RelFault", "config": {"probability": 0.05, "seed": k},
              "error_policy": {"policy": "SkipFrame"}, "restart": {"strategy": "Immediate",
              "max_restarts": 10_000}} for k in range(4)]
    cfg = {"name": "chain4", "pipeline_config": {"debug": True}, "nodes": nodes,
           "connections": [{"from": f"n{k}", "to": f"n{k + 1}"} for k in range(3)]}
    pipe = AsyncPipeline(cfg)
    assert pipe.chains == [["n0", "n1", "n2", "n3"]]  # one task
    report = run_guarded(lambda: pipe.run(frames=[harness.stamp(s) for s in range(500)]))
    harness.check_ledger(pipe, report, 500)
    injected = sum(len(harness.INJECTIONS[("chain4", f"n{k}")]) for k in range(4))
    assert len(pipe.results["n3"]) == 500 - injected
    assert all(harness.intact(f) for f in pipe.results["n3"])


def test_debug_mode_checks_accounting_itself():
    pipe = AsyncPipeline(harness.diamond_config("skip-never", 1), debug=True)

    async def go():
        await pipe.start()
        for s in range(20):
            await pipe.trigger(harness.stamp(s))
        pipe.metrics["a"].received += 1  # simulate a bug: a frame without a fate
        return await pipe.stop()

    with pytest.raises(AccountingError, match="node 'a': received"):
        run_guarded(go)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("combo", list(COMBOS))
def test_diamond_accounting_full(combo, seed):
    _assert_clean(run_guarded(lambda: run_diamond(combo, seed, 10_000)))
