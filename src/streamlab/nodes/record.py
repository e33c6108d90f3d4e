"""Lossless recording and replay of frame streams: ``Recorder`` (sink) and ``Replay`` (source).

**File format** (``.slrec``, one file, append-only, little-endian)::

    b"SLREC1\\n"                                  magic and format version
    u32 n, n bytes of JSON                        file header: {"format", "version", "node",
                                                  "pipeline", "created_us"}
    then one record per frame:
    u32 h, u64 d                                  lengths of the two parts
    h bytes of JSON                               {"t": timestamp, "s": sequence_id,
                                                   "m": metadata, "c": [channel names],
                                                   "n": [samples per channel], "i": input id}
    d bytes                                       the channels' float64 samples, one after another

Integers and strings in JSON are exact and the samples are the raw float64 bytes, so a frame
read back compares equal (``==``) to the frame recorded, bit for bit (NaN payloads and -0.0
included). Records are written as frames arrive and the file is flushed and closed in
``on_stop``; a run that crashes leaves every complete record readable, and Replay reports a
truncated last record (or ignores it with ``allow_truncated``). The format needs no index: it
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
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from pydantic import Field

from streamlab.config.paths import InputPath
from streamlab.errors import EndOfStream
from streamlab.frame import DataFrame, Payload
from streamlab.node import SourceConfig, SourceNode
from streamlab.nodes.sinks import FileSink, FileSinkConfig, frame_source_name
from streamlab.registry import register_node

__all__ = ["Recorder", "Replay", "iter_recording", "read_recording_header", "MAGIC"]

MAGIC = b"SLREC1\n"
_U32 = struct.Struct("<I")
_REC = struct.Struct("<IQ")
_F64 = np.dtype("<f8")


def _encode_record(frame: DataFrame, source: str) -> bytes:
    names = frame.channels
    arrays = [frame.payload[n] for n in names]
    head = json.dumps({"t": frame.timestamp, "s": frame.sequence_id, "m": dict(frame.metadata),
                       "c": list(names), "n": [len(a) for a in arrays], "i": source},
                      separators=(",", ":")).encode("utf-8")
    if frame.payload.is_block and arrays:
        data = np.ascontiguousarray(frame.block(), dtype=_F64).tobytes()
    else:
        data = b"".join(np.ascontiguousarray(a, dtype=_F64).tobytes() for a in arrays)
    return _REC.pack(len(head), len(data)) + head + data


def _read_exact(f: BinaryIO, n: int, path: Path, what: str) -> bytes | None:
    """n bytes, None at a clean end of file, ValueError on a short read."""
    data = f.read(n)
    if len(data) == n:
        return data
    if not data and what == "record":
        return None
    raise _Truncated(f"{str(path)!r}: truncated {what} at byte {f.tell() - len(data)} "
                     f"(expected {n} bytes, got {len(data)})")


class _Truncated(ValueError):
    pass


def read_recording_header(f: BinaryIO, path: Path) -> dict[str, Any]:
    """Check the magic and return the file header (ValueError if not a recording)."""
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise ValueError(f"{str(path)!r}: not a StreamLab recording (expected it to start with "
                         f"{MAGIC!r}, got {magic[:16]!r})")
    raw = _read_exact(f, _U32.size, path, "file header")
    assert raw is not None
    body = _read_exact(f, _U32.unpack(raw)[0], path, "file header")
    assert body is not None
    header: dict[str, Any] = json.loads(body)
    return header


def _read_record(f: BinaryIO, path: Path) -> DataFrame | None:
    raw = _read_exact(f, _REC.size, path, "record")
    if raw is None:
        return None
    h, d = _REC.unpack(raw)
    head_raw = _read_exact(f, h, path, "record header")
    data = _read_exact(f, d, path, "record data")
    assert head_raw is not None and data is not None
    head = json.loads(head_raw)
    names, lengths = head["c"], head["n"]
    samples = np.frombuffer(data, dtype=_F64)
    if lengths and all(n == lengths[0] for n in lengths):
        payload = Payload.from_block(names, samples.reshape(len(names), lengths[0]))
    else:
        bounds = np.cumsum([0, *lengths])
        payload = Payload({n: samples[bounds[i]:bounds[i + 1]] for i, n in enumerate(names)})
    return DataFrame(head["t"], head["s"], payload, head["m"])


def iter_recording(path: str | Path, *, allow_truncated: bool = False) -> Iterator[DataFrame]:
    """Yield the frames of a recording in order (ValueError on a bad or truncated file)."""
    p = Path(path)
    with open(p, "rb") as f:
        read_recording_header(f, p)
        while True:
            try:
                frame = _read_record(f, p)
            except _Truncated:
                if allow_truncated:
                    return
                raise
            if frame is None:
                return
            yield frame


class RecorderConfig(FileSinkConfig):
    """Settings of Recorder."""

    flush: bool = Field(False, description="Flush after every frame (survives a crash with at "
                        "most the current frame lost, at some cost per frame).")


@register_node
class Recorder(FileSink):
    """Record every frame losslessly (timestamps, ids, metadata, exact float64) to a .slrec file.

    Any channels, any lengths, changing from frame to frame. The file is written as frames
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

    def _open(self, frame: DataFrame) -> None:
        self._file = open(self.path, "wb")
        header = json.dumps({"format": "streamlab-recording", "version": 1,
                             "node": self.node_id, "pipeline": self.context.pipeline,
                             "created_us": self.context.clock.time_us()}).encode("utf-8")
        self._file.write(MAGIC + _U32.pack(len(header)) + header)

    def _write(self, frame: DataFrame) -> None:
        self._file.write(_encode_record(frame, frame_source_name(self)))
        if self.config.flush:
            self._file.flush()

    def _finish(self) -> None:
        self._file.close()


class ReplayConfig(SourceConfig):
    """Settings of Replay."""

    mode: Literal["triggered", "free"] = Field(
        "free", description="'free' (default): replay the whole recording on its own; "
        "'triggered': one recorded frame per trigger frame.")
    path: InputPath = Field(..., min_length=1, description="Recording made by Recorder. A "
                            "relative path is relative to the config file's folder.")
    realtime: bool = Field(False, description="Free mode: reproduce the recorded timing (gaps "
                           "between frame timestamps) on the pipeline clock; default: as fast "
                           "as possible.")
    speed: float = Field(1.0, gt=0, le=1e6, description="With realtime: playback speed factor "
                         "(2.0 = twice as fast).")
    allow_truncated: bool = Field(False, description="End quietly at a truncated last record "
                                  "(a recording cut short by a crash) instead of failing.")


@register_node
class Replay(SourceNode):
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

    def on_create(self, config: ReplayConfig) -> None:  # type: ignore[override]
        self.config = config
        self.path = Path(config.path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"no such recording {str(self.path)!r} (relative paths are "
                                    f"relative to the working directory {str(Path.cwd())!r})")
        self._file: BinaryIO | None = open(self.path, "rb")
        try:
            self.header = read_recording_header(self._file, self.path)
        except ValueError:
            self._file.close()
            raise
        self._first_ts: int | None = None
        self._start = 0.0
        self.frames_replayed = 0

    def _next(self) -> DataFrame | None:
        if self._file is None:
            return None
        try:
            frame = _read_record(self._file, self.path)
        except _Truncated:
            if not self.config.allow_truncated:
                self.close()
                raise
            frame = None
        if frame is None:
            self.close()
        return frame

    async def process(self, frame: DataFrame | None) -> DataFrame | None:  # type: ignore[override]
        out = self._next()
        if out is None:
            if frame is not None:
                return None
            raise EndOfStream
        if frame is None and self.config.realtime:
            await self._wait_until_due(out.timestamp)
        self.frames_replayed += 1
        return out

    async def _wait_until_due(self, timestamp: int) -> None:
        clock = self.context.clock
        if self._first_ts is None:
            self._first_ts = timestamp
            self._start = clock.monotonic()
            return
        due = self._start + (timestamp - self._first_ts) / 1e6 / self.config.speed
        wait = due - clock.monotonic()
        if wait > 0:
            await clock.sleep(wait)

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
