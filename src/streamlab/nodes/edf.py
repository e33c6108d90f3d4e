"""EDF+ and BDF+ in and out: ``EdfSource`` reads EDF/EDF+/BDF/BDF+ files (annotations become
events), ``EdfSink`` records a stream to EDF+ or BDF+ (events become annotations), crash-safe.

The byte layout lives in :mod:`streamlab.formats.edf` (our own reader and streaming writer).
edfio and mne are the reference readers the tests check our files against; see
docs/nodes/edf.md for why the nodes do not call a library at run time (no streaming writer;
edfio reads a BDF file whole into memory).

**Crash safety.** EdfSink writes the header first with the record count -1 (the EDF+
specification allows -1 "during recording"), then hands each complete data record to the
operating system as it fills (a frame's records in one write, cut back whole if the write
fails), and rewrites the header's count every ``flush_interval_s`` and at the end. After a
``kill -9`` the file holds every record completed before the kill; mne and edfio infer the
count from the file size, and :func:`repair` (``streamlab.nodes.edf.repair(path)``) writes the
exact count into the header and cuts a partial record.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from streamlab.config.paths import InputPath
from streamlab.events import Event
from streamlab.formats.edf import (
    BDF_DIGITAL,
    EDF_DIGITAL,
    N_RECORDS_OFFSET,
    Annotation,
    EdfFormatError,
    EdfReader,
    RepairReport,
    SignalHeader,
    encode_header,
    encode_records,
    encode_tal,
    format_number,
    records_field,
    repair,
)
from streamlab.frame import DataFrame
from streamlab.node import SourceConfig
from streamlab.nodes.io import (
    FILE_MODE,
    SAMPLES_PER_FRAME,
    BlockSource,
    check_regular_file,
    require_suffix,
)
from streamlab.nodes.sinks import (
    AppendFile,
    FileSink,
    FileSinkConfig,
    SinkStatistics,
    SinkWriteError,
    _problem,
)
from streamlab.registry import register_node

__all__ = ["EdfSource", "EdfSourceConfig", "EdfSink", "EdfSinkConfig", "EdfSinkStatistics",
           "EdfFormatError", "RepairReport", "repair"]

_SUFFIXES = (".edf", ".bdf")
#: Record durations EdfSink tries, shortest first, when none is configured.
_RECORD_DURATIONS = (0.1, 0.2, 0.25, 0.5, 1.0)


# -- source -------------------------------------------------------------------------------------
class EdfSourceConfig(SourceConfig):
    """Settings of EdfSource."""

    mode: Literal["triggered", "free"] = FILE_MODE
    path: InputPath = Field(..., min_length=1, description="EDF, EDF+, BDF or BDF+ file "
                            "(.edf or .bdf). A relative path is relative to the config file's "
                            "folder.")
    samples_per_frame: int = SAMPLES_PER_FRAME
    channels: list[str] | None = Field(
        None, min_length=1, max_length=4096, description="Signal labels to read, in this "
        "order (default: every signal of the file's one rate, or of sample_rate).")
    sample_rate: float | None = Field(
        None, gt=0, description="Read the signals of this rate (Hz). Needed when the file's "
        "(selected) signals have different rates; an error lists them.")
    start: Literal["file", "zero"] = Field(
        "file", description="Timestamps: 'file' (default): µs since the epoch from the "
        "header's start date and time (taken as UTC) plus the first record's sub-second "
        "offset; 'zero': the first sample is at 0.")
    annotations: bool = Field(True, description="EDF+/BDF+ annotations become events.")

    @model_validator(mode="after")
    def _check(self) -> EdfSourceConfig:
        require_suffix(self.path, _SUFFIXES, "EdfSource")
        if self.channels is not None and len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channel names must be unique, got {self.channels}")
        return self


def _rate_text(rate: float) -> str:
    return format_number(rate, 12)


@register_node
class EdfSource(BlockSource):
    """Read an EDF/EDF+/BDF/BDF+ file in frames; annotations become events.

    Reads the file record by record (bounded memory). Physical values are
    ``digital * gain + offset`` per signal (the file's ranges), as float64. Signals of
    different rates are not mixed: the source reads the signals of one rate (``channels`` or
    ``sample_rate`` chooses; otherwise an error lists the rates). An annotation becomes an
    Event on the first sample at or after its onset (``time`` = its onset, ``duration``
    kept, ``label`` = its text); annotations at or after the end of the data are not emitted
    (counted in ``annotations_out_of_range`` and logged once). A header whose record count disagrees with the file size (-1, or
    a crashed writer) is a documented partial read: the complete records are read, with a
    warning; a file with 0 records ends at once. A malformed header is an error naming the
    file and the field. The file is closed in ``on_stop``.

    >>> import os, tempfile
    >>> from streamlab.testing import run_node, make_frame
    >>> from streamlab.events import Event
    >>> path = os.path.join(tempfile.mkdtemp(), "x.edf")
    >>> f = make_frame(Fz=[0.0, 1.0, 2.0, 3.0], metadata={"sample_rate": "10"})
    >>> f = f.with_events([Event(0, "go", sample=2)])
    >>> _ = run_node(EdfSink, {"path": path, "physical_min": -10, "physical_max": 10}, [f])
    >>> out = run_node(EdfSource, {"path": path, "samples_per_frame": 4, "start": "zero"},
    ...                triggers=5)
    >>> out[0].payload["Fz"][:4].round(3).tolist(), out[0].events[0].label
    ([0.0, 1.0, 2.0, 3.0], 'go')
    """

    Config = EdfSourceConfig

    def on_create(self, config: EdfSourceConfig) -> None:
        self.config = config
        path = Path(config.path).expanduser()
        check_regular_file(path)
        self._reader = EdfReader(str(path))
        try:
            self._setup(config)
        except BaseException:
            self._reader.close()
            raise

    def _setup(self, config: EdfSourceConfig) -> None:
        h = self._reader.header
        chosen, names, rate = self._choose_signals(config)
        self._signals = chosen
        self._names = tuple(names)
        self._rate = rate
        self._gain = np.array([h.signals[i].gain for i in chosen])[:, None]
        self._offset = np.array([h.signals[i].offset for i in chosen])[:, None]
        self._spr = h.signals[chosen[0]].samples_per_record
        self._warn_about_layout()
        keeping, anns = self._reader.annotations() if config.annotations else (0.0, [])
        t0 = 0
        if config.start == "file":
            t0 = int(h.start_datetime().timestamp()) * 1_000_000 + round(keeping * 1e6)
        self._t0 = t0
        self._events = self._place(anns, keeping, t0)
        self._next_event = 0
        self._meta = {"sample_rate": _rate_text(self._rate)}
        self._n = 0
        self._seq = 0
        self._record = 0
        self._buf = np.empty((len(chosen), 0))

    def _choose_signals(self, config: EdfSourceConfig) -> tuple[list[int], list[str], float]:
        """The signals to read (indices, names) and their rate; ValueError naming the file
        if ``channels``/``sample_rate`` select none, several rates or duplicate names."""
        h = self._reader.header
        where = repr(h.path)
        ordinary = [i for i, s in enumerate(h.signals) if not s.is_annotation]
        if not ordinary:
            raise EdfFormatError(f"{where}: holds no signal, only annotations")
        labels = [h.signals[i].label or f"ch{i}" for i in range(len(h.signals))]
        chosen = ordinary
        if config.channels is not None:
            chosen = []
            for name in config.channels:
                hits = [i for i in ordinary if labels[i] == name]
                if not hits:
                    raise ValueError(f"{where}: no signal {name!r}; the file has "
                                     f"{[labels[i] for i in ordinary]}")
                chosen.append(hits[0])
        rate = {i: h.signals[i].samples_per_record / h.record_duration for i in chosen}
        if config.sample_rate is not None:
            chosen = [i for i in chosen if math.isclose(rate[i], config.sample_rate,
                                                        rel_tol=1e-9)]
            if not chosen or (config.channels is not None
                              and len(chosen) != len(config.channels)):
                raise ValueError(f"{where}: sample_rate {config.sample_rate} Hz: "
                                 f"{self._rates(labels, rate)}")
        elif len({h.signals[i].samples_per_record for i in chosen}) > 1:
            raise ValueError(f"{where}: the signals have different rates ("
                             f"{self._rates(labels, rate)}); choose one with sample_rate or "
                             "channels")
        names = [labels[i] for i in chosen]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{where}: signal labels {dup} occur more than once; select "
                             "unique ones with channels")
        return chosen, names, rate[chosen[0]]

    def _warn_about_layout(self) -> None:
        """Log what is read differently from what the header says (a partial read)."""
        h, log, where = self._reader.header, self.context.logger, repr(self._reader.header.path)
        if h.n_records_header != h.n_records or h.trailing_bytes:
            log.warning("%s: the header says %d data records, the file holds %d complete "
                        "records%s; reading the %d records (run streamlab.nodes.edf.repair "
                        "to fix the header)", where, h.n_records_header, h.n_records,
                        f" and {h.trailing_bytes} bytes of a cut-off record (ignored)"
                        if h.trailing_bytes else "", h.n_records)
        if h.n_records == 0:
            log.warning("%s holds no data records: the stream is empty", where)
        if not h.continuous:
            log.warning("%s is a discontinuous recording (EDF+D/BDF+D): its records are "
                        "read as if contiguous", where)

    def _place(self, anns: list[Annotation], keeping: float, t0: int) -> list[tuple[int, Event]]:
        """(sample index, Event) of each annotation inside the data, in sample order; those
        at or after the end are counted in ``annotations_out_of_range`` and logged."""
        total = self._reader.header.n_records * self._spr
        events: list[tuple[int, Event]] = []
        self.annotations_out_of_range = 0
        for a in anns:
            rel = a.onset - keeping
            idx = max(0, math.ceil(rel * self._rate - 1e-3))  # tolerates text rounding
            if idx >= total:
                self.annotations_out_of_range += 1
                continue
            events.append((idx, Event(t0 + round(rel * 1e6), a.text,
                                      duration=max(0, round(a.duration * 1e6)))))
        if self.annotations_out_of_range:
            self.context.logger.warning(
                "%r: %d annotations are at or after the end of the data and are not emitted",
                self._reader.header.path, self.annotations_out_of_range)
        events.sort(key=lambda e: e[0])
        return events

    @staticmethod
    def _rates(labels: list[str], rate: dict[int, float]) -> str:
        by: dict[float, list[str]] = {}
        for i, r in rate.items():
            by.setdefault(r, []).append(labels[i])
        return "; ".join(f"{_rate_text(r)} Hz: {', '.join(n)}" for r, n in by.items())

    def _fill(self, want: int) -> None:
        h = self._reader.header
        per_chunk = max(-(-want // self._spr), (4 * 2**20) // h.record_bytes, 1)
        while self._buf.shape[1] < want and self._record < h.n_records:
            r1 = min(h.n_records, self._record + per_chunk)
            digital = self._reader.read(self._record, r1, self._signals)
            self._record = r1
            block = digital * self._gain + self._offset
            self._buf = np.concatenate([self._buf, block], axis=1) if self._buf.size else block

    def process(self, frame: DataFrame | None) -> DataFrame | None:
        spf = self.config.samples_per_frame
        self._fill(spf)
        if self._buf.shape[1] == 0:
            self._end(frame)
            return None  # triggered: later triggers find the file exhausted
        block, self._buf = self._buf[:, :spf], self._buf[:, spf:]
        events = []
        while (self._next_event < len(self._events)
               and self._events[self._next_event][0] < self._n + block.shape[1]):
            idx, ev = self._events[self._next_event]
            events.append(ev.at(idx - self._n))
            self._next_event += 1
        return self._frame(block, events)


# -- sink ---------------------------------------------------------------------------------------
class EdfSinkConfig(FileSinkConfig):
    """Settings of EdfSink."""

    format: Literal["edf", "bdf"] | None = Field(
        None, description="'edf' (16 bit) or 'bdf' (24 bit); default: by the path's "
        "extension (.edf / .bdf), which must agree.")
    sample_rate: float | None = Field(None, gt=0, description="Hz (default: "
                                      "metadata['sample_rate']).")
    physical_min: float = Field(-3200.0, description="Lowest value every channel can hold "
                                "(default -3200, e.g. µV of EEG); values below are clipped and "
                                "counted.")
    physical_max: float = Field(3200.0, description="Highest value every channel can hold "
                                "(default 3200); values above are clipped and counted.")
    channel_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Per channel [min, max], overriding "
        "physical_min/physical_max.")
    unit: str = Field("uV", max_length=8, description="Physical dimension written for every "
                      "channel (8 ASCII characters).")
    record_duration: float | None = Field(
        None, gt=0, le=60, description="Seconds per data record. Default: the shortest of "
        "0.1, 0.2, 0.25, 0.5, 1 s holding a whole number of samples. A record is written "
        "when it is full, so a crash loses at most one record.")
    annotation_bytes: int = Field(
        256, ge=32, le=65536, description="Bytes per record for annotations (TALs); events "
        "that do not fit go into the next records.")
    flush_interval_s: float = Field(
        1.0, ge=0, le=3600, description="Seconds between rewrites of the header's record "
        "count while recording (0: after every write).")
    fsync: bool = Field(False, description="Also fsync at each header rewrite (survives a "
                        "power cut, not only a killed process; slower).")
    patient: str = Field("X X X X", max_length=80, description="EDF+ patient field: code sex "
                         "birthdate name (X: unknown).")
    recording: str = Field("X X X", max_length=60, description="EDF+ recording field after "
                           "the start date: admin code, technician, equipment.")

    @field_validator("unit", "patient", "recording")
    @classmethod
    def _ascii(cls, v: str) -> str:
        if not v.isascii():
            raise ValueError(f"must be ASCII (EDF headers are), got {v!r}")
        return v

    @model_validator(mode="after")
    def _check(self) -> EdfSinkConfig:
        require_suffix(self.path, _SUFFIXES, "EdfSink")
        ext = Path(self.path).suffix.lower()[1:]
        if self.format is not None and self.format != ext:
            raise ValueError(f"format {self.format!r} disagrees with the path's extension "
                             f"'.{ext}'")
        for name, (lo, hi) in {"*": (self.physical_min, self.physical_max),
                               **self.channel_ranges}.items():
            what = "physical_min/physical_max" if name == "*" else f"channel_ranges[{name!r}]"
            try:
                lo_t, hi_t = float(format_number(lo)), float(format_number(hi))
            except ValueError:
                raise ValueError(f"{what}: {lo}, {hi} do not fit in the header's 8 "
                                 "characters") from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo_t < hi_t):
                raise ValueError(f"{what}: need finite min < max, got {lo}, {hi}")
        return self


@dataclass(frozen=True)
class EdfSinkStatistics(SinkStatistics):
    """What an EdfSink has written so far (beyond :class:`SinkStatistics`)."""

    records: int  #: data records in the file
    padded: int  #: samples added at the end to complete the last record
    clipped: dict[str, int]  #: samples outside the physical range, per channel
    nan: dict[str, int]  #: NaN samples (written as the digital minimum), per channel
    annotations: int  #: events written as annotations


@dataclass
class _Pending:
    """An event waiting for its record: the sample it lands on, its TAL, and whether it
    came with the frame being written (whose events the runtime settles on a failure)."""

    sample: int
    tal: bytes
    current: bool


@register_node
class EdfSink(FileSink):
    """Record frames to EDF+ (.edf, 16 bit) or BDF+ (.bdf, 24 bit); events become annotations.

    Every channel is stored between a physical min and max (``physical_min``/``physical_max``,
    per channel ``channel_ranges``; streaming means the range cannot be measured first), in
    steps of ``(max - min) / (dmax - dmin)``: ±3200 gives 0.098 in EDF, 0.00038 in BDF.
    Values outside are clipped, counted per channel (:meth:`statistics`) and warned about
    once per channel; NaN is written as the digital minimum and counted. An event becomes an
    annotation at its sample (``label`` = text, ``duration`` kept; ``value`` is not stored).
    The header starts at the first frame's timestamp (µs since the epoch, UTC). Records are
    written as they fill; ``on_stop`` completes the last record by repeating the last sample
    (counted as ``padded``) and writes the final record count. A write that fails (a full
    disk) stops the sink: the file keeps its complete records and a correct header, and this
    and every later frame raise SinkWriteError.

    >>> import os, tempfile
    >>> from streamlab.formats.edf import EdfReader
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "x.edf")
    >>> f = make_frame(Cz=[1.0, -2.0], metadata={"sample_rate": "10"})
    >>> _ = run_node(EdfSink, {"path": path}, [f])
    >>> h = EdfReader(path).header
    >>> [s.label for s in h.signals], h.n_records, round(h.signals[0].gain, 4)
    (['Cz', 'EDF Annotations'], 2, 0.0977)
    """

    Config = EdfSinkConfig
    stores_events = True
    handles_events = True

    def on_create(self, config: EdfSinkConfig) -> None:
        super().on_create(config)
        self._bdf = (config.format or Path(config.path).suffix.lower()[1:]) == "bdf"
        self._records = 0
        self._padded = 0
        self._written_annotations = 0
        self._failed: str | None = None
        self._pending: list[_Pending] = []
        self._buffer: list[np.ndarray] = []
        self._buffered = 0

    # -- opening --------------------------------------------------------------------------------
    def _record_duration(self, rate: float) -> tuple[float, int]:
        configured = self.config.record_duration
        for d in [configured] if configured is not None else _RECORD_DURATIONS:
            spr = rate * d
            if abs(spr - round(spr)) < 1e-9 * max(1.0, spr) and round(spr) >= 1:
                return d, round(spr)
        raise ValueError(f"EdfSink {self.node_id!r}: no record duration among "
                         f"{[configured] if configured else list(_RECORD_DURATIONS)} s holds a "
                         f"whole number of samples at {rate} Hz; set record_duration")

    def _open(self, frame: DataFrame) -> None:
        cfg = self.config
        rate = self._sample_rate(frame, cfg.sample_rate)
        if rate is None:
            raise ValueError(f"EdfSink {self.node_id!r}: needs the sample rate: set "
                             "sample_rate or metadata['sample_rate']")
        self._rate = rate
        self._duration, self._spr = self._record_duration(rate)
        duration_text = format_number(self._duration)
        if float(duration_text) != self._duration:
            raise ValueError(f"EdfSink {self.node_id!r}: record_duration {self._duration} "
                             "does not fit in the header's 8 characters")
        dmin, dmax = BDF_DIGITAL if self._bdf else EDF_DIGITAL
        unknown = sorted(set(cfg.channel_ranges) - set(frame.channels))
        if unknown:
            raise ValueError(f"EdfSink {self.node_id!r}: channel_ranges names {unknown}, not "
                             f"channels of the stream {list(frame.channels)}")
        signals = []
        for name in frame.channels:
            if len(name.encode("ascii", errors="replace")) > 16:
                raise ValueError(f"EdfSink {self.node_id!r}: channel name {name!r} is longer "
                                 "than the 16 characters of an EDF label")
            lo, hi = cfg.channel_ranges.get(name, (cfg.physical_min, cfg.physical_max))
            lo, hi = float(format_number(lo)), float(format_number(hi))  # as the header says
            signals.append(SignalHeader(name, "", cfg.unit, lo, hi, dmin, dmax, "", self._spr))
        ann_samples = -(-cfg.annotation_bytes // (3 if self._bdf else 2))
        self._ann_bytes = ann_samples * (3 if self._bdf else 2)
        signals.append(SignalHeader("BDF Annotations" if self._bdf else "EDF Annotations", "",
                                    "", -1, 1, dmin, dmax, "", ann_samples))
        self._signals = signals[:-1]
        self._lo = np.array([s.physical_min for s in self._signals])[:, None]
        self._hi = np.array([s.physical_max for s in self._signals])[:, None]
        self._gain = np.array([s.gain for s in self._signals])[:, None]
        self._dmin, self._dmax = dmin, dmax
        self._clipped = np.zeros(len(self._signals), dtype=np.int64)
        self._nan = np.zeros(len(self._signals), dtype=np.int64)
        self._t0 = frame.timestamp
        start = dt.datetime.fromtimestamp(self._t0 // 1_000_000, dt.UTC)
        self._subsecond = (self._t0 % 1_000_000) / 1e6
        header = encode_header(bdf=self._bdf, start=start, patient=cfg.patient,
                               recording=cfg.recording, n_records=-1,
                               record_duration=duration_text, signals=signals)
        self._file = AppendFile(self.path)
        self._file.append(header)
        self._last_flush = time.monotonic()
        zero = np.rint((0.0 - self._lo) / self._gain) + dmin  # padding if no sample came
        self._last = np.clip(zero, dmin, dmax).astype(np.int32)

    # -- writing --------------------------------------------------------------------------------
    def process(self, frame: DataFrame) -> DataFrame | None:
        return self._process(frame)  # the events are settled as their records are written

    def _digital(self, block: np.ndarray) -> np.ndarray:
        nan = np.isnan(block)
        low, high = block < self._lo, block > self._hi
        if nan.any() or low.any() or high.any():
            clipped = (low | high).sum(axis=1)
            for i in np.flatnonzero(clipped):
                if self._clipped[i] == 0:
                    s = self._signals[i]
                    self.context.logger.warning(
                        "EdfSink %r: channel %r has values outside [%s, %s]: clipped (counted "
                        "in statistics().clipped)", self.node_id, s.label, s.physical_min,
                        s.physical_max)
            if nan.any() and not self._nan.any():
                self.context.logger.warning("EdfSink %r: NaN samples are written as the "
                                            "digital minimum (counted in statistics().nan)",
                                            self.node_id)
            self._clipped += clipped
            self._nan += nan.sum(axis=1)
            block = np.where(nan, self._lo, np.clip(block, self._lo, self._hi))
        d = np.rint((block - self._lo) / self._gain) + self._dmin
        return np.clip(d, self._dmin, self._dmax).astype(np.int32)

    def _queue_events(self, frame: DataFrame) -> tuple[int, int]:
        """Queue the frame's events as TALs; returns (out_of_range, rejected), settled by
        the caller once the frame is written (if it is not, the runtime drops them all)."""
        base = self._samples
        out_of_range = rejected = 0
        for ev in frame.events:
            if frame.n_samples:
                sample = base + ev.sample
            else:  # a marker frame: its events by time
                sample = math.ceil((ev.time - self._t0) * self._rate / 1e6 - 1e-3)
            onset = self._subsecond + max(sample, 0) / self._rate
            if sample < 0:
                self.context.logger.warning("EdfSink %r: event %r at %d µs is before the "
                                            "recording's start: not written", self.node_id,
                                            ev.label, ev.time)
                out_of_range += 1
                continue
            tal = encode_tal(onset, ev.duration / 1e6, ev.label)
            if len(tal) > self._ann_bytes - 24:  # room for the time-keeping TAL
                self.context.logger.warning("EdfSink %r: event label %r is too long for "
                                            "annotation_bytes=%d: not written", self.node_id,
                                            ev.label[:40], self.config.annotation_bytes)
                rejected += 1
                continue
            self._pending.append(_Pending(sample, tal, True))
        return out_of_range, rejected

    def _write(self, frame: DataFrame) -> None:
        if self._failed is not None:
            raise SinkWriteError(f"EdfSink {self.node_id!r}: {str(self.path)!r}: the sink "
                                 f"stopped after an earlier failure ({self._failed}); the file "
                                 f"holds {self._records} records", None)
        out_of_range, rejected = self._queue_events(frame)
        if frame.n_samples:
            d = self._digital(np.asarray(frame.block(), dtype=np.float64))
            self._buffer.append(d)
            self._buffered += frame.n_samples
            self._last = d[:, -1:]
        n = self._buffered // self._spr
        try:
            if n:
                self._write_records(n)
        finally:
            for p in self._pending:
                p.current = False
        self.context.settle_events("out_of_range", out_of_range)
        self.context.settle_events("rejected", rejected)
        try:
            self._maybe_flush()
        except OSError as exc:  # the count is advisory: readers trust the file size
            self.context.logger.warning("EdfSink %r: could not update the header's record "
                                        "count of %s: %s", self.node_id, self.path,
                                        _problem(exc))

    def _take(self, n: int) -> np.ndarray:
        data = np.concatenate(self._buffer, axis=1) if len(self._buffer) > 1 else self._buffer[0]
        cut = n * self._spr
        rest = data[:, cut:]
        self._buffer = [rest] if rest.shape[1] else []
        self._buffered = rest.shape[1]
        return data[:, :cut]

    def _write_records(self, n: int) -> None:
        """Write ``n`` complete records (in one write); settle the events written."""
        spr, r0 = self._spr, self._records
        tals, placed = [], []
        queue = sorted(self._pending, key=lambda p: p.sample)
        for k in range(n):
            end = (r0 + k + 1) * spr
            tal = bytearray(encode_tal(self._subsecond + (r0 + k) * self._duration, 0, ""))
            while queue and queue[0].sample < end and len(tal) + len(queue[0].tal) <= \
                    self._ann_bytes:
                p = queue.pop(0)
                tal += p.tal
                placed.append(p)
            tals.append(bytes(tal))
        data = self._take(n)
        try:
            self._file.append(encode_records(data, spr, self._bdf, tals, self._ann_bytes))
        except OSError as exc:
            self._stop_on(exc)
            raise SinkWriteError(f"EdfSink {self.node_id!r}: writing {str(self.path)!r} "
                                 f"failed: {_problem(exc)}; the sink stopped: the file holds "
                                 f"{self._records} complete records ({self._records * self._duration:g} s) "
                                 "and a header that says so", exc.errno) from exc
        self._records += n
        self._pending = queue
        self._written_annotations += len(placed)
        self.context.settle_events("carried", len(placed))

    def _stop_on(self, exc: OSError) -> None:
        """After a failed write: keep the file readable (exact count) and stop."""
        self._failed = _problem(exc)
        try:
            self._file.write_at(N_RECORDS_OFFSET, records_field(self._records))
        except OSError:  # pragma: no cover - overwriting needs no space
            pass  # the write's error is the one reported; readers use the file size
        # Events of earlier frames lost with the buffer; the current frame's are settled by
        # the runtime when the error propagates.
        earlier = sum(1 for p in self._pending if not p.current)
        self.context.settle_events("dropped", earlier)
        self._pending = []
        self._buffer, self._buffered = [], 0

    def _maybe_flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_flush >= self.config.flush_interval_s:
            self._file.write_at(N_RECORDS_OFFSET, records_field(self._records))
            if self.config.fsync:
                os.fsync(self._file._fileno())
            self._last_flush = now

    def _finish(self) -> None:
        try:
            if self._failed is None:
                pad = (-self._buffered) % self._spr
                if pad:
                    self._buffer.append(np.repeat(self._last, pad, axis=1))
                    self._buffered += pad
                    self._padded += pad
                if self._buffered:
                    self._write_records(self._buffered // self._spr)
                end = self._records * self._spr
                beyond = [p for p in self._pending if p.sample >= end]
                if beyond:
                    self.context.logger.warning("EdfSink %r: %d events after the last sample "
                                                "are not written", self.node_id, len(beyond))
                    self.context.settle_events("out_of_range", len(beyond))
                    self._pending = [p for p in self._pending if p.sample < end]
                extra = 0
                while self._pending:  # events that did not fit in their records' bytes
                    self._buffer.append(np.repeat(self._last, self._spr, axis=1))
                    self._buffered += self._spr
                    self._padded += self._spr
                    extra += 1
                    self._write_records(1)
                if extra:
                    self.context.logger.warning("EdfSink %r: %d records added at the end to "
                                                "hold annotations", self.node_id, extra)
                self._maybe_flush(force=True)
        finally:
            self._file.close()

    def statistics(self) -> EdfSinkStatistics:
        names = [s.label for s in getattr(self, "_signals", [])]
        clipped = getattr(self, "_clipped", np.zeros(0, np.int64))
        nan = getattr(self, "_nan", np.zeros(0, np.int64))
        return EdfSinkStatistics(str(self.path), self._frames, self._samples, self._closed,
                                 self._records, self._padded,
                                 dict(zip(names, clipped.tolist(), strict=True)),
                                 dict(zip(names, nan.tolist(), strict=True)),
                                 self._written_annotations)
