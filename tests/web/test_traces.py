"""Trace buffers: min/max decimation keeps spikes, the ring wraps, events land on their sample."""

from __future__ import annotations

import numpy as np

from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.web.traces import TraceBuffer, decode, encode

NAMES = ["a", "b"]


def frames(x: np.ndarray, per: int, rate: float = 1000.0) -> list[DataFrame]:
    return [DataFrame.from_block(NAMES, x[:, i:i + per], timestamp=round(i / rate * 1e6),
                                 sequence_id=i // per) for i in range(0, x.shape[1], per)]


def test_min_max_per_column_keeps_a_one_sample_spike():
    x = np.zeros((2, 5000))
    x[1, 2345] = 100.0
    x[0, 4000] = -7.0
    b = TraceBuffer()
    b.extend(frames(x, 50))
    header, data = b.decimate(width=100, seconds=5.0)
    d = data.reshape(2, 2, -1)
    assert header["columns"] == 100 and header["samples"] == 5000
    assert header["sample_rate"] == 1000.0
    assert d[1, 1].max() == 100.0 and d[1, 1].argmax() == 2345 // 50
    assert d[0, 0].min() == -7.0 and d[0, 0].argmin() == 4000 // 50
    ref = x.reshape(2, 100, 50)
    np.testing.assert_array_equal(d[:, 0], ref.min(axis=2))
    np.testing.assert_array_equal(d[:, 1], ref.max(axis=2))


def test_large_decimation_factor_equals_the_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 16000))
    b = TraceBuffer(capacity=16384)
    b.extend(frames(x, 100))
    header, data = b.decimate(width=50, seconds=16.0)
    d = data.reshape(2, 2, -1)
    ref = x[:, 16000 - header["samples"]:].astype(np.float32).reshape(2, 50, -1)
    np.testing.assert_array_equal(d[:, 0], ref.min(axis=2))
    np.testing.assert_array_equal(d[:, 1], ref.max(axis=2))


def test_fewer_samples_than_columns_are_sent_as_they_are():
    b = TraceBuffer()
    b.extend(frames(np.arange(20.0).reshape(2, 10), 5))
    header, data = b.decimate(width=800, seconds=5.0)
    d = data.reshape(2, 2, -1)
    assert header["columns"] == 10
    np.testing.assert_array_equal(d[0, 0], np.arange(10.0))
    np.testing.assert_array_equal(d[0, 1], np.arange(10.0))


def test_the_ring_keeps_the_newest_samples():
    x = np.arange(2 * 1000.0).reshape(2, 1000)
    b = TraceBuffer(capacity=256)
    b.extend(frames(x, 30))
    np.testing.assert_array_equal(b.window(256), x[:, -256:])
    assert b.total == 1000


def test_events_are_placed_at_their_sample():
    x = np.zeros((2, 1000))
    fs = frames(x, 100)
    fs[3] = fs[3].with_events([Event(0, "stim", value=2.0, sample=40)])
    b = TraceBuffer()
    b.extend(fs)
    header, _ = b.decimate(width=100, seconds=1.0)
    assert header["events"] == [{"x": 340 / 1000, "label": "stim", "value": 2.0}]


def test_a_new_channel_layout_resets_the_buffer_and_ragged_frames_are_counted():
    b = TraceBuffer()
    b.extend(frames(np.ones((2, 100)), 50))
    b.add(DataFrame(0, 0, {"x": np.ones(10)}))
    assert b.names == ("x",) and b.total == 10
    b.add(DataFrame(0, 0, {"x": np.ones(3), "y": np.ones(2)}))
    assert b.skipped == 1


def test_spectrum_peaks_at_the_sine_frequency():
    t = np.arange(4096) / 1000.0
    x = np.vstack([np.sin(2 * np.pi * 100 * t), np.sin(2 * np.pi * 250 * t)])
    b = TraceBuffer()
    b.extend(frames(x, 64))
    header, data = b.spectrum(max_bins=10_000)
    spec = data.reshape(2, -1)
    hz = np.arange(header["bins"]) * header["max_hz"] / (header["bins"] - 1)
    assert abs(hz[spec[0].argmax()] - 100) < 2 and abs(hz[spec[1].argmax()] - 250) < 2


def test_encode_decode_round_trip():
    header = {"kind": "trace", "channels": ["a"]}
    data = np.arange(6, dtype=np.float32)
    h, d = decode(encode(header, data))
    assert h == header
    np.testing.assert_array_equal(d, data)
