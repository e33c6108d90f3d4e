"""EdfSource and EdfSink (issue 12 item 3): EDF+/BDF+ in and out with annotations, checked
against edfio (the files it writes, and reading ours) and mne (reading ours)."""

from __future__ import annotations

import datetime as dt
import doctest
import json
import logging
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import streamlab.nodes.edf as edf_nodes
from streamlab import AsyncPipeline, DataFrame
from streamlab.events import Event
from streamlab.formats.edf import EdfFormatError, EdfReader
from streamlab.nodes.edf import EdfSink, EdfSource, repair
from streamlab.testing import run_node
from tests.conftest import run

edfio = pytest.importorskip("edfio")
mne = pytest.importorskip("mne")

REPO = Path(__file__).resolve().parents[2]
START = dt.datetime(2024, 3, 5, 10, 20, 30, tzinfo=dt.UTC)


def test_doctests():
    assert doctest.testmod(edf_nodes).failed == 0


# -- files made by edfio, read by EdfSource ------------------------------------------------------
def edfio_file(path: Path, bdf: bool, annotations=(), rates=(256.0, 256.0, 1.0)) -> object:
    rng = np.random.default_rng(3)
    cls, sig = (edfio.Bdf, edfio.BdfSignal) if bdf else (edfio.Edf, edfio.EdfSignal)
    seconds = 4
    signals = [sig(rng.uniform(-300, 300, int(r * seconds)), r, label=name,
                   physical_dimension="uV", physical_range=(-500, 500))
               for name, r in zip(["Fz", "Cz", "SpO2"], rates, strict=False)]
    rec = cls(signals, recording=edfio.Recording(startdate=START.date()),
              starttime=START.time(), annotations=list(annotations))
    rec.write(path)
    return (edfio.read_bdf if bdf else edfio.read_edf)(path)


@pytest.mark.parametrize("bdf", [False, True])
def test_source_reads_edfio_files_values_timestamps_and_annotations(tmp_path, bdf):
    path = tmp_path / ("a.bdf" if bdf else "a.edf")
    anns = [edfio.EdfAnnotation(0.5, None, "stim"), edfio.EdfAnnotation(1.0 + 0.1 / 256, 0.25,
                                                                          "résp ✓"),
            edfio.EdfAnnotation(2.0, None, "end")]
    ref = edfio_file(path, bdf, anns)
    out = run_node(EdfSource, {"path": str(path), "samples_per_frame": 100,
                               "channels": ["Fz", "Cz"]}, triggers=50)
    assert [f.n_samples for f in out] == [100] * 10 + [24]
    data = np.concatenate([f.block() for f in out], axis=1)
    for i, name in enumerate(["Fz", "Cz"]):
        sig = ref.get_signal(name)
        np.testing.assert_allclose(data[i], sig.data, rtol=0, atol=1e-9)
        # Digital values exact: the step of a ±500 range over the format's digital range.
        d = np.rint((data[i] - sig.physical_range.min) / ((1000) / (sig.digital_range.max
                    - sig.digital_range.min)) + sig.digital_range.min)
        assert np.array_equal(d.astype(int), sig.digital)
    t0 = int(START.timestamp()) * 1_000_000
    assert [f.timestamp for f in out[:3]] == [t0, t0 + 390625, t0 + 781250]
    assert out[0].metadata["sample_rate"] == "256"
    events = [(f.sequence_id, e) for f in out for e in f.events]
    # onset -> the first sample at or after it: 0.5 s = sample 128; 1.0 + 0.1/256 s -> 257
    assert [(s, e.sample, e.label, e.duration, e.time - t0) for s, e in events] == [
        (1, 28, "stim", 0, 500_000), (2, 57, "résp ✓", 250_000, 1_000_391),
        (5, 12, "end", 0, 2_000_000)]


def test_source_zero_start_and_the_other_rate(tmp_path):
    path = tmp_path / "a.edf"
    ref = edfio_file(path, False)
    out = run_node(EdfSource, {"path": str(path), "samples_per_frame": 3, "sample_rate": 1,
                               "start": "zero"}, triggers=5)
    assert [f.channels for f in out] == [("SpO2",), ("SpO2",)]
    assert [f.timestamp for f in out] == [0, 3_000_000]
    np.testing.assert_allclose(np.concatenate([f.payload["SpO2"] for f in out]),
                               ref.get_signal("SpO2").data, atol=1e-9)


def test_source_refuses_mixed_rates_listing_them(tmp_path):
    path = tmp_path / "a.edf"
    edfio_file(path, False)
    with pytest.raises(ValueError, match=r"a\.edf'.*different rates \(256 Hz: Fz, Cz; 1 Hz: "
                       r"SpO2\); choose one with sample_rate or channels"):
        EdfSource.create({"path": str(path), "samples_per_frame": 10})
    with pytest.raises(ValueError, match=r"no signal 'Pz'; the file has \['Fz', 'Cz', 'SpO2'\]"):
        EdfSource.create({"path": str(path), "samples_per_frame": 10, "channels": ["Pz"]})
    with pytest.raises(ValueError, match=r"sample_rate 100.0 Hz: 256 Hz: Fz, Cz; 1 Hz: SpO2"):
        EdfSource.create({"path": str(path), "samples_per_frame": 10, "sample_rate": 100})


# -- EdfSink, read back by edfio and mne --------------------------------------------------------
RATE = 250.0


def sink_frames(n_frames: int = 12, spf: int = 25, t0: int = int(START.timestamp() * 1e6)
                + 123_456) -> list[DataFrame]:
    rng = np.random.default_rng(9)
    out = []
    for k in range(n_frames):
        block = rng.uniform(-150, 150, (2, spf))
        f = DataFrame.from_block(["Fz", "Cz"], block, timestamp=t0 + round(k * spf * 4000),
                                 sequence_id=k, metadata={"sample_rate": "250.0"})
        if k % 3 == 1:
            f = f.with_events([Event(f.timestamp + 8000, f"stim{k}", sample=2),
                               Event(f.timestamp + 96000, "resp", duration=150_000,
                                     sample=24)])
        out.append(f)
    return out


def read_mne(path: Path):
    reader = mne.io.read_raw_bdf if path.suffix == ".bdf" else mne.io.read_raw_edf
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = reader(path, preload=True, verbose="warning")
    # A consistent file: nothing about the record count (mne may still say that it cropped
    # an annotation's duration at the end of the data).
    problems = [str(w.message) for w in caught if "annotation" not in str(w.message)]
    assert not problems, problems
    return raw


@pytest.mark.parametrize("ext", ["edf", "bdf"])
def test_sink_round_trip_digital_exact_physical_within_step_and_annotations(tmp_path, ext):
    path = tmp_path / f"o.{ext}"
    frames = sink_frames()
    node = EdfSink.create({"path": str(path), "physical_min": -200, "physical_max": 200})
    for f in frames:
        node.process(f)
    node.on_stop()
    data = np.concatenate([f.block() for f in frames], axis=1)
    dmin, dmax = (-8388608, 8388607) if ext == "bdf" else (-32768, 32767)
    step = 400 / (dmax - dmin)
    expected_digital = np.rint((data + 200) / step) + dmin
    stats = node.statistics()
    assert (stats.records, stats.padded, stats.annotations) == (12, 0, 8)
    assert stats.clipped == {"Fz": 0, "Cz": 0}

    ref = (edfio.read_bdf if ext == "bdf" else edfio.read_edf)(path)
    assert ref.num_data_records == 12 and ref.data_record_duration == 0.1
    for i, name in enumerate(["Fz", "Cz"]):
        sig = ref.get_signal(name)
        assert sig.sampling_frequency == RATE
        assert np.array_equal(sig.digital, expected_digital[i])
        assert np.max(np.abs(sig.data - data[i])) <= step / 2 + 1e-12
    assert ref.startdatetime.replace(tzinfo=dt.UTC) == START + dt.timedelta(microseconds=123_456)
    onsets = sorted((e.sample + 25 * f.sequence_id, e.label, e.duration)
                    for f in frames for e in f.events)
    got = sorted((a.onset, a.text, a.duration or 0) for a in ref.annotations)
    assert len(got) == len(onsets) == 8
    for (s, label, dur), (onset, text, duration) in zip(onsets, got, strict=True):
        assert text == label and abs(onset - s / RATE) < 1 / RATE and duration == dur / 1e6

    raw = read_mne(path)
    assert raw.ch_names == ["Fz", "Cz"] and raw.info["sfreq"] == RATE
    np.testing.assert_allclose(raw.get_data() * 1e6, data, atol=step / 2 + 1e-9)
    mne_anns = sorted(zip(raw.annotations.onset, raw.annotations.description,
                          raw.annotations.duration, strict=True))
    for (s, label, dur), (onset, text, duration) in zip(onsets, mne_anns, strict=True):
        assert text == label and abs(onset - s / RATE) < 1 / RATE
        # mne crops a duration at the end of the data (1.2 s here)
        assert duration == pytest.approx(min(dur / 1e6, 1.2 - s / RATE))

    # And our own source: the same samples, events on the same samples, times to the µs.
    back = run_node(EdfSource, {"path": str(path), "samples_per_frame": 25}, triggers=20)
    assert [f.timestamp for f in back] == [f.timestamp for f in frames]
    assert [(e.sample, e.label, e.duration) for f in back for e in f.events] == \
        [(e.sample, e.label, e.duration) for f in frames for e in f.events]
    np.testing.assert_allclose(np.concatenate([f.block() for f in back], axis=1), data,
                               atol=step / 2 + 1e-9)


@pytest.mark.parametrize("bdf", [False, True])
def test_conversion_edfio_file_to_our_file_keeps_digital_values(tmp_path, bdf):
    src = tmp_path / ("in.bdf" if bdf else "in.edf")
    ref = edfio_file(src, bdf, [edfio.EdfAnnotation(1.5, None, "x")], rates=(256.0, 256.0))
    dst = tmp_path / ("out.bdf" if bdf else "out.edf")
    frames = run_node(EdfSource, {"path": str(src), "samples_per_frame": 64}, triggers=30)
    run_node(EdfSink, {"path": str(dst), "physical_min": -500, "physical_max": 500,
                       "record_duration": 1}, frames)
    ours = (edfio.read_bdf if bdf else edfio.read_edf)(dst)
    for name in ("Fz", "Cz"):
        assert np.array_equal(ours.get_signal(name).digital, ref.get_signal(name).digital)
    assert [(a.onset, a.text) for a in ours.annotations] == [(1.5, "x")]


def test_values_outside_the_range_are_clipped_and_counted(tmp_path, caplog):
    path = tmp_path / "o.edf"
    f = DataFrame.from_block(["a", "b"], np.array([[0.0, 5000.0, -9000.0, np.nan],
                                                   [1.0, 2.0, 3.0, 4.0]]),
                             metadata={"sample_rate": "40"})
    node = EdfSink.create({"path": str(path)})
    with caplog.at_level(logging.WARNING):
        node.process(f)
        node.on_stop()
    s = node.statistics()
    assert s.clipped == {"a": 2, "b": 0} and s.nan == {"a": 1, "b": 0} and s.padded == 0
    assert "channel 'a' has values outside [-3200.0, 3200.0]: clipped" in caplog.text
    a = edfio.read_edf(path).get_signal("a")
    assert a.digital.tolist() == [0, 32767, -32768, -32768]


def test_the_last_record_is_completed_with_the_last_sample(tmp_path):
    path = tmp_path / "o.edf"
    f = DataFrame.from_block(["a"], np.array([[1.0, 2.0, 3.0]]), metadata={"sample_rate": "20"})
    node = EdfSink.create({"path": str(path), "physical_min": -10, "physical_max": 10})
    node.process(f)
    node.on_stop()
    assert node.statistics().padded == 1  # 0.1 s records of 2 samples
    np.testing.assert_allclose(edfio.read_edf(path).get_signal("a").data, [1, 2, 3, 3],
                               atol=1e-3)


def test_config_errors():
    with pytest.raises(ValueError, match="format 'bdf' disagrees with the path's extension"):
        EdfSink.Config.model_validate({"path": "x.edf", "format": "bdf"})
    with pytest.raises(ValueError, match=r"need finite min < max, got 5.0, 5.0"):
        EdfSink.Config.model_validate({"path": "x.edf", "physical_min": 5, "physical_max": 5})
    with pytest.raises(ValueError, match=r"channel_ranges\['a'\]: .*do not fit in the header"):
        EdfSink.Config.model_validate({"path": "x.edf", "channel_ranges": {"a": [-1e12, 1]}})
    with pytest.raises(ValueError, match=r"must end with \.edf or \.bdf"):
        EdfSource.Config.model_validate({"path": "x.xdf", "samples_per_frame": 1})


def test_pipeline_event_ledger_source_to_sink(tmp_path):
    src = tmp_path / "in.edf"
    edfio_file(src, False, [edfio.EdfAnnotation(t, None, f"e{t}") for t in (0.5, 1.0, 3.9)],
               rates=(256.0, 256.0))
    dst = tmp_path / "out.bdf"
    cfg = {"pipeline_config": {"debug": True},
           "nodes": [{"id": "src", "type": "EdfSource",
                      "config": {"path": str(src), "samples_per_frame": 32}},
                     {"id": "sink", "type": "EdfSink", "config": {"path": str(dst)}}],
           "connections": [{"from": "src", "to": "sink"}]}
    report = run(AsyncPipeline(cfg).run())
    sink = report.nodes["sink"]
    assert (sink.events_received, sink.event_fates["carried"]) == (3, 3)
    assert report.nodes["src"].events_emitted == 3
    assert [a.text for a in edfio.read_bdf(dst).annotations] == ["e0.5", "e1.0", "e3.9"]


# -- full disk ----------------------------------------------------------------------------------
def test_full_disk_stops_the_sink_and_leaves_a_readable_file(tmp_path, monkeypatch):
    from streamlab.nodes.sinks import AppendFile, SinkWriteError
    from tests.nodes.full_disk import FullDisk

    path = tmp_path / "o.edf"
    frames = sink_frames()
    header = 256 * 4
    record = 2 * 25 * 2 + 256
    disk = FullDisk(header + 4 * record + record // 2)
    monkeypatch.setattr(AppendFile, "_os_write", staticmethod(disk))
    node = EdfSink.create({"path": str(path), "physical_min": -200, "physical_max": 200})
    for f in frames[:4]:
        node.process(f)
    with pytest.raises(SinkWriteError, match=r"o\.edf'.*no space left on device; the sink "
                       r"stopped: the file holds 4 complete records \(0.4 s\)") as info:
        node.process(frames[4])
    assert info.value.errno == 28
    assert EdfReader(str(path)).header.n_records_header == 4  # the count set at once
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consistent: edfio has nothing to warn about
        ref = edfio.read_edf(path)
    assert ref.num_data_records == 4 and path.stat().st_size == header + 4 * record
    disk.budget = 10**9  # space is back: the sink stays stopped (a gap would shift time)
    with pytest.raises(SinkWriteError, match="stopped after an earlier failure"):
        node.process(frames[5])
    node.on_stop()
    raw = read_mne(path)
    assert raw.n_times == 100
    assert [a.text for a in edfio.read_edf(path).annotations] == ["stim1", "resp"]


# -- crash safety: kill -9 ----------------------------------------------------------------------
CHILD = r"""
import sys, numpy as np
from streamlab.frame import DataFrame
from streamlab.node import NodeContext
from streamlab.events import Event
from streamlab.nodes.edf import EdfSink
node = EdfSink.create({"path": sys.argv[1], "flush_interval_s": 0.05, "physical_min": -1000,
                       "physical_max": 1000}, NodeContext(node_id="rec"))
n = 0
for k in range(200000):
    x = (np.arange(n, n + 37) % 1000).astype(float) - 500.0
    f = DataFrame.from_block(["a", "b"], np.stack([x, -x]), timestamp=k,
                             metadata={"sample_rate": "1000"})
    if k % 10 == 0:
        f = f.with_events([Event(0, f"m{k}", sample=5)])
    node.process(f)
    n += 37
    print(n, flush=True)
"""


@pytest.mark.parametrize("lines", [3, 40, 400])
def test_kill_9_leaves_a_file_edfio_reads_and_repair_makes_exact(tmp_path, lines):
    path = tmp_path / "rec.bdf"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        seen = 0
        for _ in range(lines):
            line = proc.stdout.readline()
            assert line, "the recorder ended early"
            seen = int(line)
    finally:
        proc.kill()  # SIGKILL
        proc.wait(timeout=60)
        proc.stdout.close()
    # Everything reported written is in the file but the last partial record (100 samples).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the header's count may lag (edfio says so)
        ref = edfio.read_bdf(path)
    n = ref.get_signal("a").data.size
    assert n >= (seen // 100) * 100
    x = (np.arange(n) % 1000) - 500.0
    np.testing.assert_allclose(ref.get_signal("a").data, x, atol=1e-3)
    h = EdfReader(str(path)).header
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = mne.io.read_raw_bdf(path, preload=True, verbose="warning")
    assert before.n_times == n  # mne too reads it before the repair
    if h.n_records_header != h.n_records:  # the count lagged (-1 or an earlier flush's)
        assert any("Inferring from the file size" in str(w.message) for w in caught)
    report = repair(path)
    assert report.records * 100 == n and not repair(path).changed  # idempotent
    raw = read_mne(path)  # no warning: the header is exact now
    np.testing.assert_allclose(raw.get_data()[1] * 1e6, -x, atol=1e-3)
    marks = list(raw.annotations.description)
    assert marks == [f"m{k}" for k in range(0, 10 * len(marks), 10)]
    assert len(marks) >= (n - 5) // 370  # every marker of the records written


def test_a_recording_in_progress_says_minus_1_records_and_readers_cope(tmp_path):
    path = tmp_path / "live.edf"
    node = EdfSink.create({"path": str(path), "flush_interval_s": 3600,
                           "physical_min": -200, "physical_max": 200})
    for f in sink_frames()[:5]:  # 125 samples: 5 records of 25, no on_stop
        node.process(f)
    h = EdfReader(str(path)).header
    assert (h.n_records_header, h.n_records, h.trailing_bytes) == (-1, 5, 0)
    with pytest.warns(UserWarning, match="header indicates -1 data records"):
        assert edfio.read_edf(path).get_signal("Fz").data.size == 125
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mne.io.read_raw_edf(path, verbose="warning").n_times == 125
    assert any("Inferring from the file size" in str(w.message) for w in caught)
    assert repair(path).records_in_header == -1
    assert read_mne(path).n_times == 125
    for f in sink_frames()[5:]:  # the sink goes on: its own count is right
        node.process(f)
    node.on_stop()
    assert read_mne(path).n_times == 300


# -- hostile files ------------------------------------------------------------------------------
def good_edf(tmp_path: Path) -> bytes:
    path = tmp_path / "good.edf"
    edfio_file(path, False, rates=(100.0,))
    return path.read_bytes()


def put(raw: bytes, offset: int, text: bytes) -> bytes:
    return raw[:offset] + text + raw[offset + len(text):]


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[:200], r"truncated header: the file holds 200 bytes, an EDF/BDF header needs "
                        r"at least 256"),
    (lambda r: r[:600], r"truncated header: 2 signals need 768 header bytes, the file holds 600"),
    (lambda r: put(r, 0, b"PK\x03\x04"), r"header field 'version' is .*not an EDF or BDF file"),
    (lambda r: put(r, 236, b"x1      "), r"header field 'number of data records' is 'x1', "
                                        r"expected an integer"),
    (lambda r: put(r, 244, b"nan     "), r"'duration of a data record' is 'nan', expected a "
                                        r"finite number"),
    (lambda r: put(r, 244, b"0       "), r"'duration of a data record' is 0.0, expected more "
                                        r"than 0 s"),
    (lambda r: put(r, 252, b"9999"), r"'number of signals' is 9999, expected 1 to 4096"),
    (lambda r: put(r, 184, b"12      "), r"'header bytes' is 12, but 2 signals need"),
    (lambda r: put(r, 256 + 16 * 2 + 80 * 2 + 8 * 2, b"abc     "),
     r"signal 0 \(Fz\): physical minimum' is 'abc', expected a number"),
    (lambda r: put(r, 256 + 2 * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80), b"99999999999"),
     r"a data record of .* bytes .* is larger than"),
])
def test_hostile_headers_are_clear_errors(tmp_path, mutate, message):
    path = tmp_path / "bad.edf"
    path.write_bytes(mutate(good_edf(tmp_path)))
    with pytest.raises(EdfFormatError, match=r"bad\.edf'.*" + message):
        EdfSource.create({"path": str(path), "samples_per_frame": 10})


def test_record_count_disagreeing_with_the_size_is_a_partial_read(tmp_path, caplog):
    raw = good_edf(tmp_path)
    path = tmp_path / "bad.edf"
    record = EdfReader(str(tmp_path / "good.edf")).header.record_bytes
    for claimed, cut in [(b"9999    ", 0), (b"-1      ", 0), (b"2       ", 77)]:
        path.write_bytes(put(raw, 236, claimed)[:len(raw) - cut])
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            out = run_node(EdfSource, {"path": str(path), "samples_per_frame": 1000},
                           triggers=3)
        held = 4 if not cut else 3
        assert sum(f.n_samples for f in out) == 100 * held
        assert f"the header says {int(claimed)} data records, the file holds {held}" in caplog.text
        if cut:
            assert f"and {record - cut} bytes of a cut-off record (ignored)" in caplog.text


def test_bdf_with_zero_records_is_an_empty_stream(tmp_path, caplog):
    path = tmp_path / "z.bdf"
    edfio_file(path, True, rates=(100.0,))
    h = EdfReader(str(path)).header
    with open(path, "r+b") as f:
        f.truncate(h.header_bytes)
        f.seek(236)
        f.write(b"0       ")
    with caplog.at_level(logging.WARNING):
        assert run_node(EdfSource, {"path": str(path), "samples_per_frame": 10},
                        triggers=3) == []
    assert "z.bdf' holds no data records: the stream is empty" in caplog.text


def test_cli_reports_a_hostile_file_without_a_traceback(tmp_path):
    path = tmp_path / "bad.edf"
    path.write_bytes(put(good_edf(tmp_path), 236, b"x1      "))
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps({"nodes": [{"id": "src", "type": "EdfSource",
                                          "config": {"path": "bad.edf",
                                                     "samples_per_frame": 10}}]}))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    r = subprocess.run([sys.executable, "-m", "streamlab", "run", str(cfg), "-q"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "bad.edf'" in errors[0] and \
        "'number of data records' is 'x1'" in errors[0], r.stderr


def test_tal_onsets_need_no_exponent():
    from streamlab.formats.edf import encode_tal, parse_tals
    tal = encode_tal(1e-7, 2.5e-8, "a")
    assert b"e" not in tal.split(b"\x14")[0]
    assert parse_tals(tal, "x")[1][0].text == "a"
    assert math.isclose(parse_tals(encode_tal(123.456, 0, "b"), "x")[1][0].onset, 123.456)


# -- the example and the benchmark run ----------------------------------------------------------
def test_edf_convert_example_runs_as_documented(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    for fmt, step in (("bdf", 6400 / 16777215), ("edf", 6400 / 65535)):
        r = subprocess.run([sys.executable, str(REPO / "examples/edf_convert.py"), "--seconds",
                            "5", "--format", fmt, "--out", str(tmp_path)], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "events -> " in r.stdout and f"session.{fmt}" in r.stdout
        diffs = [float(ln.rsplit(" ", 2)[-2]) for ln in r.stdout.splitlines()
                 if "max |difference|" in ln]
        assert len(diffs) == 2 and max(diffs) <= step / 2 * 1.01, r.stdout  # printed to 3 digits


def test_benchmark_runs(capsys):
    from benchmarks import formats_edf

    formats_edf.main(["--seconds", "2", "--repeat", "1"])
    out = capsys.readouterr().out
    assert "edf: write" in out and "bdf: write" in out and "x real time" in out


def test_annotations_after_the_data_are_counted_and_logged_once(tmp_path, caplog):
    path = tmp_path / "late.edf"
    edfio_file(path, False, [edfio.EdfAnnotation(1.5, None, "in"),
                             edfio.EdfAnnotation(4.0, None, "at the end"),
                             edfio.EdfAnnotation(9.5, None, "after")], rates=(256.0, 256.0))
    from streamlab.errors import EndOfStream
    from streamlab.node import NodeContext

    with caplog.at_level(logging.WARNING):
        node = EdfSource.create({"path": str(path), "samples_per_frame": 256},
                                NodeContext(node_id="e"))
    frames = []
    for _ in range(100):  # 4 s of 256 Hz in frames of 256: 4 frames
        try:
            frames.append(node.process(None))
        except EndOfStream:
            break
    node.on_stop()
    assert len(frames) == 4
    assert [e.label for f in frames for e in f.events] == ["in"]
    assert node.annotations_out_of_range == 2
    assert caplog.text.count("2 annotations are at or after the end of the data") == 1
