"""LSLMarkerInlet / LSLMarkerOutlet (streamlab.nodes.lsl) and Attach over loopback LSL.

Discovery stays on this machine (``LSLAPICFG`` -> lsl_api.cfg, as in test_lsl.py). Markers are
pushed with explicit LSL timestamps, so expected times are known exactly. Every wait is bounded.
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

from streamlab.nodes import lsl as lsl_nodes  # noqa: E402
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


def test_doctests():
    import doctest

    assert doctest.testmod(lsl_nodes).failed == 0


def marker_outlet(name: str) -> object:
    info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", unique("src"))
    return pylsl.StreamOutlet(info)


@pytest.mark.parametrize("clocksync", [False, True])
def test_marker_times_are_exact_end_to_end(clocksync):
    """pylsl outlet -> LSLMarkerInlet -> LSLMarkerOutlet -> pylsl inlet: every marker's time,
    in µs and back in LSL seconds, within 1 µs of what was pushed (+ time_correction)."""
    src, dst = unique("mk-in"), unique("mk-out")
    outlet = marker_outlet(src)
    config = {"name": "markers", "pipeline_config": {"debug": True}, "nodes": [
        {"id": "mk", "type": "LSLMarkerInlet",
         "config": {"name": src, "idle_timeout": 1.0, "clocksync": clocksync}},
        {"id": "pub", "type": "LSLMarkerOutlet",
         "config": {"name": dst, "wait_for_consumers": 10.0, "passthrough": True}}],
        "connections": [{"from": "mk", "to": "pub"}]}
    labels = [f"stim/{k}" for k in range(8)]

    def receive() -> tuple[list[str], list[float]]:
        found = pylsl.resolve_bypred(f"name='{dst}'", 1, 10.0)
        assert found, "the LSLMarkerOutlet stream was not found"
        inlet = pylsl.StreamInlet(found[0])  # no clocksync: the raw stamps that were pushed
        got, stamps, deadline = [], [], time.monotonic() + 15.0
        try:
            inlet.open_stream(5.0)
            while len(got) < len(labels) and time.monotonic() < deadline:
                s, ts = inlet.pull_chunk(timeout=0.2)
                got += [x[0] for x in s]
                stamps += ts
        finally:
            inlet.close_stream()
        return got, stamps

    async def go():
        pipe = AsyncPipeline(config)
        receiver = asyncio.create_task(asyncio.to_thread(receive))
        await pipe.start()  # resolves the marker stream, waits for the receiver to connect
        pipe.close_triggers()
        assert await wait_for(outlet.have_consumers, 5.0)
        base = pylsl.local_clock() - 5.0
        stamps = [base + k * 0.0123456789 for k in range(len(labels))]
        for label, t in zip(labels, stamps):
            outlet.push_sample([label], t)
        report = await asyncio.wait_for(pipe.join(), 20.0)  # ends after idle_timeout
        received = await asyncio.wait_for(receiver, 20.0)
        return pipe, report, stamps, received

    pipe, report, stamps, (got_labels, got_stamps) = asyncio.run(go())
    frames = pipe.results["pub"]
    offset = pipe.built.nodes["mk"].node.offset_us  # pipeline clock - local_clock, µs
    assert [f.events[0].label for f in frames] == labels
    assert all(f.n_samples == 0 and f.metadata["stream"] == "markers" for f in frames)
    tcs = [float(f.metadata["lsl_time_correction"]) for f in frames]
    if not clocksync:
        assert tcs == [0.0] * len(labels)
    for f, t, tc in zip(frames, stamps, tcs):
        assert float(f.metadata["lsl_timestamp"]) == t  # the sender's stamp, bit for bit
        e = f.events[0]
        assert e.time == f.timestamp
        assert abs(e.time - ((t + tc) * 1e6 + offset)) <= 1.0
    # back out on LSL: the corrected stamp, within 1 µs
    assert got_labels == labels
    want = np.array(stamps) + np.array(tcs)
    assert np.max(np.abs(np.array(got_stamps) - want)) <= 1e-6
    m = report.nodes["pub"]
    assert m.event_fates["carried"] == len(labels) == m.events_received
    outlet = None


def test_lsl_data_and_markers_are_attached_to_the_right_samples():
    """pylsl data outlet + marker outlet -> LSLInlet + LSLMarkerInlet -> Attach -> collect."""
    data_name, mk_name = unique("att-data"), unique("att-mk")
    rate, n = 200.0, 400
    info = pylsl.StreamInfo(data_name, "EEG", 2, rate, "double64", unique("src"))
    data_out = pylsl.StreamOutlet(info)
    mk_out = marker_outlet(mk_name)
    config = {"name": "attach-lsl", "pipeline_config": {"debug": True}, "nodes": [
        {"id": "eeg", "type": "LSLInlet",
         "config": {"name": data_name, "idle_timeout": 1.5, "max_samples": 37,
                    "clocksync": False}},
        {"id": "stim", "type": "LSLMarkerInlet",
         "config": {"name": mk_name, "idle_timeout": 1.5, "clocksync": False}},
        {"id": "att", "type": "Attach",
         "config": {"data": "eeg", "markers": "stim", "max_marker_delay_s": 30.0}},
        {"id": "out", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "eeg", "to": "att"}, {"from": "stim", "to": "att"},
                        {"from": "att", "to": "out"}]}
    # markers 0.4 sample after sample k: they land on sample k + 1 (first at or after)
    targets = [0, 10, 57, 58, 199, 300, 398]
    data = np.arange(2 * n, dtype=np.float64).reshape(n, 2)

    async def go():
        pipe = AsyncPipeline(config)
        await pipe.start()
        pipe.close_triggers()
        assert await wait_for(lambda: data_out.have_consumers() and mk_out.have_consumers(), 5)
        base = pylsl.local_clock() - 10.0
        for k in targets:  # markers first: they may arrive before or after their data
            mk_out.push_sample([f"t{k}"], base + (k + 0.4) / rate)
        for k in range(0, n, 50):
            # the chunk's last sample is stamped; LSL back-dates the others by 1/rate
            data_out.push_chunk(data[k:k + 50], base + (k + 49) / rate)
        report = await asyncio.wait_for(pipe.join(), 30.0)
        return pipe.results["out"], report

    frames, report = asyncio.run(go())
    block = np.concatenate([f.block() for f in frames], axis=1)
    assert block.shape == (2, n) and block.T.tobytes() == data.tobytes()
    starts = np.cumsum([0] + [f.n_samples for f in frames])
    landed = {e.label: int(starts[i] + e.sample) for i, f in enumerate(frames) for e in f.events}
    assert landed == {f"t{k}": k + 1 for k in targets}
    m = report.nodes["att"]
    assert m.event_fates["carried"] == len(targets) == m.events_received
    data_out = mk_out = None
