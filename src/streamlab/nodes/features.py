"""Features and events: RMS, Envelope, ZScore, ThresholdCrossing, PeakDetector, RateEstimator.

Event frames (ThresholdCrossing and PeakDetector with ``output="events"``, the input of
RateEstimator) hold, per input channel, a channel of the same name whose samples are the event
times in µs since the epoch (as float64; fractional µs kept), possibly none. They carry
``metadata["events"] = "timestamp_us"`` and no ``"sample_rate"`` (the signal's rate moves to
``"signal_sample_rate"``). One event frame is emitted per input frame, empty or not, so
downstream timing stays continuous.

**Events** (:class:`streamlab.events.Event`): each detection is ALSO an Event on the frame the
detector emits, label configurable (``label``), ``time`` = the time of its sample
(``timestamp + round(i * 1e6 / sample_rate)``, int µs) and ``value`` = the signal there. On an
event frame its ``sample`` is its index among its channel's times (with several channels of
different counts, clamped to the frame's last sample: use ``time``); on ThresholdCrossing's
``"mask"`` and ``"data"`` outputs it is the crossing sample itself. Events arriving on the input
stay on ``"mask"``/``"data"`` outputs (same samples) and are dropped by event frames (which have
no time axis: put the detector on a branch to keep them).

Running nodes (RMS with a window, Envelope ``"rectify"``, ZScore, the detectors) carry their
state across frames: their output does not depend on how the input is cut into frames (tested
with hypothesis). Per-frame reductions (RMS without a window) emit one sample per channel with
``metadata["sample_rate"]`` = input rate / ``window_hop`` (from Window) or / frame length.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamlab.errors import NodeError
from streamlab.events import Event, sort_events
from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.nodes.filters import (
    BaStream,
    FilterConfig,
    SosStream,
    StreamingFilter,
    check_cutoffs,
    frame_sample_rate,
    scipy_signal,
)
from streamlab.registry import register_node

__all__ = ["RMS", "Envelope", "ZScore", "ThresholdCrossing", "PeakDetector", "RateEstimator"]

_EVENTS = "timestamp_us"


def _block(node: ProcessingNode, frame: DataFrame) -> np.ndarray:
    try:
        return frame.block()
    except ValueError as exc:
        raise NodeError(node.context.node_id, f"{type(node).__name__}: {exc}") from None


@register_node
class RMS(StreamingFilter):
    """Root mean square per channel: one value per frame, or a running value over ``window`` samples.

    Without ``window``: ``sqrt(mean(x**2))`` of each frame (one sample per channel). With
    ``window``: ``sqrt(lfilter(ones(window)/window, 1, x**2))`` over the whole stream (zeros
    before the start), one output sample per input sample. Events: with ``window`` they stay
    on their samples; without, the frame's events go on the one output sample.

    >>> from streamlab.testing import run_node, make_frame
    >>> run_node(RMS, {}, [make_frame(x=[3.0, -3.0, 3.0, -3.0])])[0].payload["x"].tolist()
    [3.0]
    """

    #: without ``window`` one sample per frame: events are moved to it (settled here)
    handles_events = True

    class Config(NodeConfig):
        window: int | None = Field(None, ge=1, le=10_000_000,
                                   description="Running window in samples (None: one value per frame).")

    def on_create(self, config: Any) -> None:
        self.config = config
        self.signal = scipy_signal()
        self._names = None
        self._prime = False
        self._meta: tuple[Any, Any] | None = None
        if config.window is not None:
            self._b = np.full(config.window, 1.0 / config.window)

    def _check_rate(self, frame: DataFrame) -> None:
        return None

    def make_stream(self, n_channels: int) -> Any:
        return _SquareMeanRoot(BaStream(self._b, np.ones(1), n_channels, self.signal))

    def process(self, frame: DataFrame) -> DataFrame:
        if self.config.window is not None:
            out = super().process(frame)  # keeps the events on their samples
        else:
            x = _block(self, frame)
            if x.shape[1] == 0:
                raise NodeError(self.context.node_id, "RMS: frame has no samples")
            rms = np.sqrt(np.einsum("ij,ij->i", x, x) / x.shape[1])[:, None]
            if self._meta is None or self._meta[0] is not frame.metadata:
                self._meta = (frame.metadata, _reduced_meta(frame))
            out = DataFrame(frame.timestamp, frame.sequence_id, frame.with_block(rms).payload,
                            self._meta[1])
            if frame.events:
                out = out.with_events([e.at(0) for e in frame.events])
        if frame.events:  # settled once the output exists (a failure leaves them to the runtime)
            self.context.settle_events("carried", len(frame.events))
        return out


def _reduced_meta(frame: DataFrame) -> Any:
    """Metadata of a one-sample-per-frame output: sample_rate = rate / hop (or / frame length)."""
    meta = dict(frame.metadata)
    if "sample_rate" in meta:
        hop = float(meta.get("window_hop", frame.n_samples))
        meta["sample_rate"] = repr(float(meta["sample_rate"]) / hop)
    return MappingProxyType(meta)


class _SquareMeanRoot:
    def __init__(self, mean: BaStream) -> None:
        self.mean = mean

    def block(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.mean.block(x * x), 0.0))

    def row(self, i: int, x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.mean.row(i, x * x), 0.0))


@register_node
class Envelope(StreamingFilter):
    """Amplitude envelope: rectify + Butterworth lowpass (streaming), or |hilbert| per frame.

    ``"rectify"``: ``sosfilt(butter(order, cutoff, fs=fs, output="sos"), abs(x))`` over the whole
    stream. ``"hilbert"``: ``abs(scipy.signal.hilbert(x))`` of each frame separately (no state;
    edge effects at every frame boundary: use it on windows).

    >>> from streamlab.testing import run_node, make_frame
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 50 * np.arange(1000) / 1000)
    >>> out = run_node(Envelope, {"method": "hilbert"}, [make_frame(x=x)])
    >>> round(float(out[0].payload["x"][500]), 6)
    1.0
    """

    class Config(FilterConfig):
        method: Literal["rectify", "hilbert"] = Field("rectify", description="See the description.")
        cutoff: float = Field(5.0, gt=0, description="Lowpass cutoff in Hz (rectify).")
        order: int = Field(2, ge=1, le=16, description="Butterworth order (rectify).")

        @model_validator(mode="after")
        def _nyquist(self) -> Envelope.Config:
            if self.sample_rate is not None:
                check_cutoffs([self.cutoff], self.sample_rate)
            return self

    def design(self, fs: float) -> None:
        check_cutoffs([self.config.cutoff], fs)
        self.sos = self.signal.butter(self.config.order, self.config.cutoff, fs=fs, output="sos")

    def make_stream(self, n_channels: int) -> Any:
        return _Rectified(SosStream(self.sos, n_channels, self.signal))

    def process(self, frame: DataFrame) -> DataFrame:
        if self.config.method == "rectify":
            return super().process(frame)
        x = _block(self, frame)
        if x.shape[1] == 0:
            return frame
        return frame.with_block(np.abs(self.signal.hilbert(x, axis=-1)))


class _Rectified:
    def __init__(self, lowpass: SosStream) -> None:
        self.lowpass = lowpass

    def block(self, x: np.ndarray) -> np.ndarray:
        return self.lowpass.block(np.abs(x))

    def row(self, i: int, x: np.ndarray) -> np.ndarray:
        return self.lowpass.row(i, np.abs(x))


@register_node
class ZScore(ProcessingNode):
    """Running z-score with exponentially weighted mean and variance, per channel.

    With ``d[n] = x[n] - m[n-1]``: ``m[n] = m[n-1] + a*d[n]``, ``v[n] = (1-a)*(v[n-1] + a*d[n]**2)``,
    output ``(x[n] - m[n]) / sqrt(v[n])`` (0 where v is 0). ``m[-1]`` is the channel's first
    sample and ``v[-1] = 0``, so the first output is 0 and early outputs are large while the
    variance builds up. ``a = alpha``, or ``1 - exp(-1 / (time_constant * sample_rate))``.

    >>> from streamlab.testing import run_node, make_frame
    >>> out = run_node(ZScore, {"alpha": 0.5}, [make_frame(x=[1.0, 1.0, 3.0])])
    >>> [round(v, 6) for v in out[0].payload["x"].tolist()]
    [0.0, 0.0, 1.0]
    """

    class Config(NodeConfig):
        alpha: float | None = Field(None, gt=0, le=1, description="Smoothing factor per sample.")
        time_constant: float | None = Field(None, gt=0, description="Seconds (instead of alpha).")
        sample_rate: float | None = Field(None, gt=0, le=1e9,
                                          description="Hz, for time_constant; default: metadata.")

        @model_validator(mode="after")
        def _one(self) -> ZScore.Config:
            if (self.alpha is None) == (self.time_constant is None):
                raise ValueError("give exactly one of alpha or time_constant")
            return self

    def on_create(self, config: Any) -> None:
        self.config = config
        self._lfilter = scipy_signal().lfilter
        self._a: float | None = config.alpha
        self._m: np.ndarray | None = None
        self._v: np.ndarray | None = None

    def process(self, frame: DataFrame) -> DataFrame:
        x = _block(self, frame)
        if x.shape[1] == 0:
            return frame
        if self._a is None:
            fs = frame_sample_rate(self, frame, self.config.sample_rate)
            self._a = 1.0 - math.exp(-1.0 / (self.config.time_constant * fs))
        a = self._a
        if self._m is None:
            self._m, self._v = x[:, 0].copy(), np.zeros(x.shape[0])
        elif len(self._m) != x.shape[0]:
            raise NodeError(self.context.node_id, "ZScore: number of channels changed mid-stream")
        den = np.array([1.0, a - 1.0])
        m, _ = self._lfilter([a], den, x, axis=-1, zi=((1 - a) * self._m)[:, None])
        prev = np.concatenate([self._m[:, None], m[:, :-1]], axis=1)
        d = x - prev
        # _v is set together with _m (not None here)
        v, _ = self._lfilter([(1 - a) * a], den, d * d, axis=-1,
                             zi=((1 - a) * self._v)[:, None])  # type: ignore[operator, index]
        self._m, self._v = m[:, -1].copy(), v[:, -1].copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(v > 0, (x - m) / np.sqrt(np.where(v > 0, v, 1.0)), 0.0)
        return frame.with_block(z)


class _EventNode(ProcessingNode):
    """Shared by detectors: sample rate, carried samples, event-frame layout."""

    def on_create(self, config: Any) -> None:
        self.config = config
        self._n = 0  # global index of the next input sample
        self._names: tuple[str, ...] | None = None
        self._meta: tuple[Any, Any] | None = None

    def begin(self, frame: DataFrame) -> tuple[np.ndarray, float]:
        fs = frame_sample_rate(self, frame, self.config.sample_rate)
        x = _block(self, frame)
        if self._names is None:
            self._names = frame.channels
            self.setup(len(self._names), fs)
        elif frame.channels != self._names:
            raise NodeError(self.context.node_id, f"{type(self).__name__}: channels changed "
                            f"mid-stream from {list(self._names)} to {list(frame.channels)}")
        return x, fs

    def setup(self, n_channels: int, fs: float) -> None:
        raise NotImplementedError

    def events_frame(self, frame: DataFrame, times: list[list[float]],
                     found: list[Event] | None = None) -> DataFrame:
        """The event frame of ``frame``; ``found`` (per channel in order, positioned on their
        index within their channel) become its events (clamped to its last sample)."""
        if self._meta is None or self._meta[0] is not frame.metadata:
            meta = {k: v for k, v in frame.metadata.items() if k != "sample_rate"}
            if "sample_rate" in frame.metadata:
                meta["signal_sample_rate"] = frame.metadata["sample_rate"]
            meta["events"] = _EVENTS
            self._meta = (frame.metadata, MappingProxyType(meta))
        payload = {n: np.array(t, dtype=float) for n, t in zip(self._names or (), times)}
        out = DataFrame(frame.timestamp, frame.sequence_id, payload, self._meta[1])
        if found:
            last = max(0, out.n_samples - 1)
            out = DataFrame._make(out.timestamp, out.sequence_id, out.payload, out.metadata,
                                  sort_events([e if e.sample <= last else e.at(last)
                                               for e in found], out.n_samples))
        return out


@register_node
class ThresholdCrossing(_EventNode):
    """Threshold crossings with hysteresis and a refractory period, across frame boundaries.

    Rising: ``x[n-1] < threshold <= x[n]``; falling: ``x[n-1] > threshold >= x[n]``. With
    ``hysteresis`` h, a rising crossing counts only if the signal went below ``threshold - h``
    since the previous counted rising crossing (falling: above ``threshold + h``). Then any
    crossing less than ``refractory`` seconds after the previous accepted event is ignored.
    ``output="events"``: event frames (module docs); ``"mask"``: the input's shape with 1.0 at
    event samples and 0.0 elsewhere; ``"data"``: the input frame unchanged. Every crossing is
    also an Event (``label``, value = the sample's value) at the crossing sample (the first
    sample at or past the level), on ``"mask"`` and ``"data"`` outputs, with the input's own
    events kept; on event frames see the module docs.

    >>> from streamlab.testing import run_node, make_frame
    >>> meta = {"sample_rate": "1000.0"}
    >>> out = run_node(ThresholdCrossing, {"threshold": 0.5, "output": "mask"},
    ...                [make_frame(x=[0.0, 1.0, 0.0], metadata=meta),
    ...                 make_frame(x=[1.0, 1.0], metadata=meta)])
    >>> [f.payload["x"].tolist() for f in out]
    [[0.0, 1.0, 0.0], [1.0, 0.0]]
    >>> [(e.sample, e.time, e.label) for f in out for e in f.events]
    [(1, 1000, 'crossing'), (0, 0, 'crossing')]
    """

    class Config(NodeConfig):
        threshold: float = Field(..., description="Level crossed.")
        direction: Literal["rising", "falling", "both"] = Field("rising", description="Which crossings.")
        hysteresis: float = Field(0.0, ge=0, description="Re-arm distance from the threshold.")
        refractory: float = Field(0.0, ge=0, description="Seconds after an event during which none counts.")
        output: Literal["events", "mask", "data"] = Field(
            "events", description="Event frames, a 0/1 mask, or the input data (with events).")
        label: str = Field("crossing", min_length=1, description="Label of the Events emitted.")
        sample_rate: float | None = Field(None, gt=0, le=1e9, description="Hz; default: metadata.")

    def setup(self, n_channels: int, fs: float) -> None:
        self._last = np.full(n_channels, np.nan)
        self._armed = {d: [True] * n_channels for d in ("rising", "falling")}
        self._last_event = [-(1 << 62)] * n_channels
        self._refractory = round(self.config.refractory * fs)

    def _crossings(self, i: int, ext: np.ndarray, sign: float, armed_key: str) -> list[int]:
        c = self.config
        y, thr = sign * ext, sign * c.threshold
        cand = np.flatnonzero((y[:-1] < thr) & (y[1:] >= thr)) + 1
        if c.hysteresis == 0:
            return cand.tolist()
        below = np.concatenate([[0], np.cumsum(y < thr - c.hysteresis)])  # below[k]: count in y[:k]
        armed, last, out = self._armed[armed_key][i], 0, []
        for k in cand.tolist():
            armed = armed or below[k] > below[last]
            if armed:
                out.append(k)
                armed, last = False, k
        self._armed[armed_key][i] = armed or bool(below[-1] > below[last])
        return out

    def process(self, frame: DataFrame) -> DataFrame:
        x, fs = self.begin(frame)
        c = self.config
        base = self._n - 1  # global index of ext[0]
        mask = np.zeros_like(x) if c.output == "mask" else None
        times: list[list[float]] = []
        detected: list[Event] = []
        for i in range(x.shape[0]):
            ext = np.concatenate([self._last[i:i + 1], x[i]])
            found: list[int] = []
            if c.direction in ("rising", "both"):
                found += self._crossings(i, ext, 1.0, "rising")
            if c.direction in ("falling", "both"):
                found += self._crossings(i, ext, -1.0, "falling")
            kept = []
            for k in sorted(found):
                g = base + k
                if g - self._last_event[i] >= self._refractory:
                    kept.append(k - 1)
                    self._last_event[i] = g
            if mask is not None:
                mask[i, kept] = 1.0
            times.append([frame.timestamp + k * 1e6 / fs for k in kept])
            for j, k in enumerate(kept):
                detected.append(Event(frame.timestamp + round(k * 1e6 / fs), c.label,
                                   float(x[i, k]), sample=k if c.output != "events" else j))
        if x.shape[1]:
            self._last = x[:, -1].copy()
        self._n += x.shape[1]
        if c.output == "events":
            return self.events_frame(frame, times, detected)
        out = frame.with_block(mask) if mask is not None else frame
        return out.with_events([*frame.events, *detected]) if detected else out


@register_node
class PeakDetector(_EventNode):
    """Local maxima above a fixed and/or adaptive threshold, with a refractory period, streaming.

    A peak is a sample with ``x[n-1] < x[n] >= x[n+1]`` and ``x[n] >= height`` (decided when
    ``x[n+1]`` arrives). Within ``refractory`` seconds the larger peak wins: a candidate is
    held until ``refractory`` seconds of signal have passed without a larger one, then emitted;
    peaks less than ``refractory`` after an emitted peak are ignored (exactly ``refractory``
    apart both count). So an event is reported up to ``refractory`` seconds (plus one sample)
    after its peak, with the peak's own time. Output: event frames (module docs); each peak is
    also an Event (``label``, value = the peak height, time = the peak sample's time) on the
    event frame that reports it, at its index among that frame's peaks of its channel.

    **Adaptive threshold** (``relative_height``, in the spirit of Pan-Tompkins, whose threshold
    follows the running signal-peak level): the stream is cut into consecutive blocks of
    ``amplitude_window`` seconds; the *amplitude* of a block is the median of the maxima of the
    previous ``amplitude_blocks`` complete blocks (robust to an artefact block), per channel.
    A peak in a block must also reach ``relative_height * amplitude``. So the threshold follows
    the signal's scale (mV or ADC counts alike) and its slow changes, with no lookahead; the
    first block has no estimate and reports nothing.

    **Warm-up**: samples in the first ``warmup`` seconds are ignored entirely (no peaks, not in
    the amplitude): a filter's start-up transient cannot count as a peak nor inflate the
    threshold. Blocks start after the warm-up. Neither option changes the latency above.

    >>> from streamlab.testing import run_node, make_frame
    >>> meta = {"sample_rate": "10.0"}
    >>> frames = [make_frame(x=[0, 1, 0, 2, 0, 0, 0, 0, 0, 0.0], metadata=meta, timestamp=0),
    ...           make_frame(x=[0, 0, 0, 3, 0, 0, 0, 0, 0, 0.0], metadata=meta, timestamp=1_000_000)]
    >>> out = run_node(PeakDetector, {"height": 0.5, "refractory": 0.3}, frames)
    >>> [f.payload["x"].tolist() for f in out]   # the peak at 0.1 s loses to the larger one at 0.3 s
    [[300000.0], [1300000.0]]
    >>> [(e.label, e.time, e.value, e.sample) for e in out[1].events]
    [('peak', 1300000, 3.0, 0)]
    >>> x = [0, 4, 0, 0, 0, 0, 0, 0, 0, 0] + [0, 100, 0, 0, 0, 40, 0, 0, 0, 0] + [0, 0, 1, 0] * 5
    >>> out = run_node(PeakDetector, {"relative_height": 0.3, "amplitude_window": 1.0},
    ...                [make_frame(x=x, metadata=meta, timestamp=0)])
    >>> out[0].payload["x"].tolist()   # 0-1 s: no estimate; 1-2 s: >= 0.3 * 4; then 0.3 * 52, 0.3 * 4
    [1100000.0, 1500000.0]
    """

    class Config(NodeConfig):
        height: float = Field(0.0, description="Minimum peak value (absolute floor).")
        refractory: float = Field(0.0, ge=0, description="Seconds: minimum distance between peaks.")
        relative_height: float | None = Field(
            None, gt=0, le=1, description="Adaptive threshold: a peak must also reach this "
            "fraction of the running amplitude (median of recent block maxima). None: off.")
        amplitude_window: float = Field(1.0, gt=0, le=3600,
                                        description="Seconds per block of the amplitude estimate.")
        amplitude_blocks: int = Field(8, ge=1, le=10_000,
                                      description="Blocks whose maxima the amplitude is the median of.")
        warmup: float = Field(0.0, ge=0, le=86_400,
                              description="Seconds at the start ignored (no peaks, no amplitude).")
        label: str = Field("peak", min_length=1, description="Label of the Events emitted.")
        sample_rate: float | None = Field(None, gt=0, le=1e9, description="Hz; default: metadata.")

    def setup(self, n_channels: int, fs: float) -> None:
        c = self.config
        self._tail = np.zeros((n_channels, 0))  # last two samples (fewer at the start)
        self._pending: list[tuple[int, float, float, int] | None] = [None] * n_channels
        self._last_event = [-(1 << 62)] * n_channels
        self._r = max(1, round(c.refractory * fs))
        self._warm = round(c.warmup * fs)  # global index of the first sample that counts
        self._block = max(1, round(c.amplitude_window * fs))
        # adaptive threshold state: maxima of complete blocks, running max of the current one,
        # and the amplitude in force for each recent block index (only blocks a candidate of
        # the current frame can still fall into are kept)
        self._maxima: deque[np.ndarray] = deque(maxlen=c.amplitude_blocks)
        self._cur_max = np.full(n_channels, -np.inf)
        self._amp: dict[int, np.ndarray] = {}

    def _track_amplitude(self, x: np.ndarray) -> None:
        """Feed this frame's samples (global ``self._n`` on) into the block maxima."""
        start = max(self._n, self._warm)
        end = self._n + x.shape[1]
        b = self._block
        while start < end:
            k = (start - self._warm) // b
            stop = min(end, self._warm + (k + 1) * b)
            seg = x[:, start - self._n:stop - self._n]
            self._cur_max = np.fmax(self._cur_max, np.fmax.reduce(seg, axis=1))  # NaN-tolerant
            if stop == self._warm + (k + 1) * b:  # block k complete: amplitude of block k+1
                self._maxima.append(self._cur_max)
                self._cur_max = np.full(x.shape[0], -np.inf)
                hist = np.stack(self._maxima)
                hist[~np.isfinite(hist)] = np.nan
                with warnings.catch_warnings():  # a channel that was all NaN: no estimate
                    warnings.simplefilter("ignore", RuntimeWarning)
                    self._amp[k + 1] = np.nanmedian(hist, axis=0)
            start = stop
        first = (self._n - 2 - self._warm) // b  # earliest block a later candidate can be in
        for k in [k for k in self._amp if k < first]:
            del self._amp[k]

    def process(self, frame: DataFrame) -> DataFrame:
        x, fs = self.begin(frame)
        c = self.config
        ext = np.concatenate([self._tail, x], axis=1)
        base = self._n - self._tail.shape[1]  # global index of ext[:, 0]
        mid = ext[:, 1:-1]
        cand = (mid > ext[:, :-2]) & (mid >= ext[:, 2:]) & (mid >= c.height)
        if self._warm > base + 1:
            cand[:, :self._warm - base - 1] = False
        last_evaluated = base + ext.shape[1] - 2
        rows, cols = np.nonzero(cand)
        times: list[list[float]] = [[] for _ in range(x.shape[0])]
        r = self._r
        rel = c.relative_height
        if rel is not None:
            self._track_amplitude(x)

        def stamp(g: int) -> float:
            return frame.timestamp + (g - self._n) * 1e6 / fs

        def event_time(g: int) -> int:  # the sample's time as the brief's rule: int µs
            return frame.timestamp + round((g - self._n) * 1e6 / fs)

        found: list[Event] = []
        label = c.label

        def report(i: int, p: tuple[int, float, float, int]) -> None:
            found.append(Event(p[3], label, p[1], sample=len(times[i])))
            times[i].append(p[2])

        for i, k in zip(rows.tolist(), cols.tolist()):
            g, v = base + 1 + k, float(mid[i, k])
            if rel is not None:
                amp = self._amp.get((g - self._warm) // self._block)
                if amp is None or not v >= rel * amp[i]:  # no estimate yet (or NaN): no peak
                    continue
            p = self._pending[i]
            if p is not None and g - p[0] >= r:
                report(i, p)
                self._last_event[i] = p[0]
                p = self._pending[i] = None
            if g - self._last_event[i] < r:
                continue
            if p is None or v > p[1]:
                self._pending[i] = (g, v, stamp(g), event_time(g))
        for i, p in enumerate(self._pending):
            if p is not None and last_evaluated - p[0] >= r:
                report(i, p)
                self._last_event[i] = p[0]
                self._pending[i] = None
        self._tail = ext[:, -2:]
        self._n += x.shape[1]
        return self.events_frame(frame, times, found)


@register_node
class RateEstimator(ProcessingNode):
    """Event rate from event frames: 60 / mean interval of the last N events (beats per minute).

    Input: event frames (times in µs, see the module docs). Output per input frame: one sample
    per channel (same names) with the rate from the last ``intervals`` intervals (mean or
    median), NaN until two events have been seen; the estimate holds between events.
    ``metadata["unit"]`` is ``"bpm"`` or ``"Hz"``.

    >>> from streamlab.testing import run_node, make_frame
    >>> ev = {"events": "timestamp_us"}
    >>> out = run_node(RateEstimator, {}, [make_frame(x=[0.0, 500_000.0], metadata=ev),
    ...                                    make_frame(x=[1_000_000.0], metadata=ev)])
    >>> [f.payload["x"].tolist() for f in out]
    [[120.0], [120.0]]
    """

    class Config(NodeConfig):
        intervals: int = Field(8, ge=1, le=10_000, description="Intervals averaged.")
        average: Literal["mean", "median"] = Field("mean", description="How intervals are averaged.")
        unit: Literal["bpm", "Hz"] = Field("bpm", description="Events per minute or per second.")

    def on_create(self, config: Any) -> None:
        self.config = config
        self._times: dict[str, deque[float]] = {}
        self._scale = 60e6 if config.unit == "bpm" else 1e6
        self._meta: tuple[Any, Any] | None = None

    def process(self, frame: DataFrame) -> DataFrame:
        if frame.metadata.get("events") != _EVENTS:
            raise NodeError(self.context.node_id, "RateEstimator needs event frames "
                            "(metadata['events'] == 'timestamp_us', e.g. from PeakDetector), got "
                            f"metadata {dict(frame.metadata)}")
        rates = {}
        for name, times in frame.payload.items():
            q = self._times.get(name)
            if q is None:
                q = self._times[name] = deque(maxlen=self.config.intervals + 1)
            q.extend(times.tolist())
            if len(q) < 2:
                rates[name] = [math.nan]
                continue
            d = np.diff(np.fromiter(q, float, len(q)))
            mean = float(np.median(d)) if self.config.average == "median" else float(d.mean())
            rates[name] = [self._scale / mean if mean > 0 else math.nan]
        if self._meta is None or self._meta[0] is not frame.metadata:
            meta = {k: v for k, v in frame.metadata.items() if k != "events"}
            meta["unit"] = self.config.unit
            self._meta = (frame.metadata, MappingProxyType(meta))
        return DataFrame(frame.timestamp, frame.sequence_id, rates, self._meta[1])
