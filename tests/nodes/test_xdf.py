"""XdfSource and XdfSink: against pyxdf on the same files, markers as events, several rates in
one graph, file -> graph -> file round trips, breaks in the stamps, errors at the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamlab.errors import BackendError
from streamlab.events import Event
from streamlab.formats.xdf import XdfWriter
from streamlab.frame import DataFrame
from streamlab.node import NodeContext
from streamlab.nodes.xdf import XdfSink, XdfSource
from streamlab.runtime import AsyncPipeline
from streamlab.testing import VirtualClock, make_frame, run_node
from tests.nodes.full_disk import FullDisk

pyxdf = pytest.importorskip("pyxdf")

T0 = 1_764_000_000.25  # seconds


def make_file(path: Path, *, jitter: float = 0.0, offset: float = 0.0, n: int = 2000,
              gap_at: int | None = None) -> dict:
    """eeg (1 kHz x 3, optional jitter and a gap), aux (100 Hz x 1), two marker streams."""
    rng = np.random.default_rng(11)
    t = T0 + np.arange(n) / 1000.0 + rng.uniform(-jitter, jitter, n)
    if gap_at is not None:
        t[gap_at:] += 0.5
    eeg = rng.standard_normal((n, 3))
    eeg[7, 1] = -0.0
    t_aux = T0 + 0.0037 + np.arange(n // 10) / 100.0
    aux = rng.standard_normal((n // 10, 1))
    marks = T0 + np.array([-0.5, 0.0101, 0.2505, 0.9, 1.4004, n / 1000.0 + 1.0])
    w = XdfWriter(path)
    a = w.add_stream("eeg", channels=["Fz", "Cz", "Pz"], nominal_srate=1000.0, type="EEG",
                     source_id="amp")
    b = w.add_stream("aux", channels=["gsr"], nominal_srate=100.0, type="GSR")
    m = w.add_stream("stim", channels=["m"], channel_format="string", type="Markers")
    k = w.add_stream("keys", channels=["k"], channel_format="string", type="Markers")
    for i in range(0, n, 250):
        w.write_samples(a, t[i:i + 250], eeg[i:i + 250])
        w.write_samples(b, t_aux[i // 10:(i + 250) // 10], aux[i // 10:(i + 250) // 10])
    w.write_samples(m, marks, [[f"s{i}"] for i in range(len(marks))])
    w.write_samples(k, np.array([T0 + 0.5]), [["space"]])
    if offset:
        for sid in (a, b, m, k):
            for ct in (T0, T0 + 1, T0 + 2):
                w.write_clock_offset(sid, ct, offset)
    w.close()
    return {"t": t, "eeg": eeg, "t_aux": t_aux, "aux": aux, "marks": marks}


def replay(path: Path, **cfg) -> list[DataFrame]:
    return run_node(XdfSource, {"path": str(path), **cfg}, triggers=10_000)


def pyxdf_stream(path: Path, name: str, **kw) -> dict:
    streams, _ = pyxdf.load_xdf(str(path), **kw)
    return next(s for s in streams if s["info"]["name"][0] == name)


@pytest.mark.parametrize(("sync", "dejitter", "jitter", "offset"), [
    (True, True, 0.0, 0.0), (False, False, 0.0, 0.0), (True, True, 2e-4, 0.125),
    (False, True, 2e-4, 0.125), (True, False, 2e-4, -0.03)])
def test_frames_match_pyxdf_samples_and_timestamps(tmp_path, sync, dejitter, jitter, offset):
    path = tmp_path / "r.xdf"
    make_file(path, jitter=jitter, offset=offset)
    kw = {"synchronize_clocks": sync, "dejitter_timestamps": dejitter}
    ref = pyxdf_stream(path, "eeg", **kw)
    frames = replay(path, stream={"name": "eeg"}, frame_size=64, markers=[], **kw)
    data = np.concatenate([f.block() for f in frames], axis=1)
    assert data.T.tobytes() == ref["time_series"].tobytes()  # bit-identical
    assert frames[0].channels == ("Fz", "Cz", "Pz")
    assert all(f.metadata["sample_rate"] == "1000.0" and f.metadata["stream"] == "eeg"
               for f in frames)
    starts = np.cumsum([0] + [f.n_samples for f in frames])[:-1]
    ts = np.array([f.timestamp for f in frames])
    # within 0.5 µs (rounding) + 0.25 µs (a double's step at 1.7e15 µs) of pyxdf's stamps
    assert np.max(np.abs(ts - ref["time_stamps"][starts] * 1e6)) <= 0.75
    assert ts.tolist() == np.rint(ref["time_stamps"][starts] * 1e6).astype(np.int64).tolist()
    if dejitter or not jitter:  # regular stamps: the implied sample times are pyxdf's too
        implied = np.concatenate([f.timestamp + np.rint(np.arange(f.n_samples) * 1000.0)
                                  for f in frames])
        assert np.max(np.abs(implied - ref["time_stamps"] * 1e6)) <= 1.0
    else:  # jittery stamps: frames follow the regular runs, each first stamp exact
        assert len(frames) > 2000 // 64


def test_a_frame_never_spans_a_break_in_the_stamps(tmp_path):
    path = tmp_path / "gap.xdf"
    make_file(path, gap_at=1000)
    frames = replay(path, stream={"type": "EEG"}, frame_size=300, dejitter_timestamps=False,
                    markers=[])
    assert [f.n_samples for f in frames] == [300, 300, 300, 100, 300, 300, 300, 100]
    assert frames[4].timestamp == round((T0 + 1.5) * 1e6)


def test_markers_land_on_the_first_sample_at_or_after_them(tmp_path):
    path = tmp_path / "m.xdf"
    want = make_file(path)
    ref = pyxdf_stream(path, "eeg")
    t_us = np.rint(ref["time_stamps"] * 1e6).astype(np.int64)
    frames = replay(path, stream={"name": "eeg"}, frame_size=100)
    got = sorted((e.label, int(k * 100 + e.sample), e.time) for k, f in enumerate(frames)
                 for e in f.events)
    marks = [(f"s{i}", round(t * 1e6)) for i, t in enumerate(want["marks"])] + \
        [("space", round((T0 + 0.5) * 1e6))]
    inside = [(label, int(np.searchsorted(t_us, t, "left")), t) for label, t in marks
              if t_us[0] <= t <= t_us[-1]]
    assert got == sorted(inside) and len(inside) == 5
    # only "stim": the keys stream is left out; s0 (before) and s5 (after) are out of range
    node = XdfSource.create({"path": str(path), "stream": {"name": "eeg"},
                             "markers": [{"name": "stim"}]},
                            NodeContext(node_id="x"))
    labels = []
    while (f := node._next()) is not None:
        labels += [e.label for e in f.events]
    assert labels == ["s1", "s2", "s3", "s4"] and node.markers_out_of_range == 2


def test_a_marker_stream_gives_marker_frames(tmp_path):
    path = tmp_path / "m.xdf"
    want = make_file(path)
    frames = replay(path, stream={"name": "stim"})
    assert [f.n_samples for f in frames] == [0] * 6
    assert [(f.events[0].label, f.events[0].time) for f in frames] == \
        [(f"s{i}", round(t * 1e6)) for i, t in enumerate(want["marks"])]
    assert all(f.timestamp == f.events[0].time and f.metadata == {"stream": "markers"}
               for f in frames)


def test_selection_errors_list_the_streams(tmp_path):
    path = tmp_path / "m.xdf"
    make_file(path)
    with pytest.raises(ValueError, match=r"2 streams match config.stream \(any stream\).*"
                                         r"1: name='eeg' type='EEG' source_id='amp'"):
        replay(path)
    with pytest.raises(ValueError, match="no stream matches config.stream \\(name='nope'\\)"):
        replay(path, stream={"name": "nope"})
    with pytest.raises(ValueError, match="must end with .xdf"):
        XdfSource.Config(path="x.csv")


def test_missing_pyxdf_says_which_extra(tmp_path, monkeypatch):
    path = tmp_path / "m.xdf"
    make_file(path)
    monkeypatch.setitem(sys.modules, "pyxdf", None)
    with pytest.raises(BackendError, match=r"pip install 'streamlab\[xdf\]'"):
        replay(path, stream={"name": "eeg"})


def test_realtime_replay_is_paced_by_the_stamps(tmp_path):
    path = tmp_path / "m.xdf"
    make_file(path, n=1000)
    clock = VirtualClock()
    config = {"name": "rt", "nodes": [
        {"id": "src", "type": "XdfSource",
         "config": {"path": str(path), "stream": {"name": "eeg"}, "frame_size": 100,
                    "realtime": True, "speed": 2.0}},
        {"id": "out", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "src", "to": "out"}]}

    async def go():
        pipe = AsyncPipeline(config, clock=clock)
        start = clock.monotonic()
        await asyncio.wait_for(pipe.run(), 30)
        return clock.monotonic() - start, pipe.results["out"]

    took, frames = asyncio.run(go())
    assert len(frames) == 10
    assert took == pytest.approx(0.9 / 2.0, abs=0.01)  # 9 frame periods of 0.1 s at 2x


def pipeline(src: Path, dst: Path) -> dict:
    return {"name": "xdf", "pipeline_config": {"debug": True},
            "nodes": [
                {"id": "eeg", "type": "XdfSource",
                 "config": {"path": str(src), "stream": {"name": "eeg"}, "frame_size": 50,
                            "dejitter_timestamps": False}},
                {"id": "aux", "type": "XdfSource",
                 "config": {"path": str(src), "stream": {"name": "aux"}, "frame_size": 7,
                            "markers": [], "dejitter_timestamps": False}},
                {"id": "rec", "type": "XdfSink",
                 "config": {"path": str(dst), "streams": {"eeg": {"type": "EEG"},
                                                          "aux": {"type": "GSR"}}}}],
            "connections": [{"from": "eeg", "to": "rec"}, {"from": "aux", "to": "rec"}]}


def test_two_rates_through_one_graph_and_back_to_xdf(tmp_path):
    src, dst = tmp_path / "in.xdf", tmp_path / "out.xdf"
    make_file(src)
    report = asyncio.run(asyncio.wait_for(AsyncPipeline(pipeline(src, dst)).run(), 60))
    m = report.nodes["rec"]
    assert m.events_received == 5 and m.event_fates["carried"] == 5  # debug checked the ledger
    kw = {"dejitter_timestamps": False}
    for name in ("eeg", "aux"):
        a, b = pyxdf_stream(src, name, **kw), pyxdf_stream(dst, name, **kw)
        assert b["time_series"].tobytes() == a["time_series"].tobytes()
        assert np.array_equal(np.rint(b["time_stamps"] * 1e6), np.rint(a["time_stamps"] * 1e6))
        assert b["info"]["nominal_srate"] == [repr(float(a["info"]["nominal_srate"][0]))]
    mk = pyxdf_stream(dst, "markers", **kw)
    ref = pyxdf_stream(src, "eeg", **kw)["time_stamps"]
    assert sorted(v[0] for v in mk["time_series"]) == ["s1", "s2", "s3", "s4", "space"]
    # an attached marker keeps its own time (not its sample's)
    assert all(ref[0] <= t <= ref[-1] for t in mk["time_stamps"])
    assert round(mk["time_stamps"][0] * 1e6) in {round(t * 1e6) for t in
                                                  [T0 + 0.0101, T0 + 0.2505, T0 + 0.5]}


def test_sink_writes_events_of_marker_frames_and_data_frames(tmp_path):
    path = tmp_path / "out.xdf"
    meta = {"sample_rate": "4.0"}
    frames = [make_frame(x=[1.0, 2.0], timestamp=1_000_000, metadata=meta),
              DataFrame(1_100_000, 0, None, {"stream": "markers"}, [Event(1_100_000, "go")]),
              make_frame(x=[3.0], timestamp=1_500_000, metadata=meta)
              .with_events([Event(1_500_000, "beat", value=1.0)])]
    run_node(XdfSink, {"path": str(path), "units": {"x": "mV"}}, frames, node_id="rec")
    streams = {s["info"]["name"][0]: s for s in
               pyxdf.load_xdf(str(path), dejitter_timestamps=False)[0]}
    assert streams["rec"]["time_series"].ravel().tolist() == [1.0, 2.0, 3.0]
    assert streams["rec"]["time_stamps"].tolist() == [1.0, 1.25, 1.5]
    assert streams["markers"]["time_series"] == [["go"], ["beat"]]
    assert streams["markers"]["time_stamps"].tolist() == [1.1, 1.5]
    assert streams["markers"]["info"]["channel_format"] == ["string"]
    with pytest.raises(ValueError, match=r"has channels \['y'\], but its stream was started "
                                         r"with \['x'\]"):
        run_node(XdfSink, {"path": str(tmp_path / "o2.xdf")},
                 [make_frame(x=[1.0]), make_frame(y=[1.0])])


def test_sink_flushes_a_quiet_buffer_on_a_timer(tmp_path):
    path = tmp_path / "t.xdf"

    async def go() -> tuple[int, int]:
        node = XdfSink.create({"path": str(path), "flush_interval_s": 0.05},
                              __import__("streamlab.node", fromlist=["NodeContext"])
                              .NodeContext(node_id="rec"))
        node.process(make_frame(x=[1.0, 2.0], timestamp=10, metadata={"sample_rate": "1.0"}))
        before = path.stat().st_size
        for _ in range(500):  # bounded poll: the timer fires after 50 ms
            await asyncio.sleep(0.01)
            if path.stat().st_size > before:
                break
        after = path.stat().st_size
        node.on_stop()
        return before, after

    before, after = asyncio.run(go())
    assert after > before
    [s] = pyxdf.load_xdf(str(path), dejitter_timestamps=False)[0]
    assert s["time_series"].ravel().tolist() == [1.0, 2.0]


# -- the CLI on hostile files -----------------------------------------------------------------
def run_cli(tmp_path: Path, xdf: Path, **cfg) -> subprocess.CompletedProcess:
    config = {"name": "replay", "nodes": [
        {"id": "src", "type": "XdfSource", "config": {"path": str(xdf), **cfg}},
        {"id": "out", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "src", "to": "out"}]}
    cfg_path = tmp_path / "p.json"
    cfg_path.write_text(json.dumps(config))
    src = str(Path(__file__).resolve().parents[2] / "src")
    return subprocess.run([sys.executable, "-m", "streamlab", "run", str(cfg_path)],
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("damage", ["truncated", "huge", "notxml"])
def test_cli_reports_a_damaged_file_in_one_line(tmp_path, damage):
    path = tmp_path / "d.xdf"
    make_file(path, n=500)
    data = path.read_bytes()
    if damage == "truncated":
        data = data[:-7]
    elif damage == "huge":
        data = data + b"\x08" + (2**62).to_bytes(8, "little") + b"\x03\x00"
    else:
        k = data.index(b"<info><name>aux")
        data = data[:k] + b"<inf" + data[k + 4:].replace(b"</info>", b"</xxxx>", 1)
    path.write_bytes(data)
    r = run_cli(tmp_path, path, stream={"name": "eeg"})
    assert r.returncode in (1, 2), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "d.xdf" in lines[0] and "at byte" in lines[0], r.stderr




def test_full_disk_keeps_the_file_readable_and_reports_the_loss(tmp_path, monkeypatch):
    from streamlab.formats.xdf import scan
    from streamlab.node import NodeContext
    from streamlab.nodes.sinks import AppendFile, SinkWriteError

    path = tmp_path / "full.xdf"
    meta = {"sample_rate": "10.0"}
    fs = [make_frame(x=[float(k), k + 0.5], timestamp=k * 200_000, sequence_id=k, metadata=meta)
          for k in range(8)]
    node = XdfSink.create({"path": str(path), "flush_interval_s": 0}, NodeContext(node_id="rec"))
    for f in fs[:4]:
        node.process(f)
    disk = FullDisk(20)  # less than the next Samples chunk
    monkeypatch.setattr(AppendFile, "_os_write", staticmethod(disk))
    with pytest.raises(SinkWriteError, match=r"full\.xdf'.*no space left on device; frame 4 "
                       r"was not written.*\(2 samples in all\).*stays readable"):
        node.process(fs[4])
    layout = scan(path)
    assert layout.truncated is None  # the partial chunk was cut off
    [s] = pyxdf.load_xdf(str(path), dejitter_timestamps=False)[0]
    assert s["time_series"].ravel().tolist() == [v for f in fs[:4] for v in f.payload["x"]]
    disk.budget = 10**9  # space is back: later frames are written after the gap
    node.process(fs[6])
    node.on_stop()
    [s] = pyxdf.load_xdf(str(path), dejitter_timestamps=False)[0]
    assert s["time_series"].ravel().tolist() == [v for f in [*fs[:4], fs[6]]
                                                 for v in f.payload["x"]]
    assert s["footer"]["info"]["sample_count"] == ["10"]


def test_chunks_mode_replays_the_frames_a_graph_recorded(tmp_path):
    path = tmp_path / "rec.xdf"
    gen = {"id": "gen", "type": "WhiteNoiseGenerator",
           "config": {"mode": "free", "sample_rate": 250.0, "samples_per_frame": 37,
                      "max_frames": 30, "seed": 4, "channels": ["a", "b"]}}
    record = {"name": "rec", "nodes": [gen, {"id": "rec", "type": "XdfSink",
                                             "config": {"path": str(path), "passthrough": True}},
                                       {"id": "out", "type": "Passthrough", "config": {}}],
              "connections": [{"from": "gen", "to": "rec"}, {"from": "rec", "to": "out"}]}
    pipe = AsyncPipeline(record)
    asyncio.run(asyncio.wait_for(pipe.run(), 60))
    online = pipe.results["out"]
    offline = replay(path, frame_size="chunks", dejitter_timestamps=False)
    assert [(f.timestamp, f.sequence_id, f.channels, f.block().tobytes()) for f in offline] == \
        [(f.timestamp, f.sequence_id, f.channels, f.block().tobytes()) for f in online]
    assert all(f.metadata["sample_rate"] == "250.0" for f in offline)
    with pytest.raises(ValueError, match="frame_size must be 1 .. 10000000 or 'chunks'"):
        XdfSource.Config(path="x.xdf", frame_size=0)
