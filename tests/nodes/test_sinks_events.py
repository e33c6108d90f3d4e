"""Events through the file sinks and Recorder/Replay: stored exactly, read back identical, and
every event counted (carried into the file, or dropped by a sink that cannot store it)."""

from __future__ import annotations

import json
import logging
import math
import struct

import numpy as np
import pytest

from streamlab import AsyncPipeline, DataFrame
from streamlab.events import Event
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.nodes.record import (
    MAGIC,
    Recorder,
    RecordingError,
    Replay,
    iter_recording,
    read_recording_header,
)
from streamlab.nodes.sinks import JsonlSink
from streamlab.registry import register_node, unregister_node
from streamlab.testing import make_frame, run_node
from tests.conftest import run

_TRICKY = (0.1 + 0.2, -0.0, float("inf"), 1e-300, None, 7)


def _events_for(frame: DataFrame) -> list[Event]:
    """Events on samples 0 and (if any) the last one, with every field set non-trivially."""
    i = frame.sequence_id
    last = max(frame.n_samples - 1, 0)
    return [Event(frame.timestamp + 3, f"stim{i}", _TRICKY[i % len(_TRICKY)], 0, 0),
            Event(frame.timestamp + 7 * i + 1, "résp ✓", 2.5 * i, 1_000 * i + 1, last)]


class _Mark(ProcessingNode):
    """Test node: puts two events on every frame whose sequence id is a multiple of ``every``."""

    class Config(NodeConfig):
        every: int = 1

    def process(self, frame):
        if frame.sequence_id % self.config.every:
            return frame
        return frame.with_events(_events_for(frame))


@pytest.fixture(autouse=True)
def _nodes():
    register_node(_Mark, name="TestSinkMark")
    yield
    unregister_node("TestSinkMark")


SINE = {"frequency": 5.0, "sample_rate": 100.0, "samples_per_frame": 10, "channels": ["a", "b"]}


def pipeline(sink: dict, every: int = 1) -> dict:
    nodes = [{"id": "src", "type": "SineGenerator", "config": SINE},
             {"id": "mark", "type": "TestSinkMark", "config": {"every": every}},
             {"id": "sink", **sink}]
    return {"pipeline_config": {"debug": True}, "nodes": nodes,
            "connections": [{"from": "src", "to": "mark"}, {"from": "mark", "to": "sink"}]}


def run_with(sink: dict, triggers: int = 6, every: int = 1, results: str | None = None):
    """Run src -> mark -> sink (debug ledger checks on); the sink's report, and the frames
    ``mark`` emitted (what the sink was given), recorded with a parallel passthrough."""
    cfg = pipeline(sink, every)
    cfg["nodes"].append({"id": "tap", "type": "Passthrough"})
    cfg["connections"].append({"from": "mark", "to": "tap"})
    pipe = AsyncPipeline(cfg)
    report = run(pipe.run(triggers=triggers))
    return report, pipe.results["tap"]


def _same_events(a: tuple[Event, ...], b: tuple[Event, ...]) -> None:
    assert a == b
    for x, y in zip(a, b, strict=True):  # == says -0.0 == 0.0 and 1 == 1.0: check the bits
        assert type(x.value) is type(y.value)
        if isinstance(x.value, float):
            assert math.copysign(1, x.value) == math.copysign(1, y.value)


def test_jsonl_sink_writes_events_read_back_identical_and_counts_them_carried(tmp_path):
    path = tmp_path / "out.jsonl"
    report, given = run_with({"type": "JsonlSink", "config": {"path": str(path)}})
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == len(given) == 6
    for line, frame in zip(lines, given, strict=True):
        assert line["events"] == [e.to_dict() for e in frame.events]
        back = DataFrame.from_dict({k: v for k, v in line.items() if k != "node"})
        assert back == frame
        _same_events(back.events, frame.events)
    assert lines[1]["events"][1] == {"time": frame_ts(given, 1) + 8, "label": "résp ✓",
                                     "sample": 9, "value": 2.5, "duration": 1001}
    sink = report.nodes["sink"]
    assert (sink.events_received, sink.event_fates["carried"], sink.event_fates["dropped"]) == \
        (12, 12, 0)


def frame_ts(frames: list[DataFrame], i: int) -> int:
    return frames[i].timestamp


def test_jsonl_lines_without_events_have_no_events_key(tmp_path):
    path = tmp_path / "out.jsonl"
    run_with({"type": "JsonlSink", "config": {"path": str(path)}}, triggers=4, every=2)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert ["events" in x for x in lines] == [True, False, True, False]


def test_recorder_replay_round_trip_is_bit_exact_with_events(tmp_path):
    path = tmp_path / "run.slrec"
    report, given = run_with({"type": "Recorder", "config": {"path": str(path)}}, every=2)
    back = list(iter_recording(path))
    assert back == given and [len(f.events) for f in back] == [2, 0, 2, 0, 2, 0]
    for a, b in zip(back, given, strict=True):
        _same_events(a.events, b.events)
        assert a.block().tobytes() == b.block().tobytes()
    sink = report.nodes["sink"]
    assert (sink.events_received, sink.event_fates["carried"]) == (6, 6)
    with open(path, "rb") as f:
        assert read_recording_header(f, path)["version"] == 2
    # Replay as a node in a pipeline: the same frames, events included, counted as emitted.
    pipe = AsyncPipeline({"pipeline_config": {"debug": True},
                          "nodes": [{"id": "rep", "type": "Replay", "config": {"path": str(path)}},
                                    {"id": "out", "type": "Passthrough"}],
                          "connections": [{"from": "rep", "to": "out"}]})
    rep = run(pipe.run())
    assert pipe.results["out"] == given
    assert rep.nodes["rep"].events_emitted == 6
    assert rep.nodes["out"].event_fates["carried"] == 6


def test_recorder_keeps_marker_frames_events(tmp_path):
    path = tmp_path / "markers.slrec"
    markers = [DataFrame(5_000 * i, i, metadata={"stream": "markers"},
                         events=[Event(5_000 * i, f"key{i}", float(i), 250)]) for i in range(3)]
    assert run_node(Recorder, {"path": str(path)}, markers) == []
    assert run_node(Replay, {"path": str(path)}, triggers=4) == markers


def _record(path, head: dict, data: bytes = b"") -> None:
    raw = json.dumps({"format": "streamlab-recording", "version": 1}).encode()
    body = json.dumps(head).encode()
    path.write_bytes(MAGIC + struct.pack("<I", len(raw)) + raw
                     + struct.pack("<IQ", len(body), len(data)) + body + data)


def test_a_version_1_recording_without_events_still_replays(tmp_path):
    path = tmp_path / "v1.slrec"
    _record(path, {"t": 10, "s": 1, "m": {}, "c": ["x"], "n": [1], "i": "src"},
            np.array([1.5]).tobytes())
    (f,) = iter_recording(path)
    assert f == make_frame(x=[1.5], timestamp=10, sequence_id=1) and f.events == ()


@pytest.mark.parametrize("events, problem", [
    ({"time": 1}, 'events "e" must be a list, got dict'),
    (["x"], 'event 0 in "e" must be an object'),
    ([{"label": "a"}], "event 0 in \"e\": missing field(s) ['time']"),
    ([{"time": 1.5, "label": "a"}], 'event 0 in "e": time must be an integer (µs), got 1.5'),
    ([{"time": True, "label": "a"}], "time must be an integer"),
    ([{"time": 1, "label": 3}], "label must be a string, got 3"),
    ([{"time": 1, "label": "a"}, {"time": 1, "label": "a", "sample": -1}],
     'event 1 in "e": sample must be an integer >= 0, got -1'),
    ([{"time": 1, "label": "a", "duration": "long"}], "duration must be an integer >= 0"),
    ([{"time": 1, "label": "a", "value": "high"}], "value must be a number or null, got 'high'"),
    ([{"time": 1, "label": "a", "value": False}], "value must be a number or null, got False"),
    ([{"time": 1, "label": "a", "sample": 1}], "beyond the frame"),
])
def test_hostile_events_are_a_recording_error_naming_the_record(tmp_path, events, problem):
    path = tmp_path / "bad.slrec"
    _record(path, {"t": 10, "s": 1, "m": {}, "c": ["x"], "n": [1], "i": "src", "e": events},
            np.array([1.5]).tobytes())
    with pytest.raises(RecordingError) as err:
        list(iter_recording(path))
    msg = str(err.value)
    assert "record 0 (at byte" in msg and "bad record" in msg and problem in msg
    with pytest.raises(RecordingError, match="record 0"):
        run_node(Replay, {"path": str(path)}, triggers=1)


@pytest.mark.parametrize("kind, suffix", [("CsvSink", "csv"), ("NpySink", "npy"),
                                          ("NpzSink", "npz")])
def test_column_sinks_drop_events_count_them_and_warn_once(tmp_path, caplog, kind, suffix):
    path = tmp_path / f"out.{suffix}"
    with caplog.at_level(logging.WARNING):
        report, given = run_with({"type": kind, "config": {"path": str(path)}})
    assert path.exists()
    sink = report.nodes["sink"]
    assert (sink.events_received, sink.event_fates["dropped"], sink.event_fates["carried"]) == \
        (12, 12, 0)
    warnings = [r.getMessage() for r in caplog.records if "cannot store events" in r.getMessage()]
    assert len(warnings) == 1 and f"{kind} 'sink'" in warnings[0] and str(path) in warnings[0]


def test_column_sink_with_passthrough_carries_events(tmp_path):
    path = tmp_path / "out.csv"
    report, _ = run_with({"type": "CsvSink", "config": {"path": str(path),
                                                        "passthrough": True}})
    assert report.nodes["sink"].event_fates["carried"] == 12


def test_jsonl_sink_settles_events_of_a_frame_it_fails_to_write_as_dropped(tmp_path):
    # A frame whose write fails (here: the path is a directory) loses its events: dropped,
    # and the ledger still balances (debug mode checks it) under SkipFrame.
    path = tmp_path / "dir.jsonl"
    path.mkdir()
    report, _ = run_with({"type": "JsonlSink", "config": {"path": str(path)},
                          "error_policy": {"policy": "SkipFrame"}}, triggers=3)
    sink = report.nodes["sink"]
    assert (sink.events_received, sink.event_fates["dropped"]) == (6, 6)


def test_jsonl_sink_alone_keeps_its_docstring_format(tmp_path):
    path = tmp_path / "o.jsonl"
    f = make_frame(x=[1.0, 2.0], sequence_id=3).with_events([Event(9, "t", sample=1)])
    assert run_node(JsonlSink, {"path": str(path)}, [f]) == []
    assert json.loads(path.read_text())["events"] == [{"time": 9, "label": "t", "sample": 1}]
