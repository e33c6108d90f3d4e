"""Windows and spectra: Window (rechunk with overlap), FFT, WelchPSD, BandPower, Spectrogram.

Layout of spectral frames (FFT, WelchPSD, Spectrogram): one channel per input channel, same
names, whose samples are the frequency bins ``0, df, 2*df, ...`` up to Nyquist, with
``df = metadata["frequency_resolution"]`` (Hz, as text). Such frames carry
``metadata["domain"] = "frequency"``, ``"spectrum"`` (what the values are), ``"n_fft"`` and
``"signal_sample_rate"`` (the time-domain rate); ``"sample_rate"`` is removed, so a
time-domain node placed after a spectrum fails clearly instead of misreading bins as samples.

BandPower emits one sample per input frame per (channel, band): channels
``"<channel>_<band>"`` in channel-major order (every band of the first channel, then of the
second, ...), with ``metadata["sample_rate"]`` the rate of those values: the input rate divided
by ``metadata["window_hop"]`` (written by Window) or else by the frame length.

Window (and Spectrogram, which windows internally) rechunks a stream into blocks of ``size``
samples every ``hop`` samples, independent of the input frame sizes; each output frame's
timestamp is that of its first sample (from the input frame holding it plus the offset at the
sample rate). Channels must share a length; a NodeError otherwise.

**Events.** Window puts an event on every window whose span contains its sample, at its index
within the window; Spectrogram on every segment containing it, at sample 0 (one spectral frame
per time bin). With overlap, one event can leave on several outputs: these are *copies* (same
time, label, value), and the event is settled ``carried`` once, when the last window that can
hold it has been emitted. An event in a gap between windows (``hop > size``) or after the last
complete window when the stream stops is settled ``out_of_range``. FFT, WelchPSD and BandPower
turn one frame into one output whose samples are not time: its events go on sample 0.
"""

from __future__ import annotations

import json
import math
from collections import deque
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from streamlab.errors import NodeError
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.nodes.filters import frame_sample_rate, scipy_signal
from streamlab.registry import register_node

__all__ = ["Rechunker", "Window", "FFT", "WelchPSD", "BandPower", "Spectrogram", "DEFAULT_BANDS",
           "check_bands"]

DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}

WindowSpec = str | list[str | float]
_TUKEY: list[str | float] = ["tukey", 0.25]  # typed here: inline, the list infers list[object]
def check_bands(cls: type, bands: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Validator of a ``bands`` setting: at least one band, each ``0 <= low < high < inf``."""
    if not bands:
        raise ValueError("bands must name at least one band")
    for name, (lo, hi) in bands.items():
        if not (math.isfinite(hi) and 0 <= lo < hi):
            raise ValueError(f"band {name!r}: need 0 <= low < high (finite), got [{lo}, {hi}]")
    return bands


_SAMPLE_RATE = Field(None, gt=0, le=1e9,
                     description="Sample rate in Hz; default: the frames' metadata['sample_rate'].")


def _window_arg(spec: WindowSpec) -> Any:
    return spec if isinstance(spec, str) else tuple(spec)


class Rechunker:
    """Cut a stream of channels x samples blocks into windows of ``size`` every ``hop`` samples.

    ``push(block, timestamp, sample_rate)`` returns ``[(window, first_sample_timestamp)]``.
    Holds at most ``size - 1`` (or, while skipping with hop > size, zero) pending samples.
    """

    def __init__(self, size: int, hop: int, n_channels: int) -> None:
        self.size, self.hop = size, hop
        self.buf = np.zeros((n_channels, 0))
        self.buf_start = 0  # global index of buf[:, 0]
        self.next = 0  # global index of the next window's first sample
        self.n = 0  # samples received
        self.anchors: deque[tuple[int, int]] = deque()  # (first global index, timestamp) of frames

    def push(self, x: np.ndarray, timestamp: int, fs: float) -> list[tuple[np.ndarray, int]]:
        start = self.n
        self.n += x.shape[1]
        self.anchors.append((start, timestamp))
        buf = np.concatenate([self.buf, x], axis=1) if self.buf.shape[1] else x
        out = []
        size, hop = self.size, self.hop
        while self.next + size <= self.n:
            i = self.next - self.buf_start
            out.append((buf[:, i:i + size], self._stamp(self.next, fs)))
            self.next += hop
        keep = min(self.next, self.n)
        self.buf, self.buf_start = buf[:, keep - self.buf_start:], keep
        while len(self.anchors) > 1 and self.anchors[1][0] <= keep:
            self.anchors.popleft()
        return out

    def _stamp(self, g: int, fs: float) -> int:
        first, ts = self.anchors[0]
        for a_first, a_ts in self.anchors:
            if a_first > g:
                break
            first, ts = a_first, a_ts
        return ts + round((g - first) * 1e6 / fs)


class _WindowEvents:
    """Events waiting for the windows (``size`` samples every ``hop``) that contain them.

    Each entry is ``[global sample, event, copies emitted]``; an entry is settled once, when
    no later window can contain it: ``carried`` if it left on at least one window, else
    ``out_of_range``.
    """

    def __init__(self, size: int, at_zero: bool) -> None:
        self.size, self.at_zero = size, at_zero
        self.held: list[list[Any]] = []

    def add(self, events: tuple[Event, ...], first: int) -> None:
        self.held.extend([first + e.sample, e, 0] for e in events)

    def take(self, start: int) -> list[Event]:
        """Copies of the held events inside the window starting at global sample ``start``."""
        out = []
        end = start + self.size
        for h in self.held:
            if start <= h[0] < end:
                out.append(h[1].at(0 if self.at_zero else h[0] - start))
                h[2] += 1
        return out

    def settle(self, node: ProcessingNode, next_start: int | None) -> None:
        """Settle events no window starting at ``next_start`` or later can hold (None: all)."""
        done = [h for h in self.held if next_start is None or h[0] < next_start]
        if not done:
            return
        self.held = [h for h in self.held if next_start is not None and h[0] >= next_start]
        carried = sum(1 for h in done if h[2])
        node.context.settle_events("carried", carried)
        node.context.settle_events("out_of_range", len(done) - carried)


def _events_at_zero(node: ProcessingNode, frame: DataFrame, out: DataFrame) -> DataFrame:
    """``out`` (one output for ``frame``, samples not in time) with frame's events on sample 0."""
    if not frame.events:
        return out
    node.context.settle_events("carried", len(frame.events))
    return out.with_events([e.at(0) for e in frame.events])


class _Blocks(ProcessingNode):
    """Shared: sample rate, equal-length check, metadata caches."""

    #: outputs do not share the input's sample positions: events are re-positioned here
    handles_events = True

    def on_create(self, config: Any) -> None:
        self.config = config
        self.signal = scipy_signal()
        self._meta: tuple[Any, Any] | None = None

    def block_of(self, frame: DataFrame) -> np.ndarray:
        try:
            return frame.block()
        except ValueError as exc:
            raise NodeError(self.context.node_id, f"{type(self).__name__}: {exc}") from None

    def spectral_meta(self, frame: DataFrame, fs: float, n_fft: int, kind: str) -> Any:
        """Metadata of a spectral frame (cached while the input metadata object is the same)."""
        key = (frame.metadata, fs, n_fft)
        if self._meta is None or self._meta[0] != key:
            meta = {k: v for k, v in frame.metadata.items() if k != "sample_rate"}
            meta.update(domain="frequency", spectrum=kind, n_fft=str(n_fft),
                        frequency_resolution=repr(fs / n_fft), signal_sample_rate=repr(fs))
            self._meta = (key, MappingProxyType(meta))
        return self._meta[1]


@register_node
class Window(_Blocks):
    """Rechunk into windows of ``size`` samples every ``hop`` samples (overlap = size - hop).

    Independent of input frame sizes. Each window is one output frame stamped with its first
    sample's time; sequence ids count windows from 0. Adds ``metadata["window_size"]`` and
    ``["window_hop"]``. ``hop > size`` skips samples between windows. Events go on every window
    that contains them, at their index within it (copies when windows overlap; module docs).

    >>> from streamlab.testing import run_node, make_frame
    >>> meta = {"sample_rate": "1000.0"}
    >>> out = run_node(Window, {"size": 4, "hop": 2},
    ...                [make_frame(x=[0.0, 1, 2, 3, 4], metadata=meta),
    ...                 make_frame(x=[5.0, 6, 7], timestamp=5000, metadata=meta)])
    >>> [(f.timestamp, f.payload["x"].tolist()) for f in out]
    [(0, [0.0, 1.0, 2.0, 3.0]), (2000, [2.0, 3.0, 4.0, 5.0]), (4000, [4.0, 5.0, 6.0, 7.0])]
    """

    class Config(NodeConfig):
        size: int = Field(..., ge=1, le=10_000_000, description="Samples per window.")
        hop: int | None = Field(None, ge=1, le=10_000_000,
                                description="Samples between window starts (default: size).")
        sample_rate: float | None = _SAMPLE_RATE

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self._hop = config.hop or config.size
        self._chunker: Rechunker | None = None
        self._names: tuple[str, ...] | None = None
        self._seq = 0
        self._events = _WindowEvents(config.size, at_zero=False)

    def process(self, frame: DataFrame) -> list[DataFrame] | None:
        fs = frame_sample_rate(self, frame, self.config.sample_rate)
        x = self.block_of(frame)
        if self._chunker is None:
            self._names = frame.channels
            self._chunker = Rechunker(self.config.size, self._hop, len(self._names))
        elif frame.channels != self._names:
            raise NodeError(self.context.node_id, f"Window: channels changed mid-stream from "
                            f"{list(self._names or ())} to {list(frame.channels)}")
        first = self._chunker.next  # global start of the first window this push may emit
        if frame.events:
            self._events.add(frame.events, self._chunker.n)
        windows = self._chunker.push(x, frame.timestamp, fs)
        if not windows:
            self._events.settle(self, self._chunker.next)
            return None
        if self._meta is None or self._meta[0] is not frame.metadata:
            self._meta = (frame.metadata, MappingProxyType({
                **frame.metadata, "window_size": str(self.config.size),
                "window_hop": str(self._hop)}))
        meta = self._meta[1]
        out = []
        for i, (block, ts) in enumerate(windows):
            f = DataFrame.from_block(self._names, block, timestamp=ts,
                                     sequence_id=self._seq, metadata=meta)
            if self._events.held:
                evs = self._events.take(first + i * self._hop)
                f = f.with_events(evs) if evs else f
            out.append(f)
            self._seq += 1
        self._events.settle(self, self._chunker.next)
        return out

    def on_stop(self) -> None:
        """Events no complete window held (the stream ended first): ``out_of_range``."""
        self._events.settle(self, None)


@register_node
class FFT(_Blocks):
    """Spectrum of each frame: one ``rfft`` of the windowed block (magnitude or power).

    Values are ``|rfft(w * x, n_fft)|`` (``"magnitude"``) or its square (``"power"``), with ``w``
    from ``scipy.signal.get_window(window, n, fftbins=True)``. ``normalize`` scales magnitudes
    to single-sided amplitude (``2/sum(w)``, DC and Nyquist ``1/sum(w)``), so a sine of
    amplitude A reads A at its bin (A**2 for power). See the module docs for the layout.

    >>> from streamlab.testing import run_node, make_frame
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 10 * np.arange(100) / 100)
    >>> out = run_node(FFT, {"window": "boxcar", "normalize": True},
    ...                [make_frame(x=x, metadata={"sample_rate": "100.0"})])
    >>> spec = out[0].payload["x"]
    >>> int(spec.argmax()), round(float(spec.max()), 6), out[0].metadata["frequency_resolution"]
    (10, 1.0, '1.0')
    """

    class Config(NodeConfig):
        window: WindowSpec = Field("hann", description="Window (scipy.signal.get_window spec).")
        output: Literal["magnitude", "power"] = Field("magnitude", description="Values per bin.")
        normalize: bool = Field(False, description="Scale to single-sided amplitude (see above).")
        n_fft: int | None = Field(None, ge=1, le=1 << 26,
                                  description="FFT length (zero-padded; default: frame length).")
        sample_rate: float | None = _SAMPLE_RATE

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self._windows: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def _window(self, n: int, n_fft: int) -> tuple[np.ndarray, np.ndarray | None]:
        key = n * 100_003 + n_fft
        if key not in self._windows:
            w = self.signal.get_window(_window_arg(self.config.window), n, fftbins=True)
            scale = None
            if self.config.normalize:
                scale = np.full(n_fft // 2 + 1, 2.0 / w.sum())
                scale[0] /= 2
                if n_fft % 2 == 0:
                    scale[-1] /= 2
            self._windows[key] = (w, scale)
        return self._windows[key]

    def process(self, frame: DataFrame) -> DataFrame:
        fs = frame_sample_rate(self, frame, self.config.sample_rate)
        x = self.block_of(frame)
        n = x.shape[1]
        if n == 0:
            raise NodeError(self.context.node_id, "FFT: frame has no samples")
        n_fft = self.config.n_fft or n
        if n_fft < n:
            raise NodeError(self.context.node_id, f"FFT: n_fft {n_fft} is shorter than the frame ({n})")
        w, scale = self._window(n, n_fft)
        spec = np.abs(np.fft.rfft(x * w, n=n_fft, axis=-1))
        if scale is not None:
            spec *= scale
        if self.config.output == "power":
            spec *= spec
        out = frame.with_block(spec)
        return _events_at_zero(self, frame, DataFrame(
            out.timestamp, out.sequence_id, out.payload,
            self.spectral_meta(frame, fs, n_fft, self.config.output)))


@register_node
class WelchPSD(_Blocks):
    """Welch power spectral density of each frame (``scipy.signal.welch`` along the samples).

    Equals ``welch(block, fs, window, nperseg=min(nperseg, n), noverlap, detrend, scaling,
    average, axis=-1)[1]`` per frame (``nperseg`` default 256). Put a Window before it to get
    spectra of fixed-length, overlapping stretches of a stream. Layout: see the module docs.

    >>> from streamlab.testing import run_node, make_frame
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 20 * np.arange(1000) / 1000)
    >>> out = run_node(WelchPSD, {"nperseg": 100}, [make_frame(x=x, metadata={"sample_rate": "1000.0"})])
    >>> len(out[0].payload["x"]), int(out[0].payload["x"].argmax()) * 10   # peak bin in Hz
    (51, 20)
    """

    class Config(NodeConfig):
        nperseg: int = Field(256, ge=1, le=1 << 24, description="Segment length (capped at the frame length).")
        noverlap: int | None = Field(None, ge=0, description="Overlap (default nperseg // 2).")
        window: WindowSpec = Field("hann", description="Window (scipy.signal.get_window spec).")
        detrend: Literal["constant", "linear", "none"] = Field("constant", description="Per segment.")
        scaling: Literal["density", "spectrum"] = Field(
            "density", description="'density': V**2/Hz; 'spectrum': V**2.")
        average: Literal["mean", "median"] = Field("mean", description="How segments are averaged.")
        sample_rate: float | None = _SAMPLE_RATE

        @model_validator(mode="after")
        def _overlap(self) -> WelchPSD.Config:
            if self.noverlap is not None and self.noverlap >= self.nperseg:
                raise ValueError(f"noverlap must be below nperseg (got {self.noverlap}, "
                                 f"nperseg={self.nperseg})")
            return self

    def process(self, frame: DataFrame) -> DataFrame:
        c = self.config
        fs = frame_sample_rate(self, frame, c.sample_rate)
        x = self.block_of(frame)
        n = x.shape[1]
        if n == 0:
            raise NodeError(self.context.node_id, "WelchPSD: frame has no samples")
        nperseg = min(c.nperseg, n)
        noverlap = None if c.noverlap is None else min(c.noverlap, nperseg - 1)
        _, psd = self.signal.welch(x, fs, window=_window_arg(c.window), nperseg=nperseg,
                                   noverlap=noverlap, detrend=False if c.detrend == "none"
                                   else c.detrend, scaling=c.scaling, average=c.average, axis=-1)
        out = frame.with_block(np.ascontiguousarray(psd))
        kind = "psd" if c.scaling == "density" else "power"
        return _events_at_zero(self, frame, DataFrame(out.timestamp, out.sequence_id, out.payload,
                                                      self.spectral_meta(frame, fs, nperseg, kind)))


@register_node
class BandPower(_Blocks):
    """Power in named frequency bands per channel (delta, theta, alpha, beta, gamma by default).

    Per frame: PSD equal to ``scipy.signal.welch(x, fs, window, nperseg, axis=-1)`` (``nperseg``
    capped at the frame length; constant detrend, 50 % overlap, mean) or to
    ``scipy.signal.periodogram(x, fs, window, detrend="constant")``, computed in a few numpy
    calls on the block; then band power = sum of PSD bins with ``low <= f < high`` times
    the bin width. ``relative`` divides by the power in ``[lowest low, highest high)``. Output
    channels ``"<channel>_<band>"``, one sample each (see the module docs); a band with no bins
    at the frame's resolution is a NodeError.

    >>> from streamlab.testing import run_node, make_frame
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 10 * np.arange(500) / 250)
    >>> out = run_node(BandPower, {"relative": True, "nperseg": 250},
    ...                [make_frame(eeg=x, metadata={"sample_rate": "250.0"})])
    >>> out[0].channels[:2], round(float(out[0].payload["eeg_alpha"][0]), 3)
    (('eeg_delta', 'eeg_theta'), 1.0)
    """

    class Config(NodeConfig):
        bands: dict[str, tuple[float, float]] = Field(
            default_factory=lambda: dict(DEFAULT_BANDS),
            description="Band name -> [low, high] in Hz (low inclusive, high exclusive).")
        method: Literal["welch", "periodogram"] = Field("welch", description="PSD estimate.")
        nperseg: int = Field(256, ge=1, le=1 << 24, description="Welch segment length (capped at the frame length).")
        window: WindowSpec = Field("hann", description="Window (scipy.signal.get_window spec).")
        relative: bool = Field(False, description="Divide by the power over all bands' span.")
        sample_rate: float | None = _SAMPLE_RATE

        _bands = field_validator("bands")(check_bands)

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self._plan: tuple[Any, ...] | None = None
        self._win: tuple[Any, ...] | None = None
        bands = config.bands
        self._span = (min(lo for lo, _ in bands.values()), max(hi for _, hi in bands.values()))

    def _masks(self, freqs: np.ndarray, fs: float) -> np.ndarray:
        rows = [(freqs >= self._span[0]) & (freqs < self._span[1])] if self.config.relative else []
        for name, (lo, hi) in self.config.bands.items():
            m = (freqs >= lo) & (freqs < hi)
            if not m.any():
                raise NodeError(self.context.node_id,
                                f"BandPower: band {name!r} [{lo}, {hi}] Hz has no frequency bins "
                                f"(resolution {freqs[1] - freqs[0] if len(freqs) > 1 else fs} Hz, "
                                f"sample_rate {fs})")
            rows.append(m)
        return np.array(rows, dtype=float).T  # bins x (span?, bands)

    def _psd(self, x: np.ndarray, fs: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
        """``scipy.signal.welch(x, fs, window, nperseg, axis=-1)`` (periodogram when nperseg = n),
        in a few numpy calls: constant detrend, mean over segments overlapping by nperseg // 2."""
        key = (nperseg, fs)
        if self._win is None or self._win[0] != key:
            w = self.signal.get_window(_window_arg(self.config.window), nperseg)
            scale = np.full(nperseg // 2 + 1, 1.0 / (fs * (w * w).sum()))
            scale[1:(None if nperseg % 2 else -1)] *= 2
            self._win = (key, w, scale, np.fft.rfftfreq(nperseg, 1.0 / fs))
        _, w, scale, freqs = self._win
        step = nperseg - (nperseg // 2 if self.config.method == "welch" else 0)
        if x.shape[1] == nperseg:  # one segment: skip the strided view and the mean over segments
            seg = x - x.mean(axis=-1, keepdims=True)
            spec = np.fft.rfft(seg * w, axis=-1)
            return freqs, (spec.real ** 2 + spec.imag ** 2) * scale
        segs = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=-1)[:, ::step]
        segs = segs - segs.mean(axis=-1, keepdims=True)
        spec = np.fft.rfft(segs * w, axis=-1)
        psd = (spec.real ** 2 + spec.imag ** 2).mean(axis=1) * scale
        return freqs, psd

    def process(self, frame: DataFrame) -> DataFrame:
        c = self.config
        fs = frame_sample_rate(self, frame, c.sample_rate)
        x = self.block_of(frame)
        n = x.shape[1]
        if n == 0:
            raise NodeError(self.context.node_id, "BandPower: frame has no samples")
        freqs, psd = self._psd(x, fs, min(c.nperseg, n) if c.method == "welch" else n)
        key = (n, fs, frame.channels, frame.metadata)
        if self._plan is None or self._plan[0] != key:
            names = [f"{ch}_{b}" for ch in frame.channels for b in c.bands]
            hop = float(frame.metadata.get("window_hop", n))
            meta = dict(frame.metadata, sample_rate=repr(fs / hop), bands=json.dumps(c.bands))
            self._plan = (key, self._masks(freqs, fs), names, MappingProxyType(meta))
        _, masks, names, meta = self._plan
        power = psd @ masks * (freqs[1] - freqs[0] if len(freqs) > 1 else fs)
        if c.relative:
            with np.errstate(divide="ignore", invalid="ignore"):
                power = power[:, 1:] / power[:, :1]
        block = power.reshape(-1, 1)
        return _events_at_zero(self, frame, DataFrame(
            frame.timestamp, frame.sequence_id, frame.with_block(block, names).payload, meta))


@register_node
class Spectrogram(_Blocks):
    """Spectrogram frames: PSD of segments of ``nperseg`` samples every ``nperseg - noverlap``.

    Windows the stream like Window (independent of input frame sizes); each segment becomes
    one spectral frame stamped with its first sample's time. Frame j equals column j of
    ``scipy.signal.spectrogram(x, fs, window, nperseg, noverlap, detrend=detrend,
    scaling=scaling, mode="psd")`` over the whole signal (scipy stamps segment centres).

    >>> from streamlab.testing import run_node, make_frame
    >>> out = run_node(Spectrogram, {"nperseg": 8, "noverlap": 4},
    ...                [make_frame(x=[1.0] * 20, metadata={"sample_rate": "8.0"})])
    >>> len(out), len(out[0].payload["x"]), [f.timestamp for f in out]
    (4, 5, [0, 500000, 1000000, 1500000])
    """

    class Config(NodeConfig):
        nperseg: int = Field(256, ge=2, le=1 << 24, description="Samples per segment.")
        noverlap: int | None = Field(None, ge=0, description="Overlap (default nperseg // 8, as scipy).")
        window: WindowSpec = Field(_TUKEY, description="Window (scipy.signal.get_window spec).")
        detrend: Literal["constant", "none"] = Field("constant", description="Per segment.")
        scaling: Literal["density", "spectrum"] = Field("density", description="V**2/Hz or V**2.")
        sample_rate: float | None = _SAMPLE_RATE

        @model_validator(mode="after")
        def _overlap(self) -> Spectrogram.Config:
            if self.noverlap is not None and self.noverlap >= self.nperseg:
                raise ValueError(f"noverlap must be below nperseg (got {self.noverlap}, "
                                 f"nperseg={self.nperseg})")
            return self

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self._noverlap = config.nperseg // 8 if config.noverlap is None else config.noverlap
        self._chunker: Rechunker | None = None
        self._seq = 0
        self._fs: float | None = None
        self._events = _WindowEvents(config.nperseg, at_zero=True)

    def _design(self, fs: float) -> None:
        c = self.config
        w = self.signal.get_window(_window_arg(c.window), c.nperseg)
        scale = 1.0 / (fs * (w * w).sum()) if c.scaling == "density" else 1.0 / w.sum() ** 2
        self._scale = np.full(c.nperseg // 2 + 1, scale)
        self._scale[1:(None if c.nperseg % 2 else -1)] *= 2
        self._w, self._fs = w, fs

    def process(self, frame: DataFrame) -> list[DataFrame] | None:
        c = self.config
        fs = frame_sample_rate(self, frame, c.sample_rate)
        x = self.block_of(frame)
        if self._chunker is None:
            self._names = frame.channels
            self._chunker = Rechunker(c.nperseg, c.nperseg - self._noverlap, len(self._names))
            self._design(fs)
        elif frame.channels != self._names or fs != self._fs:
            raise NodeError(self.context.node_id, "Spectrogram: channels or sample_rate changed "
                            f"mid-stream ({list(self._names)} @ {self._fs} -> "
                            f"{list(frame.channels)} @ {fs})")
        first = self._chunker.next
        if frame.events:
            self._events.add(frame.events, self._chunker.n)
        segments = self._chunker.push(x, frame.timestamp, fs)
        if not segments:
            self._events.settle(self, self._chunker.next)
            return None
        seg = np.stack([s for s, _ in segments])  # segments x channels x nperseg
        if c.detrend == "constant":
            seg = seg - seg.mean(axis=-1, keepdims=True)
        spec = np.fft.rfft(seg * self._w, axis=-1)
        psd = (spec.real ** 2 + spec.imag ** 2) * self._scale
        meta = self.spectral_meta(frame, fs, c.nperseg, "psd" if c.scaling == "density" else "power")
        out = []
        hop = c.nperseg - self._noverlap
        for i, (_, ts) in enumerate(segments):
            f = DataFrame.from_block(self._names, psd[i], timestamp=ts,
                                     sequence_id=self._seq, metadata=meta)
            if self._events.held:
                evs = self._events.take(first + i * hop)
                f = f.with_events(evs) if evs else f
            out.append(f)
            self._seq += 1
        self._events.settle(self, self._chunker.next)
        return out

    def on_stop(self) -> None:
        """Events no complete segment held (the stream ended first): ``out_of_range``."""
        self._events.settle(self, None)
