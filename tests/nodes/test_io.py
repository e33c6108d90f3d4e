"""FileSource (streamlab.nodes.io) and the file sinks (streamlab.nodes.sinks), through the public API."""

from __future__ import annotations

import asyncio
import doctest
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlab.errors import ConfigError, EndOfStream, NodeError
from streamlab.frame import DataFrame
from streamlab.nodes import io, sinks
from streamlab.nodes.io import FileSource
from streamlab.nodes.sinks import CsvSink, JsonlSink, NpySink, NpzSink, WavSink
from streamlab.registry import node_types
from streamlab.runtime import AsyncPipeline
from streamlab.testing import VirtualClock, collect_samples, make_frame, run_node

REPO = Path(__file__).resolve().parents[2]


def run_pipeline(config: dict, clock: VirtualClock | None = None) -> dict[str, list[DataFrame]]:
    kw = {"clock": clock} if clock is not None else {}

    async def go() -> dict[str, list[DataFrame]]:
        pipe = AsyncPipeline(config, **kw)
        await pipe.start()
        pipe.close_triggers()
        await pipe.join()  # free-running sources run to their end
        return pipe.results

    return asyncio.run(go())


def source_only(src_config: dict) -> dict:
    return {"name": "t", "nodes": [{"id": "src", "type": "FileSource", "config": src_config},
                                  {"id": "out", "type": "Passthrough", "config": {}}],
            "connections": [{"from": "src", "to": "out"}]}


# -- FileSource ---------------------------------------------------------------------------------
def test_npy_frames_timestamps_ids_and_metadata(tmp_path):
    data = np.random.default_rng(1).standard_normal((1000, 3))
    np.save(tmp_path / "x.npy", data)
    frames = run_pipeline(source_only({"path": str(tmp_path / "x.npy"), "samples_per_frame": 128,
                                       "sample_rate": 250.0, "start_timestamp": 10}))["out"]
    assert [f.n_samples for f in frames] == [128] * 7 + [104]  # the last frame is shorter
    assert [f.sequence_id for f in frames] == list(range(8))
    assert [f.timestamp for f in frames] == [10 + round(k * 128 * 1e6 / 250) for k in range(8)]
    assert all(f.metadata["sample_rate"] == "250.0" for f in frames)
    assert frames[0].channels == ("ch0", "ch1", "ch2")
    assert frames[0].payload.is_block
    got = np.concatenate([f.block() for f in frames], axis=1).T
    assert np.array_equal(got, data)


def test_npy_one_dimensional_is_one_channel_and_is_memory_mapped(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(5, dtype=np.int16))
    node = FileSource.create({"path": str(tmp_path / "x.npy"), "samples_per_frame": 2,
                              "sample_rate": 1.0, "channels": ["v"]})
    assert isinstance(node._reader._data, np.memmap)
    out = run_node(FileSource, {"path": str(tmp_path / "x.npy"), "samples_per_frame": 2,
                                "sample_rate": 1.0, "channels": ["v"]}, triggers=4)
    assert collect_samples(out, "v").tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert out[0].payload["v"].dtype == np.float64
    node.on_stop()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 300), channels=st.integers(1, 4), spf=st.integers(1, 70))
def test_npy_frames_concatenate_to_the_file(tmp_path_factory, n, channels, spf):
    path = tmp_path_factory.mktemp("h") / "x.npy"
    data = np.random.default_rng(n).standard_normal((n, channels))
    np.save(path, data)
    out = run_node(FileSource, {"path": str(path), "samples_per_frame": spf, "sample_rate": 10.0},
                   triggers=n // spf + 3)
    assert len(out) == -(-n // spf)
    got = np.concatenate([f.block() for f in out], axis=1).T if out else np.empty((0, channels))
    assert np.array_equal(got, data)


def test_csv_header_names_and_exact_round_trip_through_csv_sink(tmp_path):
    data = np.random.default_rng(2).standard_normal((50, 2)) * 1e-3
    frames = [DataFrame.from_block(["Fz", "C, 3"], data[i:i + 20].T.copy(), sequence_id=i)
              for i in range(0, 50, 20)]
    run_node(CsvSink, {"path": str(tmp_path / "d.csv")}, frames)
    out = run_node(FileSource, {"path": str(tmp_path / "d.csv"), "samples_per_frame": 16,
                                "sample_rate": 100.0}, triggers=10)
    assert out[0].channels == ("Fz", "C, 3")
    assert np.array_equal(np.concatenate([f.block() for f in out], axis=1).T, data)


def test_csv_bad_row_names_the_path(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(ValueError, match="d.csv"):
        FileSource.create({"path": str(tmp_path / "d.csv"), "samples_per_frame": 1,
                           "sample_rate": 1.0})


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_wav_uses_the_files_rate_and_reads_float64(tmp_path, subtype):
    path = tmp_path / "a.wav"
    sig = 0.5 * np.sin(np.arange(4000) / 10.0)[:, None] * np.array([[1.0, -0.5]])
    sf.write(path, sig, 16000, subtype=subtype)
    expected, _ = sf.read(path, dtype="float64", always_2d=True)
    frames = run_pipeline(source_only({"path": str(path), "samples_per_frame": 512}))["out"]
    assert frames[0].metadata["sample_rate"] == "16000.0"
    assert [f.n_samples for f in frames][-1] == 4000 - 7 * 512
    got = np.concatenate([f.block() for f in frames], axis=1).T
    assert np.array_equal(got, expected)


def test_wav_rate_mismatch_is_an_error(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(10), 8000)
    with pytest.raises(ValueError, match="8000.0 Hz but the config says sample_rate=44100"):
        FileSource.create({"path": str(tmp_path / "a.wav"), "samples_per_frame": 4,
                           "sample_rate": 44100})


def test_config_errors_name_the_field_or_path(tmp_path):
    with pytest.raises(ConfigError, match=r"\$\.nodes\[0\]\.config.*sample_rate is required"):
        AsyncPipeline(source_only({"path": "x.npy", "samples_per_frame": 4}))
    with pytest.raises(ConfigError, match=r"must end with \.npy or \.csv or \.wav.*'\.txt'"):
        AsyncPipeline(source_only({"path": "x.txt", "samples_per_frame": 4}))
    with pytest.raises(NodeError, match="src.*no such file.*missing.npy"):
        AsyncPipeline(source_only({"path": str(tmp_path / "missing.npy"), "samples_per_frame": 4,
                                   "sample_rate": 1.0}))


def test_bad_shapes_and_channel_counts_name_the_path(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"cube.npy.*1-D or 2-D.*\(2, 2, 2\)"):
        FileSource.create({"path": str(tmp_path / "cube.npy"), "samples_per_frame": 1,
                           "sample_rate": 1.0})
    np.save(tmp_path / "c.npy", np.array([1 + 2j]))
    with pytest.raises(ValueError, match="c.npy.*real numbers"):
        FileSource.create({"path": str(tmp_path / "c.npy"), "samples_per_frame": 1,
                           "sample_rate": 1.0})
    np.save(tmp_path / "two.npy", np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2 channels but 3 names"):
        FileSource.create({"path": str(tmp_path / "two.npy"), "samples_per_frame": 1,
                           "sample_rate": 1.0, "channels": ["a", "b", "c"]})


def test_realtime_paces_on_the_pipeline_clock(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((100, 1)))
    clock = VirtualClock()
    frames = run_pipeline(source_only({"path": str(tmp_path / "x.npy"), "samples_per_frame": 25,
                                       "sample_rate": 100.0, "realtime": True}), clock)["out"]
    assert len(frames) == 4
    # frames due at 0, .25, .5, .75 s; the 5th call (at 1.0 s) finds the end of the file
    assert clock.sleeps == pytest.approx([0.25] * 4)
    assert frames[0].timestamp == clock.start_us  # free mode: t0 = clock time at first frame


# -- sinks --------------------------------------------------------------------------------------
def frames_2ch(n_frames: int = 3, n: int = 4, rate: str = "8000.0") -> list[DataFrame]:
    rng = np.random.default_rng(3)
    return [DataFrame.from_block(["l", "r"], rng.uniform(-0.9, 0.9, (2, n)), timestamp=k * 500,
                                 sequence_id=k, metadata={"sample_rate": rate})
            for k in range(n_frames)]


def test_npy_sink_writes_incrementally_and_finishes_the_header(tmp_path):
    path = tmp_path / "sub" / "o.npy"
    frames = frames_2ch()
    node = NpySink.create({"path": str(path)})
    for f in frames:
        assert node.process(f) is None
    assert path.exists() and not node.statistics().closed
    node.on_stop()
    assert path.stat().st_size == 128 + 3 * 4 * 2 * 8  # fixed header, then the raw samples
    got = np.load(path, mmap_mode="r")
    assert np.array_equal(got, np.concatenate([f.block() for f in frames], axis=1).T)
    assert node.statistics().frames == 3 and node.statistics().closed


def test_npz_sink_stores_samples_and_timing(tmp_path):
    frames = frames_2ch()
    run_node(NpzSink, {"path": str(tmp_path / "o.npz"), "compressed": True}, frames)
    z = np.load(tmp_path / "o.npz")
    assert z["channels"].tolist() == ["l", "r"]
    assert z["timestamps"].tolist() == [0, 500, 1000]
    assert z["sequence_ids"].tolist() == [0, 1, 2]
    assert z["frame_lengths"].tolist() == [4, 4, 4]
    assert float(z["sample_rate"]) == 8000.0
    assert np.array_equal(z["data"], np.concatenate([f.block() for f in frames], axis=1).T)


def test_csv_sink_time_column(tmp_path):
    run_node(CsvSink, {"path": str(tmp_path / "o.csv"), "time_column": "t_us"}, frames_2ch(2, 3))
    rows = (tmp_path / "o.csv").read_text().splitlines()
    assert rows[0] == "t_us,l,r"
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "125", "250", "500", "625", "750"]


def test_wav_sink_subtypes_and_rate(tmp_path):
    frames = frames_2ch()
    expected = np.concatenate([f.block() for f in frames], axis=1).T
    run_node(WavSink, {"path": str(tmp_path / "f.wav")}, frames)
    data, rate = sf.read(tmp_path / "f.wav")
    assert rate == 8000 and sf.info(tmp_path / "f.wav").subtype == "FLOAT"
    assert np.array_equal(data, expected.astype(np.float32))
    run_node(WavSink, {"path": str(tmp_path / "p.wav"), "subtype": "PCM_16",
                       "sample_rate": 22050}, frames)
    data, rate = sf.read(tmp_path / "p.wav")
    assert rate == 22050 and np.allclose(data, expected, atol=1 / 32768)


def test_wav_sink_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown WAV subtype 'MP3'"):
        WavSink.create({"path": str(tmp_path / "x.wav"), "subtype": "MP3"})
    with pytest.raises(ValueError, match="whole, positive sample rate.*got 100.5"):
        run_node(WavSink, {"path": str(tmp_path / "x.wav")}, frames_2ch(rate="100.5"))
    with pytest.raises(ValueError, match="got None"):
        run_node(WavSink, {"path": str(tmp_path / "x.wav")}, [make_frame(x=[0.0])])


def test_column_sinks_reject_changed_channels_and_jsonl_accepts_them(tmp_path):
    frames = [make_frame(a=[1.0]), make_frame(b=[2.0], sequence_id=1)]
    with pytest.raises(ValueError, match=r"frame 1 has channels \['b'\].*started with \['a'\]"):
        run_node(NpySink, {"path": str(tmp_path / "o.npy")}, frames)
    run_node(JsonlSink, {"path": str(tmp_path / "o.jsonl")}, frames)
    lines = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [list(x["payload"]) for x in lines] == [["a"], ["b"]]


def test_passthrough_and_no_file_without_frames(tmp_path):
    frames = frames_2ch()
    assert run_node(NpySink, {"path": str(tmp_path / "o.npy"), "passthrough": True},
                    frames) == frames
    assert run_node(NpySink, {"path": str(tmp_path / "none.npy")}, []) == []
    assert not (tmp_path / "none.npy").exists()


def test_sink_config_errors_name_the_path():
    for node_type, path in [("NpySink", "o.csv"), ("WavSink", "o.flac"), ("JsonlSink", "o.txt")]:
        cfg = {"name": "t", "nodes": [{"id": "s", "type": node_type, "config": {"path": path}}]}
        with pytest.raises(ConfigError, match=rf"\$\.nodes\[0\]\.config.*{node_type}.*{path}"):
            AsyncPipeline(cfg)


def test_every_io_node_is_registered_with_a_described_schema():
    types = node_types()
    for name in ["FileSource", "JsonlSink", "CsvSink", "NpySink", "NpzSink", "WavSink"]:
        cls = types[name]
        assert cls.description()
        props = cls.Config.model_json_schema()["properties"]
        assert all(p.get("description") for p in props.values()), name


def test_streamlab_run_ends_with_complete_files(tmp_path):
    """The CLI runs a file pipeline without triggers; every sink's file is complete after it."""
    data = np.random.default_rng(4).standard_normal((3000, 2))
    np.save(tmp_path / "in.npy", data)
    sinks = {"npy": ("NpySink", "o.npy"), "csv": ("CsvSink", "o.csv"),
             "wav": ("WavSink", "o.wav"), "jsonl": ("JsonlSink", "o.jsonl"),
             "npz": ("NpzSink", "o.npz")}
    config = {
        "name": "files",
        "nodes": [{"id": "src", "type": "FileSource",
                   "config": {"path": "in.npy", "samples_per_frame": 256, "sample_rate": 1000.0,
                              "channels": ["x", "y"]}},
                  {"id": "gain", "type": "Gain", "config": {"gain": 0.25}}]
        + [{"id": k, "type": t, "config": {"path": p, "passthrough": k == "jsonl"}}
           for k, (t, p) in sinks.items()],
        "connections": [{"from": "src", "to": "gain"}]
        + [{"from": "gain", "to": k} for k in sinks],
    }
    (tmp_path / "p.json").write_text(json.dumps(config))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-m", "streamlab", "run", "p.json", "--output",
                           "run.jsonl", "-q"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    expected = data * 0.25
    assert np.array_equal(np.load(tmp_path / "o.npy"), expected)
    assert np.array_equal(np.loadtxt(tmp_path / "o.csv", delimiter=",", skiprows=1), expected)
    assert np.array_equal(sf.read(tmp_path / "o.wav")[0], expected.astype(np.float32))
    assert np.array_equal(np.load(tmp_path / "o.npz")["data"], expected)
    ours = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    cli = [json.loads(x) for x in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert len(ours) == 12 and ours[0]["node"] == "gain"
    # JsonlSink (passthrough, terminal) writes the same lines as --output does for its input
    assert [dict(x, node="jsonl") for x in ours] == cli


def test_audio_filter_example_runs_as_documented(tmp_path):
    """examples/make_audio.py then `streamlab run examples/audio_filter.json` (the config's
    paths are relative to its folder, ../out/audio: a copy in tmp_path/examples runs here)."""
    from scipy.signal import butter, sosfilt

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples/audio_filter.json", tmp_path / "examples")
    for args in (["examples/make_audio.py"], ["examples/make_audio.py"]):  # idempotent
        r = subprocess.run([sys.executable, str(REPO / args[0])], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "streamlab", "run",
                        "examples/audio_filter.json", "-q"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    audio = tmp_path / "out" / "audio"
    x, rate = sf.read(audio / "tone_noise.wav")
    y, rate_out = sf.read(audio / "tone_filtered.wav")
    assert rate == rate_out == 16000 and y.shape == x.shape == (48000, 2)
    if "IIRFilter" in node_types():
        reference = sosfilt(butter(6, 1000.0, fs=16000.0, output="sos"), x, axis=0)
        assert np.max(np.abs(y - reference)) <= 1 / 32768  # PCM_16 rounding only
    spec_in, spec_out = (np.abs(np.fft.rfft(s[:, 0])) for s in (x, y))
    bin_of = lambda hz: round(hz * len(x) / rate)  # noqa: E731
    assert spec_out[bin_of(3000)] < 1e-3 * spec_in[bin_of(3000)]  # the whistle is gone
    assert spec_out[bin_of(440)] > 0.9 * spec_in[bin_of(440)]  # the tone stays
    for png in ("input.png", "filtered.png"):
        assert (audio / png).stat().st_size > 20_000


# -- module wiring ------------------------------------------------------------------------------
@pytest.mark.parametrize("module", [io, sinks], ids=["io", "sinks"])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


# -- CSV headers and errors, paths that are not files (#9 items 15, 16) --------------------------
def csv_source(path, **extra) -> FileSource:
    return FileSource.create({"path": str(path), "samples_per_frame": 100, "sample_rate": 1.0,
                              **extra})


@pytest.mark.parametrize("text,header,names,rows", [
    ("1.0,2.0\n3,4\n", "auto", ("ch0", "ch1"), [[1, 2], [3, 4]]),        # headerless: no loss
    ("a,b\n1,2\n", "auto", ("a", "b"), [[1, 2]]),
    ('"Fz", "C, 3"\n1,2\n', "auto", ("Fz", "C, 3"), [[1, 2]]),          # quotes stripped
    ("'Fz',  Cz \n1,2\n", "auto", ("Fz", "Cz"), [[1, 2]]),
    ("\ufeffa,b\n1,2\n", "auto", ("a", "b"), [[1, 2]]),                 # byte-order mark
    ("1,2\n3,4\n", True, ("1", "2"), [[3, 4]]),                          # explicit header
    ("1,2\n\n3,4\n", False, ("ch0", "ch1"), [[1, 2], [3, 4]]),           # blank line skipped
    ("a,b\n", "auto", ("a", "b"), []),                                   # header only
])
def test_csv_header_detection(tmp_path, text, header, names, rows):
    path = tmp_path / "d.csv"
    path.write_text(text, encoding="utf-8")
    node = csv_source(path, header=header)
    assert node.channels == names
    if rows:
        assert node.process(None).block().T.tolist() == rows
    with pytest.raises(EndOfStream):
        node.process(None)


def test_csv_headerless_takes_configured_channel_names(tmp_path):
    (tmp_path / "d.csv").write_text("1,2\n3,4\n")
    node = csv_source(tmp_path / "d.csv", channels=["x", "y"])
    assert node.channels == ("x", "y") and node.process(None).n_samples == 2


@pytest.mark.parametrize("content,message", [
    (b"a,b\n1,2\n3,4,5\n", r"line 3: 3 values, but 2 names in the header"),
    (b"1,2\n3\n", r"line 2: 1 values, but 2 values in line 1"),
    (b"a,b\n1,2\n3,oops\n", r"line 3: column 2: 'oops' is not a number"),
    (b"a,b\n\n1,\n", r"line 3: column 2: '' is not a number"),
    (b"a,b\n1,2\ncaf\xe9,1\n", r"line 3: not UTF-8 text \(byte 0xe9 at column 4\)"),
    (b"a,b\n1,2\n" + b"9" * 200_000 + b",1\n", r"line 3: cannot parse it as CSV \(field larger"),
    (b"a,a\n1,2\n", r"line 1: the header row must hold unique, non-empty channel names"),
    (b"", r"empty CSV file"),
])
def test_csv_errors_name_the_path_and_line(tmp_path, content, message):
    (tmp_path / "d.csv").write_bytes(content)
    with pytest.raises(ValueError, match=rf"d\.csv'?, {message}" if "line" in message
                       else message) as info:
        csv_source(tmp_path / "d.csv")
    assert "usecols" not in str(info.value) and "d.csv" in str(info.value)


def test_csv_header_field_is_for_csv_only(tmp_path):
    with pytest.raises(ValueError, match="header applies to .csv files only"):
        FileSource.create({"path": str(tmp_path / "x.npy"), "samples_per_frame": 1,
                           "sample_rate": 1.0, "header": False})


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "loop", "dangling", "missing"])
def test_file_source_says_what_a_non_file_path_is(tmp_path, kind):
    path = tmp_path / "x.npy"
    message = {"directory": "is a directory", "fifo": r"is a FIFO \(named pipe\)",
               "device": "is a device", "loop": "is a symlink loop",
               "dangling": "is a symlink to .*gone.npy.*which does not exist",
               "missing": "no such file"}[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # a blocking open would hang the test: the source must not open it
    elif kind == "device":
        os.symlink("/dev/zero", path)
    elif kind == "loop":
        os.symlink(tmp_path / "y.npy", path)
        os.symlink(path, tmp_path / "y.npy")
    elif kind == "dangling":
        os.symlink(tmp_path / "gone.npy", path)
    with pytest.raises((OSError, ValueError), match=message) as info:
        FileSource.create({"path": str(path), "samples_per_frame": 1, "sample_rate": 1.0})
    assert "x.npy" in str(info.value)
    if kind != "missing":
        assert "no such file" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_file_source_unreadable_file_is_permission_denied(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "x.npy").chmod(0)
    with pytest.raises(PermissionError, match=r"x\.npy'?: permission denied"):
        FileSource.create({"path": str(tmp_path / "x.npy"), "samples_per_frame": 1,
                           "sample_rate": 1.0})


def _npy_with_shape(path, shape, data: bytes) -> None:
    import struct

    d = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".ljust(117) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode() + data)


@pytest.mark.parametrize("shape,message", [
    ((2**62, 2**62), r"header says shape \(4611686018427387904, 4611686018427387904\)"),
    ((1000, 2), r"header says shape \(1000, 2\) of float64 \(16000 bytes\) but the file holds 64 bytes"),
])
def test_npy_header_larger_than_the_file_is_a_clear_error(tmp_path, shape, message):
    # pytest turns RuntimeWarning into an error: numpy's overflow warning must not escape
    _npy_with_shape(tmp_path / "x.npy", shape, b"\0" * 64)
    with pytest.raises(ValueError, match=rf"x\.npy'?: the \.npy {message}"):
        FileSource.create({"path": str(tmp_path / "x.npy"), "samples_per_frame": 1,
                           "sample_rate": 1.0})
