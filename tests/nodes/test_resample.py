"""Streaming resampling against scipy's batch results (upfirdn, resample_poly, decimate)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import streamlab.nodes.resample as resample
from streamlab.errors import NodeError
from streamlab.frame import DataFrame
from streamlab.nodes.resample import Decimate, Resample, UpFirDnStream, resample_poly_filter
from streamlab.testing import make_frame, run_node

FS = 100.0
X = np.random.default_rng(7).standard_normal((2, 613))
CHUNKS = st.lists(st.integers(1, 120), min_size=1, max_size=20).filter(lambda s: sum(s) >= 8)
SETTINGS = settings(max_examples=8, deadline=None)


def chunked(x, sizes, fs=FS):
    frames, i, k = [], 0, 0
    while i < x.shape[1]:
        n = sizes[k % len(sizes)]
        frames.append(DataFrame.from_block(["a", "b"], x[:, i:i + n], timestamp=1_000_000 + round(i * 1e6 / fs),
                                           sequence_id=k, metadata={"sample_rate": repr(fs)}))
        i, k = i + n, k + 1
    return frames


def joined(frames):
    return np.concatenate([f.block() for f in frames], axis=1)


def test_doctests():
    assert doctest.testmod(resample).failed == 0


@pytest.mark.parametrize("up, down", [(3, 2), (2, 3), (1, 4), (5, 1), (160, 147), (4, 6)])
@SETTINGS
@given(sizes=CHUNKS)
def test_resample_equals_upfirdn_and_delayed_resample_poly(up, down, sizes):
    out = run_node(Resample, {"up": up, "down": down}, chunked(X, sizes))
    y = joined(out)
    g = np.gcd(up, down)
    h, delay = resample_poly_filter(up // g, down // g)
    n_out = -(-X.shape[1] * up // down)
    ref = ss.upfirdn(h, X, up // g, down // g, axis=-1)[:, :n_out]
    np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-12)
    poly = ss.resample_poly(X, up, down, axis=-1)
    np.testing.assert_allclose(y[:, delay:], poly[:, :n_out - delay], rtol=1e-9, atol=1e-12)


def test_resample_metadata_timestamps_and_delay():
    node = Resample.create({"up": 3, "down": 2})
    frames = chunked(X, [10, 7])
    outs = [o for f in frames if (o := node.process(f)) is not None]
    assert node.delay == resample_poly_filter(3, 2)[1]
    assert {o.metadata["sample_rate"] for o in outs} == {"150.0"}
    # output k sits at input position k*2/3: its time is k / 150 Hz after the first sample
    k = np.cumsum([0] + [o.n_samples for o in outs[:-1]])
    expected = [1_000_000 + round(kk / 150.0 * 1e6) for kk in k]
    assert all(abs(o.timestamp - e) <= 1 for o, e in zip(outs, expected))


def test_resample_target_rate():
    out = run_node(Resample, {"target_rate": 44.1}, chunked(X, [50]))
    assert out[0].metadata["sample_rate"] == repr(44.1)
    assert joined(out).shape[1] == -(-613 * 441 // 1000)


@pytest.mark.parametrize("cfg, msg", [({"up": 2, "down": 2}, "nothing to resample"),
                                      ({"up": 2, "target_rate": 50.0}, "not both")])
def test_resample_config_errors(cfg, msg):
    with pytest.raises(ValidationError, match=msg):
        Resample.Config(**cfg)


@pytest.mark.parametrize("ftype, n", [("iir", None), ("iir", 4), ("fir", None), ("fir", 30)])
@pytest.mark.parametrize("q", [2, 3, 5])
@SETTINGS
@given(sizes=CHUNKS)
def test_decimate_equals_scipy_decimate_without_zero_phase(ftype, n, q, sizes):
    out = run_node(Decimate, {"q": q, "ftype": ftype, "n": n}, chunked(X, sizes))
    ref = ss.decimate(X, q, n, ftype=ftype, zero_phase=False, axis=-1)
    np.testing.assert_allclose(joined(out), ref, rtol=1e-9, atol=1e-12)
    assert {f.metadata["sample_rate"] for f in out} == {repr(FS / q)}


def test_decimate_timestamps_follow_kept_samples_and_drops_empty_frames():
    out = run_node(Decimate, {"q": 4}, chunked(X[:, :20], [3]))
    # kept input samples 0, 4, 8, ...: each output frame starts at the first kept sample in it
    starts = [round((f.timestamp - 1_000_000) / 1e4) for f in out]
    assert all(s % 4 == 0 for s in starts)
    assert sum(f.n_samples for f in out) == 5
    assert len(out) == 5  # frames of 3 samples hold at most one kept sample


def test_upfirdn_stream_short_filter_longer_up():
    x = np.arange(10.0)[None]
    s = UpFirDnStream(np.array([1.0]), 4, 3, 1, ss)
    y = np.concatenate([s.block(x[:, :3]), s.block(x[:, 3:])], axis=1)
    # h shorter than up is zero-padded to length up, so every position k*3 < 40 is emitted
    np.testing.assert_array_equal(y, ss.upfirdn([1.0, 0, 0, 0], x, 4, 3)[:, :-(-40 // 3)])
    assert y.shape[1] == 14


def test_ragged_channels_and_missing_rate_are_node_errors():
    with pytest.raises(NodeError, match="differ in length"):
        run_node(Decimate, {"q": 2, "sample_rate": 10.0}, [make_frame(a=[1.0, 2.0], b=[1.0])])
    with pytest.raises(NodeError, match="Resample needs a sample rate"):
        run_node(Resample, {"up": 2}, [make_frame(a=[1.0])])
