"""Event sources and sinks: simulated paradigms, BIDS-style events files.

* :class:`MarkerGenerator`: a seeded simulated paradigm (labels drawn with given
  probabilities, a uniform random inter-stimulus interval).
* :class:`EventsFileSource`: reads a BIDS-style ``events.tsv`` (or ``.csv``).
* :class:`EventsSink`: writes every event it receives as a BIDS-style ``events.tsv``.

The sources emit **marker frames**: an empty payload, one :class:`~streamlab.events.Event`
at sample 0, ``timestamp`` = the marker's time (µs) and ``metadata {"stream": "markers"}``.
Marker times are computed, never read from the clock per marker, so scheduling does not jitter
them. With ``realtime`` (free mode) a source waits on the pipeline clock until each marker is
due (the gaps are irregular, so it paces itself instead of using one ``frame_period``); a
graceful stop ends that wait at once.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from streamlab.config.paths import InputPath
from streamlab.errors import EndOfStream
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import SourceConfig, SourceNode
from streamlab.nodes.io import check_regular_file, require_suffix
from streamlab.nodes.sinks import AppendFile, FileSink, FileSinkConfig
from streamlab.registry import register_node

__all__ = ["MarkerGenerator", "EventsFileSource", "EventsSink", "read_events_file",
           "MARKER_METADATA"]

#: Metadata of every marker frame the sources here emit.
MARKER_METADATA = {"stream": "markers"}

_SUFFIXES = (".tsv", ".csv")
_NA = ("", "n/a")


def _marker_frame(seq: int, event: Event) -> DataFrame:
    return DataFrame(event.time, seq, None, MARKER_METADATA, (event,))


def _us(seconds: float) -> int:
    """Seconds -> integer µs (``2.000001`` -> ``2000001``: rounding undoes float error)."""
    return round(seconds * 1e6)


class _MarkerSource(SourceNode):
    """Shared pacing of marker sources: free + realtime waits until each marker is due.

    ``self._origin`` is the µs time that maps to the pacing start (the clock's monotonic time
    at the first frame); a marker at ``t`` is due ``(t - origin) / 1e6`` s after it.
    """

    _origin: int = 0
    _mono0: float | None = None

    def frame_period(self) -> float | None:
        return None  # irregular gaps: process() paces itself (see _wait_until)

    async def _pace(self, time_us: int) -> bool:
        """Wait until the marker at ``time_us`` is due; False if a stop came first."""
        if not (self.config.realtime and self.free_running()):
            return True
        clock = self.context.clock
        if self._mono0 is None:
            self._mono0 = clock.monotonic()
        wait = self._mono0 + (time_us - self._origin) / 1e6 - clock.monotonic()
        return wait <= 0 or await self.context.sleep(wait)


# -- MarkerGenerator -----------------------------------------------------------------------------
class MarkerGeneratorConfig(SourceConfig):
    """Settings of MarkerGenerator."""

    probabilities: dict[str, Annotated[float, Field(ge=0)]] = Field(
        ..., min_length=1, description="Label -> probability of each marker (>= 0, summing to "
        "1), e.g. {\"target\": 0.2, \"standard\": 0.8}.")
    isi_s: tuple[float, float] = Field(
        ..., description="[min, max] inter-stimulus interval in seconds, drawn uniformly; "
        "0 <= min <= max, max > 0.")
    seed: int | None = Field(0, description="Seed of numpy.random.default_rng: the same seed "
                             "gives the same sequence (None: fresh entropy).")
    values: dict[str, float] | None = Field(
        None, description="Label -> the markers' numeric value (labels not listed: no value).")
    duration_s: float = Field(0.0, ge=0, allow_inf_nan=False,
                              description="Duration of every marker, seconds.")
    count: int | None = Field(None, ge=1, description="Markers in all, then the source ends "
                              "(None: until stopped or max_frames).")

    @field_validator("probabilities")
    @classmethod
    def _sum_to_one(cls, v: dict[str, float]) -> dict[str, float]:
        if any(not label for label in v):
            raise ValueError("labels must be non-empty strings")
        total = math.fsum(v.values())
        if not abs(total - 1.0) <= 1e-9:  # also refuses NaN/inf
            raise ValueError(f"probabilities must sum to 1 (within 1e-9), got {total!r}")
        return v

    @field_validator("isi_s")
    @classmethod
    def _isi(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"[min, max] must be finite seconds, got {list(v)}")
        if lo < 0:
            raise ValueError(f"min must be >= 0 seconds, got {lo}")
        if lo > hi:
            raise ValueError(f"min must be <= max, got min={lo} > max={hi}")
        if hi <= 0:
            raise ValueError("max must be > 0 seconds (markers need time between them)")
        return v

    @field_validator("values")
    @classmethod
    def _values_known(cls, v: dict[str, float] | None,
                      info: ValidationInfo) -> dict[str, float] | None:
        labels: dict[str, float] | None = info.data.get("probabilities")
        if labels is None:  # probabilities failed its own checks: reported there
            return v
        unknown = sorted(set(v or ()) - set(labels))
        if unknown:
            raise ValueError(f"labels {unknown} are not in probabilities {sorted(labels)}")
        return v


@register_node
class MarkerGenerator(_MarkerSource):
    """Simulated paradigm: markers with random labels (given probabilities) at random intervals.

    Marker k (from 0) comes ``isi_0 + ... + isi_k`` after the start ``t0``: the first trigger's
    timestamp, or the pipeline clock's time at the first frame in free mode. Per marker, one
    seeded generator draws the interval ``uniform(min, max)`` (rounded to whole µs) and then
    the label (``random()`` against the cumulative probabilities, in config order), so a seed
    fixes the whole sequence whatever the mode or pacing. Each output is a marker frame (empty
    payload, one event, timestamp = its time, metadata ``{"stream": "markers"}``). After
    ``count`` markers the source ends (free) or emits nothing more (triggered).

    >>> from streamlab.testing import run_node
    >>> out = run_node(MarkerGenerator, {"probabilities": {"target": 0.5, "standard": 0.5},
    ...                                  "isi_s": [1.0, 1.0], "values": {"target": 1}},
    ...                triggers=3)
    >>> [(f.timestamp, f.events[0].label, f.events[0].value) for f in out]
    [(1000000, 'target', 1.0), (2000000, 'target', 1.0), (3000000, 'standard', None)]
    """

    Config = MarkerGeneratorConfig

    def on_create(self, config: MarkerGeneratorConfig) -> None:
        self.config = config
        self._labels = tuple(config.probabilities)
        self._cum = np.cumsum([config.probabilities[k] for k in self._labels])
        self._rng = np.random.default_rng(config.seed)
        self._values = dict(config.values or {})
        self._duration = _us(config.duration_s)
        self._t0: int | None = None
        self._elapsed = 0  # µs since t0 of the last marker
        self._seq = 0

    def _next_event(self) -> Event:
        lo, hi = self.config.isi_s
        self._elapsed += _us(float(self._rng.uniform(lo, hi)))
        # side="right": a label with probability 0 (an empty interval) is never drawn; min()
        # guards against a cumulative sum that rounds to just below 1.
        i = int(np.searchsorted(self._cum, self._rng.random(), side="right"))
        label = self._labels[min(i, len(self._labels) - 1)]
        value = self._values.get(label)
        assert self._t0 is not None
        return Event(self._t0 + self._elapsed, label,
                     None if value is None else float(value), self._duration)

    async def process(self, frame: DataFrame | None) -> DataFrame | None:  # type: ignore[override]
        count = self.config.count
        if count is not None and self._seq >= count:
            if frame is not None:
                return None  # triggered: later triggers find the paradigm over
            raise EndOfStream
        if self._t0 is None:
            self._t0 = frame.timestamp if frame is not None else self.context.clock.time_us()
            self._origin = self._t0
        event = self._next_event()
        if not await self._pace(event.time):
            return None  # stopping: the marker was not due yet
        out = _marker_frame(self._seq, event)
        self._seq += 1
        return out


# -- events files --------------------------------------------------------------------------------
def _where(path: Path, line: int, column: int | None = None, name: str | None = None) -> str:
    where = f"{str(path)!r}, line {line}"
    if column is not None:
        where += f", column {column}" + (f" ({name!r})" if name else "")
    return where


def _cell(row: list[str], cols: dict[str, int], name: str) -> tuple[str, int]:
    """The stripped cell of column ``name`` and its 1-based column number."""
    i = cols[name]
    return row[i].strip(), i + 1


def read_events_file(path: str | Path, *, label_column: str = "trial_type",
                     start_us: int = 0) -> list[Event]:
    """The events of a BIDS-style events file (.tsv tab-, .csv comma-separated), in order.

    Columns: ``onset`` (seconds, required), ``duration`` (seconds, optional; ``n/a`` or empty:
    0), ``label_column`` (required, non-empty), ``value`` (optional number; ``n/a`` or empty:
    none); others are ignored. Event time = ``start_us`` + onset in µs. Raises ValueError
    naming the file, the 1-based line and the column for a missing column, a non-numeric or
    non-finite onset, a negative duration, a bad value, an empty label, a row whose cell count
    differs from the header's, or an onset before the previous one (files are not re-sorted).
    """
    p = Path(path).expanduser()
    check_regular_file(p, "events file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{_where(p, line)}: not UTF-8 text; save the file as UTF-8") from None
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    header_line = 0
    cols: dict[str, int] = {}
    events: list[Event] = []
    previous: tuple[float, int] | None = None  # (onset, line) of the last row
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue  # blank line
            if header is None:
                header, header_line = [c.strip() for c in row], line
                for required in ("onset", label_column):
                    if required not in header:
                        hint = (" (set label_column to the column holding the labels)"
                                if required == label_column else "")
                        raise ValueError(f"{_where(p, line)}: missing column {required!r}; the "
                                         f"header has {header}{hint}")
                cols = {name: i for i, name in reversed(list(enumerate(header)))}
                continue
            if len(row) != len(header):
                raise ValueError(f"{_where(p, line)}: {len(row)} cells, but the header "
                                 f"(line {header_line}) has {len(header)} columns")

            text_, col = _cell(row, cols, "onset")
            try:
                onset = float(text_)
            except ValueError:
                onset = math.nan
            if not math.isfinite(onset):
                raise ValueError(f"{_where(p, line, col, 'onset')}: expected the onset in "
                                 f"seconds (a finite number), got {text_[:40]!r}")
            if previous is not None and onset < previous[0]:
                raise ValueError(f"{_where(p, line, col, 'onset')}: onset {text_} is before "
                                 f"the previous onset {previous[0]!r} (line {previous[1]}); "
                                 "events files must be sorted by onset")
            previous = (onset, line)
            duration = 0
            if "duration" in cols:
                text_, col = _cell(row, cols, "duration")
                if text_ not in _NA:
                    try:
                        seconds = float(text_)
                    except ValueError:
                        seconds = math.nan
                    if not (math.isfinite(seconds) and seconds >= 0):
                        raise ValueError(f"{_where(p, line, col, 'duration')}: expected a "
                                         f"duration in seconds >= 0 or n/a, got {text_[:40]!r}")
                    duration = _us(seconds)
            label, col = _cell(row, cols, label_column)
            if label in _NA:
                raise ValueError(f"{_where(p, line, col, label_column)}: empty label "
                                 f"(got {label!r}); every event needs a {label_column}")
            value: float | None = None
            if "value" in cols:
                text_, col = _cell(row, cols, "value")
                if text_ not in _NA:
                    try:
                        value = float(text_)
                    except ValueError:
                        raise ValueError(f"{_where(p, line, col, 'value')}: expected a number "
                                         f"or n/a, got {text_[:40]!r}") from None
            events.append(Event(start_us + _us(onset), label, value, duration))
    except csv.Error as exc:
        raise ValueError(f"{_where(p, reader.line_num)}: cannot parse it ({exc})") from None
    if header is None:
        raise ValueError(f"{str(p)!r}: empty events file (expected a header row with 'onset' "
                         f"and {label_column!r})")
    return events


class EventsFileSourceConfig(SourceConfig):
    """Settings of EventsFileSource."""

    mode: Literal["triggered", "free"] = Field(
        "free", description="'free' (default): emit every marker on its own, then end; "
        "'triggered': one marker per trigger frame.")
    path: InputPath = Field(..., min_length=1, description="events.tsv (tab-separated) or .csv "
                            "file. A relative path is relative to the config file's folder.")
    label_column: str = Field("trial_type", min_length=1,
                              description="Column holding each event's label.")
    start_us: int | None = Field(
        0, description="Time (µs) that onset 0 maps to. None: the first trigger's timestamp, "
        "or the pipeline clock's time at the first frame.")

    @model_validator(mode="after")
    def _check(self) -> EventsFileSourceConfig:
        require_suffix(self.path, _SUFFIXES, "EventsFileSource")
        return self

    def check_input_file(self, field: str, path: str) -> str | None:
        """What is wrong with the events file's contents (``streamlab validate`` and ``run``
        check it before running: exit 2 with the file, line and column), or None."""
        try:
            read_events_file(path, label_column=self.label_column)
        except ValueError as exc:
            return str(exc)
        return None


@register_node
class EventsFileSource(_MarkerSource):
    """Read a BIDS-style events.tsv (or .csv) and emit one marker frame per row, in onset order.

    The file is read and checked in ``on_create`` (see :func:`read_events_file` for the columns
    and errors: each names the file, line and column). Runs free by default and ends after the
    last row; with ``realtime`` each marker is emitted when due (onset seconds after the first
    frame). In triggered mode each trigger emits the next marker; triggers after the last one
    emit nothing.

    >>> import tempfile, os
    >>> from streamlab.testing import run_node
    >>> path = os.path.join(tempfile.mkdtemp(), "events.tsv")
    >>> _ = open(path, "w").write("onset\\tduration\\ttrial_type\\n0.5\\t0.1\\tgo\\n1.25\\tn/a\\tstop\\n")
    >>> out = run_node(EventsFileSource, {"path": path}, triggers=3)
    >>> [(f.timestamp, f.events[0].label, f.events[0].duration) for f in out]
    [(500000, 'go', 100000), (1250000, 'stop', 0)]
    """

    Config = EventsFileSourceConfig

    def on_create(self, config: EventsFileSourceConfig) -> None:
        self.config = config
        # Relative to onset 0; shifted by the start time at the first frame.
        self._events = read_events_file(config.path, label_column=config.label_column)
        self._start: int | None = config.start_us
        self._i = 0

    @property
    def events(self) -> tuple[Event, ...]:
        """The file's events, times relative to onset 0."""
        return tuple(self._events)

    async def process(self, frame: DataFrame | None) -> DataFrame | None:  # type: ignore[override]
        if self._start is None:
            self._start = frame.timestamp if frame is not None else self.context.clock.time_us()
        if self._i >= len(self._events):
            if frame is not None:
                return None
            raise EndOfStream
        e = self._events[self._i]
        event = Event(self._start + e.time, e.label, e.value, e.duration)
        self._origin = self._start
        if not await self._pace(event.time):
            return None  # stopping: the marker was not due yet
        out = _marker_frame(self._i, event)
        self._i += 1
        return out


# -- EventsSink ----------------------------------------------------------------------------------
EVENTS_COLUMNS = ("onset", "duration", "trial_type", "value", "sample")


def _seconds(us: int) -> str:
    """µs as exact decimal seconds: 2000001 -> '2.000001', 1500000 -> '1.5'."""
    sign = "-" if us < 0 else ""
    whole, frac = divmod(abs(us), 1_000_000)
    return f"{sign}{whole}.{(f'{frac:06d}'.rstrip('0') or '0')}"


class EventsSinkConfig(FileSinkConfig):
    """Settings of EventsSink."""

    start_us: int | None = Field(
        None, description="Time (µs) of onset 0 and sample 0. None: the first frame's timestamp.")

    @model_validator(mode="after")
    def _check(self) -> EventsSinkConfig:
        require_suffix(self.path, _SUFFIXES, "EventsSink")
        return self


@register_node
class EventsSink(FileSink):
    """Write every event received (on data or marker frames) as a BIDS-style events.tsv.

    Columns ``onset`` (s, exact to the µs, relative to ``start_us`` or the first frame's
    timestamp), ``duration`` (s), ``trial_type`` (the label), ``value`` (``n/a`` if none) and
    ``sample``: the absolute sample index ``round((frame.timestamp - start) * rate / 1e6) +
    event.sample`` when the frame has samples and ``metadata["sample_rate"]``, else ``n/a``.
    The header is written at the first frame; each frame's rows go to the file in one write
    as it arrives, so a crash loses at most the frame being written. Events are settled
    ``carried`` once written (``dropped`` if the write fails). A ``.csv`` path is
    comma-separated. The file is closed in ``on_stop``.

    >>> import tempfile, os
    >>> from streamlab.testing import run_node, make_frame
    >>> from streamlab.events import Event
    >>> path = os.path.join(tempfile.mkdtemp(), "events.tsv")
    >>> f = make_frame(x=[0.0] * 4, timestamp=1_000_000).with_metadata(sample_rate="4.0")
    >>> _ = run_node(EventsSink, {"path": path, "start_us": 0},
    ...              [f.with_events([Event(1_500_000, "go", 2.0, sample=2)])])
    >>> print(open(path).read().replace("\\t", " "), end="")
    onset duration trial_type value sample
    1.5 0.0 go 2.0 6
    """

    Config = EventsSinkConfig
    fixed_channels = False
    handles_events = True

    def process(self, frame: DataFrame) -> DataFrame | None:
        n = len(frame.events)
        out = super().process(frame)  # (a failed write: the runtime settles the events dropped)
        self.context.settle_events("carried", n)  # delivered to the file
        return out

    def _open(self, frame: DataFrame) -> None:
        self._start = self.config.start_us if self.config.start_us is not None else frame.timestamp
        self._delimiter = "\t" if self.path.suffix.lower() == ".tsv" else ","
        self._file = AppendFile(self.path)
        self._file.append(self._rows([list(EVENTS_COLUMNS)]))

    def _rows(self, rows: list[list[str]]) -> bytes:
        text = io.StringIO()
        csv.writer(text, delimiter=self._delimiter, lineterminator="\n").writerows(rows)
        return text.getvalue().encode("utf-8")

    def _write(self, frame: DataFrame) -> None:
        if not frame.events:
            return
        rate = self._sample_rate(frame, None) if frame.n_samples else None
        first = None if not rate else round((frame.timestamp - self._start) * rate / 1e6)
        rows = []
        for e in frame.events:
            sample = "n/a" if first is None or first + e.sample < 0 else str(first + e.sample)
            rows.append([_seconds(e.time - self._start), _seconds(e.duration), e.label,
                         "n/a" if e.value is None else repr(float(e.value)), sample])
        self._file.append(self._rows(rows))  # the whole frame in one write

    def _finish(self) -> None:
        self._file.close()
