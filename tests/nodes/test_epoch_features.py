"""Feature nodes for decoders, each equal to the reference users trust.

Covariance = pyriemann ``Covariances`` / sklearn.covariance (1e-10); LogVariance = np.log(np.var)
(1e-12) and ``mne.decoding.CSP.transform`` given the same filters (1e-12); EpochBandPower =
scipy.signal.welch + sum / trapezoid (1e-10); Hjorth = the textbook formulas on np.diff (1e-12)
and the analytic mobility of a sine; FilterBank = scipy.signal.sosfilt over the whole signal,
for any framing (1e-12).
"""

from __future__ import annotations

import doctest
import json
import logging
import math

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.integrate import trapezoid

import streamlab.nodes.epoch_features as ef
from streamlab import AsyncPipeline, load_config
from streamlab.errors import ConfigError, NodeError
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.nodes.epoch_features import (
    Covariance,
    EpochBandPower,
    FilterBank,
    Hjorth,
    LogVariance,
    covariance,
)
from streamlab.registry import node_types
from streamlab.testing import run_node
from tests.conftest import run

FS = 250.0


def data(n_ch: int, n: int, seed: int) -> np.ndarray:
    """Correlated channels with offsets (the estimators must centre)."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((n_ch, n_ch))
    return mix @ rng.standard_normal((n_ch, n)) + rng.uniform(-5, 5, (n_ch, 1))


def epoch_frame(x: np.ndarray, label: str = "left", seq: int = 0, zero: int | None = None,
                names: tuple[str, ...] | None = None) -> DataFrame:
    """A frame as Epoch emits it: metadata event_label..., the event on its zero sample."""
    names = names or tuple(f"c{i}" for i in range(x.shape[0]))
    zero = x.shape[1] // 4 if zero is None else zero
    meta = {"event_label": label, "event_time": str(2_000_000 + seq), "event_index": str(seq),
            "sample_rate": repr(FS), "tmin": "-0.2"}
    return DataFrame.from_block(names, x, timestamp=1_000_000 + seq, sequence_id=seq,
                                metadata=meta).with_events([Event(2_000_000, label,
                                                                  sample=zero)])


def one(node, cfg, frame):
    [out] = run_node(node, cfg, [frame])
    return out


def test_doctests():
    assert doctest.testmod(ef).failed == 0


def test_registered_with_descriptions():
    types = node_types()
    for name in ("Covariance", "LogVariance", "EpochBandPower", "Hjorth", "FilterBank"):
        assert types[name].__module__ == "streamlab.nodes.epoch_features"
        assert types[name].description() and "\n" not in types[name].description()


# -- the shared frame contract ----------------------------------------------------------------
CASES = [(Covariance, {}), (Covariance, {"layout": "upper"}), (LogVariance, {}),
         (EpochBandPower, {"bands": {"alpha": [8, 13]}}), (Hjorth, {})]


@pytest.mark.parametrize(("node", "cfg"), CASES)
def test_keeps_metadata_and_moves_the_event_to_sample_0(node, cfg):
    f = epoch_frame(data(3, 200, 1), "right", seq=7, zero=50)
    out = one(node, cfg, f)
    assert (out.timestamp, out.sequence_id) == (f.timestamp, 7)
    for key in ("event_label", "event_time", "event_index", "tmin"):
        assert out.metadata[key] == f.metadata[key]
    assert out.metadata["event_label"] == "right"
    assert [(e.label, e.time, e.sample) for e in out.events] == [("right", 2_000_000, 0)]
    assert out.metadata["feature"] == node.feature


@pytest.mark.parametrize(("node", "cfg"), CASES)
def test_errors_name_the_node(node, cfg):
    f = epoch_frame(data(3, 200, 1))
    with pytest.raises(NodeError, match=rf"node 'node'.*{node.__name__}: channels changed"):
        run_node(node, cfg, [f, epoch_frame(data(2, 200, 1))])
    with pytest.raises(NodeError, match=rf"{node.__name__}: frame 0 has 1 samples; this "
                                        rf"feature needs at least {node.min_samples}"):
        run_node(node, cfg, [epoch_frame(data(3, 1, 1), zero=0)])
    ragged = DataFrame(0, 0, {"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0]}, {"sample_rate": "250"})
    with pytest.raises(NodeError, match=node.__name__):
        run_node(node, cfg, [ragged])


@pytest.mark.parametrize(("node", "cfg"), [*CASES, (FilterBank, {"bands": [[8, 12]]})])
def test_marker_frames_pass_through(node, cfg):
    marker = DataFrame(5, 0, {}, {"stream": "markers"}, [Event(5, "go")])
    assert run_node(node, cfg, [marker]) == [marker]


def test_one_sample_outputs_give_the_frame_rate():
    f = epoch_frame(data(2, 200, 1))
    assert one(LogVariance, {}, f).metadata["sample_rate"] == repr(FS / 200)
    windowed = f.with_metadata(window_hop="50")
    assert one(Hjorth, {}, windowed).metadata["sample_rate"] == repr(FS / 50)
    m = one(Covariance, {}, f).metadata
    assert "sample_rate" not in m and m["signal_sample_rate"] == repr(FS)


# -- Covariance --------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["cov", "scm", "lwf", "oas", "corr"])
@pytest.mark.parametrize(("n_ch", "n"), [(1, 40), (2, 3), (4, 64), (8, 500), (16, 20)])
def test_covariance_equals_pyriemann(estimator, n_ch, n):
    pyriemann = pytest.importorskip("pyriemann")
    x = data(n_ch, n, n_ch * 1000 + n)
    want = pyriemann.estimation.Covariances(estimator).transform(x[None])[0]
    out = one(Covariance, {"estimator": estimator}, epoch_frame(x))
    assert out.channels == tuple(f"c{i}" for i in range(n_ch))
    np.testing.assert_allclose(out.block(), want, rtol=0, atol=1e-10 * np.abs(want).max())
    np.testing.assert_allclose(covariance(x, estimator), want, rtol=1e-10, atol=0)


@pytest.mark.parametrize(("n_ch", "n"), [(1, 30), (3, 10), (6, 300), (12, 15)])
def test_covariance_equals_sklearn(n_ch, n):
    cov = pytest.importorskip("sklearn.covariance")
    x = data(n_ch, n, 7 * n_ch + n)
    refs = {"scm": cov.empirical_covariance(x.T), "lwf": cov.ledoit_wolf(x.T)[0],
            "oas": cov.oas(x.T)[0], "cov": np.atleast_2d(np.cov(x))}
    for est, want in refs.items():
        np.testing.assert_allclose(covariance(x, est), want, rtol=1e-10, atol=0, err_msg=est)
    # the shrinkage is really in use (else lwf/oas = scm would pass for the wrong reason)
    if n_ch > 1:
        assert 0 < cov.ledoit_wolf_shrinkage(x.T) < 1
        assert not np.allclose(covariance(x, "oas"), refs["scm"])


def test_covariance_upper_layout():
    x = data(3, 50, 3)
    names = ("C3", "Cz", "C4_ref")
    out = one(Covariance, {"estimator": "oas", "layout": "upper"}, epoch_frame(x, names=names))
    c = covariance(x, "oas")
    iu = np.triu_indices(3)
    assert out.channels == ("cov_C3_C3", "cov_C3_Cz", "cov_C3_C4_ref", "cov_Cz_Cz",
                            "cov_Cz_C4_ref", "cov_C4_ref_C4_ref")
    assert out.n_samples == 1
    np.testing.assert_array_equal(out.block()[:, 0], c[iu])
    m = out.metadata
    assert json.loads(m["covariance_channels"]) == list(names)
    assert (m["covariance_estimator"], m["covariance_layout"]) == ("oas", "upper")


def test_covariance_of_a_flat_channel_is_not_a_crash():
    x = data(3, 50, 2)
    x[1] = 4.0
    for est in ("cov", "scm", "lwf", "oas"):
        c = one(Covariance, {"estimator": est}, epoch_frame(x)).block()
        assert np.isfinite(c).all() and c[0, 1] == pytest.approx(0, abs=1e-12)
    c = one(Covariance, {"estimator": "corr"}, epoch_frame(x)).block()
    assert np.isnan(c[1]).all() and c[0, 0] == pytest.approx(1.0)


def test_covariance_unknown_estimator():
    with pytest.raises(ConfigError, match=r"\$\.nodes\[0\]\.config\.estimator"):
        load_config({"nodes": [{"id": "c", "type": "Covariance",
                                "config": {"estimator": "ledoit"}}]})
    with pytest.raises(ValueError, match="unknown covariance estimator 'x'"):
        covariance(np.ones((2, 3)), "x")


# -- LogVariance -------------------------------------------------------------------------------
def test_log_variance_equals_numpy():
    x = data(5, 300, 11)
    out = one(LogVariance, {}, epoch_frame(x))
    np.testing.assert_allclose(out.block()[:, 0], np.log(np.var(x, axis=1)), rtol=0, atol=1e-12)
    v = np.var(x, axis=1)
    norm = one(LogVariance, {"normalize": True}, epoch_frame(x))
    np.testing.assert_allclose(norm.block()[:, 0], np.log(v / v.sum()), rtol=0, atol=1e-12)
    power = one(LogVariance, {"statistic": "power", "log": False}, epoch_frame(x))
    np.testing.assert_allclose(power.block()[:, 0], (x ** 2).mean(axis=1), rtol=1e-13)
    picked = one(LogVariance, {"picks": ["c3", "c1"]}, epoch_frame(x))
    assert picked.channels == ("c3", "c1")
    np.testing.assert_allclose(picked.block()[:, 0], np.log(v[[3, 1]]), rtol=0, atol=1e-12)


def _mi_epochs(n_epochs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes whose channels 0 and 2 trade variance (a CSP-separable set)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_epochs) % 2
    x = rng.standard_normal((n_epochs, 4, 200))
    x[y == 0, 0] *= 3
    x[y == 1, 2] *= 3
    return x, y


def test_log_variance_equals_mne_csp_given_its_filters():
    mne = pytest.importorskip("mne")
    logging.getLogger("mne").setLevel(logging.ERROR)
    x, y = _mi_epochs(40, 5)
    csp = mne.decoding.CSP(n_components=3, log=None, transform_into="average_power")
    csp.fit(x, y)
    want = csp.transform(x)
    cfg = {"filters": csp.filters_[:3].tolist(), "statistic": "power"}
    outs = run_node(LogVariance, cfg, [epoch_frame(e, seq=i) for i, e in enumerate(x)])
    assert outs[0].channels == ("csp0", "csp1", "csp2")
    got = np.stack([o.block()[:, 0] for o in outs])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # and the features separate the classes (the filters mean something)
    assert abs(got[y == 0, 0].mean() - got[y == 1, 0].mean()) > 1


def test_log_variance_config_errors():
    with pytest.raises(ConfigError, match=r"config\.filters: .*non-empty rectangle"):
        load_config({"nodes": [{"id": "l", "type": "LogVariance",
                                "config": {"filters": [[1, 0], [1]]}}]})
    with pytest.raises(ConfigError, match="filters have 2 columns but picks names 3 channels"):
        load_config({"nodes": [{"id": "l", "type": "LogVariance",
                                "config": {"filters": [[1, 0]], "picks": ["a", "b", "c"]}}]})
    with pytest.raises(NodeError, match=r"config\.filters has 2 columns, the stream has 3"):
        run_node(LogVariance, {"filters": [[1.0, 0.0]]}, [epoch_frame(data(3, 20, 1))])
    with pytest.raises(NodeError, match=r"config\.picks\[1\]: 'Cz' is not a channel"):
        run_node(LogVariance, {"picks": ["c0", "Cz"]}, [epoch_frame(data(3, 20, 1))])


def test_log_variance_of_a_flat_channel_is_minus_inf_not_a_crash():
    x = data(2, 50, 1)
    x[1] = 3.0
    out = one(LogVariance, {}, epoch_frame(x))
    assert np.isfinite(out.block()[0, 0]) and out.block()[1, 0] == -np.inf


# -- EpochBandPower ----------------------------------------------------------------------------
BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}


@pytest.mark.parametrize("integration", ["sum", "trapezoid"])
@pytest.mark.parametrize(("n", "nperseg", "noverlap", "window", "average"),
                         [(500, 250, None, "hann", "mean"), (250, 256, None, "hann", "mean"),
                          (400, 128, 100, "hamming", "median"), (751, 200, 50, "boxcar", "mean")])
def test_band_power_equals_scipy(integration, n, nperseg, noverlap, window, average):
    x = data(3, n, n)
    cfg = {"bands": BANDS, "nperseg": nperseg, "noverlap": noverlap, "window": window,
           "average": average, "integration": integration}
    f, psd = ss.welch(x, FS, window=window, nperseg=min(nperseg, n), noverlap=noverlap,
                      average=average, axis=-1)
    want = []
    for row in psd:
        for lo, hi in BANDS.values():
            if integration == "sum":
                want.append(row[(f >= lo) & (f < hi)].sum() * (f[1] - f[0]))
            else:
                m = (f >= lo) & (f <= hi)
                want.append(trapezoid(row[m], f[m]))
    out = one(EpochBandPower, cfg, epoch_frame(x))
    assert out.channels == tuple(f"c{i}_{b}" for i in range(3) for b in BANDS)
    np.testing.assert_allclose(out.block()[:, 0], want, rtol=1e-10, atol=0)
    rel = one(EpochBandPower, {**cfg, "relative": True, "log": True}, epoch_frame(x))
    span = (f >= 4) & ((f <= 30) if integration == "trapezoid" else (f < 30))
    total = (psd[:, span].sum(axis=1) * (f[1] - f[0]) if integration == "sum"
             else trapezoid(psd[:, span], f[span], axis=-1))
    want_rel = np.log(np.array(want).reshape(3, 3) / total[:, None]).ravel()
    np.testing.assert_allclose(rel.block()[:, 0], want_rel, rtol=0, atol=1e-10)
    assert json.loads(out.metadata["bands"]) == {k: list(v) for k, v in BANDS.items()}


def test_band_power_finds_the_band_of_a_sine():
    t = np.arange(1000) / FS
    x = np.vstack([np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 20 * t)])
    out = one(EpochBandPower, {"bands": BANDS, "relative": True}, epoch_frame(x))
    rel = out.block()[:, 0].reshape(2, 3)
    assert rel[0].argmax() == 1 and rel[1].argmax() == 2 and rel.max() > 0.95


def test_band_power_errors():
    with pytest.raises(NodeError, match=r"band 'gamma' \[30, 30.5\] Hz has 0 frequency bins, "
                                        r"'sum' needs 1 \(resolution 1.95312 Hz"):
        run_node(EpochBandPower, {"bands": {"gamma": [30, 30.5]}, "nperseg": 128},
                 [epoch_frame(data(2, 300, 1))])
    with pytest.raises(NodeError, match="needs a sample rate"):
        run_node(EpochBandPower, {}, [epoch_frame(data(2, 300, 1)).replace(metadata={})])
    with pytest.raises(ConfigError, match=r"config\.bands: .*band 'x': need 0 <= low < high"):
        load_config({"nodes": [{"id": "b", "type": "EpochBandPower",
                                "config": {"bands": {"x": [8, 4]}}}]})
    with pytest.raises(ConfigError, match="noverlap must be below nperseg"):
        load_config({"nodes": [{"id": "b", "type": "EpochBandPower",
                                "config": {"nperseg": 64, "noverlap": 64}}]})
    f = epoch_frame(data(2, 300, 1))
    with pytest.raises(NodeError, match="sample_rate changed mid-stream from 250 to 500"):
        run_node(EpochBandPower, {}, [f, f.with_metadata(sample_rate="500")])


# -- Hjorth ------------------------------------------------------------------------------------
def _hjorth(x: np.ndarray) -> np.ndarray:
    """The textbook definitions, one channel at a time."""
    out = []
    for row in x:
        d1, d2 = np.diff(row), np.diff(row, n=2)
        mob = math.sqrt(np.var(d1) / np.var(row))
        out += [np.var(row), mob, math.sqrt(np.var(d2) / np.var(d1)) / mob]
    return np.array(out)


def test_hjorth_equals_the_formulas():
    x = data(4, 333, 2)
    out = one(Hjorth, {}, epoch_frame(x))
    assert out.channels[:3] == ("c0_activity", "c0_mobility", "c0_complexity")
    np.testing.assert_allclose(out.block()[:, 0], _hjorth(x), rtol=1e-12, atol=0)
    sub = one(Hjorth, {"parameters": ["complexity", "activity"]}, epoch_frame(x))
    assert sub.channels[:2] == ("c0_complexity", "c0_activity")
    np.testing.assert_allclose(sub.block()[:, 0], _hjorth(x).reshape(4, 3)[:, [2, 0]].ravel(),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("f", [1.0, 5.0, 10.0, 40.0, 100.0])
def test_hjorth_of_a_sine(f):
    """Mobility of sin(2 pi f n / fs) is exactly 2 sin(pi f / fs) (-> 2 pi f / fs when f << fs):
    up to edge effects of O(1/n) because diff leaves a partial period."""
    n = 20_000
    x = np.sin(2 * np.pi * f * np.arange(n) / FS)[None]
    act, mob, comp = one(Hjorth, {}, epoch_frame(x)).block()[:, 0]
    assert act == pytest.approx(0.5, rel=1e-3)
    assert mob == pytest.approx(2 * math.sin(math.pi * f / FS), rel=1e-3)
    assert comp == pytest.approx(1.0, abs=1e-3)
    if f <= 10:  # the small-angle limit of the brief: 2 pi f / fs within (pi f / fs)**2 / 6
        assert mob == pytest.approx(2 * math.pi * f / FS, rel=(math.pi * f / FS) ** 2 / 6 + 1e-3)


def test_hjorth_of_a_constant_channel_is_nan():
    x = data(2, 50, 1)
    x[0] = 1.0
    v = one(Hjorth, {}, epoch_frame(x)).block()[:, 0]
    assert v[0] == 0 and np.isnan(v[1]) and np.isnan(v[2]) and np.isfinite(v[3:]).all()


def test_hjorth_config_errors():
    with pytest.raises(ConfigError, match="parameters must be unique"):
        load_config({"nodes": [{"id": "h", "type": "Hjorth",
                                "config": {"parameters": ["activity", "activity"]}}]})


# -- FilterBank --------------------------------------------------------------------------------
FB = {"bands": [[4, 8], [8, 12], [12.5, 30]], "order": 3}


def _sos(lo, hi, order=3, design="butter"):
    return ss.iirfilter(order, [lo, hi], btype="bandpass", ftype=design, rp=1.0, rs=40.0, fs=FS,
                        output="sos")


def _stream(cfg, x, sizes):
    names = tuple(f"c{i}" for i in range(x.shape[0]))
    frames, start, k = [], 0, 0
    while start < x.shape[1]:
        n = min(sizes[k % len(sizes)], x.shape[1] - start)
        frames.append(DataFrame.from_block(names, x[:, start:start + n], timestamp=start * 4000,
                                           sequence_id=k, metadata={"sample_rate": repr(FS)}))
        start, k = start + n, k + 1
    outs = run_node(FilterBank, cfg, frames)
    return outs, np.concatenate([o.block() for o in outs], axis=1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 97), min_size=1, max_size=6).filter(any),
       design=st.sampled_from(["butter", "cheby1", "ellip"]))
def test_filter_bank_equals_sosfilt_for_any_framing(sizes, design):
    x = data(2, 600, 4)
    outs, y = _stream({**FB, "design": design}, x, sizes)
    assert outs[0].channels == ("c0@4-8", "c1@4-8", "c0@8-12", "c1@8-12", "c0@12.5-30",
                                "c1@12.5-30")
    for b, (lo, hi) in enumerate(FB["bands"]):
        want = ss.sosfilt(_sos(lo, hi, design=design), x, axis=-1)
        np.testing.assert_allclose(y[2 * b:2 * b + 2], want, rtol=0,
                                   atol=1e-12 * np.abs(want).max())


def test_filter_bank_steady_state_equals_sosfilt_with_zi():
    x = data(3, 400, 8)
    _, y = _stream({**FB, "initial_state": "steady"}, x, [37, 5, 100])
    for b, (lo, hi) in enumerate(FB["bands"]):
        sos = _sos(lo, hi)
        zi = ss.sosfilt_zi(sos)[:, None, :] * x[:, 0][None, :, None]
        want, _ = ss.sosfilt(sos, x, axis=-1, zi=zi)
        np.testing.assert_allclose(y[3 * b:3 * b + 3], want, rtol=0,
                                   atol=1e-12 * np.abs(want).max())


def test_filter_bank_keeps_events_samples_and_metadata():
    x = data(2, 100, 1)
    f = epoch_frame(x, zero=30)
    out = one(FilterBank, {"bands": [[8, 12]], "sample_rate": FS}, f)
    assert out.events == f.events  # the same Event objects, on the same sample
    assert out.n_samples == 100 and out.metadata["event_label"] == "left"
    assert json.loads(out.metadata["filter_bank"]) == [[8, 12]]


def test_filter_bank_errors():
    with pytest.raises(ConfigError, match=r"config: .*bands\[1\]: cutoff must be below "
                                          r"sample_rate/2 \(got 130.0, sample_rate=250.0\)"):
        load_config({"nodes": [{"id": "fb", "type": "FilterBank", "config": {
            "bands": [[8, 12], [100, 130]], "sample_rate": 250.0}}]})
    with pytest.raises(ConfigError, match=r"config\.bands: .*band 0: need 0 < low < high"):
        load_config({"nodes": [{"id": "fb", "type": "FilterBank",
                                "config": {"bands": [[0, 12]]}}]})
    with pytest.raises(ConfigError, match="bands must be distinct"):
        load_config({"nodes": [{"id": "fb", "type": "FilterBank",
                                "config": {"bands": [[8, 12], [8.0, 12.0]]}}]})
    with pytest.raises(NodeError, match=r"FilterBank: config\.bands\[0\]: cutoff must be below"):
        run_node(FilterBank, {"bands": [[8, 200]]}, [epoch_frame(data(2, 50, 1))])
    f = epoch_frame(data(2, 50, 1))
    with pytest.raises(NodeError, match="FilterBank: channels changed mid-stream"):
        run_node(FilterBank, FB, [f, epoch_frame(data(3, 50, 1))])
    with pytest.raises(NodeError, match="sample_rate changed mid-stream"):
        run_node(FilterBank, FB, [f, f.with_metadata(sample_rate="500.0")])


# -- a pipeline: filter bank -> epochs -> every feature; the event ledger balances ------------
def test_pipeline_features_of_epochs_ledger_balances(frames_source):
    x = data(2, 2000, 3)
    marks = {200: "left", 600: "right", 1000: "left", 1300: "right"}
    for k, start in enumerate(range(0, 2000, 64)):
        n = min(64, 2000 - start)
        evs = [Event(1_000_000 + round(s * 4000), lab, sample=s - start)
               for s, lab in marks.items() if start <= s < start + n]
        frames_source.append(DataFrame.from_block(
            ("C3", "C4"), x[:, start:start + n], timestamp=1_000_000 + start * 4000,
            sequence_id=k, metadata={"sample_rate": "250.0"}).with_events(evs))
    feats = {"cov": ("Covariance", {"estimator": "oas"}), "lv": ("LogVariance", {}),
             "bp": ("EpochBandPower", {"bands": {"mu": [8, 13]}, "nperseg": 128}),
             "hj": ("Hjorth", {})}
    cfg = {"pipeline_config": {"debug": True},
           "nodes": [{"id": "src", "type": "TestFrames"},
                     {"id": "fb", "type": "FilterBank",
                      "config": {"bands": [[8, 13], [13, 30]], "order": 2}},
                     {"id": "ep", "type": "Epoch",
                      "config": {"tmin": 0.5, "tmax": 2.5, "baseline": None}},
                     *[{"id": k, "type": t, "config": c} for k, (t, c) in feats.items()]],
           "connections": [{"from": "src", "to": "fb"}, {"from": "fb", "to": "ep"},
                           *[{"from": "ep", "to": k} for k in feats]]}
    pipe = AsyncPipeline(cfg)
    report = run(pipe.run(triggers=len(frames_source) + 2))
    assert report.nodes["fb"].event_fates["carried"] == 4
    assert report.nodes["ep"].event_fates["epoched"] == 4
    want = np.stack([ss.sosfilt(ss.butter(2, [8, 13], "bandpass", fs=FS, output="sos"), x),
                     ss.sosfilt(ss.butter(2, [13, 30], "bandpass", fs=FS, output="sos"), x)])
    for k in feats:
        node = report.nodes[k]
        assert node.events_received == 4 and node.event_fates["carried"] == 4
        outs = pipe.results[k]
        assert [o.metadata["event_label"] for o in outs] == ["left", "right"] * 2
        assert all(len(o.events) == 1 and o.events[0].sample == 0 for o in outs)
    for o, s in zip(pipe.results["cov"], marks, strict=True):
        epoch = want[:, :, s + 125:s + 626].reshape(4, 501)  # band-major, as FilterBank
        assert o.channels == ("C3@8-13", "C4@8-13", "C3@13-30", "C4@13-30")
        np.testing.assert_allclose(o.block(), covariance(epoch, "oas"), rtol=1e-9, atol=0)
