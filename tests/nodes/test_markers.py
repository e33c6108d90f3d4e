"""MarkerGenerator, EventsFileSource and EventsSink (issue 11 item 2)."""

from __future__ import annotations

import asyncio
import doctest
import errno
import json
import os
from collections import Counter

import numpy as np
import pytest

from streamlab import AsyncPipeline, DataFrame, load_config
from streamlab.errors import ConfigError, PipelineError
from streamlab.events import Event
from streamlab.node import ProcessingNode
from streamlab.nodes import markers
from streamlab.nodes.markers import EventsFileSource, EventsSink, MarkerGenerator, read_events_file
from streamlab.nodes.sinks import AppendFile
from streamlab.registry import register_node, unregister_node
from streamlab.testing import VirtualClock, run_node
from tests.conftest import run

PARADIGM = {"probabilities": {"target": 0.2, "standard": 0.7, "novel": 0.1, "never": 0.0},
            "isi_s": [0.5, 1.5], "seed": 42}


def test_doctests():
    result = doctest.testmod(markers)
    assert result.failed == 0 and result.attempted > 0


def marks(frames):
    return [(f.timestamp, e.label, e.value, e.duration) for f in frames for e in f.events]


# -- MarkerGenerator ---------------------------------------------------------------------------
def test_marker_frames_have_an_empty_payload_one_event_and_the_markers_stream():
    out = run_node(MarkerGenerator, {**PARADIGM, "values": {"target": 2}, "duration_s": 0.1},
                   triggers=5)
    assert [f.sequence_id for f in out] == list(range(5))
    for f in out:
        assert f.n_samples == 0 and f.payload.names == ()
        assert dict(f.metadata) == {"stream": "markers"}
        (e,) = f.events
        assert (e.time, e.sample, e.duration) == (f.timestamp, 0, 100_000)
        assert e.value == (2.0 if e.label == "target" else None)


def test_the_same_seed_gives_the_same_sequence_and_another_seed_another():
    a = marks(run_node(MarkerGenerator, PARADIGM, triggers=50))
    b = marks(run_node(MarkerGenerator, PARADIGM, triggers=50))
    c = marks(run_node(MarkerGenerator, {**PARADIGM, "seed": 43}, triggers=50))
    assert a == b
    assert a != c


def test_label_counts_with_a_fixed_seed_are_exact_and_fit_the_probabilities():
    out = run_node(MarkerGenerator, {**PARADIGM, "count": 2000}, triggers=2100)
    counts = Counter(e.label for f in out for e in f.events)
    assert len(out) == 2000  # count ends the paradigm; later triggers emit nothing
    assert counts == {"standard": 1389, "target": 412, "novel": 199}  # "never" (p=0): absent
    expected = {"target": 400, "standard": 1400, "novel": 200}
    chi2 = sum((counts[k] - v) ** 2 / v for k, v in expected.items())
    assert chi2 < 13.8  # chi-square, 2 degrees of freedom, p = 0.001


def test_intervals_are_whole_us_within_the_bounds_and_times_are_cumulative():
    out = run_node(MarkerGenerator, PARADIGM, triggers=500)
    times = np.array([f.timestamp for f in out])
    isi = np.diff(np.concatenate([[0], times]))  # the first trigger's timestamp is 0
    assert isi.min() >= 500_000 and isi.max() <= 1_500_000
    assert isi.min() < 520_000 and isi.max() > 1_480_000  # the whole range is used
    fixed = run_node(MarkerGenerator, {**PARADIGM, "isi_s": [0.25, 0.25]}, triggers=4)
    assert [f.timestamp for f in fixed] == [250_000, 500_000, 750_000, 1_000_000]


def pipeline(nodes, *, debug=True):
    ids = [n["id"] for n in nodes]
    return {"pipeline_config": {"debug": debug}, "nodes": nodes,
            "connections": [{"from": a, "to": b} for a, b in zip(ids, ids[1:])]}


def test_free_realtime_markers_are_due_at_their_exact_times_on_the_pipeline_clock():
    clock = VirtualClock()
    cfg = {**PARADIGM, "mode": "free", "realtime": True, "count": 20}
    pipe = AsyncPipeline(pipeline([{"id": "m", "type": "MarkerGenerator", "config": cfg},
                                   {"id": "p", "type": "Passthrough"}]), clock=clock)
    report = run(pipe.run(triggers=0, timeout=60))
    out = pipe.results["p"]
    # Same sequence as triggered mode, shifted to the clock's time at the start.
    ref = marks(run_node(MarkerGenerator, {**PARADIGM, "count": 20}, triggers=20))
    assert [(t + clock.start_us, *rest) for t, *rest in ref] == marks(out)
    # Paced: the clock waited until each marker was due, so it ends at the last marker.
    assert clock.time_us() == out[-1].timestamp
    assert report.nodes["m"].events_emitted == 20
    assert report.nodes["p"].event_fates["carried"] == 20


def test_a_stop_ends_a_long_wait_for_the_next_marker():
    cfg = {"probabilities": {"x": 1.0}, "isi_s": [3600, 3600], "mode": "free", "realtime": True}

    async def go():
        pipe = AsyncPipeline(pipeline([{"id": "m", "type": "MarkerGenerator", "config": cfg},
                                       {"id": "p", "type": "Passthrough"}]))
        await pipe.start()
        await asyncio.sleep(0.05)
        return pipe, await asyncio.wait_for(pipe.stop(), timeout=30)

    pipe, report = run(go())
    assert pipe.results["p"] == [] and report.nodes["m"].events_emitted == 0


@pytest.mark.parametrize("config,path,message", [
    ({"probabilities": {"a": 0.5, "b": 0.6}}, "probabilities", "must sum to 1"),
    ({"probabilities": {"a": 1 - 1e-8}}, "probabilities", "must sum to 1"),
    ({"probabilities": {"a": -0.5, "b": 1.5}}, "probabilities.a", "greater than or equal to 0"),
    ({"probabilities": {}}, "probabilities", "at least 1"),
    ({"isi_s": [2, 1]}, "isi_s", "min must be <= max"),
    ({"isi_s": [-1, 1]}, "isi_s", "min must be >= 0"),
    ({"isi_s": [0, 0]}, "isi_s", "max must be > 0"),
    ({"values": {"c": 1}}, "values", "labels ['c'] are not in probabilities"),
    ({"count": 0}, "count", "greater than or equal to 1"),
])
def test_bad_paradigms_are_config_errors_naming_the_json_path(config, path, message):
    cfg = {"probabilities": {"a": 1.0}, "isi_s": [1, 2], **config}
    with pytest.raises(ConfigError) as info:
        load_config({"nodes": [{"id": "m", "type": "MarkerGenerator", "config": cfg}]})
    assert f"$.nodes[0].config.{path}: " in str(info.value)
    assert message in str(info.value)


def test_probabilities_within_1e_9_of_one_are_accepted():
    load_config({"nodes": [{"id": "m", "type": "MarkerGenerator", "config": {
        "probabilities": {"a": 0.1, "b": 0.2, "c": 0.7 - 5e-10}, "isi_s": [1, 1]}}]})


def test_count_ends_a_free_generator():
    pipe = AsyncPipeline(pipeline([
        {"id": "m", "type": "MarkerGenerator", "config": {**PARADIGM, "mode": "free", "count": 7}},
        {"id": "p", "type": "Passthrough"}]))
    run(pipe.run(triggers=0, timeout=60))
    assert len(pipe.results["p"]) == 7


# -- EventsFileSource --------------------------------------------------------------------------
def write(path, text):
    path.write_text(text)
    return path


def test_reads_bids_columns_with_defaults_and_ignores_others(tmp_path):
    p = write(tmp_path / "events.tsv",
              "onset\tduration\ttrial_type\tvalue\tresponse_time\n"
              "\n"
              "0.5\t0.25\tgo\t3\t0.4\n"
              "1.000001\tn/a\tstop\tn/a\t\n"
              "1.000001\t\tgo\t-1.5\tn/a\n")
    out = run_node(EventsFileSource, {"path": str(p), "start_us": 10_000_000}, triggers=5)
    assert marks(out) == [(10_500_000, "go", 3.0, 250_000),
                          (11_000_001, "stop", None, 0),
                          (11_000_001, "go", -1.5, 0)]
    assert all(dict(f.metadata) == {"stream": "markers"} and f.n_samples == 0 for f in out)


def test_csv_a_label_column_and_start_at_the_first_trigger(tmp_path):
    p = write(tmp_path / "ev.csv", "event,onset\nA,0\nB,2\n")
    out = run_node(EventsFileSource, {"path": str(p), "label_column": "event",
                                      "start_us": None, "mode": "triggered"},
                   [DataFrame(5_000_000, 0), DataFrame(5_001_000, 1), DataFrame(5_002_000, 2)])
    assert marks(out) == [(5_000_000, "A", None, 0), (7_000_000, "B", None, 0)]


def test_free_source_emits_every_row_then_ends(tmp_path):
    p = write(tmp_path / "events.tsv", "onset\ttrial_type\n" + "".join(
        f"{i / 10}\tm{i}\n" for i in range(30)))
    pipe = AsyncPipeline(pipeline([{"id": "e", "type": "EventsFileSource",
                                    "config": {"path": str(p)}},
                                   {"id": "p", "type": "Passthrough"}]))
    run(pipe.run(triggers=0, timeout=60))
    assert [e.label for f in pipe.results["p"] for e in f.events] == [f"m{i}" for i in range(30)]
    assert [f.timestamp for f in pipe.results["p"]] == [i * 100_000 for i in range(30)]


@pytest.mark.parametrize("text,where,problem", [
    ("trial_type\tduration\ngo\t0\n", "line 1", "missing column 'onset'"),
    ("onset\tlabel\n1\tgo\n", "line 1", "missing column 'trial_type'"),
    ("onset\ttrial_type\n0.5\tgo\nsoon\tgo\n", "line 3, column 1 ('onset')",
     "expected the onset in seconds (a finite number), got 'soon'"),
    ("onset\ttrial_type\nn/a\tgo\n", "line 2, column 1 ('onset')", "got 'n/a'"),
    ("onset\ttrial_type\ninf\tgo\n", "line 2, column 1 ('onset')", "got 'inf'"),
    ("onset\ttrial_type\n2\tgo\n1\tgo\n", "line 3, column 1 ('onset')",
     "onset 1 is before the previous onset 2.0 (line 2); events files must be sorted"),
    ("onset\ttrial_type\n1\t\n", "line 2, column 2 ('trial_type')", "empty label"),
    ("onset\ttrial_type\n1\tn/a\n", "line 2, column 2 ('trial_type')", "empty label"),
    ("onset\tduration\ttrial_type\n1\t-1\tgo\n", "line 2, column 2 ('duration')",
     "expected a duration in seconds >= 0 or n/a, got '-1'"),
    ("onset\ttrial_type\tvalue\n1\tgo\thigh\n", "line 2, column 3 ('value')",
     "expected a number or n/a, got 'high'"),
    ("onset\ttrial_type\n1\tgo\textra\n", "line 2", "3 cells, but the header (line 1) has 2"),
    ("", "", "empty events file"),
])
def test_bad_events_files_name_the_file_line_and_column(tmp_path, text, where, problem):
    p = write(tmp_path / "events.tsv", text)
    with pytest.raises(ValueError) as info:
        EventsFileSource.create({"path": str(p)})
    msg = str(info.value)
    assert msg.startswith(repr(str(p)) + (f", {where}: " if where else ": ")), msg
    assert problem in msg


def test_validate_checks_the_events_file_relative_to_the_config_folder(tmp_path):
    (tmp_path / "cfg").mkdir()
    cfg = tmp_path / "cfg" / "p.json"
    cfg.write_text(json.dumps({"nodes": [{"id": "e", "type": "EventsFileSource",
                                          "config": {"path": "events.tsv"}}]}))
    with pytest.raises(ConfigError, match=r"\$\.nodes\[0\]\.config\.path: .*no such file"):
        load_config(cfg, check_files=True)
    write(tmp_path / "cfg" / "events.tsv", "onset\ttrial_type\n0\tgo\n")
    spec = load_config(cfg, check_files=True)
    assert spec.nodes[0].config["path"] == str(tmp_path / "cfg" / "events.tsv")
    with pytest.raises(ConfigError, match=r"\$\.nodes\[0\]\.config: .*must end with .tsv or "
                       r"\.csv"):
        load_config({"nodes": [{"id": "e", "type": "EventsFileSource",
                                "config": {"path": "events.txt"}}]})


# -- EventsSink --------------------------------------------------------------------------------
def read_rows(path):
    lines = path.read_text().splitlines()
    return [line.split("\t") for line in lines]


def test_round_trip_generator_sink_file_source_is_identical(tmp_path):
    path = tmp_path / "out" / "events.tsv"
    gen = {**PARADIGM, "mode": "free", "count": 300, "values": {"target": 1, "novel": -2.5},
           "duration_s": 0.123457}
    pipe = AsyncPipeline(pipeline([
        {"id": "m", "type": "MarkerGenerator", "config": gen},
        {"id": "s", "type": "EventsSink", "config": {"path": str(path), "passthrough": True}}]))
    report = run(pipe.run(triggers=0, timeout=60))
    sent = pipe.results["s"]
    assert report.nodes["s"].events_received == 300
    assert report.nodes["s"].event_fates["carried"] == 300  # debug checked the ledger too
    t0 = sent[0].timestamp
    back = run_node(EventsFileSource, {"path": str(path), "start_us": t0}, triggers=301)
    assert marks(back) == marks(sent)
    assert read_rows(path)[0] == ["onset", "duration", "trial_type", "value", "sample"]
    assert {r[4] for r in read_rows(path)[1:]} == {"n/a"}  # marker frames have no samples


class _Stim(ProcessingNode):
    """Test node: an event on sample 3 of every other frame."""

    def process(self, frame):
        if frame.sequence_id % 2:
            return frame
        t = frame.timestamp + round(3 * 1e6 / float(frame.metadata["sample_rate"]))
        return frame.with_events([Event(t, f"s{frame.sequence_id}", 0.5, 20_000, sample=3)])


@pytest.fixture
def stim():
    register_node(_Stim, name="TestStim")
    yield
    unregister_node("TestStim")


def test_events_on_data_frames_get_their_absolute_sample(tmp_path, stim):
    path = tmp_path / "events.tsv"
    sine = {"frequency": 1.0, "sample_rate": 100.0, "samples_per_frame": 10}
    pipe = AsyncPipeline(pipeline([{"id": "g", "type": "SineGenerator", "config": sine},
                                   {"id": "st", "type": "TestStim"},
                                   {"id": "s", "type": "EventsSink", "config": {"path": str(path)}}]))
    run(pipe.run(triggers=6))
    assert read_rows(path)[1:] == [["0.03", "0.02", "s0", "0.5", "3"],
                                   ["0.23", "0.02", "s2", "0.5", "23"],
                                   ["0.43", "0.02", "s4", "0.5", "43"]]


def test_rows_are_in_the_file_as_each_frame_arrives(tmp_path):
    path = tmp_path / "events.tsv"
    sink = EventsSink.create({"path": str(path), "start_us": 0})
    sink.process(DataFrame(1_000_000, 0, events=[Event(1_000_000, "a")]))
    assert read_rows(path) == [["onset", "duration", "trial_type", "value", "sample"],
                               ["1.0", "0.0", "a", "n/a", "n/a"]]  # before on_stop
    sink.process(DataFrame(2_500_000, 1))  # no events: nothing written
    sink.process(DataFrame(3_000_000, 2, events=[Event(3_000_000, "b\tc", 7.0)]))
    sink.on_stop()
    assert read_rows(path)[2:] == [["3.0", "0.0", '"b', 'c"', "7.0", "n/a"]]  # a tab is quoted ...
    assert [e.label for e in read_events_file(path)] == ["a", "b\tc"]  # ... and read back


def test_a_failed_write_settles_its_events_dropped_and_keeps_the_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "events.tsv"

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    gen = {**PARADIGM, "mode": "free", "count": 5}
    cfg = pipeline([{"id": "m", "type": "MarkerGenerator", "config": gen},
                    {"id": "s", "type": "EventsSink", "config": {"path": str(path)},
                     "error_policy": {"policy": "SkipFrame"}}])
    real = AppendFile._os_write
    calls = []

    def flaky(fd, data):
        calls.append(1)
        return full(fd, data) if len(calls) in (3, 4) else real(fd, data)  # frames 1 and 2

    monkeypatch.setattr(AppendFile, "_os_write", staticmethod(flaky))
    pipe = AsyncPipeline(cfg)
    report = run(pipe.run(triggers=0, timeout=60))
    s = report.nodes["s"]
    assert s.events_received == 5
    assert (s.event_fates["carried"], s.event_fates["dropped"]) == (3, 2)
    assert len(read_rows(path)) == 1 + 3


def test_sink_config_errors():
    with pytest.raises(ConfigError, match=r"\$\.nodes\[0\]\.config: .*EventsSink: path "
                       r"'e\.txt' must end with \.tsv or \.csv"):
        load_config({"nodes": [{"id": "s", "type": "EventsSink", "config": {"path": "e.txt"}}]})


def test_a_failing_sink_fails_the_pipeline_with_the_events_settled(tmp_path):
    (tmp_path / "d.tsv").mkdir()  # a directory where the file should go
    pipe = AsyncPipeline(pipeline([
        {"id": "m", "type": "MarkerGenerator", "config": {**PARADIGM, "mode": "free", "count": 3}},
        {"id": "s", "type": "EventsSink", "config": {"path": str(tmp_path / "d.tsv")}}]))
    with pytest.raises(PipelineError, match="is a directory"):
        run(pipe.run(triggers=0, timeout=60))
    s = pipe.report.nodes["s"]
    assert s.events_received >= 1
    assert s.event_fates["dropped"] == s.events_received  # none reached the file
