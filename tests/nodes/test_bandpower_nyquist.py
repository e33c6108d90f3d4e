"""BandPower at the Nyquist bin: with an even segment length the Nyquist bin is one-sided
already and must not be doubled, as in scipy (a mutant doubling it survived, #9 item 21)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from streamlab.nodes.spectral import BandPower
from streamlab.testing import make_frame, run_node

FS = 100.0
BANDS = {"low": (0.0, 20.0), "top": (40.0, 60.0)}  # "top" contains the Nyquist bin (50 Hz)


def signal_with_nyquist(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    k = np.arange(n)
    # a strong component exactly at Nyquist (+1, -1, ...) over a little noise
    return 2.0 * np.cos(np.pi * k) + 0.1 * rng.standard_normal(n)


def expected(x: np.ndarray, method: str, nperseg: int) -> dict[str, float]:
    if method == "welch":
        f, p = signal.welch(x, FS, window="hann", nperseg=nperseg)
    else:
        f, p = signal.periodogram(x, FS, window="hann", detrend="constant")
    df = f[1] - f[0]
    assert f[-1] == FS / 2  # the test is about the Nyquist bin: it must be there
    return {b: float(p[(f >= lo) & (f < hi)].sum() * df) for b, (lo, hi) in BANDS.items()}


@pytest.mark.parametrize("method,n,nperseg", [("welch", 512, 64), ("welch", 64, 64),
                                              ("periodogram", 200, 200)])
def test_band_reaching_nyquist_matches_scipy(method, n, nperseg):
    x = signal_with_nyquist(n)
    out = run_node(BandPower, {"bands": BANDS, "method": method, "nperseg": nperseg},
                   [make_frame(eeg=x, metadata={"sample_rate": repr(FS)})])
    want = expected(x, method, nperseg)
    for band, value in want.items():
        assert float(out[0].payload[f"eeg_{band}"][0]) == pytest.approx(value, rel=1e-9)
    # the Nyquist component dominates: doubling its bin would double the band's power
    assert want["top"] > 10 * want["low"]
