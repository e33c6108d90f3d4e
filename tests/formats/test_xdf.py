"""streamlab.formats.xdf: the writer read back by pyxdf, the chunk scanner on hostile files,
repair and load (truncated files, huge lengths, headers that are not XML)."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from streamlab.formats.xdf import (
    BOUNDARY,
    XdfError,
    XdfWriter,
    load,
    repair,
    scan,
    varlen,
)

pyxdf = pytest.importorskip("pyxdf")

T0_US = 1_764_000_000_123_456  # an epoch time in µs, as the pipeline clock gives


def regular_us(n: int, rate: float, t0: int = T0_US) -> np.ndarray:
    return t0 + np.rint(np.arange(n) * 1e6 / rate).astype(np.int64)


def write_session(path: Path, *, n: int = 3000, chunk: int = 100, flush: float = 0.0,
                  boundary: float = 0.0) -> dict:
    """Two data streams (1 kHz x 4, 250 Hz x 2) and a marker stream; what was written."""
    rng = np.random.default_rng(3)
    eeg = rng.standard_normal((n, 4))
    eeg[1, 0], eeg[2, 1], eeg[3, 2], eeg[4, 3] = -0.0, np.nan, np.inf, 5e-324
    slow = rng.standard_normal((n // 4, 2))
    t_eeg = regular_us(n, 1000.0)
    t_slow = regular_us(n // 4, 250.0, T0_US + 777)
    marks = [(int(t_eeg[k] + 300), f"stim/{k}") for k in range(0, n, 170)]
    w = XdfWriter(path, flush_interval=flush, boundary_interval=boundary)
    a = w.add_stream("eeg", channels=["Fz", "Cz", "P<z>", "Oz&"], nominal_srate=1000.0,
                     type="EEG", source_id="amp-1", units=["uV", "uV", "uV", None])
    b = w.add_stream("slow", channels=["x", "y"], nominal_srate=250.0, type="Aux")
    m = w.add_stream("markers", channels=["label"], channel_format="string", type="Markers")
    for k in range(0, n, chunk):
        w.write_samples(a, t_eeg[k:k + chunk] / 1e6, eeg[k:k + chunk])
        j = slice(k // 4, (k + chunk) // 4)
        w.write_samples(b, t_slow[j] / 1e6, slow[j])
        ms = [(t, s) for t, s in marks if t_eeg[k] <= t - 300 < t_eeg[min(k + chunk, n) - 1] + 1]
        if ms:
            w.write_samples(m, np.array([t for t, _ in ms]) / 1e6, [[s] for _, s in ms])
        w.maybe_flush()
    w.close()
    return {"eeg": (t_eeg, eeg), "slow": (t_slow, slow), "markers": marks}


def by_name(streams: list[dict]) -> dict[str, dict]:
    return {s["info"]["name"][0]: s for s in streams}


@pytest.mark.parametrize("sync", [False, True])
def test_pyxdf_reads_our_file_back_exactly(tmp_path, sync):
    path = tmp_path / "s.xdf"
    want = write_session(path)
    streams = by_name(pyxdf.load_xdf(str(path), synchronize_clocks=sync,
                                     dejitter_timestamps=False)[0])
    for name in ("eeg", "slow"):
        t_us, data = want[name]
        s = streams[name]
        assert s["time_series"].dtype == np.float64
        assert s["time_series"].tobytes() == data.tobytes()  # bit for bit: -0.0, NaN, denormal
        # stamps are written as µs / 1e6 and come back as those very doubles
        assert np.array_equal(s["time_stamps"], t_us / 1e6)
        assert np.array_equal(np.rint(s["time_stamps"] * 1e6).astype(np.int64), t_us)
        assert s["footer"]["info"]["sample_count"] == [str(len(t_us))]
    m = streams["markers"]
    assert [v[0] for v in m["time_series"]] == [s for _, s in want["markers"]]
    assert np.rint(m["time_stamps"] * 1e6).astype(np.int64).tolist() == \
        [t for t, _ in want["markers"]]
    info = streams["eeg"]["info"]
    chans = info["desc"][0]["channels"][0]["channel"]
    assert [c["label"][0] for c in chans] == ["Fz", "Cz", "P<z>", "Oz&"]  # XML-escaped
    assert [c.get("unit", [None])[0] for c in chans] == ["uV", "uV", "uV", None]
    assert info["nominal_srate"] == ["1000.0"] and info["source_id"] == ["amp-1"]
    assert info["channel_format"] == ["double64"]


def test_dejittered_stamps_stay_within_pyxdfs_own_precision(tmp_path):
    path = tmp_path / "s.xdf"
    want = write_session(path)
    s = by_name(pyxdf.load_xdf(str(path))[0])["eeg"]  # both pyxdf defaults on
    assert np.max(np.abs(s["time_stamps"] - want["eeg"][0] / 1e6)) < 5e-6


def test_clock_offsets_are_written_like_labrecorder_and_give_pyxdf_a_zero_fit(tmp_path):
    path = tmp_path / "s.xdf"
    clock = iter(np.arange(0.0, 1000.0, 0.5))
    w = XdfWriter(path, flush_interval=1.0, clock_offset_interval=5.0,
                  clock=lambda: float(next(clock)))
    sid = w.add_stream("x", channels=["a"], nominal_srate=100.0)
    t = regular_us(4000, 100.0)
    for k in range(0, 4000, 10):
        w.write_samples(sid, t[k:k + 10] / 1e6, np.zeros((10, 1)))
        w.maybe_flush()
    w.close()
    [s] = pyxdf.load_xdf(str(path), dejitter_timestamps=False)[0]
    times = s["clock_times"]
    assert len(times) >= 3 and all(b > a for a, b in zip(times, times[1:]))  # increasing
    assert set(s["clock_values"]) == {0.0}
    assert np.array_equal(s["time_stamps"], t / 1e6)  # the zero fit leaves them unchanged
    layout = scan(path)
    assert layout.truncated is None and layout.footers == {1}


def test_measured_clock_offsets_are_applied_by_pyxdf(tmp_path):
    path = tmp_path / "s.xdf"
    w = XdfWriter(path)
    sid = w.add_stream("x", channels=["a"], nominal_srate=10.0)
    w.write_samples(sid, np.arange(100) / 10.0, np.zeros((100, 1)))
    for t in (0.0, 5.0, 10.0):
        w.write_clock_offset(sid, t, 0.25)
    w.close()
    [s] = pyxdf.load_xdf(str(path), dejitter_timestamps=False)[0]
    assert np.allclose(s["time_stamps"], np.arange(100) / 10.0 + 0.25, atol=1e-9)


def test_writer_refuses_bad_shapes_and_formats(tmp_path):
    w = XdfWriter(tmp_path / "x.xdf")
    with pytest.raises(ValueError, match="channel_format"):
        w.add_stream("x", channels=["a"], channel_format="float128")
    sid = w.add_stream("x", channels=["a", "b"])
    with pytest.raises(ValueError, match=r"shape \(2, 3\), expected \(2, 2\)"):
        w.write_samples(sid, np.array([0.0, 1.0]), np.zeros((2, 3)))
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write_samples(sid, np.array([0.0]), np.zeros((1, 2)))


# -- hostile files -----------------------------------------------------------------------------
def chunk_ends(data: bytes) -> list[int]:
    """Byte offsets where chunks end (independent little parser for the tests)."""
    pos, ends = 4, []
    while pos < len(data):
        nb = data[pos]
        length = int.from_bytes(data[pos + 1:pos + 1 + nb], "little")
        pos = pos + 1 + nb + length
        ends.append(pos)
    return ends


@pytest.fixture
def session(tmp_path) -> tuple[bytes, dict]:
    path = tmp_path / "whole.xdf"
    want = write_session(path, n=600, chunk=100, boundary=0.0)
    return path.read_bytes(), want


def test_every_cut_gives_the_complete_chunks_or_a_clear_error(tmp_path, session):
    data, _ = session
    ends = chunk_ends(data)
    assert data.count(BOUNDARY) >= 1
    whole = by_name(pyxdf.load_xdf(str(tmp_path / "whole.xdf"), dejitter_timestamps=False)[0])
    cuts = sorted(set(ends[:-1]) | {e - d for e in ends for d in (1, 2, 5, 9)} | {5, 6})
    cut_path = tmp_path / "cut.xdf"
    for cut in cuts:
        if cut <= 4:
            continue
        cut_path.write_bytes(data[:cut])
        layout = scan(cut_path)
        complete = max([e for e in ends if e <= cut], default=4)
        assert layout.end == complete
        if cut in ends:  # a cut at a chunk boundary is a valid (shorter) file
            assert layout.truncated is None
            streams, _ = load(cut_path, dejitter_timestamps=False)
        else:
            assert layout.truncated is not None and f"at byte {complete}" in layout.truncated
            with pytest.raises(XdfError, match=r"cut.xdf.*ends inside chunk .*repair"):
                load(cut_path, dejitter_timestamps=False)
            streams, _ = load(cut_path, dejitter_timestamps=False, allow_truncated=True)
        got = by_name(streams)
        for name, s in got.items():  # every sample read is the one written, in order
            n = len(s["time_stamps"])
            if name == "markers":
                assert s["time_series"] == whole[name]["time_series"][:n]
            else:
                assert s["time_series"].tobytes() == whole[name]["time_series"][:n].tobytes()
            assert np.array_equal(s["time_stamps"], whole[name]["time_stamps"][:n])
    # repair cuts a mid-chunk file back to its last complete chunk, which pyxdf reads
    cut_path.write_bytes(data[:ends[-4] - 3])
    assert repair(cut_path) == ends[-4] - 3 - ends[-5]
    assert cut_path.stat().st_size == ends[-5] and scan(cut_path).truncated is None
    assert repair(cut_path) == 0
    pyxdf.load_xdf(str(cut_path))


def test_a_chunk_length_of_2_62_fails_fast_in_bounded_memory(tmp_path, session):
    data, _ = session
    ends = chunk_ends(data)
    at = ends[4]  # replace chunk 5's length by 2**62
    nb = data[at]
    bad = data[:at] + b"\x08" + struct.pack("<Q", 2**62) + data[at + 1 + nb:]
    path = tmp_path / "huge.xdf"
    path.write_bytes(bad)
    tracemalloc.start()
    try:
        with pytest.raises(XdfError) as err:
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000
    msg = str(err.value)
    assert "huge.xdf" in msg and f"at byte {at}" in msg and str(2**62) in msg
    assert err.value.offset == at
    # the part before it is readable on request (a documented partial read)
    streams, _ = load(path, dejitter_timestamps=False, allow_truncated=True)
    assert streams


def test_a_stream_header_that_is_not_xml_names_file_chunk_and_offset(tmp_path):
    body = struct.pack("<I", 1) + b"this is <not xml"
    raw = (b"XDF:" + varlen(len(b'<?xml version="1.0"?><info/>') + 2) + b"\x01\x00"
           + b'<?xml version="1.0"?><info/>' + varlen(len(body) + 2) + b"\x02\x00" + body)
    path = tmp_path / "notxml.xdf"
    path.write_bytes(raw)
    with pytest.raises(XdfError, match=r"notxml\.xdf.*chunk 1 \(StreamHeader, at byte 36\): "
                                       r"not XML"):
        load(path)


@pytest.mark.parametrize(("raw", "problem"), [
    (b"PK\x03\x04", "not an XDF file"),
    (b"XDF:\x03\x00\x00\x00", "bad length size byte 3"),
    (b"XDF:\x01\x01\x00", "chunk length 1 is too small"),
    (b"XDF:\x01\x0a\x03\x00" + struct.pack("<I", 7) + b"\x01\x00\x00\x00", "stream 7 has no "
     "StreamHeader"),
    (b"XDF:\x01\x12\x05\x00" + b"\x00" * 16, "not the boundary UUID"),
])
def test_corrupt_structures_are_named(tmp_path, raw, problem):
    path = tmp_path / "bad.xdf"
    path.write_bytes(raw)
    with pytest.raises(XdfError, match=problem):
        scan(path)


def test_stream_header_without_required_fields_and_inconsistent_samples(tmp_path):
    path = tmp_path / "h.xdf"
    xml = b'<?xml version="1.0"?><info><name>x</name><channel_count>2</channel_count></info>'
    body = struct.pack("<I", 1) + xml
    path.write_bytes(b"XDF:" + varlen(len(body) + 2) + b"\x02\x00" + body)
    with pytest.raises(XdfError, match="no <nominal_srate>"):
        scan(path)
    w = XdfWriter(path)
    sid = w.add_stream("x", channels=["a", "b"], nominal_srate=10.0)
    w.write_samples(sid, np.arange(3.0), np.zeros((3, 2)))
    w.close()
    data = bytearray(path.read_bytes())
    k = data.index(b"\x03\x00" + struct.pack("<I", 1)) + 6  # the sample count of the chunk
    data[k:k + 2] = b"\x01\x09"  # claims 9 samples in room for 3
    path.write_bytes(bytes(data))
    with pytest.raises(XdfError, match=r"9 samples of stream 1 \(2 x double64\) cannot fill"):
        scan(path)
