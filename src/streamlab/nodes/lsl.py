"""Lab Streaming Layer: ``LSLInlet`` (source) and ``LSLOutlet`` (sink) for data, and
``LSLMarkerInlet`` / ``LSLMarkerOutlet`` for marker streams; optional extra ``lsl``.

pylsl is imported when a node is created, never at import time; without it, creating a node
raises the ``missing_extra`` error (``pip install 'streamlab[lsl]'``).

**Not blocking the event loop.** Resolving a stream and opening an inlet block, so LSLInlet does
both in a worker thread (``asyncio.to_thread``) in ``on_start``. Data is pulled with
``pull_chunk(timeout=0.0)``, which returns at once with whatever has arrived; when nothing
has, the node sleeps ``poll_interval`` on the pipeline clock and tries again, checking for a
stop request and ``idle_timeout`` in between.

**Timestamps.** LSL stamps samples with ``local_clock()`` seconds (a monotonic clock of the
sending machine; with ``clocksync`` the inlet adds the sender-to-receiver ``time_correction``,
so stamps are on this machine's ``local_clock``). In ``on_start`` the node reads the pipeline
clock and ``local_clock()`` back to back and keeps ``offset_us = clock.time_us() -
local_clock() * 1e6`` (one measurement per clock, shared by every LSL node of the process and
renewed each minute, so data and marker streams map LSL time alike); a frame's timestamp
is then ``round(first_sample_lsl_time * 1e6 + offset_us)`` µs since the epoch. The raw LSL
time of the first sample is kept in ``metadata["lsl_timestamp"]`` and, with ``timestamp_channel``, every sample's LSL time is
emitted as an extra channel (for irregular-rate streams). With ``clock_offsets`` (and
``clocksync: false``) the stamps stay raw and the node reads ``time_correction()`` at start
and every ``clocksync_interval`` s (in a worker thread) and passes each reading on, on the
next frame's metadata ``clock_offsets`` ("T:O;...", µs: collection time in the frame's
timestamp domain, offset to add), for ``Align`` to fit as pyxdf does offline.
LSLOutlet maps the other way:
the last sample of a frame is pushed with ``(frame.timestamp - offset_us) / 1e6 + (n - 1) /
sample_rate`` (``timestamps="frame"``), or stamped at push time (``"now"``).

**Closing.** ``on_stop`` closes the inlet's stream / destroys the outlet. Close an inlet before
the outlet it reads from to avoid liblsl's (harmless) "transmission broke off" log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from pydantic import Field, model_validator

from streamlab.errors import BackendError, EndOfStream, missing_extra
from streamlab.events import Event
from streamlab.frame import DataFrame, Payload
from streamlab.node import NodeConfig, ProcessingNode, SourceConfig, SourceNode
from streamlab.registry import register_node

T = TypeVar("T")

__all__ = ["LSLInlet", "LSLOutlet", "LSLMarkerInlet", "LSLMarkerOutlet", "import_pylsl",
           "marker_label", "shared_offset_us", "stream_predicate"]


def import_pylsl() -> Any:
    """The pylsl module, or the missing-extra error."""
    try:
        import pylsl
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise missing_extra("pylsl", "lsl") from exc
    except RuntimeError as exc:  # pragma: no cover - pylsl without a usable liblsl
        raise BackendError(f"pylsl is installed but liblsl could not be loaded: {exc}") from exc
    return pylsl


def _quote(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"cannot match a value holding both quote characters: {value!r}")


def stream_predicate(name: str | None, type: str | None, source_id: str | None) -> str:
    """The XPath predicate LSL resolves with, e.g. ``name='EEG' and type='EEG'``."""
    parts = [f"{key}={_quote(v)}" for key, v in
             (("name", name), ("type", type), ("source_id", source_id)) if v is not None]
    return " and ".join(parts)


def _offset_us(node: ProcessingNode, pylsl: Any) -> float:
    """Pipeline clock (µs since the epoch) minus LSL local_clock (µs)."""
    return node.context.clock.time_us() - pylsl.local_clock() * 1e6


#: Pipeline clock minus LSL local_clock (µs) per clock, shared by every LSL node of the process
#: so that data and marker streams map LSL time to the same µs (two separate readings differ
#: by a few µs: enough to move a marker to the neighbouring sample). Re-measured after
#: ``_OFFSET_TTL_S`` so a long-lived process follows wall-clock adjustments.
_OFFSETS: dict[int, tuple[Any, float, float]] = {}
_OFFSET_TTL_S = 60.0


def shared_offset_us(node: ProcessingNode, pylsl: Any) -> float:
    """:func:`_offset_us` measured once per clock (and per minute), the same for every node."""
    clock = node.context.clock
    now = clock.monotonic()
    got = _OFFSETS.get(id(clock))
    if got is None or got[0] is not clock or not 0 <= now - got[1] < _OFFSET_TTL_S:
        got = (clock, now, _offset_us(node, pylsl))
        if len(_OFFSETS) > 16:  # clocks of finished test runs: forget them
            _OFFSETS.clear()
        _OFFSETS[id(clock)] = got
    return got[2]


class LSLInletConfig(SourceConfig):
    """Settings of LSLInlet."""

    mode: Literal["triggered", "free"] = Field(
        "free", description="'free' (default): emit chunks as they arrive; 'triggered': each "
        "trigger emits what has arrived (nothing if nothing has).")
    name: str | None = Field(None, min_length=1, description="Stream name to resolve.")
    type: str | None = Field(None, min_length=1, description="Stream type to resolve (EEG, ...).")
    source_id: str | None = Field(None, min_length=1, description="Stream source_id to resolve.")
    resolve_timeout: float = Field(5.0, gt=0, le=3600,
                                   description="Seconds to wait for the stream to be found.")
    max_samples: int = Field(1024, ge=1, le=1_000_000,
                             description="Most samples per frame (one pull_chunk).")
    poll_interval: float = Field(0.005, gt=0, le=10,
                                 description="Seconds to sleep when no data has arrived.")
    idle_timeout: float | None = Field(
        None, gt=0, description="End the stream (EndOfStream) after this many seconds without "
        "data; default: wait until the pipeline stops.")
    channels: list[str] | None = Field(
        None, min_length=1, description="Channel names; default: the stream's channel labels "
        "(desc/channels/channel/label) if complete and unique, else ch0, ch1, ...")
    timestamp_channel: str | None = Field(
        None, min_length=1, description="If set, add a channel of this name holding each "
        "sample's LSL timestamp (seconds, local_clock).")
    clocksync: bool = Field(True, description="Apply LSL clock synchronisation "
                            "(time_correction) to timestamps; adds ~0.6 s before the first data.")
    dejitter: bool = Field(False, description="Smooth timestamps with LSL's dejitter filter.")
    clock_offsets: bool = Field(
        False, description="Measure time_correction at start and every clocksync_interval s "
        "and pass the measurements on (metadata 'clock_offsets', as XDF ClockOffset chunks) "
        "for Align to fit, instead of applying them (needs clocksync: false).")
    clocksync_interval: float = Field(5.0, gt=0, le=3600, description="clock_offsets: seconds "
                                      "between time_correction readings (LabRecorder: 5).")
    max_buflen: int = Field(360, ge=1, description="Seconds of data the inlet buffers.")
    recover: bool = Field(True, description="Reconnect when the stream is lost; if false, a "
                          "lost stream ends this source.")

    @model_validator(mode="after")
    def _check(self) -> LSLInletConfig:
        if self.name is None and self.type is None and self.source_id is None:
            raise ValueError("give at least one of name, type or source_id to find the stream")
        if self.clock_offsets and (self.clocksync or self.dejitter):
            raise ValueError("clock_offsets passes LSL's clock measurements on for Align to "
                             "apply: set clocksync: false and dejitter: false (else the "
                             "timestamps are corrected twice)")
        for v in (self.name, self.type, self.source_id):
            if v is not None:
                _quote(v)
        if self.channels is not None and len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channel names must be unique, got {self.channels}")
        return self


def _resolve(node: Any) -> Any:
    """The first LSL stream matching the node's name/type/source_id (called in a worker
    thread); BackendError naming the query if none is found within ``resolve_timeout``."""
    cfg = node.config
    query = stream_predicate(cfg.name, cfg.type, cfg.source_id)
    found = node._lsl.resolve_bypred(query, 1, cfg.resolve_timeout)
    if not found:
        raise BackendError(f"{type(node).__name__} {node.node_id!r}: no LSL stream matching "
                           f"{query} found within {cfg.resolve_timeout} s")
    return found[0]


async def _next_chunk(node: Any, frame: DataFrame | None, pull: Callable[[], Any],
                      before_pull: Callable[[], None] | None = None) -> Any:
    """The next pulled chunk of an inlet node, polling without blocking the loop.

    None for a triggered call (``frame`` given) when nothing new has arrived; EndOfStream when
    a graceful stop begins or nothing arrived for ``idle_timeout``.
    """
    if node._inlet is None:
        raise BackendError(f"{type(node).__name__} {node.node_id!r}: not connected (on_start "
                           "did not run or the node was stopped)")
    clock, cfg = node.context.clock, node.config
    idle_since = clock.monotonic()
    while True:
        if before_pull is not None:
            before_pull()
        got = pull()
        if got is not None:
            return got
        if frame is not None:
            return None
        if node.context.stopping:
            raise EndOfStream
        if cfg.idle_timeout is not None and clock.monotonic() - idle_since >= cfg.idle_timeout:
            raise EndOfStream
        await clock.sleep(cfg.poll_interval)


class _Readings(Generic[T]):
    """A blocking clock reading (LSL ``time_correction``) taken every ``interval`` s in a worker
    thread, never awaited on the data path.

    :meth:`poll` returns a finished reading (or None) and starts the next when one is due. A
    failed reading is counted in ``failures`` and logged; the node keeps its last estimate.
    :meth:`close` lets a reading in progress finish (at most 5 s), so the inlet outlives it.
    """

    def __init__(self, node: SourceNode, read: Callable[[], T], interval: float) -> None:
        self._node, self._read, self._interval = node, read, interval
        self._at = node.context.clock.monotonic()  # the first reading was taken at start
        self._task: asyncio.Future[T] | None = None
        self.failures = 0

    def poll(self) -> T | None:
        got, task = None, self._task
        if task is not None and task.done():
            self._task = None
            exc = task.exception()
            if exc is None:
                got = task.result()
            else:
                self.failures += 1
                self._node.context.logger.info("%s %r: time_correction failed (%s); keeping "
                                               "the last estimate", type(self._node).__name__,
                                               self._node.node_id, exc)
        now = self._node.context.clock.monotonic()
        if self._task is None and now - self._at >= self._interval:
            self._at = now
            self._task = asyncio.ensure_future(asyncio.to_thread(self._read))
        return got

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            try:  # the inlet must outlive a time_correction call in progress
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            except Exception:  # noqa: S110 - the reading is not needed any more
                pass


@register_node
class LSLInlet(SourceNode):
    """Receive an LSL stream (resolved by name, type or source_id) as frames of its chunks.

    ``on_start`` resolves the stream (``resolve_timeout``; BackendError naming the query if it
    is not found) and opens it, in a worker thread. Each frame holds the samples that arrived
    since the last one (at most ``max_samples``), converted to float64, with the metadata
    ``sample_rate`` (the nominal rate, if regular) and ``lsl_timestamp``.

    >>> LSLInlet.Config(name="EEG").resolve_timeout
    5.0
    >>> stream_predicate("EEG", None, "dev-1")
    "name='EEG' and source_id='dev-1'"
    """

    Config = LSLInletConfig

    def on_create(self, config: LSLInletConfig) -> None:
        self.config = config
        self._lsl = import_pylsl()
        from pylsl.util import LostError  # not re-exported by pylsl 1.18

        self._lost_error: type[Exception] = LostError
        self._inlet: Any = None
        self._seq = 0
        self._names: tuple[str, ...] = ()
        self._meta: dict[str, str] = {}
        self._offset_us = 0.0
        self.stream_info: Any = None
        self.samples_received = 0
        #: clock_offsets: (collection time in the sender's clock, offset), LSL seconds, as
        #: LabRecorder writes them (``now - offset``, ``offset``); not yet sent on a frame
        self._offsets: list[tuple[float, float]] = []
        self._readings: _Readings[tuple[float, float]] | None = None
        self.clock_offsets_measured = 0

    async def on_start(self) -> None:
        await asyncio.to_thread(self._connect)
        self._offset_us = shared_offset_us(self, self._lsl)
        inlet = self._inlet
        self._readings = _Readings(self, lambda: self._measure(inlet, 2.0),
                                   self.config.clocksync_interval)

    def _connect(self) -> None:
        lsl, cfg = self._lsl, self.config
        info = _resolve(self)
        if info.channel_format() == lsl.cf_string:
            raise BackendError(f"LSLInlet {self.node_id!r}: stream {info.name()!r} carries "
                               "strings; only numeric streams are supported")
        flags = (lsl.proc_clocksync if cfg.clocksync else 0) | (
            lsl.proc_dejitter if cfg.dejitter else 0)
        inlet = lsl.StreamInlet(info, max_buflen=cfg.max_buflen, recover=cfg.recover,
                                processing_flags=flags)
        try:
            inlet.open_stream(cfg.resolve_timeout)
            full = inlet.info(cfg.resolve_timeout)
            self._names = self._channel_names(full)
            if cfg.clock_offsets:
                self._offsets.append(self._measure(inlet, cfg.resolve_timeout))
        except Exception:
            inlet.close_stream()
            raise
        self._inlet = inlet
        self.stream_info = full
        rate = full.nominal_srate()
        self._meta = {"sample_rate": repr(float(rate))} if rate > 0 else {}

    def _channel_names(self, info: Any) -> tuple[str, ...]:
        n = info.channel_count()
        cfg = self.config
        if cfg.channels is not None:
            if len(cfg.channels) != n:
                raise BackendError(f"LSLInlet {self.node_id!r}: stream {info.name()!r} has {n} "
                                   f"channels but {len(cfg.channels)} names are configured")
            names = list(cfg.channels)
        else:
            labels = info.get_channel_labels() or []
            ok = len(labels) == n and all(labels) and len(set(labels)) == n
            names = list(labels) if ok else [f"ch{i}" for i in range(n)]
        if cfg.timestamp_channel is not None:
            if cfg.timestamp_channel in names:
                raise BackendError(f"LSLInlet {self.node_id!r}: timestamp_channel "
                                   f"{cfg.timestamp_channel!r} is also a channel name")
            names.append(cfg.timestamp_channel)
        return tuple(names)

    def _measure(self, inlet: Any, timeout: float) -> tuple[float, float]:
        """One clock-offset reading as LabRecorder records it (blocking: a worker thread)."""
        offset = float(inlet.time_correction(timeout))
        now = float(self._lsl.local_clock())
        self.clock_offsets_measured += 1
        return now - offset, offset

    def _refresh_offsets(self) -> None:
        """Start a time_correction reading every clocksync_interval s; collect finished ones
        (a missed reading is counted in ``clock_offset_failures``: the fit goes on)."""
        got = self._readings.poll() if self._readings is not None else None
        if got is not None:
            self._offsets.append(got)

    @property
    def clock_offset_failures(self) -> int:
        return 0 if self._readings is None else self._readings.failures

    def _pull(self) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            samples, stamps = self._inlet.pull_chunk(
                timeout=0.0, max_samples=self.config.max_samples, as_numpy=True)
        except self._lost_error as exc:
            self.context.logger.info("LSLInlet %r: stream lost (%s); ending", self.node_id, exc)
            raise EndOfStream from exc
        if len(stamps) == 0:
            return None
        return samples, stamps

    async def process(self, frame: DataFrame | None) -> DataFrame | None:  # type: ignore[override]
        cfg = self.config
        got = await _next_chunk(self, frame, self._pull,
                                self._refresh_offsets if cfg.clock_offsets else None)
        if got is None:
            return None
        samples, stamps = got
        block = np.asarray(samples, dtype=np.float64).T
        if cfg.timestamp_channel is not None:
            block = np.vstack([block, np.asarray(stamps, dtype=np.float64)[None, :]])
        first = float(stamps[0])
        meta = dict(self._meta, lsl_timestamp=repr(first))
        if self._offsets:  # µs in this frame's timestamp domain (see streamlab.nodes.align)
            off = self._offset_us
            meta["clock_offsets"] = ";".join(f"{t * 1e6 + off!r}:{o * 1e6!r}"
                                             for t, o in self._offsets)
            self._offsets = []
        out = DataFrame(round(first * 1e6 + self._offset_us), self._seq,
                        Payload.from_block(self._names, np.ascontiguousarray(block)), meta)
        self._seq += 1
        self.samples_received += len(stamps)
        return out

    async def on_stop(self) -> None:
        if self._readings is not None:  # (kept: its failure count stays readable)
            await self._readings.close()
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None

    def __repr__(self) -> str:
        return (f"<LSLInlet id={self.node_id!r} connected={self._inlet is not None} "
                f"frames={self._seq} samples={self.samples_received}>")


_FORMATS = Literal["double64", "float32", "int32", "int16"]


class LSLOutletConfig(NodeConfig):
    """Settings of LSLOutlet."""

    name: str = Field(..., min_length=1, description="Stream name to publish.")
    type: str = Field("", description="Stream type (EEG, Audio, ...).")
    source_id: str | None = Field(None, description="Unique source id (lets inlets recover "
                                  "after a restart); default: streamlab-<pipeline>-<node id>.")
    channel_format: _FORMATS = Field("double64", description="Sample type on the wire "
                                     "(double64 is lossless for StreamLab's float64).")
    sample_rate: float | None = Field(None, ge=0, description="Nominal rate in Hz (default: "
                                      "metadata['sample_rate']; 0 = irregular).")
    chunk_size: int = Field(0, ge=0, description="Samples per network chunk (0: as pushed).")
    max_buffered: int = Field(360, ge=1, description="Seconds of data buffered for slow inlets.")
    wait_for_consumers: float = Field(
        0.0, ge=0, le=3600, description="Before the first push, wait up to this many seconds "
        "for an inlet to connect (data pushed before anyone listens is lost).")
    timestamps: Literal["frame", "now"] = Field(
        "frame", description="'frame': map frame timestamps to LSL time; 'now': stamp at push.")
    passthrough: bool = Field(False, description="Also emit every frame unchanged.")


@register_node
class LSLOutlet(ProcessingNode):
    """Publish frames as an LSL stream (push_chunk of samples x channels, labels in desc).

    The outlet is created at the first frame, which fixes the channels (their names become
    ``desc/channels/channel/label``), the nominal rate and the stream's layout; a later frame
    with other channels raises ValueError. ``on_stop`` destroys the outlet.

    >>> LSLOutlet.Config(name="filtered").channel_format
    'double64'
    """

    Config = LSLOutletConfig

    def on_create(self, config: LSLOutletConfig) -> None:
        self.config = config
        self._lsl = import_pylsl()
        self.outlet: Any = None
        self._names: tuple[str, ...] = ()
        self._rate = 0.0
        self._offset_us = 0.0
        self.samples_pushed = 0

    async def _open(self, frame: DataFrame) -> None:
        lsl, cfg = self._lsl, self.config
        rate = cfg.sample_rate
        if rate is None:
            rate = float(frame.metadata.get("sample_rate", "0"))
        self._rate = float(rate)
        self._names = frame.channels
        source_id = cfg.source_id or f"streamlab-{self.context.pipeline}-{self.node_id}"
        info = lsl.StreamInfo(cfg.name, cfg.type, len(self._names), self._rate,
                              cfg.channel_format, source_id)
        info.set_channel_labels(list(self._names))
        self.outlet = lsl.StreamOutlet(info, cfg.chunk_size, cfg.max_buffered)
        self._offset_us = shared_offset_us(self, lsl)
        clock = self.context.clock
        deadline = clock.monotonic() + cfg.wait_for_consumers
        while not self.outlet.have_consumers() and clock.monotonic() < deadline:
            await clock.sleep(0.01)

    async def process(self, frame: DataFrame) -> DataFrame | None:
        if self.outlet is None:
            await self._open(frame)
        elif frame.channels != self._names:
            raise ValueError(f"LSLOutlet {self.node_id!r}: frame {frame.sequence_id} has "
                             f"channels {list(frame.channels)}, but the stream was created "
                             f"with {list(self._names)}")
        n = frame.n_samples
        if n:
            self.outlet.push_chunk(np.ascontiguousarray(frame.block().T), self._stamp(frame, n))
            self.samples_pushed += n
        return frame if self.config.passthrough else None

    def _stamp(self, frame: DataFrame, n: int) -> float | list[float]:
        if self.config.timestamps == "now":
            return 0.0
        first = (frame.timestamp - self._offset_us) / 1e6
        if self._rate > 0:
            return first + (n - 1) / self._rate
        return [first] * n  # irregular stream: every sample gets the frame's time

    def on_stop(self) -> None:
        self.outlet = None  # pylsl destroys the outlet when its last reference goes

    def __repr__(self) -> str:
        return (f"<LSLOutlet id={self.node_id!r} name={self.config.name!r} "
                f"open={self.outlet is not None} samples={self.samples_pushed}>")


# -- marker streams --------------------------------------------------------------------------
def marker_label(value: Any) -> tuple[str, float | None]:
    """A marker sample's channel value as (label, value): strings as they are, numbers as
    their text (integers without ``.0``) with the number as value.

    >>> marker_label("stim/1"), marker_label(3.0), marker_label(2.5)
    (('stim/1', None), ('3', 3.0), ('2.5', 2.5))
    """
    if isinstance(value, str):
        return value, None
    v = float(value)
    return (str(int(v)) if v.is_integer() else repr(v)), v


class LSLMarkerInletConfig(SourceConfig):
    """Settings of LSLMarkerInlet."""

    mode: Literal["triggered", "free"] = Field(
        "free", description="'free' (default): emit markers as they arrive; 'triggered': each "
        "trigger emits the markers that have arrived (nothing if none has).")
    name: str | None = Field(None, min_length=1, description="Stream name to resolve.")
    type: str | None = Field(None, min_length=1,
                             description="Stream type to resolve (Markers, ...).")
    source_id: str | None = Field(None, min_length=1, description="Stream source_id to resolve.")
    channel: int = Field(0, ge=0, description="Channel holding the marker label.")
    resolve_timeout: float = Field(5.0, gt=0, le=3600,
                                   description="Seconds to wait for the stream to be found.")
    max_samples: int = Field(256, ge=1, le=1_000_000, description="Most markers per pull.")
    poll_interval: float = Field(0.005, gt=0, le=10,
                                 description="Seconds to sleep when no marker has arrived.")
    idle_timeout: float | None = Field(
        None, gt=0, description="End the stream (EndOfStream) after this many seconds without "
        "markers; default: wait until the pipeline stops.")
    clocksync: bool = Field(True, description="Add the sender-to-this-host clock offset "
                            "(LSL time_correction) to marker times; adds ~0.6 s at start.")
    clocksync_interval: float = Field(5.0, gt=0, le=3600, description="Seconds between "
                                      "readings of time_correction.")
    max_buflen: int = Field(360, ge=1, description="Seconds of markers the inlet buffers.")
    recover: bool = Field(True, description="Reconnect when the stream is lost; if false, a "
                          "lost stream ends this source.")

    @model_validator(mode="after")
    def _check(self) -> LSLMarkerInletConfig:
        if self.name is None and self.type is None and self.source_id is None:
            raise ValueError("give at least one of name, type or source_id to find the stream")
        for v in (self.name, self.type, self.source_id):
            if v is not None:
                _quote(v)
        return self


@register_node
class LSLMarkerInlet(SourceNode):
    """Receive an LSL marker stream (strings or numbers) as marker frames, one per marker.

    Each marker becomes a frame without samples whose only event is the marker (``label`` the
    channel's string; for a numeric stream the number's text, and ``value`` the number),
    ``timestamp`` = the event's time, metadata ``stream="markers"``, ``lsl_timestamp`` (the
    sender's stamp, seconds) and ``lsl_time_correction`` (seconds added). Marker time in µs:
    ``round((lsl_timestamp + time_correction) * 1e6 + offset_us)``, where ``time_correction``
    is the sender-to-this-host clock offset (``StreamInlet.time_correction()``, read in a
    worker thread at start and every ``clocksync_interval`` s; 0 with ``clocksync: false``)
    and ``offset_us`` the pipeline clock minus ``local_clock()`` (shared by every LSL node of
    the process). Pulls never block the event loop (``pull_chunk(timeout=0.0)``).
    ``on_stop`` closes the stream.

    >>> LSLMarkerInlet.Config(type="Markers").mode
    'free'
    """

    Config = LSLMarkerInletConfig

    def on_create(self, config: LSLMarkerInletConfig) -> None:
        self.config = config
        self._lsl = import_pylsl()
        from pylsl.util import LostError

        self._lost_error: type[Exception] = LostError
        self._inlet: Any = None
        self._seq = 0
        self.offset_us = 0.0
        self.time_correction = 0.0
        self._readings: _Readings[float] | None = None
        self.stream_info: Any = None
        self.markers_received = 0

    async def on_start(self) -> None:
        await asyncio.to_thread(self._connect)
        self.offset_us = shared_offset_us(self, self._lsl)
        inlet = self._inlet
        self._readings = _Readings(self, lambda: float(inlet.time_correction(2.0)),
                                   self.config.clocksync_interval)

    def _connect(self) -> None:
        lsl, cfg = self._lsl, self.config
        info = _resolve(self)
        if cfg.channel >= info.channel_count():
            raise BackendError(f"LSLMarkerInlet {self.node_id!r}: config.channel is "
                               f"{cfg.channel} but stream {info.name()!r} has "
                               f"{info.channel_count()} channels")
        inlet = lsl.StreamInlet(info, max_buflen=cfg.max_buflen, recover=cfg.recover)
        try:
            inlet.open_stream(cfg.resolve_timeout)
            if cfg.clocksync:
                self.time_correction = inlet.time_correction(cfg.resolve_timeout)
        except Exception:
            inlet.close_stream()
            raise
        self._inlet = inlet
        self.stream_info = info

    def _refresh_correction(self) -> None:
        """Read time_correction again, in a worker thread, without waiting for it (a failed
        reading is counted in ``time_correction_failures``; the last estimate stays)."""
        got = self._readings.poll() if self._readings is not None else None
        if got is not None:
            self.time_correction = got

    @property
    def time_correction_failures(self) -> int:
        return 0 if self._readings is None else self._readings.failures

    def _pull(self) -> tuple[list[Any], list[float]] | None:
        try:
            samples, stamps = self._inlet.pull_chunk(timeout=0.0,
                                                     max_samples=self.config.max_samples)
        except self._lost_error as exc:
            self.context.logger.info("LSLMarkerInlet %r: stream lost (%s); ending",
                                     self.node_id, exc)
            raise EndOfStream from exc
        return (samples, stamps) if stamps else None

    async def process(self, frame: DataFrame | None) -> list[DataFrame] | None:  # type: ignore[override]
        cfg = self.config
        got = await _next_chunk(self, frame, self._pull,
                                self._refresh_correction if cfg.clocksync else None)
        if got is None:
            return None
        samples, stamps = got
        tc, ch = self.time_correction, cfg.channel
        out = []
        for sample, stamp in zip(samples, stamps):
            label, value = marker_label(sample[ch])
            t = round((stamp + tc) * 1e6 + self.offset_us)
            meta = {"stream": "markers", "lsl_timestamp": repr(float(stamp)),
                    "lsl_time_correction": repr(float(tc))}
            out.append(DataFrame(t, self._seq, None, meta, (Event(t, label, value),)))
            self._seq += 1
        self.markers_received += len(out)
        return out

    async def on_stop(self) -> None:
        if self._readings is not None:  # (kept: its failure count stays readable)
            await self._readings.close()
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None

    def __repr__(self) -> str:
        return (f"<LSLMarkerInlet id={self.node_id!r} connected={self._inlet is not None} "
                f"markers={self.markers_received}>")


class LSLMarkerOutletConfig(NodeConfig):
    """Settings of LSLMarkerOutlet."""

    name: str = Field(..., min_length=1, description="Stream name to publish.")
    type: str = Field("Markers", description="Stream type.")
    source_id: str | None = Field(None, description="Unique source id; default: "
                                  "streamlab-<pipeline>-<node id>.")
    max_buffered: int = Field(360, ge=1, description="Seconds of markers buffered for slow "
                              "inlets.")
    wait_for_consumers: float = Field(
        0.0, ge=0, le=3600, description="At start, wait up to this many seconds for an inlet "
        "to connect (markers pushed before anyone listens are lost).")
    passthrough: bool = Field(False, description="Also emit every frame unchanged.")


@register_node
class LSLMarkerOutlet(ProcessingNode):
    """Publish every event of the frames it receives as an LSL string marker stream.

    The outlet (1 string channel, irregular rate) is created at start. Each event's ``label``
    is pushed as one sample stamped ``(event.time - offset_us) / 1e6`` seconds of this host's
    ``local_clock()`` (``offset_us`` as in LSLMarkerInlet, so a marker that came in through
    LSLMarkerInlet with ``clocksync: false`` leaves with its original stamp), in the frame's
    event order. ``value`` and ``duration`` are not sent (LSL markers are strings). Events are
    settled ``carried`` (they left on the LSL stream). ``on_stop`` destroys the outlet.

    >>> LSLMarkerOutlet.Config(name="stim").type
    'Markers'
    """

    Config = LSLMarkerOutletConfig
    handles_events = True

    def on_create(self, config: LSLMarkerOutletConfig) -> None:
        self.config = config
        self._lsl = import_pylsl()
        self.outlet: Any = None
        self.offset_us = 0.0
        self.markers_pushed = 0

    async def on_start(self) -> None:
        lsl, cfg = self._lsl, self.config
        source_id = cfg.source_id or f"streamlab-{self.context.pipeline}-{self.node_id}"
        info = lsl.StreamInfo(cfg.name, cfg.type, 1, lsl.IRREGULAR_RATE, "string", source_id)
        self.outlet = lsl.StreamOutlet(info, 0, cfg.max_buffered)
        self.offset_us = shared_offset_us(self, lsl)
        clock = self.context.clock
        deadline = clock.monotonic() + cfg.wait_for_consumers
        while not self.outlet.have_consumers() and clock.monotonic() < deadline:
            await clock.sleep(0.01)

    def process(self, frame: DataFrame) -> DataFrame | None:
        if self.outlet is None:
            raise BackendError(f"LSLMarkerOutlet {self.node_id!r}: no outlet (on_start did "
                               "not run or the node was stopped)")
        for e in frame.events:
            self.outlet.push_sample([e.label], (e.time - self.offset_us) / 1e6)
        n = len(frame.events)
        if n:
            self.markers_pushed += n
            self.context.settle_events("carried", n)
        return frame if self.config.passthrough else None

    def on_stop(self) -> None:
        self.outlet = None  # pylsl destroys the outlet when its last reference goes

    def __repr__(self) -> str:
        return (f"<LSLMarkerOutlet id={self.node_id!r} name={self.config.name!r} "
                f"open={self.outlet is not None} markers={self.markers_pushed}>")
