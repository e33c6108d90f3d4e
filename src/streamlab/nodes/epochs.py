"""Event-locked epochs, their running averages, and a plot of the evoked responses.

* :class:`Epoch` cuts, around every event (marker) it sees on the data frames, the samples from
  ``round(tmin * sfreq)`` to ``round(tmax * sfreq)`` relative to the event's sample (both
  included), exactly as ``mne.Epochs`` does: then detrend (optional), then baseline correction
  (mean over the baseline samples), then peak-to-peak rejection (``reject``: too large,
  ``flat``: too small) on the corrected epoch. One output frame per kept epoch, emitted as soon
  as its last sample has arrived.
* :class:`Average`: the running mean and standard error per event label (Welford).
* :class:`EvokedPlot`: the averages per label drawn to a PNG at the end of the run.

See docs/nodes/epochs.md for the event fates, the reasons counted and the equality tests
against MNE-Python.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from streamlab.errors import NodeError, missing_extra
from streamlab.events import Event
from streamlab.frame import DataFrame, Payload
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.nodes.filters import frame_sample_rate
from streamlab.nodes.io import require_suffix
from streamlab.nodes.sinks import FileSink, FileSinkConfig, frame_source_name
from streamlab.registry import register_node

__all__ = ["Epoch", "EpochConfig", "EpochStatistics", "Average", "AverageConfig",
           "EvokedPlot", "EvokedPlotConfig", "OUT_OF_RANGE_REASONS", "REJECT_REASONS"]

#: Why an epoch could not be cut (event fate ``out_of_range``).
OUT_OF_RANGE_REASONS = (
    "start",       # the epoch begins before the first sample of the stream
    "gap",         # a timestamp discontinuity cut the epoch (before or after its event)
    "end",         # the stream ended before the epoch's last sample
    "no_samples",  # the event came on a frame without samples (nothing to place it on)
)
#: Why a complete epoch was rejected (event fate ``rejected``): ``reject`` wins over ``flat``.
REJECT_REASONS = ("reject", "flat")

_EPS = 1e-9  # seconds: tolerance of the config checks on times (float input like 0.1 + 0.2)


class EpochConfig(NodeConfig):
    """Settings of Epoch (times in seconds relative to the event)."""

    tmin: float = Field(-0.2, description="Start of the epoch (s, relative to the event).")
    tmax: float = Field(0.5, description="End of the epoch (s, included); must be > tmin.")
    labels: list[str] | None = Field(None, min_length=1, description="Event labels to epoch "
                                     "(others are settled 'unmatched'); None: every label.")
    label_pattern: str | None = Field(None, description="Regular expression a label must match "
                                      "entirely (instead of 'labels').")
    baseline: tuple[float | None, float | None] | None = Field(
        (None, 0.0), description="[a, b] (s) whose mean is subtracted, as in MNE; None ends mean "
        "the epoch's first/last sample; null: no baseline correction.", validate_default=True)
    reject: float | dict[str, float] | None = Field(
        None, description="Reject an epoch whose peak-to-peak on a channel exceeds this "
        "(one number for every channel, or channel -> value).")
    flat: float | dict[str, float] | None = Field(
        None, description="Reject an epoch whose peak-to-peak on a channel is below this.")
    detrend: Literal[0, 1] | None = Field(None, description="0: remove the mean (DC), 1: remove "
                                          "a linear trend (before the baseline, as MNE).")
    picks: list[str] | None = Field(None, min_length=1, description="Channels to epoch, in "
                                    "this order (None: every channel).")
    sample_rate: float | None = Field(None, gt=0, description="Hz (default: "
                                      "metadata['sample_rate']).")
    gap_tolerance: float | None = Field(None, gt=0, description="A frame whose timestamp is "
                                        "further than this (s) from where the previous frame "
                                        "ended starts a new segment (default: half a sample).")
    drop_log_size: int = Field(1000, ge=0, le=1_000_000, description="How many of the latest "
                               "rejected or out-of-range epochs statistics() lists.")

    @field_validator("tmax")
    @classmethod
    def _tmax(cls, v: float, info: ValidationInfo) -> float:
        tmin = info.data.get("tmin")
        if tmin is not None and not tmin < v:
            raise ValueError(f"tmax must be greater than tmin = {tmin}")
        return v

    @field_validator("label_pattern")
    @classmethod
    def _pattern(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if info.data.get("labels") is not None:
            raise ValueError("give either 'labels' or 'label_pattern', not both")
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc} (got {v!r})") from None
        return v

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, v: tuple[float | None, float | None] | None,
                  info: ValidationInfo) -> tuple[float | None, float | None] | None:
        tmin, tmax = info.data.get("tmin"), info.data.get("tmax")
        if v is None or tmin is None or tmax is None:
            return v
        a = tmin if v[0] is None else v[0]
        b = tmax if v[1] is None else v[1]
        if min(a, b) < tmin - _EPS or max(a, b) > tmax + _EPS:
            raise ValueError(f"baseline [{a}, {b}] s is outside the epoch [{tmin}, {tmax}] s")
        if a > b:
            raise ValueError(f"baseline start must not be after its end (got [{a}, {b}])")
        if v == (None, 0.0) and tmin == 0:  # as MNE: the default would average one sample
            raise ValueError("baseline [None, 0] with tmin = 0 is one sample; use [0, 0] if "
                             "this is what you want, or null for none")
        return v

    @field_validator("reject", "flat")
    @classmethod
    def _threshold(cls, v: float | dict[str, float] | None) -> float | dict[str, float] | None:
        values = v.values() if isinstance(v, dict) else [] if v is None else [v]
        for x in values:
            if not (math.isfinite(x) and x >= 0):
                raise ValueError(f"peak-to-peak thresholds must be finite and >= 0 (got {x})")
        return v

    @field_validator("picks")
    @classmethod
    def _picks(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            dup = sorted({p for p in v if v.count(p) > 1})
            raise ValueError(f"picks must be unique (repeated: {dup})")
        return v


@dataclass(frozen=True)
class EpochStatistics:
    """What an Epoch node has done with the events it received.

    ``rejected`` and ``out_of_range`` count epochs per reason (:data:`REJECT_REASONS`,
    :data:`OUT_OF_RANGE_REASONS`); ``drop_log`` lists the latest of them as
    ``(event_index, label, reason, channels)`` (channels: those over/under the threshold).
    """

    epoched: int
    unmatched: int
    rejected: dict[str, int]
    out_of_range: dict[str, int]
    rejected_channels: dict[str, int]
    pending: int
    buffered_samples: int
    drop_log: tuple[tuple[int, str, str, tuple[str, ...]], ...] = field(default=())


@dataclass
class _Pending:
    sample: int       # absolute sample index of the event (counted from the stream's start)
    event: Event
    index: int        # running index of the event (all events received, matched or not)


@register_node
class Epoch(ProcessingNode):
    """Cut an epoch around each event: ``[tmin, tmax]`` s, detrend, baseline, reject, as MNE.

    Input: data frames with events positioned on their samples (metadata ``sample_rate``).
    Output, per kept epoch, as soon as its last sample has arrived: a frame of the picked
    channels x ``round(tmax*sfreq) - round(tmin*sfreq) + 1`` samples, ``timestamp`` = time of
    its first sample, metadata ``event_label``, ``event_time`` (µs), ``event_index`` (running
    index of the events received), ``sample_rate`` and ``tmin`` (s of the first sample), and
    the event on its zero sample (clamped into the epoch when ``tmin > 0`` or ``tmax < 0``).

    Event fates: ``epoched`` (kept), ``rejected`` (peak-to-peak), ``out_of_range`` (reasons
    ``start``, ``gap``, ``end``, ``no_samples``), ``unmatched`` (label not asked for). Events
    whose epoch is still incomplete when the node stops are ``out_of_range`` (``end``). Memory:
    the node keeps only the samples still needed (the pending epochs and ``|tmin|`` before the
    newest sample). A change of channels or sample rate mid-stream is a NodeError.

    >>> from streamlab.testing import run_node
    >>> ev = Event(1_000_000 + 500_000, "stim", sample=5)
    >>> f = DataFrame(1_000_000, 0, {"x": np.arange(10.0)}, {"sample_rate": "10"}, [ev])
    >>> [out] = run_node(Epoch, {"tmin": -0.2, "tmax": 0.3, "baseline": None}, [f])
    >>> out.payload["x"].tolist(), out.timestamp, out.metadata["event_label"]
    ([3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 1300000, 'stim')
    >>> out.events[0].sample  # the event sits on the epoch's zero sample
    2
    """

    Config = EpochConfig
    handles_events: ClassVar[bool] = True

    def on_create(self, config: EpochConfig) -> None:
        super().on_create(config)
        self._pattern = re.compile(config.label_pattern) if config.label_pattern else None
        self._labels = frozenset(config.labels) if config.labels is not None else None
        self._fs: float | None = None
        self._rate_text = ""
        self._in_names: tuple[str, ...] | None = None
        self._rows: np.ndarray | None = None       # indices of the picked channels
        self._names: tuple[str, ...] = ()
        self._buf = np.empty((0, 0))
        self._buf_start = 0                        # absolute index of _buf[:, 0]
        self._buf_len = 0
        self._next = 0                             # absolute index of the next sample to come
        self._seg_start = 0                        # absolute index where this segment began
        self._first_segment = True
        self._expect_ts: int | None = None
        self._anchors: deque[tuple[int, int]] = deque()  # (absolute index, timestamp) per frame
        self._pending: deque[_Pending] = deque()
        self._n_events = 0
        self._epoched = 0
        self._unmatched = 0
        self._rejected = dict.fromkeys(REJECT_REASONS, 0)
        self._out = dict.fromkeys(OUT_OF_RANGE_REASONS, 0)
        self._rej_channels: dict[str, int] = {}
        self._drops: deque[tuple[int, str, str, tuple[str, ...]]] = deque(
            maxlen=config.drop_log_size)

    # -- setup at the first frame --------------------------------------------------------------
    def _fail(self, message: str) -> NodeError:
        return NodeError(self.node_id, f"Epoch: {message}")

    def _setup(self, frame: DataFrame) -> None:
        cfg = self.config
        fs = frame_sample_rate(self, frame, cfg.sample_rate)
        self._fs = fs
        self._rate_text = frame.metadata.get("sample_rate", repr(fs)) if cfg.sample_rate is \
            None else repr(float(cfg.sample_rate))
        names = frame.channels
        self._in_names = names
        if cfg.picks is None:
            picks = list(names)
        else:
            for i, p in enumerate(cfg.picks):
                if p not in names:
                    raise self._fail(f"config.picks[{i}]: {p!r} is not a channel of the stream "
                                     f"(channels: {list(names)})")
            picks = list(cfg.picks)
        self._names = tuple(picks)
        self._rows = np.array([names.index(p) for p in picks], dtype=np.intp)
        # sample offsets exactly as mne.Epochs: int(round(t * sfreq)), both ends included
        self._i0 = int(round(cfg.tmin * fs))
        self._i1 = int(round(cfg.tmax * fs))
        self._n = self._i1 - self._i0 + 1
        if self._n < 1:
            raise self._fail(f"config.tmax: the epoch [{cfg.tmin}, {cfg.tmax}] s has no sample "
                             f"at {fs:g} Hz")
        times = np.arange(self._i0, self._i1 + 1) / fs
        self._bl: tuple[int, int] | None = None
        if cfg.baseline is not None:
            # as mne.baseline.rescale: None -> the epoch's first/last time, then the samples
            # with bmin <= t <= bmax
            bmin = times[0] if cfg.baseline[0] is None else cfg.baseline[0]
            bmax = times[-1] if cfg.baseline[1] is None else cfg.baseline[1]
            lo, hi = np.nonzero(times >= bmin)[0], np.nonzero(times <= bmax)[0]
            if not len(lo) or not len(hi) or lo[0] >= hi[-1] + 1:
                raise self._fail(f"config.baseline: [{bmin}, {bmax}] s holds no sample of the "
                                 f"epoch (first sample {times[0]:.6g} s, last {times[-1]:.6g} s "
                                 f"at {fs:g} Hz)")
            self._bl = (int(lo[0]), int(hi[-1]) + 1)
        self._reject = self._thresholds("reject", cfg.reject, math.inf)
        self._flat = self._thresholds("flat", cfg.flat, -math.inf)
        self._tol_us = (cfg.gap_tolerance * 1e6 if cfg.gap_tolerance is not None
                        else 0.5e6 / fs)
        self._buf = np.empty((len(picks), max(16, 2 * self._n)))

    def _thresholds(self, key: str, value: float | dict[str, float] | None,
                    default: float) -> np.ndarray | None:
        if value is None:
            return None
        if isinstance(value, dict):
            for name in value:
                if name not in self._names:
                    raise self._fail(f"config.{key}.{name}: not a picked channel (picked: "
                                     f"{list(self._names)})")
            return np.array([value.get(n, default) for n in self._names], dtype=np.float64)
        return np.full(len(self._names), float(value))

    # -- per frame -----------------------------------------------------------------------------
    def process(self, frame: DataFrame) -> list[DataFrame]:
        n = frame.n_samples
        if n == 0:
            for e in frame.events:
                self._count_event(e)  # an index per event, matched or not
                self._lose(_Pending(self._next, e, self._n_events - 1), "no_samples")
            return []
        if self._fs is None:
            self._setup(frame)
        elif frame.channels != self._in_names:
            raise self._fail(f"frame {frame.sequence_id} has channels {list(frame.channels)}, "
                             f"the stream began with {list(self._in_names or ())}")
        elif (self.config.sample_rate is None and "sample_rate" in frame.metadata
              and frame.metadata["sample_rate"] != self._rate_text
              and frame_sample_rate(self, frame, None) != self._fs):
            raise self._fail(f"frame {frame.sequence_id} has sample_rate "
                             f"{frame.metadata['sample_rate']}, the stream began at {self._fs:g}")
        fs = self._fs
        assert fs is not None and self._rows is not None
        if self._expect_ts is not None and abs(frame.timestamp - self._expect_ts) > self._tol_us:
            self._new_segment()
        self._expect_ts = frame.timestamp + round(n * 1e6 / fs)
        start = self._next
        self._append(frame.block()[self._rows])
        self._anchors.append((start, frame.timestamp))
        self._next += n
        for e in frame.events:
            index = self._count_event(e)
            if not self._wanted(e.label):
                self._unmatched += 1
                self.context.settle_events("unmatched")
                continue
            p = _Pending(start + e.sample, e, index)
            if p.sample + self._i0 < self._seg_start:
                self._lose(p, "start" if self._first_segment else "gap")
            else:
                self._pending.append(p)
        outs: list[DataFrame] = []
        while self._pending and self._pending[0].sample + self._i1 < self._next:
            out = self._cut(self._pending.popleft())
            if out is not None:
                outs.append(out)
        self._trim()
        return outs

    def _count_event(self, e: Event) -> int:
        self._n_events += 1
        return self._n_events - 1

    def _wanted(self, label: str) -> bool:
        if self._labels is not None:
            return label in self._labels
        if self._pattern is not None:
            return self._pattern.fullmatch(label) is not None
        return True

    def _lose(self, p: _Pending, reason: str) -> None:
        self._out[reason] += 1
        self._drops.append((p.index, p.event.label, reason, ()))
        self.context.settle_events("out_of_range")

    def _new_segment(self) -> None:
        """A timestamp discontinuity: epochs still waiting for samples can never complete."""
        while self._pending:
            self._lose(self._pending.popleft(), "gap")
        self._buf_start = self._next
        self._buf_len = 0
        self._anchors.clear()
        self._seg_start = self._next
        self._first_segment = False

    def _append(self, block: np.ndarray) -> None:
        m = block.shape[1]
        if self._buf_len + m > self._buf.shape[1]:  # grow; bounded, as _trim keeps only a span
            grown = np.empty((self._buf.shape[0], max(2 * self._buf.shape[1],
                                                      self._buf_len + 2 * m)))
            grown[:, :self._buf_len] = self._buf[:, :self._buf_len]
            self._buf = grown
        self._buf[:, self._buf_len:self._buf_len + m] = block
        self._buf_len += m

    def _trim(self) -> None:
        """Forget the samples no pending or future epoch needs (|tmin| before the next one)."""
        keep = self._next + min(self._i0, 0)
        if self._pending:
            keep = min(keep, self._pending[0].sample + self._i0)
        drop = min(keep - self._buf_start, self._buf_len)
        if drop > 0:
            rest = self._buf_len - drop
            self._buf[:, :rest] = self._buf[:, drop:self._buf_len]
            self._buf_start += drop
            self._buf_len = rest
        while len(self._anchors) > 1 and self._anchors[1][0] <= self._buf_start:
            self._anchors.popleft()

    def _time_of(self, sample: int) -> int:
        """Timestamp (µs) of an absolute sample: its frame's timestamp + its offset in it."""
        assert self._fs is not None
        base, ts = self._anchors[0]
        for a, t in self._anchors:
            if a > sample:
                break
            base, ts = a, t
        return ts + round((sample - base) * 1e6 / self._fs)

    def _cut(self, p: _Pending) -> DataFrame | None:
        first = p.sample + self._i0
        lo = first - self._buf_start
        data = self._buf[:, lo:lo + self._n].copy()
        # the order of mne.Epochs: detrend, then baseline, then peak-to-peak on the result
        if self.config.detrend is not None:
            data = _detrend(data, self.config.detrend)
        if self._bl is not None:
            a, b = self._bl
            data -= data[:, a:b].mean(axis=1, keepdims=True)
        bad = self._bad(data)
        if bad is not None:
            reason, chans = bad
            self._rejected[reason] += 1
            for c in chans:
                self._rej_channels[c] = self._rej_channels.get(c, 0) + 1
            self._drops.append((p.index, p.event.label, reason, chans))
            self.context.settle_events("rejected")
            return None
        self._epoched += 1
        self.context.settle_events("epoched")
        zero = min(max(-self._i0, 0), self._n - 1)
        meta = {"event_label": p.event.label, "event_time": str(p.event.time),
                "event_index": str(p.index), "sample_rate": self._rate_text,
                "tmin": repr(self._i0 / self._fs)}  # type: ignore[operator]
        return DataFrame(self._time_of(first), p.index, Payload.from_block(self._names, data),
                         meta, (p.event.at(zero),))

    def _bad(self, data: np.ndarray) -> tuple[str, tuple[str, ...]] | None:
        if self._reject is None and self._flat is None:
            return None
        ptp = data.max(axis=1) - data.min(axis=1)
        for reason, limits, over in (("reject", self._reject, True), ("flat", self._flat, False)):
            if limits is None:
                continue
            hit = ptp > limits if over else ptp < limits  # NaN compares False, as in MNE
            if hit.any():
                return reason, tuple(n for n, h in zip(self._names, hit, strict=True) if h)
        return None

    def on_stop(self) -> None:
        """Epochs still waiting for samples never complete: ``out_of_range`` (``end``)."""
        while self._pending:
            self._lose(self._pending.popleft(), "end")

    def statistics(self) -> EpochStatistics:
        return EpochStatistics(self._epoched, self._unmatched, dict(self._rejected),
                               dict(self._out), dict(self._rej_channels), len(self._pending),
                               self._buf_len, tuple(self._drops))


def _detrend(data: np.ndarray, order: int) -> np.ndarray:
    """Remove the mean (0) or the least-squares line (1) of each row, as scipy.signal.detrend."""
    mean = data.mean(axis=1, keepdims=True)
    if order == 0 or data.shape[1] < 2:
        return data - mean
    t = np.arange(data.shape[1], dtype=np.float64)
    t -= t.mean()
    slope = (data @ t) / (t @ t)
    return data - mean - slope[:, None] * t


# -- Average -----------------------------------------------------------------------------------
class AverageConfig(NodeConfig):
    """Settings of Average."""

    sem_suffix: str | None = Field("_sem", min_length=1, description="Add, per channel, the "
                                   "standard error of the mean as a channel named channel + "
                                   "this suffix (None: means only).")


class _Welford:
    """Running mean and sum of squared deviations of equally shaped arrays."""

    def __init__(self, first: np.ndarray) -> None:
        self.count = 1
        self.mean = first.astype(np.float64, copy=True)
        self.m2 = np.zeros_like(self.mean)

    def add(self, x: np.ndarray) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)

    def sem(self) -> np.ndarray:
        """Standard error of the mean (sample std / sqrt(n)); NaN with fewer than 2 epochs."""
        if self.count < 2:
            return np.full_like(self.mean, np.nan)
        return np.sqrt(self.m2 / (self.count - 1) / self.count)


@register_node
class Average(ProcessingNode):
    """Running evoked response per label: mean (and standard error) of the epochs so far.

    Input: epoch frames (from :class:`Epoch`: metadata ``event_label``). For each, the running
    mean of that label's epochs is updated (Welford) and emitted: same channels (plus
    ``<channel><sem_suffix>`` with the standard error, NaN until 2 epochs), timestamp and event
    of the input, metadata ``label``, ``count``, ``sample_rate`` and ``tmin``. Epochs of one
    label must keep their channels and length (else NodeError). Nothing is held at stop.

    >>> from streamlab.testing import run_node
    >>> meta = {"event_label": "a", "sample_rate": "10"}
    >>> fs = [DataFrame(0, i, {"x": [v, v]}, meta) for i, v in enumerate([1.0, 3.0])]
    >>> out = run_node(Average, {}, fs)
    >>> out[-1].payload["x"].tolist(), out[-1].payload["x_sem"].tolist(), out[-1].metadata["count"]
    ([2.0, 2.0], [1.0, 1.0], '2')
    """

    Config = AverageConfig

    def on_create(self, config: AverageConfig) -> None:
        super().on_create(config)
        self._acc: dict[str, tuple[tuple[str, ...], _Welford]] = {}

    def process(self, frame: DataFrame) -> DataFrame:
        label = frame.metadata.get("event_label")
        if label is None:
            raise NodeError(self.node_id, f"Average: frame {frame.sequence_id} is not an epoch "
                            "(no metadata 'event_label'); connect it after an Epoch node")
        block = frame.block()
        held = self._acc.get(label)
        if held is None:
            acc = _Welford(block)
            self._acc[label] = (frame.channels, acc)
        else:
            names, acc = held
            if names != frame.channels or acc.mean.shape != block.shape:
                raise NodeError(self.node_id, f"Average: epoch {frame.sequence_id} of label "
                                f"{label!r} has channels {list(frame.channels)} x "
                                f"{block.shape[1]} samples, earlier ones {list(names)} x "
                                f"{acc.mean.shape[1]}")
            acc.add(block)
        out_names: tuple[str, ...] = frame.channels
        data = acc.mean.copy()
        suffix = self.config.sem_suffix
        if suffix is not None:
            out_names += tuple(n + suffix for n in frame.channels)
            data = np.vstack([data, acc.sem()])
        meta = {"label": label, "event_label": label, "count": str(acc.count)}
        for key in ("sample_rate", "tmin"):
            if key in frame.metadata:
                meta[key] = frame.metadata[key]
        # the input's events (the same objects) ride along: carried, and they mark t = 0
        return DataFrame(frame.timestamp, frame.sequence_id, Payload.from_block(out_names, data),
                         meta, frame.events)

    def averages(self) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
        """Per label: ``(count, mean, sem)`` (channels x samples, copies)."""
        return {k: (w.count, w.mean.copy(), w.sem()) for k, (_, w) in self._acc.items()}


# -- EvokedPlot --------------------------------------------------------------------------------
class EvokedPlotConfig(FileSinkConfig):
    """Settings of EvokedPlot."""

    sem_suffix: str = Field("_sem", min_length=1, description="Channels named channel + this "
                            "suffix are drawn as the mean's +- band, not as curves.")
    units: str = Field("", description="Unit of the samples, shown on the y axes.")
    title: str | None = Field(None, description="Figure title (default: the upstream node and "
                              "the counts).")
    width: int = Field(1000, ge=200, le=8000, description="Image width in pixels.")
    height: int | None = Field(None, ge=200, le=8000, description="Image height in pixels "
                               "(default: grows with the number of channels).")
    max_channels: int = Field(16, ge=1, le=64, description="Draw at most this many channels.")

    @model_validator(mode="after")
    def _check(self) -> EvokedPlotConfig:
        require_suffix(self.path, (".png",), "EvokedPlot")
        return self


@register_node
class EvokedPlot(FileSink):
    """Draw the evoked response per label (from Average) to a PNG when the run ends.

    Keeps the latest Average frame per label; at the end draws one panel per channel, one
    curve per label with its standard error as a shaded band, time in seconds with the event
    at t = 0 (from metadata ``tmin`` and ``sample_rate``; without them, the sample index)
    and a dashed line there. No frame, no file. The events on the frames (each average's
    event at t = 0) are settled ``carried`` into the plot.

    >>> import tempfile, os
    >>> from streamlab.testing import run_node
    >>> path = os.path.join(tempfile.mkdtemp(), "evoked.png")
    >>> meta = {"label": "a", "count": "2", "sample_rate": "10", "tmin": "-0.2"}
    >>> f = DataFrame(0, 0, {"x": [0.0, 1.0, 0.5], "x_sem": [0.1, 0.1, 0.1]}, meta)
    >>> run_node(EvokedPlot, {"path": path, "width": 400, "height": 300}, [f])
    []
    >>> open(path, "rb").read(4) == b"\\x89PNG"
    True
    """

    Config = EvokedPlotConfig
    # Average frames carry their epoch's event (on the zero sample): the plot stores it as the
    # t = 0 of each curve, so the events are settled 'carried' into the file, not warned about
    # as lost (FileSink's "cannot store events", which every oddball run used to print).
    stores_events = True
    handles_events = True

    def on_create(self, config: EvokedPlotConfig) -> None:
        super().on_create(config)
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise missing_extra("matplotlib", "plot") from exc
        self._latest: dict[str, DataFrame] = {}
        self._source = ""

    def _open(self, frame: DataFrame) -> None:
        self._source = frame_source_name(self)

    def _write(self, frame: DataFrame) -> None:
        label = frame.metadata.get("label", frame.metadata.get("event_label", ""))
        self._latest[label] = frame

    def _finish(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(self._figure()).print_png(str(self.path))

    def _figure(self) -> Any:
        from matplotlib.figure import Figure

        cfg = self.config
        suffix = cfg.sem_suffix
        names = [n for n in (self._names or ()) if not n.endswith(suffix)][:cfg.max_channels]
        rows = max(1, len(names))
        dpi = 100
        height = cfg.height or min(2400, 120 + 180 * rows)
        fig = Figure(figsize=(cfg.width / dpi, height / dpi), dpi=dpi, layout="constrained")
        axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
        timed = True
        for k, (label, f) in enumerate(sorted(self._latest.items())):
            x, has_time = _epoch_times(f)
            timed = timed and has_time
            for ax, name in zip(axes, names, strict=False):
                mean = f.payload[name]
                colour = f"C{k % 10}"
                ax.plot(x, mean, color=colour, linewidth=1.2,
                        label=f"{label} (n={f.metadata.get('count', '?')})")
                sem = f.payload.get(name + suffix)
                if sem is not None:
                    ax.fill_between(x, mean - sem, mean + sem, color=colour, alpha=0.25,
                                    linewidth=0)
        unit = f" [{cfg.units}]" if cfg.units else ""
        for ax, name in zip(axes, names, strict=False):
            ax.axvline(0.0, color="k", linestyle="--", linewidth=0.8)
            ax.axhline(0.0, color="0.6", linewidth=0.5)
            ax.set_ylabel(f"{name}{unit}")
            ax.grid(True, alpha=0.3)
            ax.margins(x=0)
        axes[0].legend(loc="upper right", fontsize=8)
        axes[-1].set_xlabel("time from event [s]" if timed else "sample from event")
        counts = ", ".join(f"{lab}: {f.metadata.get('count', '?')}"
                           for lab, f in sorted(self._latest.items()))
        fig.suptitle(cfg.title or f"{self._source}: evoked response ({counts})", fontsize=12)
        return fig


def _epoch_times(frame: DataFrame) -> tuple[np.ndarray, bool]:
    """x axis of an epoch frame: seconds from the event, or samples from it (and which)."""
    n = frame.n_samples
    rate, tmin = frame.metadata.get("sample_rate"), frame.metadata.get("tmin")
    try:
        if rate is not None and tmin is not None:
            return float(tmin) + np.arange(n) / float(rate), True
    except ValueError:
        pass
    zero = frame.events[0].sample if frame.events else 0
    return np.arange(n, dtype=np.float64) - zero, False
