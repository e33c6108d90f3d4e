"""Clock synchronisation of one stream, as pyxdf does it offline, computed online: the clock
offset model (robust line through ``(time, offset)`` measurements) and dejitter (a
least-squares line of sample time on sample index per segment).

Used by :class:`~streamlab.nodes.align.Align` (see its module docstring for the algorithm and
its differences to ``pyxdf.load_xdf``); plain objects without the runtime, so they can be
tested against pyxdf directly. ``clock_offsets`` metadata, the format ``LSLInlet`` emits,
is read and written by :func:`parse_clock_offsets` / :func:`format_clock_offsets`.
Nothing here does I/O; bad metadata is a ValueError saying what was expected.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ClockModel", "Dejitter", "huber_line", "format_clock_offsets", "parse_clock_offsets"]


# -- clock offsets ---------------------------------------------------------------------------
def format_clock_offsets(pairs: Iterable[tuple[float, float]]) -> str:
    """The ``clock_offsets`` metadata text of (time µs, offset µs) pairs.

    >>> format_clock_offsets([(1.5e6, -12.0)])
    '1500000.0:-12.0'
    """
    return ";".join(f"{float(t)!r}:{float(o)!r}" for t, o in pairs)


def parse_clock_offsets(text: str) -> list[tuple[float, float]]:
    """(time µs, offset µs) pairs of a ``clock_offsets`` metadata text; ValueError if bad.

    >>> parse_clock_offsets("1500000.0:-12.0;2500000.0:-13.5")
    [(1500000.0, -12.0), (2500000.0, -13.5)]
    """
    out = []
    for part in text.split(";"):
        if not part.strip():
            continue
        t, sep, o = part.partition(":")
        try:
            pair = (float(t), float(o))
        except ValueError:
            pair = (math.nan, math.nan)
        if not sep or not all(math.isfinite(v) for v in pair):
            raise ValueError(f"expected 'time_us:offset_us' pairs separated by ';', got {part!r}")
        out.append(pair)
    return out


def huber_line(x: np.ndarray, y: np.ndarray, k: float, iters: int = 100
               ) -> tuple[float, float, float]:
    """Robust line ``y ~ a + b * (x - xc)`` minimising the Huber loss with threshold ``k``.

    Returns ``(a, b, xc)`` (``xc`` = mean of ``x``, for numerical stability). The same
    minimum as pyxdf's ``_robust_fit`` (ADMM on the Huber loss of the winsor-scaled data),
    by iteratively reweighted least squares. One point: the constant; ``x`` all equal: the
    (robust) mean.

    >>> a, b, xc = huber_line(np.array([0.0, 1, 2, 3]), np.array([1.0, 3, 5, 7]), 0.1)
    >>> round(a + b * (0 - xc), 9), round(b, 9)
    (1.0, 2.0)
    """
    n = len(x)
    xc = float(np.mean(x))
    if n == 1:
        return float(y[0]), 0.0, xc
    dx = x - xc
    w = np.ones(n)
    a = b = 0.0
    flat = float(np.dot(dx, dx)) == 0.0
    for _ in range(iters):
        sw = w.sum()
        a_new = float(np.dot(w, y) / sw) if flat else 0.0
        if flat:
            b_new = 0.0
        else:
            mx = float(np.dot(w, dx) / sw)
            my = float(np.dot(w, y) / sw)
            sxx = float(np.dot(w, (dx - mx) ** 2))
            b_new = float(np.dot(w, (dx - mx) * (y - my)) / sxx) if sxx > 0 else 0.0
            a_new = my - b_new * mx
        r = np.abs(y - (a_new + b_new * dx))
        w = np.where(r <= k, 1.0, k / np.maximum(r, 1e-300))
        done = abs(a_new - a) <= 1e-9 * k and abs(b_new - b) * (np.abs(dx).max() + 1) <= 1e-9 * k
        a, b = a_new, b_new
        if done:
            break
    return a, b, xc


class ClockModel:
    """Online robust linear fit of one input's clock offsets (see the module docstring).

    ``offset(t)`` is 0 before the first measurement, the measured value after one, and the
    fitted line (extrapolated past the last measurement) after two or more.

    >>> m = ClockModel(winsor_us=100.0)
    >>> m.add(0.0, 500.0); m.add(1e6, 510.0)
    >>> float(m.offset(2e6))
    520.0
    """

    def __init__(self, winsor_us: float = 100.0, window_us: float | None = None) -> None:
        self.winsor_us = winsor_us
        self.window_us = window_us
        self.times: deque[float] = deque()
        self.values: deque[float] = deque()
        self.a = 0.0
        self.b = 0.0
        self.xc = 0.0
        self.residual_rms = 0.0
        self.measurements = 0

    def add(self, t: float, o: float) -> None:
        self.times.append(t)
        self.values.append(o)
        self.measurements += 1
        if self.window_us is not None:
            newest = max(self.times)
            while len(self.times) > 2 and newest - self.times[0] > self.window_us:
                self.times.popleft()
                self.values.popleft()
        x = np.fromiter(self.times, float, len(self.times))
        y = np.fromiter(self.values, float, len(self.values))
        self.a, self.b, self.xc = huber_line(x, y, self.winsor_us)
        r = y - (self.a + self.b * (x - self.xc))
        self.residual_rms = float(np.sqrt(np.mean(r * r)))

    def offset(self, t: Any) -> Any:
        """µs to add to time(s) ``t`` (same domain as the measurement times)."""
        return self.a + self.b * (np.asarray(t, dtype=np.float64) - self.xc)


# -- dejitter --------------------------------------------------------------------------------
@dataclass
class _Seg:
    t0: float          # raw time of the segment's first sample
    a: float = 0.0     # fitted line: t0 + k * period + a + c * k
    c: float = 0.0


class Dejitter:
    """Online least-squares line of sample time on sample index, per segment.

    ``add(raw)`` takes the raw times (µs, float) of the next samples and returns, per
    sample, its (segment id, index in segment); ``times(seg, idx)`` gives the fitted times
    with the current fit. Sums are over samples relative to the nominal line (small numbers),
    so long recordings keep µs precision.

    >>> d = Dejitter(period_us=1000.0, break_us=1e6)
    >>> seg, idx = d.add(np.array([0.0, 1100.0, 1900.0, 3000.0]))
    >>> d.times(seg, idx).round(3).tolist()
    [30.0, 1010.0, 1990.0, 2970.0]
    """

    def __init__(self, period_us: float, break_us: float, window: int | None = None) -> None:
        self.period = period_us
        self.break_us = break_us
        self.window = window         # samples in the fit at most (None: whole segment)
        self.segs: dict[int, _Seg] = {}
        self.seg = -1
        self.next_idx = 0
        self.last_raw: float | None = None
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (last idx, sums)
        self._sums = np.zeros(6)      # n, Sx, Sy, Sxx, Sxy, Syy
        self.segments = 0

    def add(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(raw)
        segs = np.empty(n, dtype=np.int64)
        idx = np.empty(n, dtype=np.int64)
        prev = np.empty(n)
        prev[1:] = raw[:-1]
        prev[0] = raw[0] if self.last_raw is None else self.last_raw
        breaks = np.flatnonzero(np.abs(raw - prev) > self.break_us)
        if self.last_raw is None:
            breaks = np.concatenate([[0], breaks[breaks > 0]])
        bounds = [*breaks.tolist(), n]
        start = 0
        for b in bounds:
            if b > start:
                self._extend(raw[start:b], segs[start:b], idx[start:b])
            if b < n:
                self._new_segment(float(raw[b]))
            start = b
        self.last_raw = float(raw[-1])
        return segs, idx

    def _new_segment(self, t0: float) -> None:
        self.seg += 1
        self.segments += 1
        self.segs[self.seg] = _Seg(t0)
        self.next_idx = 0
        self._chunks.clear()
        self._sums = np.zeros(6)

    def _extend(self, raw: np.ndarray, segs: np.ndarray, idx: np.ndarray) -> None:
        s = self.segs[self.seg]
        k = np.arange(self.next_idx, self.next_idx + len(raw), dtype=np.int64)
        segs[:] = self.seg
        idx[:] = k
        self.next_idx += len(raw)
        x = k.astype(np.float64)
        y = raw - (s.t0 + x * self.period)
        sums = np.array([len(x), x.sum(), y.sum(), np.dot(x, x), np.dot(x, y), np.dot(y, y)])
        self._sums += sums
        if self.window is not None:  # whole segment: the sums are enough (bounded memory)
            self._chunks.append((int(k[-1]), sums))
            while len(self._chunks) > 1 and self.next_idx - 1 - self._chunks[0][0] >= self.window:
                self._sums -= self._chunks.popleft()[1]
        n, sx, sy, sxx, sxy, _ = self._sums
        vxx = sxx - sx * sx / n
        if n >= 2 and vxx > 0:
            s.c = (sxy - sx * sy / n) / vxx
            s.a = (sy - s.c * sx) / n
        else:
            s.c, s.a = 0.0, sy / n

    def residual_rms(self) -> float:
        """RMS (µs) of the current segment's fitted samples minus the line (0 if < 3)."""
        n, sx, sy, sxx, sxy, syy = self._sums
        if n < 3:
            return 0.0
        vxx = sxx - sx * sx / n
        vxy = sxy - sx * sy / n
        vyy = syy - sy * sy / n
        sse = vyy - (vxy * vxy / vxx if vxx > 0 else 0.0)
        return math.sqrt(max(sse, 0.0) / n)

    def effective_rate(self) -> float:
        s = self.segs.get(self.seg)
        return 0.0 if s is None else 1e6 / (self.period + s.c)

    def times(self, segs: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Fitted times of samples ``idx`` of segments ``segs`` (non-decreasing ids)."""
        x = idx.astype(np.float64)
        lo, hi = int(segs[0]), int(segs[-1])
        if lo == hi:  # the common case: one segment
            s = self.segs[lo]
            return (s.t0 + s.a) + x * (self.period + s.c)
        params = [self.segs.get(k, _Seg(math.nan)) for k in range(lo, hi + 1)]
        t0a = np.array([p.t0 + p.a for p in params])[segs - lo]
        c = np.array([p.c for p in params])[segs - lo]
        return t0a + x * (self.period + c)

    def forget_before(self, seg: int) -> None:
        for sid in [k for k in self.segs if k < seg]:
            del self.segs[sid]
