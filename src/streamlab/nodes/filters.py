"""Streaming filters: IIR (second-order sections), notch, FIR, moving average, DC removal.

Every filter here carries its state across frames, so a signal cut into frames of *any* size
gives the same output as the batch scipy call over the whole signal (``sosfilt`` or
``lfilter`` with zero initial state), to float precision: the tests prove it with hypothesis
over random chunk sizes. State is held per channel; when the channels share a length (always,
for block-backed payloads) one scipy call filters the whole 2-D block along ``axis=-1``.

**Initial state** (``initial_state`` on IIRFilter, NotchFilter, FIRFilter and DCRemoval):
``"zero"`` (the default) equals scipy without ``zi``: the filter assumes the signal was 0
before the first sample, so a signal with an offset (ADC counts, electrode DC, a baseline)
starts with a step, and a highpass or bandpass answers it with a start-up transient that can
be far larger than the signal and last for the filter's settling time (a detector reads it as
an event, a running amplitude estimate is inflated). ``"steady"`` starts from the steady
state for a constant input equal to each channel's first sample (``sosfilt_zi(sos) * x[0]``,
``lfilter_zi(b, a) * x[0]``, as ``scipy.signal.filtfilt`` does): no step, no transient.
**Recommendation: use ``"steady"`` for any real recording** (anything whose first sample is
not ~0); keep ``"zero"`` when you need the exact scipy-without-zi output or the signal starts
at rest (synthetic test signals).

The sample rate comes from the config's ``sample_rate`` or else from the frame's
``metadata["sample_rate"]``. With neither, the first frame fails with a NodeError naming the
node. A cutoff at or above half the sample rate is a config error (with the JSON path) when
``sample_rate`` is configured, and a NodeError on the first frame when it comes from metadata.
A sample rate that changes mid-stream, or a channel layout that changes, is a NodeError: the
state would no longer mean anything.

scipy is imported when a node is created (extra ``dsp``), not when this module is imported.
:func:`frame_sample_rate`, :func:`scipy_signal`, :class:`SosStream` and :class:`BaStream` are
shared by the other DSP modules.
"""

from __future__ import annotations

import math
from collections import deque
from types import ModuleType
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from streamlab.errors import NodeError, missing_extra
from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.registry import register_node

__all__ = [
    "FilterConfig", "StreamingFilter", "IIRFilter", "NotchFilter", "FIRFilter", "MovingAverage",
    "DCRemoval", "Detrend", "SosStream", "BaStream", "frame_sample_rate", "scipy_signal",
    "check_cutoffs",
]


def scipy_signal() -> ModuleType:
    """``scipy.signal``, or the missing-extra error (``pip install 'streamlab[dsp]'``)."""
    try:
        import scipy.signal as signal
    except ImportError as exc:  # pragma: no cover - scipy is installed in dev
        raise missing_extra("scipy", "dsp") from exc
    return signal


def frame_sample_rate(node: ProcessingNode, frame: DataFrame, configured: float | None) -> float:
    """The sample rate a node uses: ``configured``, else the frame's ``metadata["sample_rate"]``.

    Raises NodeError naming the node when neither is there or the metadata is not a positive
    finite number.
    """
    if configured is not None:
        return float(configured)
    text = frame.metadata.get("sample_rate")
    where = f"{type(node).__name__} needs a sample rate"
    if text is None:
        raise NodeError(node.context.node_id,
                        f"{where}: set 'sample_rate' in its config or send frames with "
                        f"metadata['sample_rate'] (frame {frame.sequence_id} has none)")
    try:
        fs = float(text)
    except ValueError:
        fs = math.nan
    if not (math.isfinite(fs) and fs > 0):
        raise NodeError(node.context.node_id,
                        f"{where}: metadata['sample_rate'] must be a positive number, got {text!r}")
    return fs


def check_cutoffs(cutoffs: list[float], fs: float) -> None:
    """Raise ValueError unless every cutoff is inside (0, fs/2)."""
    for c in cutoffs:
        if not c < fs / 2:
            raise ValueError(f"cutoff must be below sample_rate/2 (got {c}, sample_rate={fs})")


class SosStream:
    """Streaming ``sosfilt`` over the rows of 2-D blocks; state ``zi`` is sections x channels x 2."""

    def __init__(self, sos: np.ndarray, n_channels: int, signal: ModuleType) -> None:
        self.sos = sos
        self.zi = np.zeros((sos.shape[0], n_channels, 2))
        self._sosfilt = signal.sosfilt
        self._sosfilt_zi = signal.sosfilt_zi

    def prime(self, first: np.ndarray) -> None:
        """Set the state to the steady state for a constant input equal to ``first`` (per row)."""
        self.zi = self._sosfilt_zi(self.sos)[:, None, :] * first[None, :, None]

    def block(self, x: np.ndarray) -> np.ndarray:
        y, self.zi = self._sosfilt(self.sos, x, axis=-1, zi=self.zi)
        return y

    def row(self, i: int, x: np.ndarray) -> np.ndarray:
        y, zf = self._sosfilt(self.sos, x, zi=self.zi[:, i, :])
        self.zi[:, i, :] = zf
        return y


class BaStream:
    """Streaming ``lfilter(b, a)`` over the rows of 2-D blocks; state ``zi`` is channels x order."""

    def __init__(self, b: np.ndarray, a: np.ndarray, n_channels: int, signal: ModuleType) -> None:
        self.b = np.asarray(b, dtype=float)
        self.a = np.asarray(a, dtype=float)
        order = max(len(self.a), len(self.b)) - 1
        self.zi = np.zeros((n_channels, order))
        self._lfilter = signal.lfilter
        self._lfilter_zi = signal.lfilter_zi

    def prime(self, first: np.ndarray) -> None:
        """Set the state to the steady state for a constant input equal to ``first`` (per row)."""
        self.zi = self._lfilter_zi(self.b, self.a)[None, :] * first[:, None]

    def block(self, x: np.ndarray) -> np.ndarray:
        y, self.zi = self._lfilter(self.b, self.a, x, axis=-1, zi=self.zi)
        return y

    def row(self, i: int, x: np.ndarray) -> np.ndarray:
        y, zf = self._lfilter(self.b, self.a, x, zi=self.zi[i])
        self.zi[i] = zf
        return y


def stream_state(stream: Any) -> Any:
    """The object holding a stream's ``zi`` (a SosStream/BaStream, or the one it wraps)."""
    return getattr(stream, "mean", stream)


_SETTLE_MIN, _SETTLE_MAX = 64, 16384


def _has_state(stream: Any) -> bool:
    """The stream is one whose state a live change knows how to rebuild (this module's)."""
    return isinstance(stream, (SosStream, BaStream, _EmaResidual))


def settle_length(stream: Any) -> int:
    """Samples after which the stream's response to its past has decayed below 1e-9 (from
    its largest pole radius; FIR: its length), within [64, 16384]: the input history a live
    change runs the new coefficients over. 0 for a stream of another kind (no history)."""
    if not _has_state(stream):
        return 0
    st = stream_state(stream)
    if isinstance(st, SosStream):
        poles = np.concatenate([np.roots(sec[3:]) for sec in st.sos])
    else:
        poles = np.roots(st.a) if len(st.a) > 1 else np.zeros(0)
        if not len(poles):
            return int(min(max(len(st.b), _SETTLE_MIN), _SETTLE_MAX))
    r = float(np.max(np.abs(poles))) if len(poles) else 0.0
    if r >= 1.0:
        return _SETTLE_MAX
    n = math.log(1e-9) / math.log(r) if r > 0 else 0.0
    return int(min(max(math.ceil(n), _SETTLE_MIN), _SETTLE_MAX))


def stream_channels(stream: Any) -> int:
    """How many channels a stream was made for."""
    zi = stream_state(stream).zi
    return int(zi.shape[1] if isinstance(stream_state(stream), SosStream) else zi.shape[0])


class FilterConfig(NodeConfig):
    """Settings shared by streaming filters."""

    sample_rate: float | None = Field(
        None, gt=0, le=1e9,
        description="Sample rate in Hz; default: the frames' metadata['sample_rate'].")


class StreamingFilter(ProcessingNode):
    """Base of per-channel streaming filters: sample rate, channel layout, block vs rows.

    Subclasses implement ``design(fs)`` (validate and precompute coefficients) and
    ``make_stream(n_channels)`` returning an object with ``block(x)`` and ``row(i, x)``
    (:class:`SosStream`, :class:`BaStream`) and optionally ``prime(first)``.
    """

    Config = FilterConfig
    #: Start from the steady state of the first sample instead of zero (subclasses' config).
    _prime = False
    #: Recent input blocks (references) and their length in samples, kept up to
    #: ``_hist_cap`` samples for a live change's state (see on_update); set with the stream.
    _hist: deque[np.ndarray]
    _hist_n = 0
    _hist_cap = 0

    def on_create(self, config: Any) -> None:
        self.config = config
        self.signal = scipy_signal()
        self._fs: float | None = None
        self._fs_text: str | None = None
        self._names: tuple[str, ...] | None = None
        self._stream: Any = None
        self._prime = getattr(config, "initial_state", "zero") == "steady"
        if config.sample_rate is not None:
            self._set_rate(float(config.sample_rate))

    def design(self, fs: float) -> None:
        raise NotImplementedError

    def on_update(self, old: Any, new: Any) -> bool:
        """A live change (docs/live.md): take ``new`` in place, without a restart transient.

        The coefficients are designed again for the same sample rate. When the new filter has
        the same structure (the same state shape: sections x channels x 2 for SOS, channels x
        order for b/a), its state is the one it would have had, had it been running: the new
        coefficients are run over the recent input the node keeps (by reference, no copy: at
        least the filter's settling length, see :func:`settle_length`), starting from the
        steady state of its oldest sample. With that much history the output goes on as if the
        new filter had always run (to float precision); with less (just after the start) the
        residual is that of a ``"steady"`` start at the oldest kept sample. Frames whose
        channels differ in length keep no history: the old state is carried as is.
        A different structure (order, band type, harmonics, numtaps...) or sample rate returns
        False: the runtime builds a fresh filter. A design error raises ValueError and leaves
        the node as it was.
        """
        if getattr(new, "sample_rate", None) != getattr(old, "sample_rate", None):
            return False
        if self._stream is None or not _has_state(self._stream):
            return False  # no state yet, or a stream of another kind: a fresh instance
        saved = dict(self.__dict__)
        try:
            self.config = new
            if self._fs is not None:
                self.design(self._fs)
            stream = self._stream
            fresh = self.make_stream(stream_channels(stream))
            before, after = stream_state(stream), stream_state(fresh)
            if before.zi.shape != after.zi.shape:
                self.__dict__.clear()
                self.__dict__.update(saved)
                return False
            hist = list(self._hist)
            if hist and self._primed:
                x = np.concatenate(hist, axis=1) if len(hist) > 1 else hist[0]
                fresh.prime(x[:, 0])
                fresh.block(x)  # only the state is wanted
            else:
                after.zi = before.zi.copy()
            self._stream = fresh
            self._hist_cap = settle_length(fresh)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        return True

    def make_stream(self, n_channels: int) -> Any:
        raise NotImplementedError

    def _set_rate(self, fs: float) -> None:
        try:
            self.design(fs)
        except ValueError as exc:
            raise NodeError(self.context.node_id, f"{type(self).__name__}: {exc}") from None
        self._fs = fs

    def _check_rate(self, frame: DataFrame) -> None:
        if self.config.sample_rate is not None:
            return
        text = frame.metadata.get("sample_rate")
        if text == self._fs_text and text is not None:
            return
        fs = frame_sample_rate(self, frame, None)
        if self._fs is None:
            self._set_rate(fs)
        elif fs != self._fs:
            raise NodeError(self.context.node_id,
                            f"{type(self).__name__}: sample_rate changed mid-stream from "
                            f"{self._fs} to {fs} (frame {frame.sequence_id})")
        self._fs_text = text

    def process(self, frame: DataFrame) -> DataFrame:
        self._check_rate(frame)
        p = frame.payload
        names = p.names
        if names != self._names:
            if self._names is not None:
                raise NodeError(self.context.node_id,
                                f"{type(self).__name__}: channels changed mid-stream from "
                                f"{list(self._names)} to {list(names)}")
            self._names = names
            self._stream = self.make_stream(len(names))
            self._hist, self._hist_n = deque(), 0
            self._hist_cap = settle_length(self._stream)
            self._primed = not self._prime
        if not names:
            return frame
        lengths = {len(p[n]) for n in names} if not p.is_block else {frame.n_samples}
        if len(lengths) == 1:
            x = frame.block()
            if x.shape[1] == 0:
                return frame
            if not self._primed:
                self._stream.prime(x[:, 0])
                self._primed = True
            if self._hist_cap:  # keep about the settling length of input (references only)
                h = self._hist
                h.append(x)
                self._hist_n += x.shape[1]
                while self._hist_n - h[0].shape[1] >= self._hist_cap:
                    self._hist_n -= h.popleft().shape[1]
            return frame.with_block(self._stream.block(x))
        if not self._primed:
            if any(len(p[n]) == 0 for n in names):
                raise NodeError(self.context.node_id, "initial_state 'steady' needs a first "
                                "frame with samples on every channel")
            self._stream.prime(np.array([p[n][0] for n in names]))
            self._primed = True
        return frame.with_payload({n: self._stream.row(i, p[n]) for i, n in enumerate(names)})


Btype = Literal["lowpass", "highpass", "bandpass", "bandstop"]


def _normalise_cutoff(v: float | list[float], btype: str | None, fs: float | None) -> list[float]:
    cut = [float(v)] if isinstance(v, (int, float)) else [float(c) for c in v]
    band = btype in ("bandpass", "bandstop")
    if band and len(cut) != 2:
        raise ValueError(f"btype {btype!r} needs cutoff [low, high] in Hz, got {v}")
    if not band and len(cut) != 1:
        raise ValueError(f"btype {btype!r} needs one cutoff frequency in Hz, got {v}")
    if any(not (math.isfinite(c) and c > 0) for c in cut):
        raise ValueError(f"cutoff must be positive finite Hz, got {v}")
    if band and not cut[0] < cut[1]:
        raise ValueError(f"cutoff [low, high] needs low < high, got {v}")
    if fs is not None:
        check_cutoffs(cut, fs)
    return cut


@register_node
class IIRFilter(StreamingFilter):
    """IIR filter (butter/cheby1/cheby2/ellip/bessel) as second-order sections, state carried.

    Equals ``scipy.signal.sosfilt(iirfilter(order, cutoff, btype=btype, ftype=design,
    rp=rp, rs=rs, fs=sample_rate, output="sos"), x)`` over the whole signal.

    >>> from streamlab.testing import run_node, make_frame
    >>> cfg = {"btype": "lowpass", "cutoff": 5.0, "order": 2, "sample_rate": 100.0}
    >>> out = run_node(IIRFilter, cfg, [make_frame(x=[1.0] * 50), make_frame(x=[1.0] * 50)])
    >>> round(float(out[-1].payload["x"][-1]), 6)   # unity DC gain
    1.0
    """

    class Config(FilterConfig):
        btype: Btype = Field("lowpass", description="Band type.")
        order: int = Field(4, ge=1, le=32, description="Filter order (band filters get 2*order poles).")
        cutoff: float | list[float] = Field(
            ..., description="Cutoff in Hz: one value (lowpass/highpass) or [low, high] (band).")
        design: Literal["butter", "cheby1", "cheby2", "ellip", "bessel"] = Field(
            "butter", description="Filter family (scipy.signal.iirfilter ftype).")
        rp: float = Field(1.0, gt=0, description="Passband ripple in dB (cheby1, ellip).")
        rs: float = Field(40.0, gt=0, description="Stopband attenuation in dB (cheby2, ellip).")
        initial_state: Literal["zero", "steady"] = Field(
            "zero", description="'zero': like sosfilt without zi; 'steady': sosfilt_zi scaled by "
            "each channel's first sample (no start-up transient for a DC offset; recommended for "
            "real recordings).")

        @field_validator("cutoff")
        @classmethod
        def _cutoff(cls, v: float | list[float], info: ValidationInfo) -> float | list[float]:
            _normalise_cutoff(v, info.data.get("btype"), info.data.get("sample_rate"))
            return v

    def design(self, fs: float) -> None:
        c = self.config
        cut = _normalise_cutoff(c.cutoff, c.btype, fs)
        wn = cut[0] if len(cut) == 1 else cut
        self.sos = self.signal.iirfilter(c.order, wn, rp=c.rp, rs=c.rs, btype=c.btype,
                                         ftype=c.design, fs=fs, output="sos")

    def make_stream(self, n_channels: int) -> SosStream:
        return SosStream(self.sos, n_channels, self.signal)


@register_node
class NotchFilter(StreamingFilter):
    """Notch (mains 50/60 Hz) with optional harmonics: cascaded ``iirnotch`` sections.

    Each notch is ``scipy.signal.iirnotch(k * frequency, quality, fs)`` for k = 1..harmonics
    (harmonics at or above sample_rate/2 are skipped), converted with ``tf2sos`` and stacked;
    output equals ``sosfilt`` of the stacked sections over the whole signal.

    >>> from streamlab.testing import run_node, make_frame
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 50 * np.arange(2000) / 1000)
    >>> out = run_node(NotchFilter, {"frequency": 50, "sample_rate": 1000.0}, [make_frame(x=x)])
    >>> bool(np.abs(out[0].payload["x"][-500:]).max() < 0.01)
    True
    """

    class Config(FilterConfig):
        frequency: float = Field(50.0, gt=0, description="Mains frequency to remove, Hz (50 or 60).")
        quality: float = Field(30.0, gt=0, description="Quality factor Q = frequency / bandwidth.")
        harmonics: int = Field(1, ge=1, le=50,
                               description="Notch the first N multiples of frequency (1: only it).")
        initial_state: Literal["zero", "steady"] = Field(
            "zero", description="'zero' or 'steady' (see IIRFilter).")

        @field_validator("frequency")
        @classmethod
        def _nyquist(cls, v: float, info: ValidationInfo) -> float:
            fs = info.data.get("sample_rate")
            if fs is not None and not v < fs / 2:
                raise ValueError(f"frequency must be below sample_rate/2 (got {v}, sample_rate={fs})")
            return v

    def design(self, fs: float) -> None:
        c = self.config
        check_cutoffs([c.frequency], fs)
        sections = []
        for k in range(1, c.harmonics + 1):
            f = k * c.frequency
            if f >= fs / 2:
                break
            b, a = self.signal.iirnotch(f, c.quality, fs=fs)
            sections.append(self.signal.tf2sos(b, a))
        self.sos = np.concatenate(sections)

    def make_stream(self, n_channels: int) -> SosStream:
        return SosStream(self.sos, n_channels, self.signal)


@register_node
class FIRFilter(StreamingFilter):
    """FIR filter designed with ``firwin``, applied with ``lfilter`` and carried ``zi``.

    Output equals ``lfilter(firwin(numtaps, cutoff, window=window, pass_zero=btype, fs=fs),
    1.0, x)`` over the whole signal. highpass and bandstop need an odd ``numtaps``.
    ``firwin`` filters are linear-phase: every frequency is delayed by exactly
    ``(numtaps - 1) / 2`` samples, so the shape of a transient (e.g. a QRS complex, narrow or
    wide) is kept and its time is recovered by subtracting that constant. With
    ``initial_state="steady"``: ``zi = lfilter_zi(taps, 1) * x[0]`` per channel.

    >>> from streamlab.testing import run_node, make_frame
    >>> out = run_node(FIRFilter, {"numtaps": 5, "cutoff": 10.0, "sample_rate": 100.0},
    ...                [make_frame(x=[1.0] * 3), make_frame(x=[1.0] * 3)])
    >>> round(float(out[1].payload["x"][-1]), 9)    # all taps filled: DC gain 1
    1.0
    """

    class Config(FilterConfig):
        btype: Btype = Field("lowpass", description="Band type (firwin pass_zero).")
        numtaps: int = Field(..., ge=1, le=100_000, description="Filter length (taps).")
        cutoff: float | list[float] = Field(
            ..., description="Cutoff in Hz: one value (lowpass/highpass) or [low, high] (band).")
        window: str = Field("hamming", description="Window name for firwin (scipy.signal.get_window).")
        initial_state: Literal["zero", "steady"] = Field(
            "zero", description="'zero' or 'steady' (see IIRFilter).")

        @field_validator("cutoff")
        @classmethod
        def _cutoff(cls, v: float | list[float], info: ValidationInfo) -> float | list[float]:
            btype = info.data.get("btype")
            _normalise_cutoff(v, btype, info.data.get("sample_rate"))
            taps = info.data.get("numtaps")
            if btype in ("highpass", "bandstop") and taps is not None and taps % 2 == 0:
                raise ValueError(f"btype {btype!r} needs an odd numtaps, got {taps}")
            return v

    def design(self, fs: float) -> None:
        c = self.config
        cut = _normalise_cutoff(c.cutoff, c.btype, fs)
        self.taps = self.signal.firwin(c.numtaps, cut[0] if len(cut) == 1 else cut,
                                       window=c.window, pass_zero=c.btype, fs=fs)

    def make_stream(self, n_channels: int) -> BaStream:
        return BaStream(self.taps, np.ones(1), n_channels, self.signal)


@register_node
class MovingAverage(StreamingFilter):
    """Causal moving average over the last ``window`` samples (zeros before the start).

    Equals ``lfilter(np.ones(window) / window, 1.0, x)`` over the whole signal.

    >>> from streamlab.testing import run_node, make_frame
    >>> out = run_node(MovingAverage, {"window": 2}, [make_frame(x=[1.0, 3.0]), make_frame(x=[5.0])])
    >>> [f.payload["x"].tolist() for f in out]
    [[0.5, 2.0], [4.0]]
    """

    class Config(NodeConfig):
        window: int = Field(..., ge=1, le=100_000, description="Samples averaged.")

    rebuild_on = frozenset({"window"})

    def on_update(self, old: Any, new: Any) -> bool:
        return False  # its only field is its structure: a fresh instance

    def on_create(self, config: Any) -> None:
        self.config = config
        self.signal = scipy_signal()
        self._names = None
        self._prime = False
        self._b = np.full(config.window, 1.0 / config.window)

    def _check_rate(self, frame: DataFrame) -> None:
        return None  # needs no sample rate

    def make_stream(self, n_channels: int) -> BaStream:
        return BaStream(self._b, np.ones(1), n_channels, self.signal)


@register_node
class DCRemoval(StreamingFilter):
    """DC removal: a one-pole DC blocker or subtraction of an exponential running mean.

    * ``method="blocker"``: ``y[n] = x[n] - x[n-1] + r * y[n-1]`` with ``r = exp(-2*pi*cutoff/fs)``,
      i.e. ``lfilter([1, -1], [1, -r], x)``; -3 dB near ``cutoff``.
    * ``method="ema"``: ``y = x - m`` with ``m[n] = m[n-1] + alpha * (x[n] - m[n-1])``,
      ``alpha = 1 - exp(-2*pi*cutoff/fs)`` and ``m[-1] = x[0]`` (no start-up step), i.e.
      ``x - lfilter([alpha], [1, alpha - 1], x, zi=[(1 - alpha) * x[0]])``.
    * ``initial_state="steady"`` (blocker): ``zi = lfilter_zi([1, -1], [1, -r]) * x[0]``, so a
      constant offset gives 0 from the first sample instead of a decaying step.

    >>> from streamlab.testing import run_node, make_frame
    >>> out = run_node(DCRemoval, {"method": "ema", "cutoff": 1.0, "sample_rate": 100.0},
    ...                [make_frame(x=[5.0] * 4)])
    >>> out[0].payload["x"].tolist()
    [0.0, 0.0, 0.0, 0.0]
    """

    class Config(FilterConfig):
        method: Literal["blocker", "ema"] = Field("blocker", description="See the description.")
        cutoff: float = Field(0.5, gt=0, description="Corner frequency in Hz.")
        initial_state: Literal["zero", "steady"] = Field(
            "zero", description="blocker: 'zero' or 'steady' (see IIRFilter); ema always "
            "starts from the first sample.")

        @field_validator("cutoff")
        @classmethod
        def _cutoff(cls, v: float, info: ValidationInfo) -> float:
            fs = info.data.get("sample_rate")
            if fs is not None:
                check_cutoffs([v], fs)
            return v

    def design(self, fs: float) -> None:
        check_cutoffs([self.config.cutoff], fs)
        k = math.exp(-2 * math.pi * self.config.cutoff / fs)
        if self.config.method == "blocker":
            self._ba = (np.array([1.0, -1.0]), np.array([1.0, -k]))
        else:
            alpha = 1 - k
            self._ba = (np.array([alpha]), np.array([1.0, alpha - 1]))
            self._prime = True

    def make_stream(self, n_channels: int) -> Any:
        stream = BaStream(*self._ba, n_channels, self.signal)
        if self.config.method == "blocker":
            return stream
        return _EmaResidual(stream)


class _EmaResidual:
    """x minus its exponential running mean (state: the mean filter's zi)."""

    def __init__(self, mean: BaStream) -> None:
        self.mean = mean

    def prime(self, first: np.ndarray) -> None:
        self.mean.zi = ((1 - self.mean.b[0]) * first)[:, None]

    def block(self, x: np.ndarray) -> np.ndarray:
        return x - self.mean.block(x)

    def row(self, i: int, x: np.ndarray) -> np.ndarray:
        return x - self.mean.row(i, x)


@register_node
class Detrend(ProcessingNode):
    """Remove the mean or the least-squares line from each frame (per frame, no state).

    Equals ``scipy.signal.detrend(block, axis=-1, type=type)`` on every frame separately; for
    continuous DC removal across frames use DCRemoval.

    >>> from streamlab.testing import run_node, make_frame
    >>> out = run_node(Detrend, {"type": "linear"}, [make_frame(x=[1.0, 2.0, 3.0])])
    >>> [abs(round(v, 12)) for v in out[0].payload["x"].tolist()]
    [0.0, 0.0, 0.0]
    """

    class Config(NodeConfig):
        type: Literal["linear", "constant"] = Field(
            "linear", description="'linear': remove the fitted line; 'constant': remove the mean.")

    def on_create(self, config: Any) -> None:
        self.config = config
        self._detrend = scipy_signal().detrend

    def process(self, frame: DataFrame) -> DataFrame:
        p = frame.payload
        if not p.names or frame.n_samples == 0:
            return frame
        if p.is_block or len({len(a) for a in p.values()}) == 1:
            return frame.with_block(self._detrend(frame.block(), axis=-1, type=self.config.type))
        return frame.with_payload({n: self._detrend(a, type=self.config.type) if len(a) else a
                                   for n, a in p.items()})
