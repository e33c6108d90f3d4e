"""Windows and spectra against numpy/scipy references; window output independent of chunking."""

from __future__ import annotations

import asyncio
import doctest
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import given, settings
from hypothesis import strategies as st

import streamlab.nodes.spectral as spectral
from streamlab.errors import NodeError
from streamlab.frame import DataFrame
from streamlab.nodes.spectral import FFT, BandPower, Spectrogram, WelchPSD, Window
from streamlab.runtime.async_pipeline import AsyncPipeline
from streamlab.testing import make_frame, run_node

FS = 100.0
X = np.random.default_rng(3).standard_normal((2, 500))
CHUNKS = st.lists(st.integers(1, 90), min_size=1, max_size=15).filter(lambda s: sum(s) >= 5)
SETTINGS = settings(max_examples=20, deadline=None)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def chunked(x, sizes, fs=FS, t0=5_000_000):
    frames, i, k = [], 0, 0
    while i < x.shape[1]:
        n = sizes[k % len(sizes)]
        frames.append(DataFrame.from_block(["a", "b"], x[:, i:i + n], timestamp=t0 + round(i * 1e6 / fs),
                                           sequence_id=k, metadata={"sample_rate": repr(fs)}))
        i, k = i + n, k + 1
    return frames


def test_doctests():
    assert doctest.testmod(spectral).failed == 0


@SETTINGS
@given(sizes=CHUNKS, size=st.integers(1, 60), hop=st.integers(1, 80))
def test_window_equals_sliding_windows_whatever_the_chunking(sizes, size, hop):
    out = run_node(Window, {"size": size, "hop": hop}, chunked(X, sizes))
    starts = list(range(0, X.shape[1] - size + 1, hop))
    assert len(out) == len(starts)
    for j, (f, s) in enumerate(zip(out, starts)):
        np.testing.assert_array_equal(f.block(), X[:, s:s + size])
        assert f.timestamp == 5_000_000 + round(s * 1e6 / FS)
        assert f.sequence_id == j
        assert f.metadata["window_hop"] == str(hop)


def test_window_buffer_stays_bounded():
    node = Window.create({"size": 50, "hop": 10})
    for f in chunked(np.zeros((2, 10_000)), [7]):
        node.process(f)
        assert node._chunker.buf.shape[1] < 50
        assert len(node._chunker.anchors) <= 50 // 7 + 2


@pytest.mark.parametrize("output", ["magnitude", "power"])
@pytest.mark.parametrize("window", ["hann", ["kaiser", 8.0], "boxcar"])
def test_fft_equals_numpy_rfft(output, window):
    f = chunked(X, [128])[0]
    out = run_node(FFT, {"window": window, "output": output, "n_fft": 256}, [f])[0]
    w = ss.get_window(window if isinstance(window, str) else tuple(window), 128)
    ref = np.abs(np.fft.rfft(X[:, :128] * w, n=256, axis=-1))
    ref = ref ** 2 if output == "power" else ref
    np.testing.assert_allclose(out.block(), ref, rtol=1e-12)
    assert out.metadata["frequency_resolution"] == repr(FS / 256)
    assert out.metadata["domain"] == "frequency" and "sample_rate" not in out.metadata
    assert out.metadata["signal_sample_rate"] == repr(FS)


def test_fft_normalized_reads_sine_amplitude():
    t = np.arange(200) / 200
    x = 3.0 * np.sin(2 * np.pi * 20 * t) + 0.5
    out = run_node(FFT, {"normalize": True, "window": "hann"},
                   [make_frame(x=x, metadata={"sample_rate": "200.0"})])[0]
    spec = out.payload["x"]
    assert spec[20] == pytest.approx(3.0, rel=1e-9)
    assert spec[0] == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize("cfg", [{}, {"nperseg": 64, "noverlap": 48, "average": "median"},
                                 {"nperseg": 100, "scaling": "spectrum", "detrend": "linear"}])
def test_welch_equals_scipy(cfg):
    f = chunked(X, [400])[0]
    out = run_node(WelchPSD, cfg, [f])[0]
    n = min(cfg.get("nperseg", 256), 400)
    freqs, ref = ss.welch(X[:, :400], FS, nperseg=n, noverlap=cfg.get("noverlap"),
                          average=cfg.get("average", "mean"), scaling=cfg.get("scaling", "density"),
                          detrend=cfg.get("detrend", "constant"), axis=-1)
    np.testing.assert_allclose(out.block(), ref, rtol=1e-12)
    assert float(out.metadata["frequency_resolution"]) == pytest.approx(freqs[1])


@pytest.mark.parametrize("method, window, nperseg", [
    ("welch", "hann", 200), ("welch", "hamming", 77), ("welch", "hann", 1000),
    ("periodogram", "hann", 256), ("periodogram", "boxcar", 256)])
def test_band_power_equals_binned_scipy_psd(method, window, nperseg):
    f = chunked(X, [400])[0]
    out = run_node(BandPower, {"nperseg": nperseg, "method": method, "window": window}, [f])[0]
    if method == "welch":
        freqs, psd = ss.welch(X[:, :400], FS, window=window, nperseg=min(nperseg, 400), axis=-1)
    else:
        freqs, psd = ss.periodogram(X[:, :400], FS, window=window, axis=-1)
    df = freqs[1] - freqs[0]
    assert out.channels == tuple(f"{c}_{b}" for c in "ab" for b in spectral.DEFAULT_BANDS)
    for ci, c in enumerate("ab"):
        for b, (lo, hi) in spectral.DEFAULT_BANDS.items():
            m = (freqs >= lo) & (freqs < hi)
            assert out.payload[f"{c}_{b}"][0] == pytest.approx(psd[ci, m].sum() * df, rel=1e-12)
    assert out.metadata["sample_rate"] == repr(FS / 400)


def test_band_power_custom_bands_periodogram_relative_and_hop_rate():
    t = np.arange(1000) / 250
    x = 2.0 * np.sin(2 * np.pi * 10 * t) + np.sin(2 * np.pi * 20 * t)
    meta = {"sample_rate": "250.0", "window_hop": "125"}
    out = run_node(BandPower, {"bands": {"mu": [8, 12], "beta": [18, 22]}, "method": "periodogram",
                               "relative": True, "window": "boxcar"},
                   [make_frame(c3=x, metadata=meta)])[0]
    assert out.channels == ("c3_mu", "c3_beta")
    assert out.payload["c3_mu"][0] == pytest.approx(0.8, abs=1e-6)
    assert out.payload["c3_beta"][0] == pytest.approx(0.2, abs=1e-6)
    assert out.metadata["sample_rate"] == "2.0"
    assert json.loads(out.metadata["bands"]) == {"mu": [8, 12], "beta": [18, 22]}


def test_band_without_bins_is_a_node_error():
    with pytest.raises(NodeError, match="band 'gamma'.*no frequency bins"):
        run_node(BandPower, {}, [make_frame(x=np.zeros(100), metadata={"sample_rate": "50.0"})])


@pytest.mark.parametrize("cfg", [{"nperseg": 32}, {"nperseg": 25, "noverlap": 20, "window": "hann",
                                                   "scaling": "spectrum", "detrend": "none"}])
@SETTINGS
@given(sizes=CHUNKS)
def test_spectrogram_columns_equal_scipy_spectrogram(cfg, sizes):
    out = run_node(Spectrogram, cfg, chunked(X, sizes))
    window = cfg.get("window", ("tukey", 0.25))
    _, t, ref = ss.spectrogram(X, FS, window=window, nperseg=cfg["nperseg"],
                               noverlap=cfg.get("noverlap"), scaling=cfg.get("scaling", "density"),
                               detrend=False if cfg.get("detrend") == "none" else "constant",
                               axis=-1)
    assert len(out) == ref.shape[-1]
    got = np.stack([f.block() for f in out], axis=-1)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12 * ref.max())
    half = cfg["nperseg"] / 2 / FS
    np.testing.assert_allclose([(f.timestamp - 5_000_000) / 1e6 + half for f in out], t, atol=1e-6)


def test_eeg_band_power_example_shows_alpha_dominant():
    spec = json.loads((EXAMPLES / "eeg_band_power.json").read_text())
    pipe = AsyncPipeline(spec)
    asyncio.run(pipe.run(triggers=12))
    (frames,) = pipe.results.values()
    assert len(frames) == 9  # windows of 4 frames, hop 1 frame
    last = frames[-1]
    for ch in ("Fz", "Cz", "Pz", "Oz"):
        assert last.payload[f"{ch}_alpha"][0] > 0.8
        assert last.payload[f"{ch}_theta"][0] < 0.15


@pytest.mark.parametrize("node_type", ["BandPower", "EpochBandPower"])
@pytest.mark.parametrize(("band", "why"), [([8, 4], r"\[8.0, 4.0\]"), ([1, float("inf")], r"\[1.0, inf\]")])
def test_band_settings_are_checked_the_same_way_by_both_band_power_nodes(node_type, band, why):
    """One check (spectral.check_bands) for both nodes: low < high, high finite."""
    from streamlab.config import load_config
    from streamlab.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"nodes\[0\]\.config\.bands: .*band 'x': need 0 <= "
                                          rf"low < high \(finite\), got {why}"):
        load_config({"nodes": [{"id": "b", "type": node_type, "config": {"bands": {"x": band}}}]})
