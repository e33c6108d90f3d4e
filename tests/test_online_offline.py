"""The same graph online and offline, bit for bit (issue 12, item 5).

pylsl outlets on 127.0.0.1 (8 channels of float64 at 500 Hz, and a string marker stream whose
markers are sent from 0.1 s before to 0.35 s after their data) feed
``LSLInlet + LSLMarkerInlet -> Attach -> IIRFilter -> Epoch -> Average``, which also records its
two raw inputs with XdfSink. The recording is then replayed by two XdfSource nodes (data with
``frame_size: "chunks"``, markers as marker frames) through the same graph (the JSON after the
sources is identical) and every output is compared: samples as bytes, timestamps, sequence ids,
events (time, label, sample) and the epochs' metadata. The session, graphs and comparison are
examples/online_offline.py's (the demo); this module runs them and checks more.

No wall-clock assertion: the sender waits (bounded) until Attach holds each marker before it
sends more data, so how late a marker is (in data time) is set by the script, not by the
scheduler.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["LSLAPICFG"] = str(ROOT / "tests" / "nodes" / "lsl_api.cfg")
pylsl = pytest.importorskip("pylsl")
pyxdf = pytest.importorskip("pyxdf")

pytestmark = pytest.mark.integration

_spec = importlib.util.spec_from_file_location("online_offline",
                                               ROOT / "examples" / "online_offline.py")
assert _spec is not None and _spec.loader is not None
demo = importlib.util.module_from_spec(_spec)
sys.modules["online_offline"] = demo  # dataclasses look their module up
_spec.loader.exec_module(demo)


def both(tmp: Path, session) -> tuple:
    online = asyncio.run(demo.run_online(session, tmp / "session.xdf"))
    offline = asyncio.run(demo.run_offline(tmp / "session.xdf", tmp / "replay.xdf"))
    return online, offline


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onoff")
    session = demo.Session(seconds=10.0)
    online, offline = both(tmp, session)
    return session, online, offline, tmp


def downstream(config: dict) -> tuple[list, list]:
    """The graph after the sources (and without the recorder), as JSON."""
    skip = {"eeg", "mk", "rec"}
    return ([n for n in config["nodes"] if n["id"] not in skip],
            [c for c in config["connections"] if c["to"] not in skip])


def test_the_graph_after_the_sources_is_the_same_json(runs):
    _, online, offline, _ = runs
    a = demo.graph(demo.online_sources("e", "m"), Path("x.xdf"), "online")
    b = demo.graph(demo.offline_sources(Path("x.xdf")), Path("y.xdf"), "offline")
    assert downstream(a) == downstream(b)
    assert downstream(a)[0] == demo.DOWNSTREAM
    assert [n.type for n in online.spec.nodes][:2] == ["LSLInlet", "LSLMarkerInlet"]
    assert [n.type for n in offline.spec.nodes][:2] == ["XdfSource", "XdfSource"]


def test_online_and_offline_outputs_are_bit_identical(runs):
    session, online, offline, _ = runs
    a, b = online.results, offline.results
    assert demo.differences(a, b) == []
    # the same, spelled out, so that a failure says what differs
    fa, fb = a["filtered"], b["filtered"]
    assert len(fa) > 10
    assert [f.timestamp for f in fa] == [f.timestamp for f in fb]
    assert [f.n_samples for f in fa] == [f.n_samples for f in fb]
    assert sum(f.n_samples for f in fa) == len(session.data)
    raw = np.concatenate([f.block() for f in fb], axis=1)
    assert np.concatenate([f.block() for f in fa], axis=1).tobytes() == raw.tobytes()

    def events(frames):
        return [(e.time, e.label, e.sample, e.value, e.duration) for f in frames
                for e in f.events]

    assert events(fa) == events(fb)
    assert len(events(fa)) == len(session.markers)  # every marker attached, none lost
    ea, eb = a["epoch_out"], b["epoch_out"]
    assert len(ea) == len(session.markers) >= 12
    for x, y in zip(ea, eb, strict=True):
        assert x.block().tobytes() == y.block().tobytes()
        assert (x.timestamp, x.sequence_id, x.events) == (y.timestamp, y.sequence_id, y.events)
        assert {k: x.metadata[k] for k in ("event_label", "event_time", "event_index")} == \
            {k: y.metadata[k] for k in ("event_label", "event_time", "event_index")}
    assert [x.metadata["event_label"] for x in ea] == [m[1] for m in session.markers]
    avg_a, avg_b = a["avg"], b["avg"]
    assert [f.block().tobytes() for f in avg_a] == [f.block().tobytes() for f in avg_b]
    # the recording holds the data as sent, bit for bit
    rec = pyxdf.load_xdf(str(runs[3] / "session.xdf"), dejitter_timestamps=False)[0]
    eeg = next(s for s in rec if s["info"]["name"] == ["eeg"])
    assert eeg["time_series"].tobytes() == session.data.tobytes()


def test_markers_sent_after_their_data_are_attached_in_both_runs(runs):
    session, online, offline, _ = runs
    assert sum(lag > 0 for _, _, lag in session.markers) >= 5  # some arrive after their data
    assert sum(lag < 0 for _, _, lag in session.markers) >= 1  # some before it
    for pipe in (online, offline):
        join = pipe.built.nodes["attach"].node.join
        assert (join.late, join.out_of_range) == (0, 0)
        fates = pipe.metrics["attach"].event_fates
        assert fates.get("carried") == len(session.markers), fates
        assert pipe.metrics["epochs"].event_fates.get("epoched") == len(session.markers)


def test_the_replay_records_the_same_inputs(runs):
    """Replaying and recording again gives the same streams: samples, stamps, markers."""
    tmp = runs[3]
    first = pyxdf.load_xdf(str(tmp / "session.xdf"), dejitter_timestamps=False)[0]
    again = pyxdf.load_xdf(str(tmp / "replay.xdf"), dejitter_timestamps=False)[0]
    by_name = {s["info"]["name"][0]: s for s in again}
    assert sorted(by_name) == ["eeg", "mk"]
    for s in first:
        t = by_name[s["info"]["name"][0]]
        assert np.array_equal(s["time_stamps"], t["time_stamps"])
        if isinstance(s["time_series"], list):
            assert s["time_series"] == t["time_series"]
        else:
            assert s["time_series"].tobytes() == t["time_series"].tobytes()


def test_a_late_marker_overtaken_by_the_next_is_late_online_and_offline(tmp_path):
    """A marker that reaches Attach after ``max_marker_delay_s`` of data has passed its sample
    is ``late`` online (no epoch). When a later marker arrived before it, the recording holds
    the two in arrival order, and the replay, joined in time order, finds it late too: the
    outputs stay bit-identical (the ledger counts it ``late`` in both runs)."""
    session = demo.Session(seconds=6.0, seed=3, force_lag=1.5, overtaken=True)
    online, offline = both(tmp_path, session)
    for pipe in (online, offline):
        assert pipe.built.nodes["attach"].node.join.late == 1
        assert pipe.metrics["attach"].event_fates.get("late") == 1
    assert demo.differences(online.results, offline.results) == []
    assert len(online.results["epoch_out"]) == len(session.markers) - 1


def test_a_late_marker_nothing_overtakes_is_attached_offline(tmp_path):
    """The documented difference: a late marker that no later marker overtook is recorded
    like any on-time marker (XDF keeps its time, not when it arrived), so the replay attaches
    it: one epoch more offline. Every other epoch is identical (samples, times; the running
    ``event_index`` shifts by one after it)."""
    session = demo.Session(seconds=7.0, seed=3, force_lag=1.5, overtaken=False)
    online, offline = both(tmp_path, session)
    late_at = session.markers[3]
    assert online.built.nodes["attach"].node.join.late == 1
    assert online.metrics["attach"].event_fates.get("late") == 1
    assert offline.built.nodes["attach"].node.join.late == 0
    ea, eb = online.results["epoch_out"], offline.results["epoch_out"]
    assert len(eb) == len(ea) + 1 == len(session.markers)
    times = {g.metadata["event_time"] for g in ea}
    extra = [f for f in eb if f.metadata["event_time"] not in times]
    assert [f.metadata["event_label"] for f in extra] == [late_at[1]]
    same = [f for f in eb if f is not extra[0]]
    for x, y in zip(ea, same, strict=True):
        assert x.block().tobytes() == y.block().tobytes()
        assert (x.timestamp, x.metadata["event_time"]) == (y.timestamp, y.metadata["event_time"])


def test_a_replay_with_long_frames_is_joined_in_time_order(tmp_path):
    """Regression: two XdfSource nodes replaying one file run as fast as Attach takes their
    frames. With 1 s data frames and markers every 0.6 s, round-robin intake let the data run
    ahead and 28 of 30 markers were counted late (none is: every marker is inside the data);
    Attach now joins its ready inputs in time order."""
    from streamlab.formats.xdf import XdfWriter
    from streamlab.runtime import AsyncPipeline

    path = tmp_path / "long.xdf"
    w = XdfWriter(path)
    sid = w.add_stream("eeg", channels=["x"], nominal_srate=100.0)
    for a in range(0, 2000, 100):
        w.write_samples(sid, 10 + np.arange(a, a + 100) / 100,
                        np.arange(a, a + 100, dtype=float).reshape(-1, 1))
    mk = w.add_stream("mk", channels=["m"], channel_format="string")
    w.write_samples(mk, 10.5 + np.arange(30) * 0.6, [[f"m{k}"] for k in range(30)])
    w.close()
    sources = demo.offline_sources(path)
    config = {"name": "long", "pipeline_config": {"debug": True}, "nodes": [
        *sources, {"id": "attach", "type": "Attach",
                   "config": {"data": "eeg", "markers": "mk", "max_marker_delay_s": 1.0}},
        {"id": "out", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "eeg", "to": "attach"}, {"from": "mk", "to": "attach"},
                        {"from": "attach", "to": "out"}]}
    pipe = AsyncPipeline(config)
    asyncio.run(asyncio.wait_for(pipe.run(), 60))
    assert pipe.built.nodes["attach"].node.join.late == 0
    got = [(e.label, f.timestamp + e.sample * 10_000) for f in pipe.results["out"]
           for e in f.events]
    assert got == [(f"m{k}", 10_500_000 + k * 600_000) for k in range(30)]


def test_the_example_runs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "online_offline.py"),
                        "--out", str(tmp_path), "--seconds", "6"], capture_output=True,
                       text=True, timeout=180,
                       env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bit-identical" in r.stdout and "online == offline: " in r.stdout
    assert "Traceback" not in r.stderr
