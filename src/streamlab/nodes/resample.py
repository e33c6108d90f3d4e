"""Streaming resampling: Decimate (anti-alias filter, keep every q-th sample) and Resample
(polyphase rational up/down).

Both carry their filter state and sample phase across frames, so the output does not depend on
how the input is cut into frames. The exact relations to scipy's batch functions, for an input
``x`` of ``N`` samples per channel fed in any chunks (tested with hypothesis):

* ``Decimate(q, ftype="iir", n)`` emits ``scipy.signal.decimate(x, q, n, ftype="iir",
  zero_phase=False)``, i.e. ``sosfilt(cheby1(n, 0.05, 0.8/q, output="sos"), x)[::q]``: output
  sample j is input sample ``j*q`` filtered. ``ceil(N/q)`` samples in total.
* ``Decimate(q, ftype="fir", n)`` emits ``scipy.signal.decimate(x, q, n, ftype="fir",
  zero_phase=False)`` = ``lfilter(firwin(n+1, 1/q, window="hamming"), 1, x)[::q]``.
* ``Resample(up, down)`` emits ``upfirdn(h, x, up, down)[:ceil(N*up/down)]``: every output sample
  whose (upsampled) position ``k*down`` lies before the end of the input received so far, and none
  of the tail. ``h`` is resample_poly's filter (``firwin(2*half_len+1, 1/max(up, down),
  window) * up`` with ``half_len = 10*max(up, down)``) preceded by the same
  ``down - half_len % down`` zeros resample_poly adds, so that
  ``stream[delay + k] == resample_poly(x, up, down, window=window)[k]`` for every ``k`` where the
  stream has a sample (``delay = (half_len + down - half_len % down) // down`` output samples,
  the filter's group delay; :attr:`Resample.delay`). Only resample_poly's last ``delay`` samples
  (which assume zeros after the end of the signal) are never emitted.

Output frames carry ``metadata["sample_rate"]`` = the new rate and the timestamp of their
first sample: the input frame's timestamp plus the offset (in input samples, converted with the
input rate) of that sample's position ``k*down/up``. The filter delay is not subtracted from
timestamps. An input frame that completes no output sample produces no output frame. Channels
must share a length (a NodeError otherwise); a change of channels or of the input sample rate
mid-stream is a NodeError.

**Events** (sample-exact, whatever the frame sizes): output sample ``k`` sits at input position
``k*down/up`` (the position its timestamp is computed from), so an event on global input sample
``g`` lands on output sample ``k = ceil(g*up/down)``: the first output sample whose time is at
or after the event's sample time (Decimate: ``ceil(g/q)``). The event keeps its ``time``; only
``sample`` changes. An event whose output sample is not produced yet (the input frame ended
before it) is held and leaves on the later frame that produces it (settled ``carried`` then);
events still held when the node stops are settled ``out_of_range`` (the stream ended before
their output sample existed). The filter delay is not applied to positions, as not to
timestamps.
"""

from __future__ import annotations

import math
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamlab.errors import NodeError
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.nodes.filters import SosStream, frame_sample_rate, scipy_signal
from streamlab.registry import register_node

__all__ = ["UpFirDnStream", "Decimate", "Resample", "resample_poly_filter"]

_KAISER: list[str | float] = ["kaiser", 5.0]  # typed here: inline, the list infers list[object]


class UpFirDnStream:
    """Streaming ``upfirdn(h, x, up, down)`` over the rows of 2-D blocks.

    After inputs totalling N samples, the outputs emitted so far are exactly
    ``upfirdn(h, x[:, :N], up, down)[:, :ceil(N*up/down)]``. Keeps the last
    ``ceil(len(h)/up) + down`` input samples as history; each call is one ``upfirdn`` on
    history + new block.
    """

    def __init__(self, h: np.ndarray, up: int, down: int, n_channels: int, signal: Any) -> None:
        h = np.asarray(h, dtype=float)
        if len(h) < up:  # upfirdn must reach every output position k*down < N*up
            h = np.concatenate([h, np.zeros(up - len(h))])
        self.h, self.up, self.down = h, up, down
        self.kh = -(-len(h) // up)
        self.hist = np.zeros((n_channels, 0))
        self.hist_start = 0
        self.n_in = 0
        self.n_out = 0
        self._upfirdn = signal.upfirdn

    def _floor_start(self, n: int) -> int:
        return max(0, ((n - self.kh) // self.down) * self.down)

    def block(self, x: np.ndarray) -> np.ndarray:
        up, down = self.up, self.down
        n_before = self.n_in
        self.n_in += x.shape[1]
        k_start, k_end = self.n_out, -(-self.n_in * up // down)
        s0 = self._floor_start(n_before)
        ext = np.concatenate([self.hist[:, s0 - self.hist_start:], x], axis=1)
        s1 = self._floor_start(self.n_in)
        self.hist, self.hist_start = ext[:, s1 - s0:], s1
        if k_end == k_start:
            return ext[:, :0]
        y = self._upfirdn(self.h, ext, up, down, axis=-1)
        j0 = k_start - s0 * up // down
        self.n_out = k_end
        return y[:, j0:j0 + (k_end - k_start)]


def resample_poly_filter(up: int, down: int, window: Any = ("kaiser", 5.0),
                         half_len: int | None = None) -> tuple[np.ndarray, int]:
    """resample_poly's default filter with its leading zeros, and its delay in output samples."""
    signal = scipy_signal()
    max_rate = max(up, down)
    half_len = 10 * max_rate if half_len is None else half_len
    h = signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=window) * up
    n_pre_pad = down - half_len % down
    return np.concatenate([np.zeros(n_pre_pad), h]), (half_len + n_pre_pad) // down


class _Resampler(ProcessingNode):
    """Shared frame handling: sample rate, channel layout, timestamps, metadata."""

    ratio: tuple[int, int]  # (up, down), set by start()
    #: Events are re-positioned on the output samples and may be held across frames.
    handles_events = True

    def on_create(self, config: Any) -> None:
        self.config = config
        self.signal = scipy_signal()
        self._fs: float | None = None
        self._names: tuple[str, ...] | None = None
        self._stream: Any = None
        self._n_in = 0
        self._meta_cache: tuple[Any, Any] | None = None
        self._k_out = 0  # global index of the next output sample
        # events waiting for their output sample: (global output index, event), in order
        self._held: list[tuple[int, Event]] = []

    def start(self, fs: float, n_channels: int) -> Any:
        """Design for input rate ``fs``; return the stream object. Sets ``self.ratio`` (up, down)."""
        raise NotImplementedError

    def emit(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """Output block and the input-sample offset (within x) of its first sample."""
        raise NotImplementedError

    def process(self, frame: DataFrame) -> DataFrame | None:
        fs = frame_sample_rate(self, frame, self.config.sample_rate)
        names = frame.channels
        if self._fs is None:
            self._fs, self._names = fs, names
            self._stream = self.start(fs, len(names))
            self._fs_out = fs * self.ratio[0] / self.ratio[1]
            self._rate_text = repr(float(self._fs_out))
        elif fs != self._fs or names != self._names:
            what = (f"sample_rate {self._fs} -> {fs}" if fs != self._fs
                    else f"channels {list(self._names or ())} -> {list(names)}")
            raise NodeError(self.context.node_id,
                            f"{type(self).__name__}: input changed mid-stream ({what})")
        try:
            x = frame.block()
        except ValueError as exc:
            raise NodeError(self.context.node_id, f"{type(self).__name__}: {exc}") from None
        if frame.events:
            up, down = self.ratio
            # first output sample at or after the event's input sample: ceil(g * up / down)
            self._held.extend((-(-(self._n_in + e.sample) * up // down), e) for e in frame.events)
        y, offset = self.emit(x)
        self._n_in += x.shape[1]
        k0 = self._k_out
        self._k_out += y.shape[1]
        if y.shape[1] == 0:
            return None  # held events wait for the frame that produces their sample
        ts = frame.timestamp + round(offset * 1e6 / fs)
        if self._meta_cache is None or self._meta_cache[0] is not frame.metadata:
            self._meta_cache = (frame.metadata, MappingProxyType(
                {**frame.metadata, "sample_rate": self._rate_text}))
        out = DataFrame(ts, frame.sequence_id, frame.with_block(y).payload, self._meta_cache[1])
        if self._held:
            k1 = self._k_out
            ready = [e.at(k - k0) for k, e in self._held if k < k1]
            if ready:
                self._held = [(k, e) for k, e in self._held if k >= k1]
                self.context.settle_events("carried", len(ready))
                out = out.with_events(ready)
        return out

    def on_stop(self) -> None:
        """Events still waiting for an output sample the stream never produced: out_of_range."""
        if self._held:
            self.context.logger.info("%s %r: %d event(s) after the last output sample",
                                     type(self).__name__, self.context.node_id, len(self._held))
            self.context.settle_events("out_of_range", len(self._held))
            self._held = []


@register_node
class Decimate(_Resampler):
    """Anti-alias filter then keep every q-th sample (scipy ``decimate`` with zero_phase=False).

    ``ftype="iir"``: Chebyshev I of order ``n`` (default 8), 0.05 dB ripple, cutoff 0.8/q of
    Nyquist, as sections; ``"fir"``: ``firwin(n+1, 1/q, window="hamming")`` (default n = 20*q),
    computed polyphase (only kept outputs). Output j is filtered input sample j*q, whatever the
    frame sizes; the output rate is sample_rate / q.

    >>> from streamlab.testing import run_node, make_frame
    >>> meta = {"sample_rate": "100.0"}
    >>> out = run_node(Decimate, {"q": 2, "ftype": "fir", "n": 2},
    ...                [make_frame(x=[1.0] * 5, metadata=meta), make_frame(x=[1.0] * 5, metadata=meta)])
    >>> [len(f.payload["x"]) for f in out], out[0].metadata["sample_rate"]
    ([3, 2], '50.0')
    """

    class Config(NodeConfig):
        q: int = Field(..., ge=2, le=10_000, description="Decimation factor.")
        ftype: Literal["iir", "fir"] = Field("iir", description="Anti-aliasing filter kind.")
        n: int | None = Field(None, ge=1, le=100_000,
                              description="Filter order (iir, default 8) or taps-1 (fir, default 20*q).")
        sample_rate: float | None = Field(None, gt=0, le=1e9,
                                          description="Input rate in Hz; default: metadata['sample_rate'].")

    def start(self, fs: float, n_channels: int) -> Any:
        c = self.config
        self.ratio = (1, c.q)
        if c.ftype == "iir":
            sos = self.signal.cheby1(8 if c.n is None else c.n, 0.05, 0.8 / c.q, output="sos")
            return SosStream(sos, n_channels, self.signal)
        taps = self.signal.firwin((20 * c.q if c.n is None else c.n) + 1, 1.0 / c.q,
                                  window="hamming")
        return UpFirDnStream(taps, 1, c.q, n_channels, self.signal)

    def emit(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        q = self.config.q
        first = (-self._n_in) % q
        if isinstance(self._stream, SosStream):
            return self._stream.block(x)[:, first::q], first
        return self._stream.block(x), first


@register_node
class Resample(_Resampler):
    """Polyphase rational resampling by up/down, streaming (resample_poly's filter, delayed).

    Give ``up`` and ``down`` or a ``target_rate`` (the ratio target/input is reduced to a
    fraction with denominator at most ``max_denominator``). Output equals
    ``upfirdn(h, x, up, down)`` over the whole signal, truncated to ``ceil(N*up/down)`` samples;
    it equals resample_poly's output delayed by ``delay`` samples (see the module docs).

    >>> from streamlab.testing import run_node, make_frame
    >>> meta = {"sample_rate": "100.0"}
    >>> out = run_node(Resample, {"up": 3, "down": 2}, [make_frame(x=[0.0] * 4, metadata=meta)])
    >>> len(out[0].payload["x"]), out[0].metadata["sample_rate"]
    (6, '150.0')
    """

    class Config(NodeConfig):
        up: int = Field(1, ge=1, le=10_000, description="Upsampling factor.")
        down: int = Field(1, ge=1, le=10_000, description="Downsampling factor.")
        target_rate: float | None = Field(
            None, gt=0, le=1e9, description="Output rate in Hz (instead of up/down).")
        max_denominator: int = Field(1000, ge=1, le=10_000,
                                     description="Largest up or down derived from target_rate.")
        window: str | list[str | float] = Field(
            _KAISER, description="FIR window (scipy.signal.get_window spec).")
        half_len: int | None = Field(None, ge=1, le=1_000_000,
                                     description="Filter half length (default 10*max(up, down)).")
        sample_rate: float | None = Field(None, gt=0, le=1e9,
                                          description="Input rate in Hz; default: metadata['sample_rate'].")

        @model_validator(mode="after")
        def _ratio(self) -> Resample.Config:
            if self.target_rate is not None and (self.up, self.down) != (1, 1):
                raise ValueError("give either target_rate or up/down, not both")
            if self.target_rate is None and self.up == self.down:
                raise ValueError(f"up and down are equal ({self.up}): nothing to resample")
            return self

    @property
    def delay(self) -> int:
        """Output samples by which the stream lags scipy.signal.resample_poly."""
        return self._delay

    def start(self, fs: float, n_channels: int) -> Any:
        c = self.config
        if c.target_rate is not None:
            frac = Fraction(c.target_rate / fs).limit_denominator(c.max_denominator)
            up, down = frac.numerator, frac.denominator
            if up > 10_000 or up == 0:
                raise NodeError(self.context.node_id, f"Resample: target_rate {c.target_rate} "
                                f"from {fs} Hz gives an unusable ratio {up}/{down}")
        else:
            g = math.gcd(c.up, c.down)
            up, down = c.up // g, c.down // g
        self.up, self.down, self.ratio = up, down, (up, down)
        window = c.window if isinstance(c.window, str) else tuple(c.window)
        h, self._delay = resample_poly_filter(up, down, window, c.half_len)
        return UpFirDnStream(h, up, down, n_channels, self.signal)

    def emit(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        k_start = self._stream.n_out
        y = self._stream.block(x)
        return y, k_start * self.down / self.up - self._n_in
