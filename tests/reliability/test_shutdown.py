"""Shutdown under load: graceful stops lose nothing, forced stops are bounded and counted.

Also SIGINT once (graceful, exit 0) and twice (forced, non-zero) for ``streamlab run``, with
no traceback either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from streamlab import AsyncPipeline
from streamlab.errors import PipelineStopped
from tests.reliability.harness import check_ledger, intact, run_guarded, stamp

STREAMLAB = str(Path(sys.executable).with_name("streamlab"))


def loaded_diamond(delay: float = 0.0) -> dict:
    """src -> {a, b} -> j -> sink; sink sleeps ``delay`` per frame (0: as fast as possible)."""
    sink = {"id": "sink", "type": "RelSleep", "config": {"delay": delay}}
    return {
        "name": "load",
        "pipeline_config": {"channel_capacity": 8, "debug": True},
        "nodes": [{"id": "src", "type": "Passthrough"}, {"id": "a", "type": "Passthrough"},
                  {"id": "b", "type": "Gain", "config": {"gain": 1.0}},
                  {"id": "j", "type": "Passthrough"}, sink],
        "connections": [{"from": "src", "to": "a"}, {"from": "src", "to": "b"},
                        {"from": "a", "to": "j"}, {"from": "b", "to": "j"},
                        {"from": "j", "to": "sink"}],
    }


async def feed(pipe: AsyncPipeline) -> int:
    """Trigger stamped frames until the pipeline refuses; returns how many were sent."""
    sent = 0
    try:
        while True:
            await pipe.trigger(stamp(sent))
            sent += 1
            if sent % 16 == 0:
                await asyncio.sleep(0)
    except PipelineStopped:
        return sent


async def stop_at(instant: float, timeout: float | None, delay: float):
    pipe = AsyncPipeline(loaded_diamond(delay))
    await pipe.start()
    feeder = asyncio.create_task(feed(pipe))
    await asyncio.sleep(instant)
    t0 = time.monotonic()
    report = await pipe.stop(timeout=timeout)
    took = time.monotonic() - t0
    sent = await feeder
    return pipe, report, sent, took


def _graceful(seed: int) -> None:
    instant = random.Random(seed).uniform(0.0, 0.03)
    pipe, report, sent, _ = run_guarded(lambda: stop_at(instant, None, 0.0))
    assert report.state == "completed" and report.forced_nodes == ()
    check_ledger(pipe, report, sent)
    out = pipe.results["sink"]
    seen = Counter(f.sequence_id for f in out)
    assert seen == Counter({s: 2 for s in range(sent)}), "graceful stop lost or duplicated frames"
    assert all(intact(f) for f in out)
    dropped = sum(f["dropped_shutdown"] + f["aborted"] for f in report.fates().values())
    assert dropped == 0


def _forced(seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    instant, timeout = rng.uniform(0.0, 0.03), rng.choice([0.0, 0.01, 0.05])
    pipe, report, sent, took = run_guarded(lambda: stop_at(instant, timeout, 0.001))
    assert took <= timeout + 0.5
    check_ledger(pipe, report, sent)
    seen = Counter(f.sequence_id for f in pipe.results["sink"])
    assert all(c <= 2 for c in seen.values()), "forced stop duplicated frames"
    dropped = sum(f["dropped_shutdown"] for f in report.fates().values())
    if report.state == "forced":
        assert report.forced_nodes and set(report.forced_nodes) <= set(pipe.built.nodes)
        assert dropped > 0
    else:
        assert report.state == "completed" and dropped == 0
    # every frame sent is either at the sink (twice) or counted dropped somewhere on its way
    assert 2 * sent == len(pipe.results["sink"]) + sum(
        f["dropped_shutdown"] * (2 if n == "src" else 1) for n, f in report.fates().items())
    return {"overrun_s": took - timeout, "dropped": dropped, "forced": report.state == "forced"}


@pytest.mark.parametrize("seed", range(10))
def test_graceful_stop_at_random_instants_loses_nothing(seed):
    _graceful(seed)


@pytest.mark.parametrize("seed", range(10))
def test_forced_stop_at_random_instants_is_bounded_and_counted(seed):
    _forced(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(50))
def test_stop_at_50_random_instants(seed):
    _graceful(1000 + seed)
    _forced(1000 + seed)


def test_forced_stop_of_a_node_that_swallows_a_cancellation():
    cfg = {"name": "stubborn", "nodes": [{"id": "src", "type": "Passthrough"},
                                         {"id": "s", "type": "RelStubborn", "config": {"at": 3}}],
           "connections": [{"from": "src", "to": "s"}]}

    async def go():
        pipe = AsyncPipeline(cfg)
        await pipe.start()
        for i in range(10):
            await pipe.trigger(stamp(i))
        await asyncio.sleep(0.02)
        t0 = time.monotonic()
        report = await pipe.stop(timeout=0.05)
        return report, time.monotonic() - t0

    report, took = run_guarded(go)
    assert took <= 0.05 + 0.5
    assert report.forced_nodes == ("s",)
    f = report.fates()["s"]
    assert (f["received"], f["delivered"], f["dropped_shutdown"]) == (10, 3, 7)


def test_hang_mode_fault_is_forced_and_counted():
    cfg = {"name": "hang", "nodes": [
        {"id": "src", "type": "Passthrough"},
        {"id": "h", "type": "FaultInjector", "config": {"at": [2], "mode": "hang"}}],
        "connections": [{"from": "src", "to": "h"}]}

    async def go():
        pipe = AsyncPipeline(cfg, debug=True)
        await pipe.start()
        for i in range(6):
            await pipe.trigger(stamp(i))
        await asyncio.sleep(0.02)
        return pipe, await pipe.stop(timeout=0.02)

    pipe, report = run_guarded(go)
    assert report.forced_nodes == ("h",) and len(pipe.results["h"]) == 2
    assert report.fates()["h"]["dropped_shutdown"] == 4


# -- SIGINT -----------------------------------------------------------------------------------
FREE_RUN_BUILTIN = {
    "name": "free",
    "nodes": [{"id": "sine", "type": "SineGenerator",
               "config": {"mode": "free", "realtime": True, "frequency": 5.0,
                          "sample_rate": 1000.0, "samples_per_frame": 10}},
              {"id": "gain", "type": "Gain", "config": {"gain": 2.0}}],
    "connections": [{"from": "sine", "to": "gain"}],
}


def _interrupt(tmp_path: Path, times: int) -> tuple[int, str, dict | None]:
    cfg = tmp_path / "free.json"
    cfg.write_text(json.dumps(FREE_RUN_BUILTIN))
    summary = tmp_path / "summary.json"
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([STREAMLAB, "run", str(cfg), "--summary", str(summary),
                             "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 20  # running once frames reach the output file
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.stat().st_size > 0:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "streamlab run ended before it was interrupted"
        for _ in range(times):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    data = json.loads(summary.read_text()) if summary.exists() else None
    return proc.returncode, err, data


def test_one_sigint_stops_gracefully(tmp_path):
    code, err, summary = _interrupt(tmp_path, 1)
    assert code == 0, err
    assert "Traceback" not in err
    assert summary is not None and summary["state"] == "stopped"  # stopped by a signal
    fates = summary["nodes"]["gain"]["fates"]
    assert summary["nodes"]["gain"]["received"] == fates["delivered"] > 0


def test_two_sigints_force_and_exit_nonzero(tmp_path):
    code, err, _ = _interrupt(tmp_path, 2)
    assert code != 0
    assert "Traceback" not in err
