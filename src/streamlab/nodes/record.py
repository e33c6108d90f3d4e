"""Lossless recording and replay of frame streams: ``Recorder`` (sink) and ``Replay`` (source).

**File format** (``.slrec``, one file, append-only, little-endian)::

    b"SLREC1\\n"                                  magic and format version
    u32 n, n bytes of JSON                        file header: {"format", "version", "node",
                                                  "pipeline", "created_us"}
    then one record per frame:
    u32 h, u64 d                                  lengths of the two parts
    h bytes of JSON                               {"t": timestamp, "s": sequence_id,
                                                   "m": metadata, "c": [channel names],
                                                   "n": [samples per channel], "i": input id,
                                                   "e": [events]}  ("e" only if any)
    d bytes                                       the channels' float64 samples, one after another

Each event in ``"e"`` is :meth:`Event.to_dict <streamlab.events.Event.to_dict>`:
``{"time", "label", "sample"}`` plus ``"value"`` (a number, if not None) and ``"duration"``
(if not 0). Version 2 of the file header (the magic is unchanged) added ``"e"``; a version 1
recording (no events) replays as before, and readers ignore record keys they do not know.

Integers and strings in JSON are exact, floats are written with ``repr`` precision (NaN and
±inf as ``NaN``/``Infinity``) and the samples are the raw float64 bytes, so a frame read back
compares equal (``==``) to the frame recorded, bit for bit (NaN payloads and -0.0 included),
events too. Each record is handed to the operating system in one piece as its frame arrives
and the file is closed in ``on_stop``; a run that crashes leaves every complete record
readable, and Replay reports a truncated last record (or ignores it with ``allow_truncated``).
A write that fails (a full disk) is cut off again, so the file stays a valid recording of the
frames before it, and the error goes to the node's error policy (see
:mod:`streamlab.nodes.sinks`). Replay checks every length against the file before reading, so
a corrupt or hostile file fails with a :class:`RecordingError` naming the record and its byte
offset, in memory bounded by the file's size. The format needs no index: it
is read front to back, one record at a time, so recordings of any length replay in constant
memory.

**Timing.** Replay re-emits frames with their recorded timestamps and sequence ids. With
``realtime`` it waits on the pipeline clock (``context.clock``, so tests can use
:class:`~streamlab.testing.VirtualClock`) until ``(t_k - t_0) / speed`` seconds after the first
frame; otherwise it emits as fast as downstream takes them. Feeding a replay into the same
downstream nodes therefore reproduces the recorded run's outputs exactly.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from pydantic import Field

from streamlab.config.paths import InputPath
from streamlab.errors import EndOfStream
from streamlab.events import Event
from streamlab.frame import DataFrame, Payload
from streamlab.node import SourceConfig, SourceNode
from streamlab.nodes.io import FILE_MODE, check_regular_file
from streamlab.nodes.sinks import AppendFile, FileSink, IncrementalSinkConfig, frame_source_name
from streamlab.registry import register_node

__all__ = ["Recorder", "Replay", "ReplaySource", "RecordingError", "iter_recording", "read_recording_header",
           "MAGIC", "repair_recording", "RepairResult"]

MAGIC = b"SLREC1\n"
#: The file header's "version": 2 added events ("e" in record headers); 1 is read the same way.
FORMAT_VERSION = 2
_U32 = struct.Struct("<I")
_REC = struct.Struct("<IQ")
_F64 = np.dtype("<f8")


def _encode_record(frame: DataFrame, source: str) -> bytes:
    names = frame.channels
    arrays = [frame.payload[n] for n in names]
    fields: dict[str, Any] = {"t": frame.timestamp, "s": frame.sequence_id,
                              "m": dict(frame.metadata), "c": list(names),
                              "n": [len(a) for a in arrays], "i": source}
    if frame.events:  # only when there are some: an event-free record is a version 1 record
        fields["e"] = [e.to_dict() for e in frame.events]
    head = json.dumps(fields, separators=(",", ":")).encode("utf-8")
    if frame.payload.is_block and arrays:
        data = np.ascontiguousarray(frame.block(), dtype=_F64).tobytes()
    else:
        data = b"".join(np.ascontiguousarray(a, dtype=_F64).tobytes() for a in arrays)
    return _REC.pack(len(head), len(data)) + head + data


class RecordingError(ValueError):
    """A recording that cannot be read: the message names the file, the record and the problem."""


class _Truncated(RecordingError):
    """The file ends inside a record (what a crash while recording leaves)."""


# A record header holds a frame's channel names, lengths and metadata; nothing Recorder writes
# comes near this, and a corrupt length must never make the reader allocate gigabytes.
MAX_RECORD_HEADER = 64 * 1024 * 1024


def _remaining(f: BinaryIO) -> int:
    """Bytes left in the file after the current position (the bound on any read)."""
    return os.fstat(f.fileno()).st_size - f.tell()


def _read_exact(f: BinaryIO, n: int, where: str, what: str) -> bytes:
    """Exactly n bytes; _Truncated if the file ends first (never allocates more than is there).

    ``where`` starts the message (the file, and the record if any).
    """
    left = _remaining(f)
    if n > left:
        raise _Truncated(f"{where}: truncated {what} at byte {f.tell()} (expected {n} "
                         f"bytes, the file has {max(left, 0)} more)")
    data = f.read(n)
    if len(data) != n:  # the file shrank while we read it
        raise _Truncated(f"{where}: truncated {what} at byte {f.tell() - len(data)} "
                         f"(expected {n} bytes, got {len(data)})")
    return data


def _parse_json(raw: bytes) -> Any:
    """json.loads, with every failure (bad UTF-8, bad JSON, absurd nesting) as a ValueError."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int too long
        raise ValueError(f"not valid JSON ({exc})") from None


def read_recording_header(f: BinaryIO, path: Path) -> dict[str, Any]:
    """Check the magic and return the file header (RecordingError if not a recording)."""
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise RecordingError(f"{str(path)!r}: not a StreamLab recording (expected it to start "
                             f"with {MAGIC!r}, got {magic[:16]!r})")
    raw = _read_exact(f, _U32.size, repr(str(path)), "file header")
    body = _read_exact(f, _U32.unpack(raw)[0], repr(str(path)), "file header")
    try:
        header = _parse_json(body)
    except ValueError as exc:
        raise RecordingError(f"{str(path)!r}: bad file header: {exc}") from None
    if not isinstance(header, dict):
        raise RecordingError(f"{str(path)!r}: bad file header: expected a JSON object, got "
                             f"{type(header).__name__}")
    return header


def _is_int(x: Any) -> bool:
    return type(x) is int  # JSON gives int, never bool-as-int here (bool is checked apart)


_EVENT_KEYS = ("time", "label", "sample", "value", "duration")


def _check_events(raw: Any) -> list[Event]:
    """The events of a record header's "e" (strict: no coercion); ValueError names the event."""
    if not isinstance(raw, list):
        raise ValueError(f"events \"e\" must be a list, got {type(raw).__name__}")
    events = []
    for k, ev in enumerate(raw):
        where = f"event {k} in \"e\""
        if not isinstance(ev, dict):
            raise ValueError(f"{where} must be an object, got {ev!r:.40}")
        missing = [key for key in ("time", "label") if key not in ev]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}")
        time, label = ev["time"], ev["label"]
        sample, duration = ev.get("sample", 0), ev.get("duration", 0)
        value = ev.get("value")
        if not _is_int(time):
            raise ValueError(f"{where}: time must be an integer (µs), got {time!r:.40}")
        if not isinstance(label, str):
            raise ValueError(f"{where}: label must be a string, got {label!r:.40}")
        if not (_is_int(sample) and sample >= 0):
            raise ValueError(f"{where}: sample must be an integer >= 0, got {sample!r:.40}")
        if not (_is_int(duration) and duration >= 0):
            raise ValueError(f"{where}: duration must be an integer >= 0 (µs), got "
                             f"{duration!r:.40}")
        if value is not None and type(value) not in (int, float):
            raise ValueError(f"{where}: value must be a number or null, got {value!r:.40}")
        events.append(Event(time, label, value, duration, sample))
    return events


def _check_head(head: Any, d: int) -> tuple[list[str], list[int], list[Event]]:
    """Validate a record header against the data length; ValueError says what is wrong."""
    if not isinstance(head, dict):
        raise ValueError(f"expected a JSON object, got {type(head).__name__}")
    missing = [k for k in ("t", "s", "m", "c", "n") if k not in head]
    if missing:
        raise ValueError(f"missing field(s) {missing} (a record header holds t, s, m, c, n, i)")
    for key, what in (("t", "timestamp"), ("s", "sequence id")):
        if not _is_int(head[key]):
            raise ValueError(f"{what} \"{key}\" must be an integer, got {head[key]!r:.40}")
    m = head["m"]
    if not isinstance(m, dict) or not all(isinstance(v, str) for v in m.values()):
        raise ValueError(f"metadata \"m\" must be an object of strings, got {m!r:.60}")
    names, lengths = head["c"], head["n"]
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        raise ValueError(f"channel names \"c\" must be a list of strings, got {names!r:.60}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate channel names in \"c\": {names!r:.60}")
    if not isinstance(lengths, list) or not all(_is_int(x) and x >= 0 for x in lengths):
        raise ValueError(f"lengths \"n\" must be a list of non-negative integers, got "
                         f"{lengths!r:.60}")
    if len(lengths) != len(names):
        raise ValueError(f"{len(names)} channel names but {len(lengths)} lengths")
    if "i" in head and not isinstance(head["i"], str):
        raise ValueError(f"input id \"i\" must be a string, got {head['i']!r:.40}")
    events = _check_events(head["e"]) if "e" in head else []
    total = sum(lengths)
    if d != total * _F64.itemsize:
        raise ValueError(f"the lengths {lengths!r:.60} add up to {total} samples "
                         f"({total * _F64.itemsize} bytes) but the length prefix declares {d} "
                         "bytes of data")
    return names, lengths, events


def _read_record(f: BinaryIO, path: Path, index: int) -> DataFrame | None:
    """Record ``index`` (0-based), starting at the current position; None at a clean end.

    Every length is checked against the rest of the file before anything is read, so a corrupt
    or hostile file costs at most its own size in memory and fails with a RecordingError that
    names the file, the record, its byte offset and the problem.
    """
    offset = f.tell()
    where = f"{str(path)!r}: record {index} (at byte {offset})"
    raw = f.read(_REC.size)
    if not raw:
        return None
    if len(raw) != _REC.size:
        raise _Truncated(f"{where}: truncated record length prefix (expected {_REC.size} "
                         f"bytes, got {len(raw)})")
    h, d = _REC.unpack(raw)
    if h > MAX_RECORD_HEADER:
        raise RecordingError(f"{where}: record header length {h} exceeds the limit of "
                             f"{MAX_RECORD_HEADER} bytes (corrupt file?)")
    head_raw = _read_exact(f, h, where, "record header")
    try:
        head = _parse_json(head_raw)
        names, lengths, events = _check_head(head, d)
    except ValueError as exc:
        raise RecordingError(f"{where}: bad record header: {exc}") from None
    data = _read_exact(f, d, where, "record data")
    samples = np.frombuffer(data, dtype=_F64)
    try:
        if lengths and all(n == lengths[0] for n in lengths):
            payload = Payload.from_block(names, samples.reshape(len(names), lengths[0]))
        else:
            bounds = np.cumsum([0, *lengths])
            payload = Payload({n: samples[bounds[i]:bounds[i + 1]]
                               for i, n in enumerate(names)})
        return DataFrame(head["t"], head["s"], payload, head["m"], events)
    except ValueError as exc:  # FrameError: e.g. a timestamp out of range
        raise RecordingError(f"{where}: bad record: {exc}") from None


def iter_recording(path: str | Path, *, allow_truncated: bool = False) -> Iterator[DataFrame]:
    """Yield the frames of a recording in order.

    Raises RecordingError (a ValueError) naming the file, record index and byte offset for a
    foreign, corrupt or truncated file; with ``allow_truncated`` a truncated last record ends
    the iteration quietly instead.
    """
    p = Path(path)
    check_regular_file(p, "recording")
    with open(p, "rb") as f:
        read_recording_header(f, p)
        index = 0
        while True:
            try:
                frame = _read_record(f, p, index)
            except _Truncated:
                if allow_truncated:
                    return
                raise
            if frame is None:
                return
            index += 1
            yield frame


class RecorderConfig(IncrementalSinkConfig):
    """Settings of Recorder."""

    flush: bool = Field(False, description="Kept for compatibility: every record is now handed "
                        "to the operating system as it is written, so a crash of the process "
                        "loses at most the record being written.")


@register_node
class Recorder(FileSink):
    """Record every frame losslessly (timestamps, ids, metadata, events, exact float64) to .slrec.

    Any channels, any lengths, changing from frame to frame. Events are stored with their
    frame and counted ``carried`` once it is written (``dropped`` if the write fails). The file is written as frames
    arrive and closed in ``on_stop``; see the module docstring for the format. Replay it with
    the Replay node or :func:`iter_recording`.

    >>> import tempfile, os
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "run.slrec")
    >>> f = make_frame(x=[0.1, float("nan")], timestamp=7, sequence_id=3,
    ...                metadata={"sample_rate": "10.0"})
    >>> run_node(Recorder, {"path": path}, [f])
    []
    >>> list(iter_recording(path)) == [f]
    True
    """

    Config = RecorderConfig
    fixed_channels = False
    stores_events = True
    handles_events = True

    def _open(self, frame: DataFrame) -> None:
        header = json.dumps({"format": "streamlab-recording", "version": FORMAT_VERSION,
                             "node": self.node_id, "pipeline": self.context.pipeline,
                             "created_us": self.context.clock.time_us()}).encode("utf-8")
        self._file = AppendFile(self.path, MAGIC + _U32.pack(len(header)) + header)

    def _write(self, frame: DataFrame) -> None:
        # One append per record: on a failed write (a full disk) the file is cut back to the
        # end of the previous record, so it stays a valid recording.
        self._file.append(_encode_record(frame, frame_source_name(self)))

    def _finish(self) -> None:
        self._close_file()


class ReplayConfig(SourceConfig):
    """Settings of Replay."""

    mode: Literal["triggered", "free"] = FILE_MODE
    path: InputPath = Field(..., min_length=1, description="Recording made by Recorder. A "
                            "relative path is relative to the config file's folder.")
    realtime: bool = Field(False, description="Free mode: reproduce the recorded timing (gaps "
                           "between frame timestamps) on the pipeline clock; default: as fast "
                           "as possible.")
    speed: float = Field(1.0, gt=0, le=1e6, description="With realtime: playback speed factor "
                         "(2.0 = twice as fast).")
    allow_truncated: bool = Field(False, description="End quietly at a truncated last record "
                                  "(a recording cut short by a crash) instead of failing.")


class ReplaySource(SourceNode):
    """Shared driver of the replaying sources (Replay, XdfSource): emit ``_next()``'s frames.

    ``_next()`` returns the next recorded frame, or None when the recording has ended. Free
    mode: EndOfStream after the last frame; triggered mode: one frame per trigger, nothing for
    later triggers. Free mode with ``config.realtime``: each frame waits until it is due on the
    pipeline clock, its timestamp's distance from the first frame's divided by
    ``config.speed``; a frame already late goes at once; a graceful stop requested during the
    wait ends the replay (EndOfStream, the frame is not emitted). A failure of ``_next()``
    propagates.
    """

    _first_ts: int | None = None  # timestamp of the first paced frame
    _start = 0.0  # clock.monotonic() when it left

    def _next(self) -> DataFrame | None:
        raise NotImplementedError(f"{type(self).__name__} must implement _next()")

    async def process(self, frame: DataFrame | None) -> DataFrame | None:  # type: ignore[override]
        out = self._next()
        if out is None:
            if frame is not None:
                return None
            raise EndOfStream
        if frame is None and self.config.realtime and not await self._wait_until_due(
                out.timestamp):
            raise EndOfStream  # stopped while waiting
        return out

    async def _wait_until_due(self, timestamp: int) -> bool:
        """Wait until the frame at ``timestamp`` is due; False if a stop came first."""
        clock = self.context.clock
        if self._first_ts is None:
            self._first_ts, self._start = timestamp, clock.monotonic()
            return True
        due = self._start + (timestamp - self._first_ts) / 1e6 / self.config.speed
        wait = due - clock.monotonic()
        return wait <= 0 or await self.context.sleep(wait)


@register_node
class Replay(ReplaySource):
    """Re-emit a recording's frames unchanged, with their original timing or as fast as possible.

    The file is opened and its header checked in ``on_create`` (a missing or foreign file is an
    error naming the path), read one record at a time, and closed at the end or in ``on_stop``.
    Raises EndOfStream after the last frame (free mode); in triggered mode later triggers
    produce nothing.

    >>> import tempfile, os
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "run.slrec")
    >>> frames = [make_frame(x=[float(i)], timestamp=i * 1000, sequence_id=i) for i in range(3)]
    >>> _ = run_node(Recorder, {"path": path}, frames)
    >>> run_node(Replay, {"path": path}, triggers=5) == frames
    True
    """

    Config = ReplayConfig

    def on_create(self, config: ReplayConfig) -> None:
        self.config = config
        self.path = Path(config.path).expanduser()
        check_regular_file(self.path, "recording")  # a FIFO is never opened (it would block)
        self._file: BinaryIO | None = open(self.path, "rb")
        try:
            self.header = read_recording_header(self._file, self.path)
        except ValueError:
            self._file.close()
            raise
        self._first_ts = None  # pacing starts again with the first frame
        self.frames_replayed = 0
        self._index = 0  # of the next record, for error messages

    def _next(self) -> DataFrame | None:
        if self._file is None:
            return None
        try:
            frame = _read_record(self._file, self.path, self._index)
        except _Truncated:
            if not self.config.allow_truncated:
                self.close()
                raise
            frame = None
        except RecordingError:
            self.close()  # a corrupt record ends the replay: nothing after it can be trusted
            raise
        if frame is None:
            self.close()
        else:
            self._index += 1
            self.frames_replayed += 1
        return frame

    def close(self) -> None:
        """Close the recording (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def on_stop(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Replay id={self.node_id!r} path={str(self.path)!r} "
                f"replayed={self.frames_replayed} open={self._file is not None}>")


@dataclass(frozen=True)
class RepairResult:
    """What :func:`repair_recording` did: records (frames; rows for .csv/.npy) kept, bytes cut."""

    path: str
    records: int
    bytes_removed: int


def repair_recording(path: str | Path) -> RepairResult:
    """Cut a recording left by a killed process back to its last complete record, in place.

    After ``kill -9`` (or a power loss) the file sinks' files may end inside the record being
    written: a .jsonl or .csv line without its newline (whose last number may look valid but be
    cut short), a truncated .slrec record, a partial .npy row, an .xdf chunk or an .edf/.bdf
    data record. This removes that tail; .npy, .edf and .bdf also get their header's count
    (rows, data records) set to what the file holds. ``records`` counts frames (.slrec,
    .jsonl), rows (.csv, .npy), chunks (.xdf) or data records (.edf, .bdf). A complete file is
    left unchanged. Raises ValueError for a suffix it does not know or a file that is not of
    its format (.npy: only the layout NpySink writes; nothing is changed then), OSError if the
    file cannot be rewritten.
    """
    p = Path(path)
    check_regular_file(p, "recording")
    suffix = p.suffix.lower()
    repair_kind = _REPAIRS.get(suffix)
    if repair_kind is None:
        raise ValueError(f"{str(p)!r}: cannot repair a {suffix or 'suffix-less'} file; "
                         f"known: {', '.join(_REPAIRS)}")
    return repair_kind(p)


#: (file, its size, its path) -> (end of the complete part, records in it)
_Complete = Callable[[BinaryIO, int, Path], tuple[int, int]]


def _cut_to_complete(complete: _Complete, p: Path) -> RepairResult:
    """Open ``p``, find its complete part with ``complete`` and truncate the file there."""
    with open(p, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        end, records = complete(f, size, p)
        if end < size:
            f.truncate(end)
    return RepairResult(str(p), records, size - end)


def _complete_lines(f: BinaryIO, size: int, p: Path, *, header_row: bool) -> tuple[int, int]:
    data = f.read()
    end = data.rfind(b"\n") + 1
    return end, data.count(b"\n", 0, end) - (header_row and end > 0)


def _complete_slrec(f: BinaryIO, size: int, p: Path) -> tuple[int, int]:
    read_recording_header(f, p)
    end, records = f.tell(), 0
    while True:
        try:
            if _read_record(f, p, records) is None:
                return end, records
        except _Truncated:
            return end, records
        records += 1
        end = f.tell()


def _complete_npy(f: BinaryIO, size: int, p: Path) -> tuple[int, int]:
    """The whole rows of an NpySink file; rewrites a header whose row count is stale."""
    import numpy.lib.format as npf

    from streamlab.nodes.sinks import _NPY_HEADER_LEN, npy_header

    try:
        if npf.read_magic(f) != (1, 0):
            raise ValueError("not .npy version 1.0")
        shape, fortran, dtype = npf.read_array_header_1_0(f)
    except ValueError as exc:
        raise ValueError(f"{str(p)!r}: not a .npy file NpySink wrote ({exc})") from None
    if f.tell() != _NPY_HEADER_LEN or dtype != np.dtype("<f8") or fortran or len(shape) != 2:
        raise ValueError(f"{str(p)!r}: not the .npy layout NpySink writes (float64, 2-D, C "
                         f"order, {_NPY_HEADER_LEN}-byte header); left as it is")
    row = 8 * max(shape[1], 1)
    records = (size - _NPY_HEADER_LEN) // row
    if records != shape[0]:
        f.seek(0)
        f.write(npy_header(records, shape[1]))
    return _NPY_HEADER_LEN + records * row, records


def _repair_xdf(p: Path) -> RepairResult:
    from streamlab.formats import xdf

    removed = xdf.repair(p)
    return RepairResult(str(p), xdf.scan(p).chunks, removed)


def _repair_edf(p: Path) -> RepairResult:
    from streamlab.formats import edf

    r = edf.repair(p)
    return RepairResult(str(p), r.records, r.bytes_cut)


#: Suffix -> how a file of that kind is repaired.
_REPAIRS: dict[str, Callable[[Path], RepairResult]] = {
    ".slrec": partial(_cut_to_complete, _complete_slrec),
    ".npy": partial(_cut_to_complete, _complete_npy),
    ".csv": partial(_cut_to_complete, partial(_complete_lines, header_row=True)),
    **{s: partial(_cut_to_complete, partial(_complete_lines, header_row=False))
       for s in (".jsonl", ".ndjson", ".json")},
    ".xdf": _repair_xdf,
    ".edf": _repair_edf,
    ".bdf": _repair_edf,
}
