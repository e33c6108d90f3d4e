"""Features decoders learn from: Covariance, LogVariance, EpochBandPower, Hjorth, FilterBank.

The first four reduce each frame (an epoch from :class:`~streamlab.nodes.epochs.Epoch`, or a
window from :class:`~streamlab.nodes.spectral.Window`) to a few numbers per channel; FilterBank
is a streaming filter whose output keeps the input's samples. Each is checked in
tests/nodes/test_epoch_features.py against the reference users trust (numpy, scipy,
scikit-learn, pyriemann, mne); docs/nodes/features.md gives the layouts and the tolerances.

**Layouts.**

* Covariance, ``layout="matrix"`` (default): one channel per input channel (same names, same
  order), each with ``n_channels`` samples, so ``frame.block()`` IS the covariance matrix
  (row i, column j = cov(channel i, channel j)). ``layout="upper"``: one sample per channel,
  channels ``"cov_<a>_<b>"`` for the upper triangle including the diagonal, row-major
  (``(0,0), (0,1), ..., (0,c-1), (1,1), ...``); ``metadata["covariance_channels"]`` is the JSON
  list of the input names (parse the layout from it, not from the names: names may hold ``_``).
* LogVariance: one sample per channel (input names; ``"<prefix><k>"`` with spatial filters).
* EpochBandPower: one sample per channel per band, channels ``"<channel>_<band>"``,
  channel-major (every band of the first channel, then of the second...), as BandPower.
* Hjorth: one sample per channel per parameter, channels ``"<channel>_<parameter>"``
  (activity, mobility, complexity), channel-major.
* FilterBank: the input's samples; channels ``"<channel>@<lo>-<hi>"`` (``lo``/``hi`` in Hz
  formatted with ``:g``, e.g. ``"C3@8-12"``), band-major: every channel filtered by the first
  band, then every channel by the second... (one contiguous channel group per band).

**Metadata and events.** Every output keeps its input's metadata (an epoch's ``event_label``,
``event_time``, ``event_index``, ...), timestamp and sequence id, and adds ``"feature"``
(``covariance``, ``log_variance``, ``band_power``, ``hjorth``, ``filter_bank``). The reducing
nodes' samples are not time: a one-sample-per-channel output has ``sample_rate`` = input rate /
``metadata["window_hop"]`` (written by Window) or / frame length (as RMS and BandPower);
Covariance's matrix layout drops ``sample_rate`` and keeps it as ``signal_sample_rate``. The
reducing nodes move the input frame's events to sample 0 of the output (settled ``carried``);
FilterBank keeps them on their samples. A frame without channels (a marker frame) passes
through unchanged; a frame with channels but too few samples for the feature is a NodeError
naming the node, as is a change of channels (or sample rate, for the nodes that need one)
mid-stream. Nothing is held at stop.

Runtime dependencies: numpy, and scipy for EpochBandPower and FilterBank (extra ``dsp``,
imported when the node is created). scikit-learn and pyriemann are only the tests' references.
"""

from __future__ import annotations

import json
import math
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from streamlab.errors import NodeError
from streamlab.frame import DataFrame, Payload
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.nodes.filters import (
    FilterConfig,
    SosStream,
    StreamingFilter,
    check_cutoffs,
    frame_sample_rate,
    scipy_signal,
)
from streamlab.nodes.spectral import DEFAULT_BANDS, WindowSpec, check_bands
from streamlab.registry import register_node

__all__ = ["Covariance", "LogVariance", "EpochBandPower", "Hjorth", "FilterBank",
           "COVARIANCE_ESTIMATORS", "covariance", "HJORTH_PARAMETERS"]

#: Covariance estimators, named as ``pyriemann.estimation.Covariances`` names them.
COVARIANCE_ESTIMATORS = ("cov", "scm", "lwf", "oas", "corr")
#: Hjorth parameters, in output order.
HJORTH_PARAMETERS = ("activity", "mobility", "complexity")

_SAMPLE_RATE = Field(None, gt=0, le=1e9,
                     description="Sample rate in Hz; default: the frames' metadata['sample_rate'].")


def covariance(x: np.ndarray, estimator: str = "cov") -> np.ndarray:
    """The ``channels x channels`` covariance of ``x`` (channels x samples, >= 2 samples).

    * ``"cov"``: ``np.cov(x)`` (unbiased, divides by n - 1; pyriemann's default),
    * ``"scm"``: ``np.cov(x, bias=True)`` (divides by n; ``sklearn.covariance.
      empirical_covariance`` of ``x.T``),
    * ``"lwf"``: Ledoit-Wolf shrinkage (``sklearn.covariance.ledoit_wolf(x.T)[0]``),
    * ``"oas"``: Oracle Approximating Shrinkage (``sklearn.covariance.oas(x.T)[0]``),
    * ``"corr"``: ``np.corrcoef(x)`` (a flat channel's row and column are NaN).

    The shrinkage formulas are scikit-learn's (1.x), re-implemented with numpy so that the
    runtime needs no scikit-learn; the tests compare them to it and to pyriemann.
    """
    p, n = x.shape
    if estimator == "cov":
        return np.atleast_2d(np.cov(x))
    if estimator == "corr":
        with np.errstate(divide="ignore", invalid="ignore"):  # a flat channel: NaN row
            return np.atleast_2d(np.corrcoef(x))
    emp = np.atleast_2d(np.cov(x, bias=True))
    if estimator == "scm" or p == 1:  # one channel: every shrinkage leaves it alone
        return emp
    mu = np.trace(emp) / p
    if estimator == "oas":
        shrinkage = _oas_shrinkage(emp, mu, n)
    elif estimator == "lwf":
        shrinkage = _lwf_shrinkage(x)
    else:
        raise ValueError(f"unknown covariance estimator {estimator!r} "
                         f"(expected one of {list(COVARIANCE_ESTIMATORS)})")
    out = (1.0 - shrinkage) * emp
    out.flat[::p + 1] += shrinkage * mu
    return out


def _oas_shrinkage(emp: np.ndarray, mu: float, n: int) -> float:
    """sklearn.covariance.oas's shrinkage of the empirical covariance ``emp`` (n samples)."""
    p = emp.shape[0]
    alpha = np.mean(emp ** 2)
    num = alpha + mu ** 2
    den = (n + 1) * (alpha - mu ** 2 / p)
    return 1.0 if den == 0 else float(min(num / den, 1.0))


def _lwf_shrinkage(x: np.ndarray) -> float:
    """sklearn.covariance.ledoit_wolf_shrinkage of ``x`` (channels x samples: its transpose)."""
    p, n = x.shape
    xc = x - x.mean(axis=1, keepdims=True)
    x2 = xc ** 2
    trace = x2.sum(axis=1) / n
    mu_ = trace.sum() / p
    beta_ = float(np.sum(x2 @ x2.T))
    delta_ = float(np.sum((xc @ xc.T) ** 2)) / n ** 2
    beta = 1.0 / (p * n) * (beta_ / n - delta_)
    delta = (delta_ - 2.0 * mu_ * trace.sum() + p * mu_ ** 2) / p
    beta = min(beta, delta)
    return 0.0 if delta == 0 else float(beta / delta)


class _Reducer(ProcessingNode):
    """Shared: one output per frame with fewer samples; events to sample 0, metadata kept."""

    #: the output does not share the input's sample positions: events are re-positioned here
    handles_events: ClassVar[bool] = True
    #: the fewest samples a frame must have
    min_samples: ClassVar[int] = 1
    feature: ClassVar[str] = ""

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self._names: tuple[str, ...] | None = None
        self._out_names: tuple[str, ...] = ()
        self._meta: tuple[Any, Any] | None = None

    def _fail(self, message: str) -> NodeError:
        return NodeError(self.context.node_id, f"{type(self).__name__}: {message}")

    def output_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        raise NotImplementedError

    def compute(self, x: np.ndarray, frame: DataFrame) -> np.ndarray:
        """``out_channels x out_samples`` from the input block."""
        raise NotImplementedError

    def extra_meta(self, frame: DataFrame, meta: dict[str, str]) -> None:
        """Add this feature's entries to ``meta`` (a copy of the input's metadata)."""
        if "sample_rate" in meta:  # one sample per frame: the rate of the frames
            hop = float(meta.get("window_hop", frame.n_samples))
            meta["sample_rate"] = repr(float(meta["sample_rate"]) / hop)

    def process(self, frame: DataFrame) -> DataFrame:
        names = frame.channels
        if not names:
            return self._settled(frame, frame)  # a marker frame: nothing to compute on
        if names != self._names:
            if self._names is not None:
                raise self._fail(f"channels changed mid-stream from {list(self._names)} to "
                                 f"{list(names)} (frame {frame.sequence_id})")
            self._out_names = self.output_names(names)
            self._names = names
        try:
            x = frame.block()
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        if x.shape[1] < self.min_samples:
            raise self._fail(f"frame {frame.sequence_id} has {x.shape[1]} samples; this "
                             f"feature needs at least {self.min_samples}")
        values = self.compute(x, frame)
        if self._meta is None or self._meta[0] != (frame.metadata, x.shape[1]):
            meta = dict(frame.metadata)
            meta["feature"] = self.feature
            self.extra_meta(frame, meta)
            self._meta = ((frame.metadata, x.shape[1]), MappingProxyType(meta))
        out = DataFrame(frame.timestamp, frame.sequence_id,
                        Payload.from_block(self._out_names, values), self._meta[1])
        out.ingress_ns = frame.ingress_ns  # for end-to-end latency, as derived frames do
        return self._settled(frame, out.with_events([e.at(0) for e in frame.events])
                             if frame.events else out)

    def _settled(self, frame: DataFrame, out: DataFrame) -> DataFrame:
        if frame.events:  # settled once the output exists (a failure leaves them to the runtime)
            self.context.settle_events("carried", len(frame.events))
        return out


# -- Covariance --------------------------------------------------------------------------------
class CovarianceConfig(NodeConfig):
    """Settings of Covariance."""

    estimator: Literal["cov", "scm", "lwf", "oas", "corr"] = Field(
        "cov", description="'cov': np.cov (n-1); 'scm': empirical (n, as sklearn); 'lwf': "
        "Ledoit-Wolf; 'oas': OAS shrinkage; 'corr': correlation (pyriemann's names).")
    layout: Literal["matrix", "upper"] = Field(
        "matrix", description="'matrix': channels x channels block (frame.block() is the "
        "matrix); 'upper': one sample per 'cov_<a>_<b>' of the upper triangle (row-major).")


@register_node
class Covariance(_Reducer):
    """Covariance matrix of each frame (epoch): np.cov, empirical, Ledoit-Wolf or OAS shrinkage.

    Equals ``pyriemann.estimation.Covariances(estimator).transform`` of the epoch (and
    ``sklearn.covariance`` ``empirical_covariance``, ``ledoit_wolf``, ``oas`` of its transpose)
    within 1e-10. Layout ``"matrix"``: the output's channels are the input's, each with
    ``n_channels`` samples, so ``out.block()`` is the matrix (row i = channel i);
    ``"upper"``: channels ``"cov_<a>_<b>"`` (upper triangle with the diagonal, row-major), one
    sample each. Metadata adds ``feature = "covariance"``, ``covariance_estimator``,
    ``covariance_layout`` and ``covariance_channels`` (JSON list of the input names); the matrix
    layout moves ``sample_rate`` to ``signal_sample_rate``. Needs 2 samples per frame.

    >>> from streamlab.testing import run_node, make_frame
    >>> f = make_frame(a=[1.0, 2.0, 3.0, 4.0], b=[2.0, 1.0, 2.0, 1.0])
    >>> [out] = run_node(Covariance, {"estimator": "scm"}, [f])
    >>> out.channels, out.block().tolist()
    (('a', 'b'), [[1.25, -0.25], [-0.25, 0.25]])
    >>> [up] = run_node(Covariance, {"estimator": "scm", "layout": "upper"}, [f])
    >>> up.channels, up.block()[:, 0].tolist()
    (('cov_a_a', 'cov_a_b', 'cov_b_b'), [1.25, -0.25, 0.25])
    """

    Config = CovarianceConfig
    min_samples = 2
    feature = "covariance"

    def output_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        if self.config.layout == "matrix":
            return names
        self._iu = np.triu_indices(len(names))
        return tuple(f"cov_{names[i]}_{names[j]}" for i, j in zip(*self._iu, strict=True))

    def compute(self, x: np.ndarray, frame: DataFrame) -> np.ndarray:
        c = covariance(x, self.config.estimator)
        return c if self.config.layout == "matrix" else c[self._iu][:, None]

    def extra_meta(self, frame: DataFrame, meta: dict[str, str]) -> None:
        if self.config.layout == "matrix":
            if "sample_rate" in meta:
                meta["signal_sample_rate"] = meta.pop("sample_rate")
        else:
            super().extra_meta(frame, meta)
        meta.update(covariance_estimator=self.config.estimator,
                    covariance_layout=self.config.layout,
                    covariance_channels=json.dumps(list(frame.channels)))


# -- LogVariance -------------------------------------------------------------------------------
class LogVarianceConfig(NodeConfig):
    """Settings of LogVariance."""

    statistic: Literal["var", "power"] = Field(
        "var", description="'var': np.var (mean removed); 'power': mean of squares (as "
        "mne.decoding.CSP's average_power).")
    normalize: bool = Field(False, description="Divide each value by the sum over the output "
                            "channels (the classic CSP feature log(var_i / sum var)).")
    log: bool = Field(True, description="Natural log of the values (False: the values).")
    filters: list[list[float]] | None = Field(
        None, min_length=1, description="Spatial filters applied first, one row per component "
        "(n_components x n_channels, e.g. mne CSP filters_[:n_components]); outputs "
        "'<prefix><k>'.")
    picks: list[str] | None = Field(None, min_length=1, description="Channels, in this order, "
                                    "that the filters' columns refer to (None: every channel).")
    component_prefix: str = Field("csp", min_length=1, description="Output names with filters: "
                                  "prefix + component index.")

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: list[list[float]] | None) -> list[list[float]] | None:
        if v is None:
            return v
        widths = {len(row) for row in v}
        if len(widths) != 1 or 0 in widths:
            raise ValueError(f"filters must be a non-empty rectangle (rows of one length; got "
                             f"row lengths {sorted(widths)})")
        if not all(math.isfinite(a) for row in v for a in row):
            raise ValueError("filters must be finite numbers")
        return v

    @model_validator(mode="after")
    def _picks(self) -> LogVarianceConfig:
        if self.picks is not None:
            if len(set(self.picks)) != len(self.picks):
                raise ValueError(f"picks must be unique (got {self.picks})")
            if self.filters is not None and len(self.filters[0]) != len(self.picks):
                raise ValueError(f"filters have {len(self.filters[0])} columns but picks "
                                 f"names {len(self.picks)} channels")
        return self


@register_node
class LogVariance(_Reducer):
    """Log-variance of each channel (or CSP component) per frame: the CSP feature of a decoder.

    Per frame: optionally ``y = filters @ x[picks]`` (spatial filters), then per row
    ``v = np.var(y)`` (``statistic="var"``) or ``np.mean(y**2)`` (``"power"``), optionally
    ``v / v.sum()`` (``normalize``), then ``np.log(v)`` (``log``). With ``statistic="power"``,
    no normalisation and the first ``n_components`` rows of a fitted ``mne.decoding.CSP``'s
    ``filters_`` it equals that CSP's ``transform`` (``log=None``) within 1e-12. Outputs one
    sample per channel (input names, or ``"<component_prefix><k>"`` with filters). A zero
    variance gives ``-inf`` (log) or NaN (normalised 0/0), not an error. Needs 2 samples.

    >>> from streamlab.testing import run_node, make_frame
    >>> f = make_frame(a=[1.0, -1.0, 1.0, -1.0], b=[2.0, -2.0, 2.0, -2.0])
    >>> [out] = run_node(LogVariance, {"log": False, "normalize": True}, [f])
    >>> out.channels, out.block()[:, 0].tolist()
    (('a', 'b'), [0.2, 0.8])
    """

    Config = LogVarianceConfig
    min_samples = 2
    feature = "log_variance"

    def output_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        c = self.config
        picks = list(names) if c.picks is None else c.picks
        for i, p in enumerate(picks):
            if p not in names:
                raise self._fail(f"config.picks[{i}]: {p!r} is not a channel of the stream "
                                 f"(channels: {list(names)})")
        self._rows = np.array([names.index(p) for p in picks], dtype=np.intp)
        self._all = c.picks is None
        if c.filters is None:
            return tuple(picks)
        w = np.array(c.filters, dtype=np.float64)
        if w.shape[1] != len(picks):
            raise self._fail(f"config.filters has {w.shape[1]} columns, the stream has "
                             f"{len(picks)} channels {picks}: give picks or filters that match")
        self._w = w
        return tuple(f"{c.component_prefix}{k}" for k in range(w.shape[0]))

    def compute(self, x: np.ndarray, frame: DataFrame) -> np.ndarray:
        c = self.config
        y = x if self._all else x[self._rows]
        if c.filters is not None:
            y = self._w @ y
        v = np.var(y, axis=1) if c.statistic == "var" else (y ** 2).mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # documented: -inf / NaN
            if c.normalize:
                v = v / v.sum()
            if c.log:
                v = np.log(v)
        return v[:, None]


# -- EpochBandPower ----------------------------------------------------------------------------
class EpochBandPowerConfig(NodeConfig):
    """Settings of EpochBandPower."""

    bands: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_BANDS),
        description="Band name -> [low, high] Hz (see 'integration' for the edges).")
    nperseg: int = Field(256, ge=2, le=1 << 24, description="Welch segment length (capped at "
                         "the frame length).")
    noverlap: int | None = Field(None, ge=0, description="Overlap (default nperseg // 2).")
    window: WindowSpec = Field("hann", description="Window (scipy.signal.get_window spec).")
    detrend: Literal["constant", "linear", "none"] = Field("constant",
                                                           description="Per segment.")
    average: Literal["mean", "median"] = Field("mean", description="How segments are averaged.")
    integration: Literal["sum", "trapezoid"] = Field(
        "sum", description="'sum': sum of PSD bins with low <= f < high times the bin width; "
        "'trapezoid': scipy.integrate.trapezoid over the bins with low <= f <= high.")
    relative: bool = Field(False, description="Divide by the power over [lowest low, highest "
                           "high], integrated the same way.")
    log: bool = Field(False, description="Natural log of the (relative) power.")
    sample_rate: float | None = _SAMPLE_RATE

    _bands = field_validator("bands")(check_bands)

    @model_validator(mode="after")
    def _overlap(self) -> EpochBandPowerConfig:
        if self.noverlap is not None and self.noverlap >= self.nperseg:
            raise ValueError(f"noverlap must be below nperseg (got {self.noverlap}, "
                             f"nperseg={self.nperseg})")
        return self


@register_node
class EpochBandPower(_Reducer):
    """Band power per channel per band of each frame (epoch): Welch PSD, summed or integrated.

    Per frame: ``f, psd = scipy.signal.welch(x, fs, window, nperseg=min(nperseg, n), noverlap,
    detrend, average=average, axis=-1)``, then per band ``psd[:, low <= f < high].sum() * df``
    (``integration="sum"``, adjacent bands share no bin) or ``scipy.integrate.trapezoid(psd[:,
    low <= f <= high], f[...])`` (``"trapezoid"``); ``relative`` divides by the same over
    ``[lowest low, highest high]``, ``log`` takes the natural log. Equal to those scipy calls
    within 1e-10. Channels ``"<channel>_<band>"`` (channel-major), one sample each; metadata
    adds ``bands`` (JSON). A band with no bin (sum) or fewer than 2 (trapezoid) at the frame's
    resolution ``fs / nperseg`` is a NodeError naming the band.

    >>> from streamlab.testing import run_node, make_frame
    >>> x = np.sin(2 * np.pi * 10 * np.arange(500) / 250)
    >>> cfg = {"bands": {"theta": [4, 8], "alpha": [8, 13]}, "relative": True, "nperseg": 250}
    >>> [out] = run_node(EpochBandPower, cfg, [make_frame(c3=x, metadata={"sample_rate": "250"})])
    >>> out.channels, [round(float(v), 4) for v in out.block()[:, 0]]
    (('c3_theta', 'c3_alpha'), [0.0, 1.0])
    """

    Config = EpochBandPowerConfig
    min_samples = 2
    feature = "band_power"

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self.signal = scipy_signal()
        from scipy.integrate import trapezoid  # scipy is there: scipy_signal() checked it
        self._trapezoid = trapezoid
        self._fs: float | None = None
        self._plan: tuple[Any, ...] | None = None
        bands = config.bands
        self._span = (min(lo for lo, _ in bands.values()), max(hi for _, hi in bands.values()))

    def output_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f"{ch}_{b}" for ch in names for b in self.config.bands)

    def _masks(self, f: np.ndarray, fs: float, nperseg: int) -> list[np.ndarray]:
        c = self.config
        closed = c.integration == "trapezoid"
        need = 2 if closed else 1
        spans = [("all bands", self._span)] if c.relative else []
        masks = []
        for name, (lo, hi) in [*spans, *c.bands.items()]:
            m = (f >= lo) & (f <= hi if closed else f < hi)
            if m.sum() < need:
                raise self._fail(f"band {name!r} [{lo:g}, {hi:g}] Hz has {int(m.sum())} "
                                 f"frequency bins, {c.integration!r} needs {need} (resolution "
                                 f"{fs / nperseg:g} Hz = sample_rate {fs:g} / nperseg {nperseg})")
            masks.append(m)
        return masks

    def compute(self, x: np.ndarray, frame: DataFrame) -> np.ndarray:
        c = self.config
        fs = frame_sample_rate(self, frame, c.sample_rate)
        if self._fs is not None and fs != self._fs:
            raise self._fail(f"sample_rate changed mid-stream from {self._fs:g} to {fs:g} "
                             f"(frame {frame.sequence_id})")
        self._fs = fs
        n = x.shape[1]
        nperseg = min(c.nperseg, n)
        noverlap = None if c.noverlap is None else min(c.noverlap, nperseg - 1)
        f, psd = self.signal.welch(x, fs, window=c.window if isinstance(c.window, str)
                                   else tuple(c.window), nperseg=nperseg, noverlap=noverlap,
                                   detrend=False if c.detrend == "none" else c.detrend,
                                   average=c.average, axis=-1)
        if self._plan is None or self._plan[0] != (nperseg, fs):
            self._plan = ((nperseg, fs), self._masks(f, fs, nperseg))
        masks = self._plan[1]
        if c.integration == "sum":
            df = f[1] - f[0]
            power = np.stack([psd[:, m].sum(axis=1) * df for m in masks], axis=1)
        else:
            power = np.stack([self._trapezoid(psd[:, m], f[m], axis=-1) for m in masks], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # a silent frame: NaN / -inf
            if c.relative:
                power = power[:, 1:] / power[:, :1]
            if c.log:
                power = np.log(power)
        return power.reshape(-1, 1)

    def extra_meta(self, frame: DataFrame, meta: dict[str, str]) -> None:
        super().extra_meta(frame, meta)
        meta["bands"] = json.dumps(self.config.bands)


# -- Hjorth ------------------------------------------------------------------------------------
HjorthParameter = Literal["activity", "mobility", "complexity"]


def _all_hjorth() -> list[HjorthParameter]:
    return ["activity", "mobility", "complexity"]


class HjorthConfig(NodeConfig):
    """Settings of Hjorth."""

    parameters: list[HjorthParameter] = Field(
        default_factory=_all_hjorth, min_length=1,
        description="Which parameters, in this order per channel.")

    @field_validator("parameters")
    @classmethod
    def _unique(cls, v: list[HjorthParameter]) -> list[HjorthParameter]:
        if len(set(v)) != len(v):
            raise ValueError(f"parameters must be unique (got {v})")
        return v


@register_node
class Hjorth(_Reducer):
    """Hjorth activity, mobility and complexity of each channel per frame (epoch or window).

    With ``d = np.diff(x)`` and ``dd = np.diff(x, 2)`` per channel: activity ``= var(x)``,
    mobility ``= sqrt(var(d) / var(x))``, complexity ``= sqrt(var(dd) / var(d)) / mobility``
    (``np.var``, ddof 0). Mobility is in radians per sample: a pure sine of f Hz sampled at
    fs gives ``2 * sin(pi * f / fs)`` (~ ``2 * pi * f / fs`` well below Nyquist; times
    ``fs / (2 * pi)`` for a mean frequency in Hz) and complexity 1. A constant channel gives
    NaN mobility and complexity. Channels ``"<channel>_<parameter>"`` (channel-major), one
    sample each. Needs 3 samples.

    >>> from streamlab.testing import run_node, make_frame
    >>> x = np.sin(2 * np.pi * np.arange(8001) / 8)   # 8 samples per cycle
    >>> [out] = run_node(Hjorth, {}, [make_frame(x=x)])
    >>> out.channels
    ('x_activity', 'x_mobility', 'x_complexity')
    >>> [round(float(v), 3) for v in out.block()[:, 0]], round(2 * math.sin(math.pi / 8), 3)
    ([0.5, 0.765, 1.0], 0.765)
    """

    Config = HjorthConfig
    min_samples = 3
    feature = "hjorth"

    def output_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        p = self.config.parameters
        self._pick = [HJORTH_PARAMETERS.index(k) for k in p]
        return tuple(f"{ch}_{k}" for ch in names for k in p)

    def compute(self, x: np.ndarray, frame: DataFrame) -> np.ndarray:
        d = np.diff(x, axis=1)
        v0 = np.var(x, axis=1)
        v1 = np.var(d, axis=1)
        v2 = np.var(np.diff(d, axis=1), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # constant channel: NaN
            mobility = np.sqrt(v1 / v0)
            complexity = np.sqrt(v2 / v1) / mobility
        return np.stack([v0, mobility, complexity], axis=1)[:, self._pick].reshape(-1, 1)


# -- FilterBank --------------------------------------------------------------------------------
def _band_label(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}"


class FilterBankConfig(FilterConfig):
    """Settings of FilterBank."""

    bands: list[tuple[float, float]] = Field(
        ..., min_length=1, description="Band-passes [low, high] in Hz (0 < low < high < "
        "sample_rate/2), one channel group each, in this order.")
    order: int = Field(4, ge=1, le=32, description="Filter order (each band-pass has 2*order "
                       "poles).")
    design: Literal["butter", "cheby1", "cheby2", "ellip", "bessel"] = Field(
        "butter", description="Filter family (scipy.signal.iirfilter ftype).")
    rp: float = Field(1.0, gt=0, description="Passband ripple in dB (cheby1, ellip).")
    rs: float = Field(40.0, gt=0, description="Stopband attenuation in dB (cheby2, ellip).")
    initial_state: Literal["zero", "steady"] = Field(
        "zero", description="'zero' or 'steady' (see IIRFilter).")

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for i, (lo, hi) in enumerate(v):
            if not (math.isfinite(hi) and 0 < lo < hi):
                raise ValueError(f"band {i}: need 0 < low < high Hz, got [{lo}, {hi}]")
        labels = [_band_label(lo, hi) for lo, hi in v]
        if len(set(labels)) != len(labels):
            raise ValueError(f"bands must be distinct (got {labels})")
        return v

    @model_validator(mode="after")
    def _nyquist(self) -> FilterBankConfig:
        if self.sample_rate is not None:
            for i, (_, hi) in enumerate(self.bands):
                try:
                    check_cutoffs([hi], self.sample_rate)
                except ValueError as exc:
                    raise ValueError(f"bands[{i}]: {exc}") from None
        return self


class _Bank:
    """One SosStream per band over the same channels; outputs stacked band-major."""

    def __init__(self, streams: list[SosStream]) -> None:
        self.streams = streams

    def prime(self, first: np.ndarray) -> None:
        for s in self.streams:
            s.prime(first)

    def block(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([s.block(x) for s in self.streams], axis=0)


@register_node
class FilterBank(StreamingFilter):
    """Several IIR band-passes of every channel, as channel groups "<channel>@<lo>-<hi>".

    For each band ``[lo, hi]``: ``sos = scipy.signal.iirfilter(order, [lo, hi],
    btype="bandpass", ftype=design, rp=rp, rs=rs, fs=sample_rate, output="sos")``, and the
    output equals ``sosfilt(sos, x)`` over the whole signal, for frames of any size (the state
    is carried per band and channel; ``initial_state="steady"`` as IIRFilter). Output channels
    are band-major: every channel through the first band, then through the second... named
    ``"<channel>@<lo>-<hi>"`` (Hz, ``:g`` format). Same samples, timestamp and events as the
    input; metadata adds ``filter_bank`` (JSON list of the bands). Frames must share a length
    across channels.

    >>> from streamlab.testing import run_node, make_frame
    >>> cfg = {"bands": [[8, 12], [18, 26]], "order": 2, "sample_rate": 250.0}
    >>> x = np.sin(2 * np.pi * 10 * np.arange(500) / 250)
    >>> [out] = run_node(FilterBank, cfg, [make_frame(c3=x)])
    >>> out.channels
    ('c3@8-12', 'c3@18-26')
    >>> [round(float(np.abs(out.payload[n][-125:]).max()), 1) for n in out.channels]
    [1.0, 0.0]
    """

    class Config(FilterBankConfig):
        """Settings of FilterBank."""

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self._out_names: tuple[str, ...] = ()
        self._meta: tuple[Any, Any] | None = None

    def design(self, fs: float) -> None:
        c = self.config
        soses = []
        for i, (lo, hi) in enumerate(c.bands):
            try:
                check_cutoffs([hi], fs)
            except ValueError as exc:
                raise ValueError(f"config.bands[{i}]: {exc}") from None
            soses.append(self.signal.iirfilter(c.order, [lo, hi], rp=c.rp, rs=c.rs,
                                               btype="bandpass", ftype=c.design, fs=fs,
                                               output="sos"))
        self.soses = soses

    def make_stream(self, n_channels: int) -> _Bank:
        return _Bank([SosStream(sos, n_channels, self.signal) for sos in self.soses])

    def process(self, frame: DataFrame) -> DataFrame:
        names = frame.channels
        if not names:
            return frame  # a marker frame: its events ride on, carried
        self._check_rate(frame)
        if names != self._names:
            if self._names is not None:
                raise NodeError(self.context.node_id,
                                f"FilterBank: channels changed mid-stream from "
                                f"{list(self._names)} to {list(names)}")
            self._names = names
            self._stream = self.make_stream(len(names))
            self._primed = not self._prime
            self._out_names = tuple(f"{ch}@{_band_label(lo, hi)}"
                                    for lo, hi in self.config.bands for ch in names)
        try:
            x = frame.block()
        except ValueError as exc:
            raise NodeError(self.context.node_id, f"FilterBank: {exc}") from None
        if self._meta is None or self._meta[0] is not frame.metadata:
            meta = dict(frame.metadata, feature="filter_bank",
                        filter_bank=json.dumps([list(b) for b in self.config.bands]))
            self._meta = (frame.metadata, MappingProxyType(meta))
        if x.shape[1] and not self._primed:
            self._stream.prime(x[:, 0])
            self._primed = True
        y = self._stream.block(x) if x.shape[1] else np.empty((len(self._out_names), 0))
        out = DataFrame(frame.timestamp, frame.sequence_id,
                        Payload.from_block(self._out_names, y), self._meta[1], frame.events)
        out.ingress_ns = frame.ingress_ns  # for end-to-end latency, as derived frames do
        return out
