"""LSLInlet and LSLOutlet (streamlab.nodes.lsl) against real pylsl outlets and inlets.

Discovery stays on this machine: ``LSLAPICFG`` points to ``lsl_api.cfg`` next to this file
(ResolveScope = machine, KnownPeers = 127.0.0.1, no IPv6). liblsl reads its config at its
first network operation, so the variable is set when this module is imported (collection
happens before any test runs). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ["LSLAPICFG"] = str(Path(__file__).with_name("lsl_api.cfg"))
pylsl = pytest.importorskip("pylsl")

from streamlab.errors import BackendError, ConfigError, PipelineError  # noqa: E402
from streamlab.frame import DataFrame  # noqa: E402
from streamlab.nodes.lsl import LSLInlet, stream_predicate  # noqa: E402
from streamlab.runtime import AsyncPipeline  # noqa: E402

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def test_pylsl_outlet_to_inlet_node_is_bit_identical():
    name = unique("sl-in")
    info = pylsl.StreamInfo(name, "EEG", 3, 250.0, "double64", unique("src"))
    info.set_channel_labels(["Fz", "Cz", "Pz"])
    outlet = pylsl.StreamOutlet(info)
    rng = np.random.default_rng(7)
    data = rng.standard_normal((600, 3)) * 1e-5
    data[5, 1] = -0.0
    config = {"name": "lsl-in", "nodes": [
        {"id": "lsl", "type": "LSLInlet",
         "config": {"name": name, "resolve_timeout": 5.0, "idle_timeout": 1.0,
                    "max_samples": 128, "timestamp_channel": "lsl_t"}},
        {"id": "out", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "lsl", "to": "out"}]}

    async def go() -> tuple[list[DataFrame], float]:
        pipe = AsyncPipeline(config)
        await pipe.start()  # on_start resolves and opens the stream
        pipe.close_triggers()
        assert await wait_for(outlet.have_consumers, 5.0)
        stamp = pylsl.local_clock()
        for k in range(0, 600, 100):
            outlet.push_chunk(data[k:k + 100], stamp + (k + 99) / 250.0)
        await asyncio.wait_for(pipe.join(), 10.0)  # ends after idle_timeout without data
        return pipe.results["out"], stamp

    try:
        frames, stamp = asyncio.run(go())
    finally:
        outlet = None  # destroys it; the node's on_stop closed the inlet first
    assert frames and all(f.n_samples <= 128 for f in frames)
    assert frames[0].channels == ("Fz", "Cz", "Pz", "lsl_t")
    got = np.concatenate([f.block() for f in frames], axis=1)
    assert got[:3].T.tobytes() == data.tobytes()  # bit for bit
    assert [f.sequence_id for f in frames] == list(range(len(frames)))
    assert all(f.metadata["sample_rate"] == "250.0" for f in frames)
    # timestamps: LSL time of each frame's first sample, mapped to epoch µs on the same offset
    lsl_t = got[3]
    assert np.allclose(lsl_t, stamp + np.arange(600) / 250.0, atol=1e-3)  # clocksync on one host
    first = np.array([float(f.metadata["lsl_timestamp"]) for f in frames])
    offsets = np.array([f.timestamp for f in frames]) - first * 1e6
    assert np.ptp(offsets) <= 1  # one offset for the whole run (rounding only)
    assert abs(offsets[0] - (time.time_ns() / 1000 - pylsl.local_clock() * 1e6)) < 1e6


def test_outlet_node_to_pylsl_inlet():
    name = unique("sl-out")
    frames_n, spf = 20, 50
    config = {"name": "lsl-out", "nodes": [
        {"id": "sine", "type": "SineGenerator",
         "config": {"frequency": 5.0, "sample_rate": 500.0, "samples_per_frame": spf,
                    "channels": ["a", "b"]}},
        {"id": "pub", "type": "LSLOutlet",
         "config": {"name": name, "type": "Test", "wait_for_consumers": 10.0}}],
        "connections": [{"from": "sine", "to": "pub"}]}

    def receive() -> tuple[np.ndarray, list[str]]:
        found = pylsl.resolve_bypred(f"name='{name}'", 1, 10.0)
        assert found, "the LSLOutlet stream was not found"
        inlet = pylsl.StreamInlet(found[0])
        try:
            inlet.open_stream(5.0)
            labels = inlet.info(5.0).get_channel_labels()
            chunks, total, deadline = [], 0, time.monotonic() + 10.0
            while total < frames_n * spf and time.monotonic() < deadline:
                x, ts = inlet.pull_chunk(timeout=0.2, max_samples=4096, as_numpy=True)
                chunks.append(x)
                total += len(ts)
        finally:
            inlet.close_stream()  # close the inlet before the outlet goes
        return np.concatenate(chunks), labels

    async def go() -> tuple[np.ndarray, list[str]]:
        pipe = AsyncPipeline(config)
        await pipe.start()
        receiver = asyncio.create_task(asyncio.to_thread(receive))
        for _ in range(frames_n):
            await pipe.trigger()  # the first frame creates the outlet and waits for the inlet
        received, labels = await asyncio.wait_for(receiver, 30.0)
        await pipe.stop(timeout=5.0)
        return received, labels

    received, labels = asyncio.run(go())
    from streamlab.nodes.generators import SineGenerator
    from streamlab.testing import run_node

    expected = run_node(SineGenerator, config["nodes"][0]["config"], triggers=frames_n)
    sent = np.concatenate([f.block() for f in expected], axis=1).T
    assert labels == ["a", "b"]
    assert received.dtype == np.float64 and received.tobytes() == sent.tobytes()


def test_stream_not_found_is_a_clear_error():
    config = {"name": "t", "nodes": [
        {"id": "lsl", "type": "LSLInlet",
         "config": {"type": unique("NoSuchType"), "resolve_timeout": 0.3}}]}

    async def go() -> None:
        pipe = AsyncPipeline(config)
        await pipe.run(triggers=0)

    with pytest.raises((PipelineError, BackendError)) as info:
        asyncio.run(go())
    text = str(info.value) + str(info.value.__cause__)
    assert "no LSL stream matching type='NoSuchType" in text and "0.3 s" in text


def test_config_needs_a_query():
    with pytest.raises(ConfigError, match="at least one of name, type or source_id"):
        AsyncPipeline({"name": "t", "nodes": [{"id": "l", "type": "LSLInlet", "config": {}}]})
    assert stream_predicate("a'b", None, "x") == "name=\"a'b\" and source_id='x'"
    assert LSLInlet.description().startswith("Receive an LSL stream")


def test_lsl_loopback_example_runs(tmp_path):
    """examples/lsl_loopback.py: device -> pipeline -> consumer, in a fresh process."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo / "src"))
    import shutil

    # the config's outputs are relative to its folder (../out/lsl): run a copy in tmp_path
    (tmp_path / "examples").mkdir()
    for name in ("lsl_loopback.py", "lsl_loopback.json"):
        shutil.copy(repo / "examples" / name, tmp_path / "examples")
    r = subprocess.run([sys.executable, str(tmp_path / "examples" / "lsl_loopback.py"),
                        "--seconds", "1.0"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "device sent 250 samples x 8 channels; consumer received 250" in r.stdout
    from streamlab.nodes.record import iter_recording

    frames = list(iter_recording(tmp_path / "out" / "lsl" / "filtered.slrec"))
    assert sum(f.n_samples for f in frames) == 250
    assert frames[0].channels == ("Fp1", "Fp2", "C3", "C4", "P3", "P4", "O1", "O2")
    assert (tmp_path / "out" / "lsl" / "filtered.png").stat().st_size > 20_000


def test_a_failed_clock_reading_is_counted_and_the_last_estimate_kept():
    """The periodic time_correction reader (both LSL inlets): a failure is counted, not lost."""
    import asyncio
    import logging
    import types

    from streamlab.nodes.lsl import _Readings

    now = [0.0]
    ctx = types.SimpleNamespace(clock=types.SimpleNamespace(monotonic=lambda: now[0]),
                                logger=logging.getLogger("test"))
    node = types.SimpleNamespace(context=ctx, node_id="in")
    results = iter([RuntimeError("timed out"), 0.25, 0.5])

    def read() -> float:
        r = next(results)
        if isinstance(r, Exception):
            raise r
        return r

    async def go() -> list:
        r = _Readings(node, read, interval=1.0)
        got = [r.poll()]  # the first reading was taken at start: not due yet
        for _ in range(3):
            now[0] += 1.0
            got.append(r.poll())  # collects the finished reading, starts the next
            assert r._task is not None
            await asyncio.wait([r._task], timeout=5)
        await r.close()
        return got + [r.failures]

    got = asyncio.run(go())
    assert got == [None, None, None, 0.25, 1]  # the failed reading counted, not returned
