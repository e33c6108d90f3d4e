"""Features and events: references, chunking invariance, and the ECG heart-rate example."""

from __future__ import annotations

import doctest
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import given, settings
from hypothesis import strategies as st

import streamlab.nodes.features as features
from streamlab.errors import NodeError
from streamlab.frame import DataFrame
from streamlab.nodes.features import (
    RMS,
    Envelope,
    PeakDetector,
    RateEstimator,
    ThresholdCrossing,
    ZScore,
)
from streamlab.nodes.generators import EcgGenerator
from streamlab.testing import make_frame, run_node

FS = 200.0
T0 = 1_000_000
X = np.random.default_rng(11).standard_normal((2, 600))
CHUNKS = st.lists(st.integers(1, 100), min_size=1, max_size=15).filter(lambda s: sum(s) >= 5)
SETTINGS = settings(max_examples=20, deadline=None)
ROOT = Path(__file__).resolve().parents[2]


def chunked(x, sizes, fs=FS):
    frames, i, k = [], 0, 0
    while i < x.shape[1]:
        n = sizes[k % len(sizes)]
        frames.append(DataFrame.from_block(["a", "b"][:x.shape[0]], x[:, i:i + n],
                                           timestamp=T0 + round(i * 1e6 / fs), sequence_id=k,
                                           metadata={"sample_rate": repr(fs)}))
        i, k = i + n, k + 1
    return frames


def joined(frames):
    return np.concatenate([f.block() for f in frames], axis=1)


def event_indices(frames, channel="a", fs=FS):
    times = np.concatenate([f.payload[channel] for f in frames])
    return np.round((times - T0) * fs / 1e6).astype(int).tolist()


def test_doctests():
    assert doctest.testmod(features).failed == 0


def test_rms_per_frame_and_rate_metadata():
    frames = chunked(X, [100])
    out = run_node(RMS, {}, frames)
    ref = np.sqrt(np.mean(X.reshape(2, 6, 100) ** 2, axis=-1))
    np.testing.assert_allclose(joined(out), ref, rtol=1e-12)
    assert out[0].metadata["sample_rate"] == repr(FS / 100)


@SETTINGS
@given(sizes=CHUNKS, window=st.integers(1, 50))
def test_running_rms_equals_sqrt_of_moving_mean_square(sizes, window):
    out = run_node(RMS, {"window": window}, chunked(X, sizes))
    ref = np.sqrt(ss.lfilter(np.ones(window) / window, 1.0, X ** 2, axis=-1))
    np.testing.assert_allclose(joined(out), ref, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(sizes=CHUNKS)
def test_rectify_envelope_equals_lowpassed_abs(sizes):
    out = run_node(Envelope, {"cutoff": 8.0, "order": 3}, chunked(X, sizes))
    ref = ss.sosfilt(ss.butter(3, 8.0, fs=FS, output="sos"), np.abs(X), axis=-1)
    np.testing.assert_allclose(joined(out), ref, rtol=1e-9, atol=1e-12)


def test_hilbert_envelope_per_frame():
    frames = chunked(X, [300])
    out = run_node(Envelope, {"method": "hilbert"}, frames)
    for f, o in zip(frames, out):
        np.testing.assert_allclose(o.block(), np.abs(ss.hilbert(f.block(), axis=-1)), rtol=1e-12)


def zscore_reference(x, a):
    m, v = x[:, 0].copy(), np.zeros(x.shape[0])
    z = np.zeros_like(x)
    for n in range(x.shape[1]):
        d = x[:, n] - m
        m = m + a * d
        v = (1 - a) * (v + a * d * d)
        z[:, n] = np.where(v > 0, (x[:, n] - m) / np.sqrt(np.where(v > 0, v, 1)), 0.0)
    return z


@SETTINGS
@given(sizes=CHUNKS)
def test_zscore_equals_its_recursion(sizes):
    out = run_node(ZScore, {"alpha": 0.05}, chunked(X + 3.0, sizes))
    np.testing.assert_allclose(joined(out), zscore_reference(X + 3.0, 0.05), rtol=1e-9, atol=1e-9)


def test_zscore_time_constant_normalises():
    x = 5.0 + 3.0 * np.random.default_rng(0).standard_normal((1, 20000))
    out = run_node(ZScore, {"time_constant": 10.0}, chunked(x, [1000]))
    z = joined(out)[0, 5000:]
    assert abs(z.mean()) < 0.15 and 0.85 < z.std() < 1.15
    with pytest.raises(ValueError, match="exactly one of alpha or time_constant"):
        ZScore.Config()


def crossings_reference(x, thr, refractory):
    idx = [n for n in range(1, len(x)) if x[n - 1] < thr <= x[n]]
    kept, last = [], -10**9
    for n in idx:
        if n - last >= refractory:
            kept.append(n)
            last = n
    return kept


@SETTINGS
@given(sizes=CHUNKS, refractory=st.sampled_from([0.0, 0.05, 0.2]))
def test_threshold_crossing_across_frames(sizes, refractory):
    out = run_node(ThresholdCrossing, {"threshold": 0.5, "refractory": refractory},
                   chunked(X, sizes))
    assert out[0].metadata["events"] == "timestamp_us"
    assert event_indices(out) == crossings_reference(X[0], 0.5, round(refractory * FS))
    mask = run_node(ThresholdCrossing, {"threshold": 0.5, "refractory": refractory,
                                        "output": "mask"}, chunked(X, sizes))
    assert np.flatnonzero(joined(mask)[0]).tolist() == event_indices(out)


def test_threshold_hysteresis_and_falling():
    x = np.array([[0, 1, 0.9, 1.1, 0.9, 1.2, 0.0, 1.0, 0.0]])  # hovering around 1
    frames = chunked(x, [2])
    rising = run_node(ThresholdCrossing, {"threshold": 1.0, "hysteresis": 0.5}, frames)
    assert event_indices(rising) == [1, 7]  # 3 and 5 do not re-arm (never below 0.5)
    plain = run_node(ThresholdCrossing, {"threshold": 1.0}, frames)
    assert event_indices(plain) == [1, 3, 5, 7]
    both = run_node(ThresholdCrossing, {"threshold": 1.0, "direction": "both"}, frames)
    # falling needs x[n-1] > 1 >= x[n]: not at 2 (from exactly 1.0) nor at 8
    assert event_indices(both) == [1, 3, 4, 5, 6, 7]


@SETTINGS
@given(sizes=CHUNKS)
def test_peak_detector_is_independent_of_chunking(sizes):
    smooth = ss.sosfilt(ss.butter(2, 10.0, fs=FS, output="sos"), X, axis=-1)
    whole = run_node(PeakDetector, {"height": 0.1, "refractory": 0.1}, chunked(smooth, [600]))
    parts = run_node(PeakDetector, {"height": 0.1, "refractory": 0.1}, chunked(smooth, sizes))
    for ch in "ab":
        assert event_indices(parts, ch) == event_indices(whole, ch)
        idx = event_indices(whole, ch)
        assert all(b - a >= 20 for a, b in zip(idx, idx[1:]))
        assert all(smooth["ab".index(ch), i] >= 0.1 for i in idx)


def test_peak_detector_finds_ecg_r_peaks_like_find_peaks():
    ecg = run_node(EcgGenerator, {"heart_rate": 80.0, "sample_rate": 250.0,
                                  "samples_per_frame": 2500, "noise_std": 0.02}, triggers=1)[0]
    x = ecg.block()
    ref, _ = ss.find_peaks(x[0], height=0.5, distance=50)
    frames = chunked(x, [37, 250, 3], fs=250.0)
    out = run_node(PeakDetector, {"height": 0.5, "refractory": 0.2}, frames)
    # a peak is reported once `refractory` (50 samples) of signal followed it
    assert event_indices(out, "a", fs=250.0) == [p for p in ref.tolist() if p < 2500 - 51]


def test_rate_estimator_bpm_hz_median_and_nan_start():
    ev = {"events": "timestamp_us"}
    frames = [make_frame(x=[0.0], metadata=ev), make_frame(x=[], metadata=ev),
              make_frame(x=[1e6, 2e6, 2.5e6], metadata=ev)]
    bpm = run_node(RateEstimator, {"intervals": 3}, frames)
    assert math.isnan(bpm[0].payload["x"][0]) and math.isnan(bpm[1].payload["x"][0])
    assert bpm[2].payload["x"][0] == pytest.approx(60 / (2.5 / 3))
    hz = run_node(RateEstimator, {"average": "median", "unit": "Hz"}, frames)
    assert hz[2].payload["x"][0] == pytest.approx(1.0)
    assert hz[2].metadata["unit"] == "Hz"
    with pytest.raises(NodeError, match="needs event frames"):
        run_node(RateEstimator, {}, [make_frame(x=[1.0])])


def test_ecg_heart_rate_example_through_the_cli(tmp_path):
    out = tmp_path / "hr.jsonl"
    r = subprocess.run([sys.executable, "-m", "streamlab", "run",
                        str(ROOT / "examples" / "ecg_heart_rate.json"), "--triggers", "10",
                        "--output", str(out), "-q"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 10 and {line["node"] for line in lines} == {"heart_rate"}
    configured = json.loads((ROOT / "examples" / "ecg_heart_rate.json").read_text())[
        "nodes"][0]["config"]["heart_rate"]
    rates = [line["payload"]["lead_ii"][0] for line in lines[2:]]
    assert all(abs(rate - configured) < 0.5 for rate in rates)
    assert lines[-1]["metadata"]["unit"] == "bpm"


ADAPTIVE = {"relative_height": 0.3, "refractory": 0.25, "amplitude_window": 1.0}


def _ecg_band(heart_rate=80.0, seconds=12, scale=1.0, offset=0.0):
    """EcgGenerator lead, optionally in "ADC counts", through a zero-state 5-30 Hz band-pass."""
    ecg = run_node(EcgGenerator, {"heart_rate": heart_rate, "sample_rate": 360.0,
                                  "samples_per_frame": int(360 * seconds), "noise_std": 0.02},
                   triggers=1)[0].block()[:1]
    sos = ss.butter(2, [5.0, 30.0], btype="bandpass", fs=360.0, output="sos")
    return ss.sosfilt(sos, ecg * scale + offset, axis=-1)


@SETTINGS
@given(sizes=CHUNKS)
def test_peak_detector_adaptive_threshold_is_independent_of_chunking(sizes):
    x = _ecg_band() * np.linspace(1.0, 0.2, 12 * 360)  # shrinking amplitude: the estimate moves
    cfg = {**ADAPTIVE, "warmup": 0.3}
    whole = run_node(PeakDetector, cfg, chunked(x, [x.shape[1]], fs=360.0))
    parts = run_node(PeakDetector, cfg, chunked(x, sizes, fs=360.0))
    assert event_indices(parts, fs=360.0) == event_indices(whole, fs=360.0)
    assert len(event_indices(whole, fs=360.0)) >= 12  # ~1.3 beats/s after the first block


def test_peak_detector_relative_height_is_scale_free_and_warmup_skips_the_transient():
    mv = _ecg_band()
    adc = _ecg_band(scale=200.0, offset=1024.0)  # MIT-BIH-like counts: a huge start-up step
    assert np.abs(adc[0, :100]).max() > 3 * np.abs(adc[0, 400:]).max()
    sizes = [37, 360, 5]
    cfg = {**ADAPTIVE, "warmup": 0.5}
    ref = event_indices(run_node(PeakDetector, cfg, chunked(mv, sizes, fs=360.0)), fs=360.0)
    got = event_indices(run_node(PeakDetector, cfg, chunked(adc, sizes, fs=360.0)), fs=360.0)
    assert got == ref
    # the R peaks of the band-passed signal (find_peaks on the whole of it), from the first
    # block after the warm-up (0.5 + 1.0 s) to one refractory before the end (latency)
    r, _ = ss.find_peaks(mv[0], height=0.3 * mv[0].max(), distance=90)
    assert ref == [p for p in r.tolist() if 540 <= p < mv.shape[1] - 91]
    # without the warm-up the transient is block 0's maximum: the median of block maxima
    # outvotes it from block 3 on (3 blocks), the beats of blocks 1 and 2 are lost
    cold = event_indices(run_node(PeakDetector, ADAPTIVE, chunked(adc, sizes, fs=360.0)),
                         fs=360.0)
    assert cold == [p for p in ref if p >= 3 * 360] and len(cold) < len(ref)


def test_peak_detector_relative_height_follows_the_amplitude():
    # the lead's amplitude drops 10x after 6 s (electrode, gain change); a fixed height tuned
    # for the first half loses every later beat, the adaptive one recovers within a few blocks
    x = _ecg_band(seconds=16)
    x[:, 6 * 360:] *= 0.1
    gain = np.where(np.arange(x.shape[1]) < 6 * 360, 1.0, 0.1)
    r, _ = ss.find_peaks(x[0] / gain, height=0.3 * x[0].max(), distance=90)
    fixed = event_indices(run_node(PeakDetector, {"height": 0.3 * x.max(), "refractory": 0.25},
                                   chunked(x, [360], fs=360.0)), fs=360.0)
    assert fixed and all(p < 6 * 360 for p in fixed)
    adaptive = event_indices(run_node(PeakDetector, ADAPTIVE, chunked(x, [360], fs=360.0)),
                             fs=360.0)
    late = [p for p in r.tolist() if 11 * 360 <= p < x.shape[1] - 91]  # 5 blocks after the drop
    assert late and set(late) <= set(adaptive)
