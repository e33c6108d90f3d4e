"""Streaming filters equal scipy's batch filters over the whole signal, for any chunking."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import streamlab.nodes.filters as filters
from streamlab.config import load_config
from streamlab.errors import ConfigError, NodeError
from streamlab.frame import DataFrame
from streamlab.nodes.filters import (
    DCRemoval,
    Detrend,
    FIRFilter,
    IIRFilter,
    MovingAverage,
    NotchFilter,
)
from streamlab.testing import make_frame, run_node

FS = 250.0
NAMES = ("a", "b", "c")
RNG = np.random.default_rng(42)
SIGNAL = RNG.standard_normal((3, 700)) * np.array([[1.0], [5.0], [0.01]]) + np.array([[0], [3], [-1]])
CHUNKS = st.lists(st.integers(1, 160), min_size=1, max_size=30)
SETTINGS = settings(max_examples=12, deadline=None)


def chunked(x: np.ndarray, sizes: list[int], fs: float | None = FS) -> list[DataFrame]:
    """Frames cutting ``x`` at the given sizes (cycled) until it is used up."""
    frames, i, k = [], 0, 0
    meta = {"sample_rate": repr(fs)} if fs else None
    while i < x.shape[1]:
        n = sizes[k % len(sizes)]
        frames.append(DataFrame.from_block(NAMES[:x.shape[0]], x[:, i:i + n], timestamp=i,
                                           sequence_id=k, metadata=meta))
        i, k = i + n, k + 1
    return frames


def joined(frames: list[DataFrame]) -> np.ndarray:
    return np.concatenate([f.block() for f in frames], axis=1)


def assert_close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * float(np.abs(ref).max()))


def test_doctests():
    assert doctest.testmod(filters).failed == 0


CUTOFFS = {"lowpass": 20.0, "highpass": 5.0, "bandpass": [8.0, 30.0], "bandstop": [45.0, 55.0]}


@pytest.mark.parametrize("design", ["butter", "cheby1", "cheby2", "ellip", "bessel"])
@pytest.mark.parametrize("btype", list(CUTOFFS))
@SETTINGS
@given(sizes=CHUNKS)
def test_iir_streaming_equals_sosfilt(design, btype, sizes):
    cfg = {"btype": btype, "cutoff": CUTOFFS[btype], "order": 4, "design": design,
           "rp": 0.5, "rs": 50.0}
    sos = ss.iirfilter(4, CUTOFFS[btype], rp=0.5, rs=50.0, btype=btype, ftype=design, fs=FS,
                       output="sos")
    out = run_node(IIRFilter, cfg, chunked(SIGNAL, sizes))
    assert_close(joined(out), ss.sosfilt(sos, SIGNAL, axis=-1))


@SETTINGS
@given(sizes=CHUNKS)
def test_iir_steady_initial_state_equals_sosfilt_with_zi(sizes):
    cfg = {"btype": "highpass", "cutoff": 1.0, "initial_state": "steady", "sample_rate": FS}
    sos = ss.butter(4, 1.0, btype="highpass", fs=FS, output="sos")
    zi = ss.sosfilt_zi(sos)[:, None, :] * SIGNAL[None, :, 0, None]
    ref, _ = ss.sosfilt(sos, SIGNAL, axis=-1, zi=zi)
    assert_close(joined(run_node(IIRFilter, cfg, chunked(SIGNAL, sizes, fs=None))), ref)


@SETTINGS
@given(sizes=CHUNKS)
def test_fir_steady_initial_state_equals_lfilter_with_zi(sizes):
    cfg = {"btype": "bandpass", "cutoff": [5.0, 30.0], "numtaps": 41, "initial_state": "steady",
           "sample_rate": FS}
    taps = ss.firwin(41, [5.0, 30.0], pass_zero="bandpass", fs=FS)
    ref, _ = ss.lfilter(taps, 1.0, SIGNAL, axis=-1,
                        zi=ss.lfilter_zi(taps, 1.0)[None, :] * SIGNAL[:, :1])
    assert_close(joined(run_node(FIRFilter, cfg, chunked(SIGNAL, sizes, fs=None))), ref)


def test_steady_initial_state_removes_the_start_up_transient_of_an_offset():
    # a recording in ADC counts: 1024 + a small signal. 'steady' must give what the filter
    # gives once it has long settled on the offset (the signal preceded by 20 s of x[0]);
    # 'zero' answers the offset with a step response far larger than the signal
    x = 1024.0 + 0.5 * np.sin(2 * np.pi * 10 * np.arange(500) / FS)[None, :]
    settled_in = np.concatenate([np.full((1, 5000), x[0, 0]), x], axis=1)
    cases = [(FIRFilter, {"btype": "bandpass", "cutoff": [5.0, 30.0], "numtaps": 41}),
             (IIRFilter, {"btype": "bandpass", "cutoff": [5.0, 30.0], "order": 2}),
             (NotchFilter, {"frequency": 50.0}),
             (DCRemoval, {"method": "blocker", "cutoff": 0.5})]
    def run(node, cfg, state, signal):
        frames = chunked(signal, [97])
        return joined(run_node(node, {**cfg, "initial_state": state}, frames))[0]

    for node, cfg in cases:
        settled = run(node, cfg, "zero", settled_in)[5000:]
        zero, steady = run(node, cfg, "zero", x), run(node, cfg, "steady", x)
        assert np.abs(zero - settled)[:50].max() > 10, node  # the transient (signal: 0.5)
        assert np.abs(steady - settled).max() < 1e-6, node


def test_iir_ragged_channels_filtered_per_channel():
    sos = ss.butter(3, 10.0, fs=FS, output="sos")
    x = SIGNAL[0]
    frames = [make_frame(a=x[:100], b=x[:37], metadata={"sample_rate": "250.0"}),
              make_frame(a=x[100:300], b=x[37:300], metadata={"sample_rate": "250.0"})]
    out = run_node(IIRFilter, {"cutoff": 10.0, "order": 3}, frames)
    for ch in "ab":
        got = np.concatenate([f.payload[ch] for f in out])
        assert_close(got, ss.sosfilt(sos, x[:300]))


@pytest.mark.parametrize("harmonics", [1, 3])
@SETTINGS
@given(sizes=CHUNKS)
def test_notch_equals_cascaded_iirnotch(harmonics, sizes):
    sections = [ss.tf2sos(*ss.iirnotch(50.0 * k, 25.0, fs=FS)) for k in range(1, harmonics + 1)
                if 50.0 * k < FS / 2]
    ref = ss.sosfilt(np.concatenate(sections), SIGNAL, axis=-1)
    out = run_node(NotchFilter, {"frequency": 50.0, "quality": 25.0, "harmonics": harmonics},
                   chunked(SIGNAL, sizes))
    assert_close(joined(out), ref)


def test_notch_removes_mains_and_harmonic():
    t = np.arange(5000) / 1000
    x = np.sin(2 * np.pi * 60 * t) + np.sin(2 * np.pi * 120 * t) + np.sin(2 * np.pi * 10 * t)
    out = run_node(NotchFilter, {"frequency": 60.0, "harmonics": 2, "sample_rate": 1000.0},
                   [make_frame(x=x)])
    residual = out[0].payload["x"][-2000:] - np.sin(2 * np.pi * 10 * t[-2000:])
    assert np.abs(residual).max() < 0.05


FIR_CUTS = {"lowpass": 20.0, "highpass": 30.0, "bandpass": [10.0, 40.0], "bandstop": [20.0, 60.0]}


@pytest.mark.parametrize("btype", list(FIR_CUTS))
@SETTINGS
@given(sizes=CHUNKS)
def test_fir_streaming_equals_lfilter(btype, sizes):
    taps = ss.firwin(31, FIR_CUTS[btype], window="hann", pass_zero=btype, fs=FS)
    out = run_node(FIRFilter, {"btype": btype, "numtaps": 31, "cutoff": FIR_CUTS[btype],
                               "window": "hann"}, chunked(SIGNAL, sizes))
    assert_close(joined(out), ss.lfilter(taps, 1.0, SIGNAL, axis=-1))


@SETTINGS
@given(sizes=CHUNKS, window=st.integers(1, 40))
def test_moving_average_equals_lfilter(sizes, window):
    ref = ss.lfilter(np.ones(window) / window, 1.0, SIGNAL, axis=-1)
    assert_close(joined(run_node(MovingAverage, {"window": window}, chunked(SIGNAL, sizes))), ref)


@SETTINGS
@given(sizes=CHUNKS)
def test_dc_blocker_equals_its_difference_equation(sizes):
    r = np.exp(-2 * np.pi * 0.5 / FS)
    ref = ss.lfilter([1.0, -1.0], [1.0, -r], SIGNAL, axis=-1)
    out = run_node(DCRemoval, {"method": "blocker", "cutoff": 0.5}, chunked(SIGNAL, sizes))
    assert_close(joined(out), ref)


@SETTINGS
@given(sizes=CHUNKS)
def test_dc_ema_equals_running_mean_residual(sizes):
    alpha = 1 - np.exp(-2 * np.pi * 2.0 / FS)
    mean = np.empty_like(SIGNAL)
    m = SIGNAL[:, 0].copy()
    for n in range(SIGNAL.shape[1]):
        m = m + alpha * (SIGNAL[:, n] - m)
        mean[:, n] = m
    out = run_node(DCRemoval, {"method": "ema", "cutoff": 2.0}, chunked(SIGNAL, sizes))
    np.testing.assert_allclose(joined(out), SIGNAL - mean, rtol=1e-9, atol=1e-9)


def test_dc_removal_removes_offset():
    x = np.full(5000, 7.0) + np.sin(2 * np.pi * 10 * np.arange(5000) / FS)
    out = run_node(DCRemoval, {"cutoff": 0.5, "sample_rate": FS}, [make_frame(x=x)])
    assert abs(out[0].payload["x"][-1000:].mean()) < 0.05


def test_detrend_per_frame_equals_scipy():
    frames = chunked(SIGNAL, [100, 250])
    out = run_node(Detrend, {"type": "linear"}, frames)
    for f, o in zip(frames, out):
        np.testing.assert_allclose(o.block(), ss.detrend(f.block(), axis=-1), atol=1e-12)


# Errors -----------------------------------------------------------------------------------


def test_cutoff_above_nyquist_is_a_config_error_with_path():
    spec = {"name": "p", "nodes": [
        {"id": "src", "type": "SineGenerator",
         "config": {"frequency": 1.0, "sample_rate": 500.0, "samples_per_frame": 10}},
        {"id": "lp", "type": "IIRFilter", "config": {"cutoff": 300.0, "sample_rate": 500.0}}],
        "connections": [{"from": "src", "to": "lp"}]}
    with pytest.raises(ConfigError) as err:
        load_config(spec)
    text = str(err.value)
    assert "$.nodes[1].config.cutoff" in text
    assert "cutoff must be below sample_rate/2 (got 300.0, sample_rate=500.0)" in text


@pytest.mark.parametrize("cfg, message", [
    ({"btype": "bandpass", "cutoff": 10.0}, r"needs cutoff \[low, high\]"),
    ({"btype": "lowpass", "cutoff": [1.0, 2.0]}, "needs one cutoff"),
    ({"btype": "bandpass", "cutoff": [20.0, 10.0]}, "low < high"),
    ({"cutoff": -1.0}, "positive"),
    ({"cutoff": 10.0, "order": 0}, "greater than or equal to 1"),
    ({"cutoff": 10.0, "design": "chebyshev"}, "'butter'"),
])
def test_iir_config_errors(cfg, message):
    with pytest.raises(ValidationError, match=message):
        IIRFilter.Config(**cfg)


def test_fir_even_taps_highpass_rejected():
    with pytest.raises(ValidationError, match="odd numtaps"):
        FIRFilter.Config(btype="highpass", numtaps=30, cutoff=10.0)


def test_missing_sample_rate_names_the_node():
    with pytest.raises(NodeError, match=r"node 'lp'.*IIRFilter needs a sample rate"):
        run_node(IIRFilter, {"cutoff": 10.0}, [make_frame(x=[1.0, 2.0])], node_id="lp")


def test_cutoff_above_metadata_nyquist_is_a_node_error():
    frame = make_frame(x=[1.0] * 4, metadata={"sample_rate": "100.0"})
    with pytest.raises(NodeError, match=r"cutoff must be below sample_rate/2 \(got 60.0"):
        run_node(IIRFilter, {"cutoff": 60.0}, [frame])


def test_sample_rate_or_channels_changing_mid_stream_fail():
    f1 = make_frame(x=[1.0], metadata={"sample_rate": "100.0"})
    f2 = make_frame(x=[1.0], metadata={"sample_rate": "200.0"})
    with pytest.raises(NodeError, match="sample_rate changed"):
        run_node(IIRFilter, {"cutoff": 10.0}, [f1, f2])
    f3 = make_frame(y=[1.0], metadata={"sample_rate": "100.0"})
    with pytest.raises(NodeError, match="channels changed"):
        run_node(IIRFilter, {"cutoff": 10.0}, [f1, f3])


def test_block_in_block_out_keeps_frame_identity_fields():
    f = DataFrame.from_block(["a", "b"], SIGNAL[:2, :50], timestamp=123, sequence_id=9,
                             metadata={"sample_rate": "250.0", "k": "v"})
    out = run_node(IIRFilter, {"cutoff": 10.0}, [f])[0]
    assert (out.timestamp, out.sequence_id, dict(out.metadata)) == (123, 9, dict(f.metadata))
    assert out.payload.is_block and out.channels == ("a", "b")
