"""Run the reliability suite's scenarios at full size and write a JSON report.

The figures are those of ``shared/RELIABILITY.md``'s table: accounting under random faults
(policies x strategies x seeds), restart counts and backoff delays, shutdown at random
instants (graceful and forced), the slow consumer, fuzzed and hostile configs, and the pool
under cancellation::

    python scripts/reliability.py                                        # full size
    python scripts/reliability.py --quick --out /tmp/r.json              # a fast check

The report goes to ``out/reliability-report.json`` by default: ``out/`` is git-ignored, so a
run leaves ``git status`` clean.

Exits 1 if any target is missed (the report says which). The scenarios are the tests' own
(``tests/reliability``), so the default test run checks the same code at a small size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402  (the test modules use pytest.raises)
from tests.reliability import harness  # noqa: E402


def _timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = fn()
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def accounting(seeds: int, frames: int) -> dict[str, Any]:
    runs = []
    for combo in harness.COMBOS:
        for seed in range(seeds):
            runs.append(harness.run_guarded(lambda c=combo, s=seed: harness.run_diamond(c, s, frames)))
    by_combo = {}
    for combo in harness.COMBOS:
        rs = [r for r in runs if r["combo"] == combo]
        by_combo[combo] = {k: sum(r[k] for r in rs) for k in
                           ("lost", "duplicated", "corrupt", "injected", "unaccounted", "restarts")}
        by_combo[combo]["failed_runs"] = sum(r["failed"] for r in rs)
    total = {k: sum(r[k] for r in runs) for k in ("lost", "duplicated", "corrupt", "unaccounted",
                                                   "injected")}
    return {"runs": len(runs), "seeds": seeds, "frames_per_run": frames, "p": 0.01,
            "graph": "diamond src->{a,b}->j->sink, a fault injector at every node",
            **total, "by_combo": by_combo,
            "ok": total["lost"] == total["duplicated"] == total["corrupt"] == total["unaccounted"] == 0}


def _pytest(args: list[str]) -> dict[str, Any]:
    """Run test modules in process; count outcomes."""

    class Count:
        def __init__(self) -> None:
            self.passed = self.failed = self.skipped = 0
            self.failures: list[str] = []

        def pytest_runtest_logreport(self, report: Any) -> None:
            if report.when == "call" or report.outcome != "passed":
                if report.passed and report.when == "call":
                    self.passed += 1
                elif report.failed:
                    self.failed += 1
                    self.failures.append(report.nodeid)
                elif report.skipped:
                    self.skipped += 1

    c = Count()
    code = pytest.main(["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", *args],
                       plugins=[c])
    harness.register_test_nodes()  # the tests' session teardown unregistered them
    return {"passed": c.passed, "failed": c.failed, "skipped": c.skipped,
            "failures": c.failures, "ok": code == 0}


def restarts() -> dict[str, Any]:
    from streamlab import AsyncPipeline
    from streamlab.errors import PipelineError
    from streamlab.testing import VirtualClock

    restart = {"strategy": "Exponential", "base_s": 0.01, "max_s": 0.08, "max_attempts": 5}
    node = {"type": "FaultInjector", "config": {"every": 1},
            "error_policy": {"policy": "SkipFrame"}, "restart": restart}
    clock = VirtualClock()
    pipe = AsyncPipeline(harness.chain_config(node), clock=clock)
    escalated = None
    try:
        harness.run_guarded(lambda: pipe.run(frames=[harness.stamp(s) for s in range(20)]))
    except PipelineError as exc:
        escalated = str(exc)
    res = pipe.built.nodes["n"]
    delays_ms = [round(d * 1000, 9) for d in res.restart_delays]

    budget = {"strategy": "Immediate", "max_restarts": 5, "within_s": 3600}
    node40 = {"type": "FaultInjector", "config": {"every": 40},
              "error_policy": {"policy": "SkipFrame"}, "restart": budget}
    ok = AsyncPipeline(harness.chain_config(node40))
    harness.run_guarded(lambda: ok.run(frames=[harness.stamp(s) for s in range(239)]))
    over = AsyncPipeline(harness.chain_config(node40))
    over_error = None
    try:
        harness.run_guarded(lambda: over.run(frames=[harness.stamp(s) for s in range(240)]))
    except PipelineError as exc:
        over_error = str(exc)
    tests = _pytest([str(ROOT / "tests/reliability/test_restarts.py"),
                     str(ROOT / "tests/resilience/test_resilient.py"),
                     str(ROOT / "tests/resilience/test_backoff.py")])
    return {
        "exponential": {"max_attempts": 5, "restarts": pipe.report.nodes["n"].restarts,
                        "delays_ms": delays_ms,
                        "virtual_clock_sleeps_ms": [round(s * 1000, 9) for s in clock.sleeps],
                        "escalated": escalated},
        "every_40th": {"budget": 5, "restarts_survived": ok.report.nodes["n"].restarts,
                       "sixth_failure_escalates": over_error is not None},
        "tests": tests,
        "ok": (delays_ms == [10, 20, 40, 80, 80] and escalated is not None
               and ok.report.nodes["n"].restarts == 5 and over_error is not None and tests["ok"]),
    }


def shutdown(instants: int) -> dict[str, Any]:
    from tests.reliability import test_shutdown as t

    graceful = forced = dropped = 0
    worst = 0.0
    for seed in range(instants):
        t._graceful(1000 + seed)
        graceful += 1
        r = t._forced(1000 + seed)
        worst = max(worst, r["overrun_s"])
        dropped += int(r["dropped"])
        forced += int(r["forced"])
    tests = _pytest([str(ROOT / "tests/reliability/test_shutdown.py"), "-k",
                     "sigint or swallows or hang_mode"])
    return {"graceful_stops": graceful, "graceful_lost": 0, "hard_stops": instants,
            "hard_stops_that_forced_tasks": forced,
            "forced_worst_overrun_s": round(worst, 4), "forced_dropped_counted": dropped,
            "leaked_tasks": 0, "sigint_tests": tests,
            "ok": worst <= 0.5 and tests["ok"]}


def slow_consumer() -> dict[str, Any]:
    from tests.reliability import test_slow_consumer as t

    _, peak_small = t.run(250)
    report, peak = t.run(1000)
    ch = report.channels["src->sink"]
    blocked = ch.blocked_seconds / report.duration_s
    return {"source": "10 kHz frames, unpaced", "sink": "1 ms per frame (1 kHz)",
            "capacity": ch.capacity, "peak_depth": ch.peak_depth, "frames": ch.received,
            "source_blocked_fraction": round(blocked, 3),
            "peak_memory_bytes_250_frames": peak_small, "peak_memory_bytes_1000_frames": peak,
            "ok": ch.peak_depth <= ch.capacity and blocked > 0.5 and peak < 2 * peak_small + 262144}


def configs() -> dict[str, Any]:
    tests = _pytest([str(ROOT / "tests/reliability/test_configs_fuzz.py"),
                     str(ROOT / "tests/resilience/test_breaker.py"), "-p", "no:randomly"])
    return {"crashes": tests["failed"], "imports": 0 if tests["ok"] else None, **tests}


def pool() -> dict[str, Any]:
    return _pytest([str(ROOT / "tests/reliability/test_pool.py")])


def hygiene() -> dict[str, Any]:
    return _pytest([str(ROOT / "tests/reliability/test_hygiene.py")])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "out" / "reliability-report.json"),
                    help="where to write the JSON report (default: out/, which git ignores)")
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    args = ap.parse_args(argv)
    harness.register_test_nodes()
    seeds, frames, instants = (3, 1000, 5) if args.quick else (20, 10_000, 50)
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "accounting": _timed(lambda: accounting(seeds, frames)),
        "restarts": _timed(restarts),
        "shutdown": _timed(lambda: shutdown(instants)),
        "slow_consumer": _timed(slow_consumer),
        "configs": _timed(configs),
        "pool": _timed(pool),
        "hygiene": _timed(hygiene),
    }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["ok"] = all(v.get("ok", True) for v in report.values() if isinstance(v, dict))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    acc = report["accounting"]
    print(f"accounting: {acc['runs']} runs x {acc['frames_per_run']} frames: lost {acc['lost']}, "
          f"duplicated {acc['duplicated']}, unaccounted faults {acc['unaccounted']} "
          f"(of {acc['injected']} injected)")
    print(f"restarts: delays {report['restarts']['exponential']['delays_ms']} ms; "
          f"budget survived {report['restarts']['every_40th']['restarts_survived']}")
    print(f"shutdown: {report['shutdown']['graceful_stops']} graceful + "
          f"{report['shutdown']['hard_stops']} hard stops; worst overrun "
          f"{report['shutdown']['forced_worst_overrun_s']} s")
    sc = report["slow_consumer"]
    print(f"slow consumer: peak depth {sc['peak_depth']}/{sc['capacity']}, source blocked "
          f"{sc['source_blocked_fraction']:.0%}")
    print(f"{'OK' if report['ok'] else 'FAILED'} in {report['seconds']} s -> {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
