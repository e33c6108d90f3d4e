"""Generators: values against scipy/numpy references, stream == batch, modes and pacing."""

from __future__ import annotations

import asyncio
import doctest

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import streamlab.nodes.generators as generators
from streamlab.nodes.generators import (
    ChirpGenerator,
    ConstantGenerator,
    EcgGenerator,
    PinkNoiseGenerator,
    SawtoothGenerator,
    SineGenerator,
    SquareGenerator,
    TestSignalGenerator,
    WhiteNoiseGenerator,
)
from streamlab.registry import node_types
from streamlab.runtime.async_pipeline import AsyncPipeline
from streamlab.testing import VirtualClock, run_node

SETTINGS = settings(max_examples=20, deadline=None)


def stream(node_type, cfg, total, spf):
    """``total`` samples of every channel from frames of ``spf`` samples."""
    cfg = dict(cfg, samples_per_frame=spf)
    out = run_node(node_type, cfg, triggers=-(-total // spf))
    return np.concatenate([f.block() for f in out], axis=1)[:, :total], out


def test_doctests():
    assert doctest.testmod(generators).failed == 0


def test_all_generators_registered_with_descriptions():
    types = node_types()
    for name in ["SineGenerator", "SquareGenerator", "SawtoothGenerator", "ChirpGenerator",
                 "WhiteNoiseGenerator", "PinkNoiseGenerator", "ConstantGenerator",
                 "TestSignalGenerator", "EcgGenerator"]:
        assert types[name].description()
        assert "sample_rate" in types[name].Config.model_json_schema()["properties"]


@pytest.mark.parametrize("duty", [0.5, 0.3])
def test_square_matches_scipy(duty):
    fs, f = 1000.0, 3.3
    y, _ = stream(SquareGenerator, {"frequency": f, "sample_rate": fs, "duty": duty,
                                    "amplitude": 2.0}, 3000, 128)
    ref = 2.0 * ss.square(2 * np.pi * f * np.arange(3000) / fs, duty=duty)
    assert np.mean(y[0] == ref) > 0.999  # equal except possibly at exact edges
    assert np.abs(y[0] - ref).max() in (0.0, 4.0)


@pytest.mark.parametrize("width", [1.0, 0.5, 0.0, 0.25])
def test_sawtooth_matches_scipy(width):
    fs, f = 1000.0, 3.3
    y, _ = stream(SawtoothGenerator, {"frequency": f, "sample_rate": fs, "width": width}, 3000, 100)
    ref = ss.sawtooth(2 * np.pi * f * np.arange(3000) / fs, width=width)
    close = np.isclose(y[0], ref, atol=1e-9)
    assert close.mean() > 0.999


@pytest.mark.parametrize("method", ["linear", "quadratic", "logarithmic", "hyperbolic"])
def test_chirp_matches_scipy_and_repeats(method):
    fs = 200.0
    cfg = {"f0": 2.0, "f1": 40.0, "duration": 2.0, "method": method, "sample_rate": fs}
    y, _ = stream(ChirpGenerator, cfg, 1000, 77)
    t = np.arange(1000) / fs
    ref = ss.chirp(np.mod(t, 2.0), 2.0, 2.0, 40.0, method=method)
    np.testing.assert_allclose(y[0], ref, atol=1e-9)


@SETTINGS
@given(spf=st.integers(1, 300))
def test_white_noise_stream_equals_one_batch_draw(spf):
    cfg = {"sample_rate": 100.0, "channels": ["a", "b", "c"], "seed": 5, "std": 2.0, "mean": 1.0}
    y, _ = stream(WhiteNoiseGenerator, cfg, 600, spf)
    ref = 1.0 + 2.0 * np.random.default_rng(5).standard_normal((600, 3)).T
    np.testing.assert_array_equal(y, ref)


@SETTINGS
@given(spf=st.integers(1, 300))
def test_pink_noise_stream_equals_batch_filtered_draw(spf):
    cfg = {"sample_rate": 100.0, "channels": ["a", "b"], "seed": 3}
    y, out = stream(PinkNoiseGenerator, cfg, 600, spf)
    node = PinkNoiseGenerator.create(dict(cfg, samples_per_frame=1))
    z = np.random.default_rng(3).standard_normal((600, 2)).T
    ref = node.gain * ss.lfilter(generators._PINK_B, generators._PINK_A, z, axis=-1)
    np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-12)


def test_pink_noise_spectrum_falls_3db_per_octave():
    y, _ = stream(PinkNoiseGenerator, {"sample_rate": 1000.0, "seed": 1}, 200_000, 200_000)
    f, p = ss.welch(y[0], 1000.0, nperseg=4096)
    slope = np.polyfit(np.log10(f[(f > 2) & (f < 200)]), np.log10(p[(f > 2) & (f < 200)]), 1)[0]
    assert -1.15 < slope < -0.85
    assert 0.9 < y.std() < 1.1


def test_noise_channels_are_independent():
    y, _ = stream(WhiteNoiseGenerator, {"sample_rate": 100.0, "channels": ["a", "b"]}, 5000, 500)
    assert abs(np.corrcoef(y)[0, 1]) < 0.05


def test_constant_and_per_channel_values():
    y, _ = stream(ConstantGenerator, {"value": 2.5, "channels": ["a", "b"], "sample_rate": 1.0}, 7, 3)
    assert (y == 2.5).all() and y.shape == (2, 7)
    with pytest.raises(ValidationError, match="one value per channel"):
        ConstantGenerator.Config(value=[1.0], channels=["a", "b"], sample_rate=1.0,
                                 samples_per_frame=1)


@SETTINGS
@given(spf=st.integers(1, 200))
def test_test_signal_is_sum_of_components_plus_seeded_noise(spf):
    comps = [{"frequency": 10.0, "amplitude": 2.0, "phase": 0.5}, {"frequency": 3.0}]
    cfg = {"sample_rate": 100.0, "components": comps, "noise_std": 0.5, "offset": 1.0,
           "seed": 9, "channels": ["x", "y"]}
    y, _ = stream(TestSignalGenerator, cfg, 400, spf)
    t = np.arange(400) / 100.0
    clean = 2.0 * np.sin(2 * np.pi * 10 * t + 0.5) + np.sin(2 * np.pi * 3 * t) + 1.0
    ref = clean + 0.5 * np.random.default_rng(9).standard_normal((400, 2)).T
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_test_signal_component_above_nyquist_rejected():
    with pytest.raises(ValidationError, match=r"components\[0\].frequency must be at most"):
        TestSignalGenerator.Config(components=[{"frequency": 60.0}], sample_rate=100.0,
                                   samples_per_frame=1)


@pytest.mark.parametrize("bpm, fs", [(72.0, 360.0), (60.0, 250.0), (150.0, 500.0)])
def test_ecg_r_peaks_at_the_heart_rate(bpm, fs):
    y, _ = stream(EcgGenerator, {"heart_rate": bpm, "sample_rate": fs}, int(fs * 10), int(fs))
    peaks, _ = ss.find_peaks(y[0], height=0.5)
    rr = np.diff(peaks) / fs
    assert len(peaks) == pytest.approx(10 * bpm / 60, abs=1)
    np.testing.assert_allclose(60 / rr, bpm, rtol=0.01)


def test_sine_unchanged_and_timestamps_follow_sample_count():
    out = run_node(SineGenerator, {"frequency": 5.0, "sample_rate": 1000.0,
                                   "samples_per_frame": 250}, triggers=3)
    assert [f.timestamp - out[0].timestamp for f in out] == [0, 250_000, 500_000]
    assert [f.sequence_id for f in out] == [0, 1, 2]
    assert out[0].metadata["sample_rate"] == "1000.0"
    y = np.concatenate([f.payload["ch0"] for f in out])
    np.testing.assert_allclose(y, np.sin(2 * np.pi * 5 * np.arange(750) / 1000), atol=1e-12)


@pytest.mark.parametrize("node_type, extra", [
    (SquareGenerator, {"frequency": 1.0}), (WhiteNoiseGenerator, {}),
    (PinkNoiseGenerator, {}), (TestSignalGenerator, {"components": [{"frequency": 1.0}]}),
    (EcgGenerator, {}), (ChirpGenerator, {"f0": 1.0, "f1": 5.0, "duration": 1.0}),
])
def test_free_mode_with_realtime_pacing_on_a_virtual_clock(node_type, extra):
    name = node_type.__name__
    spec = {"name": "free", "nodes": [{"id": "g", "type": name, "config": dict(
        extra, sample_rate=100.0, samples_per_frame=25, mode="free", realtime=True, max_frames=4)},
        {"id": "sink", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "g", "to": "sink"}]}
    clock = VirtualClock()

    async def go():
        pipe = AsyncPipeline(spec, clock=clock)
        await pipe.start()
        pipe.close_triggers()
        await pipe.join()
        return pipe.results["sink"]

    frames = asyncio.run(go())
    assert len(frames) == 4
    assert [f.timestamp - frames[0].timestamp for f in frames] == [0, 250_000, 500_000, 750_000]
    assert clock.monotonic() == pytest.approx(0.75)  # frames at 0, .25, .5, .75 s
