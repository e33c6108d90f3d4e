"""XDF recordings (Lab Streaming Layer's format): ``XdfSource`` replays one, ``XdfSink`` writes one.

**XdfSource** reads the file with ``pyxdf.load_xdf`` (optional extra ``xdf``) after checking
its chunk structure with :func:`streamlab.formats.xdf.scan` (bounded lengths, XML headers,
stream ids), so a damaged file fails with one :class:`~streamlab.formats.xdf.XdfError` line
naming the file, the chunk and its byte offset, never a pyxdf traceback. It emits **one**
stream of the file, chosen by ``stream`` (name, type, source_id: every given field must
match, exactly one stream may match); several XdfSource nodes on the same file feed one graph
with streams of different rates (each loads only its own streams; with
``synchronize_clocks`` every stream's stamps are mapped onto the recorder's clock, so they
share one time base).

* A numeric stream becomes data frames of ``frame_size`` samples (float64, channels named by
  the header's labels when complete and unique, else ``ch0, ch1, ...``), metadata
  ``sample_rate`` = the header's ``nominal_srate`` and ``stream`` = the stream's name. Frame
  timestamp = the µs of its first sample: ``round(t * 1e6)`` of pyxdf's stamp ``t``
  (seconds, half to even), so it is within 0.5 µs of pyxdf's. Inside a frame, sample ``i``
  is at ``timestamp + round(i * 1e6 / sample_rate)`` (the event model), which equals pyxdf's
  stamps when they are regular (``dejitter_timestamps``, the default, makes them so). A frame
  never spans a break: a new frame starts where a stamp differs from the previous one plus
  ``1 / nominal_srate`` by more than ``max_jitter_s`` (default half a sample period), so with
  jittery stamps (``dejitter_timestamps: false``) each frame's timestamp stays exact and
  frames follow the stamps' regular runs. A stream with ``nominal_srate`` 0 (irregular) gives
  one frame per sample, without ``sample_rate``.
* The file's string (marker) streams (``markers``: "all" by default, or a list of selectors,
  or ``[]``) become events attached to the data frames: each marker (``Event(round(t * 1e6),
  label)``, the label is channel 0's string) lands on the first sample at or after its time,
  by :class:`~streamlab.nodes.attach.MarkerJoin`, exactly as ``Attach`` would place it online.
  Markers before the first sample or after the last are not attached: counted in
  ``markers_out_of_range`` and logged once.
* ``frame_size: "chunks"`` gives one frame per Samples chunk instead, as recorded (not cut at
  breaks): a file written by XdfSink replays with the frames it was recorded from, so a graph
  fed by the replay sees the same frames as the graph that recorded (with
  ``dejitter_timestamps: false``; the zero clock offsets leave the stamps as written).
* A string stream chosen as ``stream`` gives marker frames (no samples, one event each,
  metadata ``stream="markers"``), as ``LSLMarkerInlet`` does: feed them to ``Attach``.

Samples are pyxdf's values converted to float64 (bit-identical for double64 streams). The
whole stream is held in memory (pyxdf reads whole files). ``realtime`` paces frames by their
timestamps on the pipeline clock (``speed`` times faster); by default frames go as fast as
downstream takes them. A truncated file (a recording cut short) is an error unless
``allow_truncated`` (then the complete chunks are read; the file is not changed).

**XdfSink** writes an XDF file with :class:`streamlab.formats.xdf.XdfWriter`: one double64
stream per upstream input (named after the input id or ``streams.<id>.name``, channel labels,
``units``, ``nominal_srate`` from ``metadata["sample_rate"]``, 0 if absent) with an explicit
stamp per sample (``sample time in µs / 1e6``), and one string stream (``marker_stream``,
type Markers) holding every event that reaches the sink (its label, at its time), from
marker frames and from data frames alike. ``pyxdf.load_xdf`` reads the samples back
bit-identical and the stamps exactly (``dejitter_timestamps=False``; pyxdf's dejitter refits
them). An event's ``value`` and ``duration`` are not stored (XDF markers are strings).

Crash safety: the file header and stream headers are written at once; samples and markers
are buffered for at most ``flush_interval_s`` (a timer flushes a quiet buffer too) and then
handed to the operating system in whole chunks. After ``kill -9`` the file holds everything
up to ``flush_interval_s`` before the kill, has no footers (pyxdf does not need them) and may
end inside the chunk being written: ``XdfSource`` with ``allow_truncated`` reads it, or
:func:`streamlab.formats.xdf.repair` cuts it back to the last complete chunk. A failed write
(full disk) cuts the partial chunk off (the file stays readable) and raises a
:class:`~streamlab.nodes.sinks.SinkWriteError` to the node's error policy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamlab.config.paths import InputPath
from streamlab.events import Event
from streamlab.formats import xdf as fx
from streamlab.frame import DataFrame, Payload
from streamlab.node import SourceConfig
from streamlab.nodes.attach import MarkerJoin, sample_times
from streamlab.nodes.io import FILE_MODE, check_regular_file, require_suffix
from streamlab.nodes.record import ReplaySource
from streamlab.nodes.sinks import FileSink, FileSinkConfig, frame_source_name
from streamlab.registry import register_node

__all__ = ["XdfSource", "XdfSink", "StreamSelector"]


class StreamSelector(BaseModel):
    """Which XDF stream: every field given must equal the stream header's."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Stream name.")
    type: str | None = Field(None, description="Stream type (EEG, Markers, ...).")
    source_id: str | None = Field(None, description="Stream source_id.")

    def matches(self, info: fx.XdfStreamInfo) -> bool:
        return all(want is None or want == got for want, got in
                   ((self.name, info.name), (self.type, info.type),
                    (self.source_id, info.source_id)))

    def __str__(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.model_dump().items() if v is not None) \
            or "any stream"


def _describe(info: fx.XdfStreamInfo) -> str:
    return (f"{info.stream_id}: name={info.name!r} type={info.type!r} "
            f"source_id={info.source_id!r} ({info.channel_count} x {info.channel_format}, "
            f"{info.nominal_srate:g} Hz)")


class XdfSourceConfig(SourceConfig):
    """Settings of XdfSource."""

    mode: Literal["triggered", "free"] = FILE_MODE
    path: InputPath = Field(..., min_length=1, description="XDF file. A relative path is "
                            "relative to the config file's folder.")
    stream: StreamSelector = Field(default_factory=StreamSelector, description="The stream to "
                                   "emit; default: the file's only numeric stream.")
    markers: Literal["all"] | list[StreamSelector] = Field(
        "all", description="String streams whose markers become events on the data frames: "
        "'all' (default) or a list of selectors ([] for none).")
    frame_size: int | Literal["chunks"] = Field(
        256, description="Samples per frame (fewer at a break in the stamps and at the end), "
        "or 'chunks': one frame per Samples chunk of the file, as recorded (XdfSink writes "
        "one per frame; LabRecorder one per pull).")
    synchronize_clocks: bool = Field(True, description="pyxdf.load_xdf(synchronize_clocks=): "
                                     "apply the recorded clock offsets.")
    dejitter_timestamps: bool = Field(True, description="pyxdf.load_xdf(dejitter_timestamps=): "
                                      "refit regular streams' stamps to a line.")
    max_jitter_s: float | None = Field(None, gt=0, description="Start a new frame where a "
                                       "stamp deviates from the nominal period by more than "
                                       "this (s); default: half a sample period.")
    speed: float = Field(1.0, gt=0, le=1e6, description="With realtime: playback speed factor.")
    allow_truncated: bool = Field(False, description="Read the complete part of a file cut "
                                  "short by a crash instead of failing.")

    @model_validator(mode="after")
    def _check(self) -> XdfSourceConfig:
        require_suffix(self.path, (".xdf",), "XdfSource")
        if isinstance(self.frame_size, int) and not 1 <= self.frame_size <= 10_000_000:
            raise ValueError(f"frame_size must be 1 .. 10000000 or 'chunks', got "
                             f"{self.frame_size}")
        return self


def _us(stamps: Any) -> np.ndarray:
    """pyxdf's stamps (s) as int64 µs, rounded half to even."""
    return np.rint(np.asarray(stamps, dtype=np.float64) * 1e6).astype(np.int64)


def _label(value: Any) -> str:
    """A marker sample's label: its channel 0 ('' for a sample of no channels)."""
    return str(value[0]) if len(value) else ""


def _labels(info: fx.XdfStreamInfo) -> list[str]:
    labels = list(info.labels)
    ok = len(labels) == info.channel_count and all(labels) and len(set(labels)) == len(labels)
    return labels if ok else [f"ch{i}" for i in range(info.channel_count)]


@register_node
class XdfSource(ReplaySource):
    """Replay one stream of an XDF file (pyxdf), with its marker streams as events.

    The file is checked and loaded in ``on_create`` (a missing, foreign, damaged or
    ambiguous-selection file is an error naming the path); EndOfStream after the last frame.
    See the module docstring for timestamps, frames and markers.

    >>> import tempfile, os, numpy as np
    >>> from streamlab.formats.xdf import XdfWriter
    >>> from streamlab.testing import run_node
    >>> path = os.path.join(tempfile.mkdtemp(), "rec.xdf")
    >>> w = XdfWriter(path)
    >>> sid = w.add_stream("eeg", channels=["Fz"], nominal_srate=1000.0)
    >>> w.write_samples(sid, np.arange(4) / 1000 + 10, np.arange(4.0).reshape(4, 1))
    >>> mk = w.add_stream("stim", channels=["m"], channel_format="string")
    >>> w.write_samples(mk, np.array([10.0015]), [["go"]])
    >>> w.close()
    >>> [f] = run_node(XdfSource, {"path": path, "dejitter_timestamps": False}, triggers=1)
    >>> f.timestamp, f.payload["Fz"].tolist(), [(e.label, e.sample) for e in f.events]
    (10000000, [0.0, 1.0, 2.0, 3.0], [('go', 2)])
    """

    Config = XdfSourceConfig

    def on_create(self, config: XdfSourceConfig) -> None:
        self.config = config
        self.path = Path(config.path).expanduser()
        check_regular_file(self.path, "XDF file")
        layout = fx.scan(self.path)
        self.info = self._pick(layout.streams)
        self._markers = self.info.channel_format == "string"
        marker_ids = [] if self._markers else self._marker_streams(layout.streams)
        by_id = self._load(layout, marker_ids)
        main = by_id[self.info.stream_id]
        self.stamps_us = _us(main["time_stamps"])
        self.rate = self.info.nominal_srate
        events: list[Event] = []
        if self._markers:
            self.labels = [_label(v) for v in main["time_series"]]
        else:
            self.data = np.asarray(main["time_series"], dtype=np.float64)
            self.channels = _labels(self.info)
            for s in (by_id[sid] for sid in marker_ids if sid in by_id):
                events += [Event(int(t), _label(v))
                           for t, v in zip(_us(s["time_stamps"]).tolist(), s["time_series"],
                                           strict=True)]
        self.bounds = self._frame_bounds()
        self.markers_out_of_range = 0
        self.join = MarkerJoin(0, self._settle)
        self.join.markers(events)
        self._next_frame = 0
        self._seq = 0
        self._first_ts = None  # pacing starts again with the first frame
        self._meta = {"stream": self.info.name or f"xdf{self.info.stream_id}"}
        if not self._markers and self.rate > 0:
            self._meta["sample_rate"] = repr(float(self.rate))

    def _pick(self, streams: dict[int, fx.XdfStreamInfo]) -> fx.XdfStreamInfo:
        """The one stream ``config.stream`` selects (ValueError listing the file's streams)."""
        sel = self.config.stream
        picked = [s for s in streams.values() if sel.matches(s)]
        if sel == StreamSelector():
            picked = [s for s in picked if s.channel_format != "string"]
        if len(picked) != 1:
            listing = "; ".join(_describe(s) for s in streams.values()) or "none"
            how = "no stream matches" if not picked else f"{len(picked)} streams match"
            raise ValueError(f"XdfSource {self.node_id!r}: {how} config.stream "
                             f"({sel}) in {str(self.path)!r}; its streams: {listing}")
        return picked[0]

    def _marker_streams(self, streams: dict[int, fx.XdfStreamInfo]) -> list[int]:
        """Ids of the string streams ``config.markers`` selects."""
        wanted = self.config.markers
        return [s.stream_id for s in streams.values() if s.channel_format == "string"
                and (wanted == "all" or any(sel.matches(s) for sel in wanted))]

    def _load(self, layout: fx.XdfLayout, marker_ids: list[int]) -> dict[int, Any]:
        """pyxdf's streams by id (the chosen one and ``marker_ids``); sets ``_chunks``."""
        cfg = self.config
        sizes: dict[int, list[int]] | None = {} if cfg.frame_size == "chunks" else None
        loaded, _ = fx.load(self.path, [self.info.stream_id, *marker_ids],
                            synchronize_clocks=cfg.synchronize_clocks,
                            dejitter_timestamps=cfg.dejitter_timestamps,
                            allow_truncated=cfg.allow_truncated, layout=layout,
                            chunk_sizes=sizes)
        self._chunks = (sizes or {}).get(self.info.stream_id, [])
        return {int(s["info"]["stream_id"]): s for s in loaded}

    def _settle(self, fate: str, n: int) -> None:
        # The events are this source's own (counted emitted when they leave on a frame);
        # those that cannot be placed are counted here and logged once.
        if self.markers_out_of_range == 0:
            self.context.logger.warning(
                "XdfSource %r: markers outside the data's time range of stream %r are not "
                "attached (see markers_out_of_range)", self.node_id, self.info.name)
        self.markers_out_of_range += n

    def _frame_bounds(self) -> list[tuple[int, int]]:
        """(start, stop) sample indices of each frame: frame_size, cut at breaks."""
        n = len(self.stamps_us)
        if self._markers or self.rate <= 0:
            return [(i, i + 1) for i in range(n)]
        if self.config.frame_size == "chunks":  # as recorded: no cutting at breaks
            ends = np.minimum(np.cumsum([0, *self._chunks]), n).tolist()
            return [(a, b) for a, b in zip(ends, ends[1:], strict=False) if b > a]
        period = 1e6 / self.rate
        tol = self.config.max_jitter_s * 1e6 if self.config.max_jitter_s else period / 2
        breaks = np.flatnonzero(np.abs(np.diff(self.stamps_us) - period) > tol) + 1
        out = []
        size = int(self.config.frame_size)
        for a, b in zip([0, *breaks.tolist()], [*breaks.tolist(), n], strict=True):
            out += [(k, min(k + size, b)) for k in range(a, b, size)]
        return out

    def _next(self) -> DataFrame | None:
        if self._next_frame >= len(self.bounds):
            return None
        a, b = self.bounds[self._next_frame]
        self._next_frame += 1
        ts = int(self.stamps_us[a])
        seq, self._seq = self._seq, self._seq + 1
        if self._markers:
            return DataFrame(ts, seq, None, {"stream": "markers"}, (Event(ts, self.labels[a]),))
        block = np.ascontiguousarray(self.data[a:b].T)
        frame = DataFrame(ts, seq, Payload.from_block(self.channels, block), dict(self._meta))
        [out] = self.join.data(frame)  # max delay 0 and every marker known: it leaves at once
        if self._next_frame >= len(self.bounds):
            self.join.flush()  # markers after the last sample: out of range
        return out


    def __repr__(self) -> str:
        return (f"<XdfSource id={self.node_id!r} path={str(self.path)!r} "
                f"stream={self.info.name!r} frame={self._next_frame}/{len(self.bounds)}>")


class XdfStreamOptions(BaseModel):
    """How XdfSink declares one input's stream."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, description="Stream name (default: the "
                             "upstream node id).")
    type: str = Field("EEG", description="Stream type.")
    source_id: str = Field("", description="Stream source_id.")


class XdfSinkConfig(FileSinkConfig):
    """Settings of XdfSink."""

    streams: dict[str, XdfStreamOptions] = Field(
        default_factory=dict, description="Per upstream node id: the stream's name, type and "
        "source_id (default: name = the id, type EEG).")
    units: dict[str, str] = Field(default_factory=dict, description="Unit per channel name "
                                  "(desc/channels/channel/unit).")
    marker_stream: str = Field("markers", min_length=1, description="Name of the string stream "
                               "that holds the events (type Markers).")
    flush_interval_s: float = Field(1.0, ge=0, le=3600, description="Longest time samples "
                                    "wait in memory before going to the file (0: every frame).")
    boundary_interval_s: float = Field(10.0, gt=0, le=3600,
                                       description="Seconds between Boundary chunks.")
    clock_offset_interval_s: float = Field(5.0, gt=0, le=3600, description="Seconds between "
                                           "ClockOffset chunks (offset 0) per stream.")

    @model_validator(mode="after")
    def _check(self) -> XdfSinkConfig:
        require_suffix(self.path, (".xdf",), "XdfSink")
        return self


@register_node
class XdfSink(FileSink):
    """Write the frames to an XDF file: one stream per input, events as a marker stream.

    See the module docstring (layout, stamps, crash safety). Events are counted ``carried``
    once their frame is written.

    >>> import tempfile, os, pyxdf
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "out.xdf")
    >>> f = make_frame(x=[0.5, 1.5], timestamp=2_000_000, metadata={"sample_rate": "10.0"})
    >>> run_node(XdfSink, {"path": path}, [f], node_id="rec")
    []
    >>> [s] = pyxdf.load_xdf(path, dejitter_timestamps=False)[0]
    >>> s["info"]["name"], s["time_series"].tolist(), s["time_stamps"].tolist()
    (['rec'], [[0.5], [1.5]], [2.0, 2.1])
    """

    Config = XdfSinkConfig
    fixed_channels = False
    stores_events = True
    handles_events = True

    def _open(self, frame: DataFrame) -> None:
        cfg = self.config
        self._file = fx.XdfWriter(self.path, flush_interval=cfg.flush_interval_s,
                                  boundary_interval=cfg.boundary_interval_s,
                                  clock_offset_interval=cfg.clock_offset_interval_s)
        self._streams: dict[str, tuple[int, tuple[str, ...]]] = {}
        self._marker_id: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deferred: OSError | None = None

    def _stream_for(self, source: str, frame: DataFrame) -> int:
        known = self._streams.get(source)
        if known is not None:
            sid, names = known
            if frame.channels != names:
                raise ValueError(f"XdfSink {self.node_id!r}: frame {frame.sequence_id} from "
                                 f"{source!r} has channels {list(frame.channels)}, but its "
                                 f"stream was started with {list(names)}")
            return sid
        opts = self.config.streams.get(source, XdfStreamOptions())
        rate = self._sample_rate(frame, None) or 0.0
        sid = self._file.add_stream(opts.name or source, channels=frame.channels,
                                    nominal_srate=rate, type=opts.type,
                                    source_id=opts.source_id,
                                    units=[self.config.units.get(c) for c in frame.channels])
        self._streams[source] = (sid, frame.channels)
        return sid

    def _write(self, frame: DataFrame) -> None:
        if self._deferred is not None:  # a timer's flush failed: report it now
            exc, self._deferred = self._deferred, None
            raise exc
        lost = self._file.samples_lost
        try:
            self._write_frame(frame)
        except OSError as exc:
            lost = self._file.samples_lost - lost
            raise self._write_error(
                exc, f"frame {frame.sequence_id} was not written, with the samples buffered "
                f"since the last flush ({lost} samples in all); the file ends at its last "
                f"complete chunk ({self._file.size} bytes) and stays readable") from exc

    def _write_frame(self, frame: DataFrame) -> None:
        w = self._file
        if frame.channels and frame.n_samples:
            sid = self._stream_for(frame_source_name(self), frame)
            stamps = sample_times(frame) / 1e6
            w.write_samples(sid, stamps, frame.block().T)
        if frame.events:
            if self._marker_id is None:
                self._marker_id = w.add_stream(self.config.marker_stream, channels=["label"],
                                               channel_format="string", type="Markers")
            evs = sorted(frame.events, key=lambda e: e.time)
            w.write_samples(self._marker_id, np.array([e.time for e in evs]) / 1e6,
                            [[e.label] for e in evs])
        if not w.maybe_flush() and w.buffered and self._timer is None:
            self._arm_timer()

    def _arm_timer(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): flushes happen at writes and at close
        self._timer = loop.call_later(self.config.flush_interval_s, self._timer_flush)

    def _timer_flush(self) -> None:
        """A quiet input: flush what waits so a crash loses at most flush_interval_s."""
        self._timer = None
        if self._closed or self._file is None or self._file.closed:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._deferred = exc  # raised (and counted by the policy) at the next frame

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._file.close()
        if self._deferred is not None:
            exc, self._deferred = self._deferred, None
            raise exc
