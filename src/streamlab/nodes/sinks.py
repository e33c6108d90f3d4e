"""File sinks: JSON Lines, CSV, .npy, .npz and .wav, and ``FileSink``, their base.

A relative path in a config loaded from a file is relative to that file's folder (resolved by
:func:`streamlab.config.load_config`); in a config given as a dict, to the working directory.

Every sink opens its file at the first frame (creating missing parent directories), writes
incrementally where the format allows (.jsonl, .csv, .npy, .wav; .npz is written at the end
from memory), and finishes the file in ``on_stop``, which the runtime calls when the sink's
input ends, when the run is stopped, and after a failure, so the file is complete once
``streamlab run`` returns. A sink that received no frame writes no file. Sinks are terminal
(``process`` returns None) unless ``passthrough`` is set. Formats with columns (.csv, .npy,
.npz, .wav) require every frame to carry the same channels as the first; a different set
raises ValueError naming both. A restarted sink (restart strategy) starts its file again.

**Write failures** (a full disk, an I/O error). The incremental sinks (.jsonl, .csv, .npy and
:class:`~streamlab.nodes.record.Recorder`) hand each frame to the operating system in one
piece as it arrives (:class:`AppendFile`). When a write fails, the file is cut back to the end
of the last complete frame (.npy: its header is rewritten with that row count), so the format's
own reader opens it and finds every frame written before the failure; the frame is not written,
and a :class:`SinkWriteError` (an OSError) naming the node, the path, the problem ("no space
left on device") and the number of frames the file holds goes to the node's error policy.
With ``SkipFrame`` the sink keeps writing later frames (after the gap) once space is back.
An existing output path that is not a regular file (a directory, a FIFO, a device) is refused
before it is opened; a FIFO is never opened.

**Events** (:mod:`streamlab.events`). JsonlSink and Recorder store a frame's events with it
(exactly: label, time, value, duration, sample) and count them ``carried`` once the frame is
written (``dropped`` if the write fails). CsvSink, NpySink, NpzSink and WavSink have no place
for events: they drop them, which the event ledger counts as ``dropped`` (``carried`` with
``passthrough``, since they leave on the emitted frame), and log one warning per run the
first time a frame with events reaches them.

**A killed process** (``kill -9``, a crash) leaves files that their own readers open, with
every frame whose write had returned: each frame reaches the operating system in one write as
it arrives (the OS keeps it when the process dies), the .npy header's row count follows every
frame, and a header is written under a temporary name and renamed into place, so the path
never names a file without one. Only the frame being written may be cut short: a last
.jsonl/.csv line without its newline, a truncated .slrec record, a partial .npy row (beyond
the header's count, so np.load ignores it); :func:`streamlab.nodes.record.repair_recording`
(``streamlab repair FILE``) cuts it off. ``flush_interval_s`` (default 1 s) adds an ``fsync``
at that interval and at the end, for power loss and OS crashes. See docs/recordings.md.

Reading files back is :class:`streamlab.nodes.io.FileSource`.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import stat
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from streamlab.config.paths import OutputPath
from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.nodes.io import _import_soundfile, require_suffix
from streamlab.registry import register_node

__all__ = [
    "JsonlSink", "CsvSink", "NpySink", "NpzSink", "WavSink", "SinkStatistics", "FileSink",
    "FileSinkConfig", "IncrementalSinkConfig", "frame_source_name", "npy_header", "AppendFile", "SinkWriteError",
]


class SinkWriteError(OSError):
    """A sink could not write its file; ``errno`` is the operating system's (e.g. ENOSPC)."""

    def __init__(self, message: str, errno_: int | None) -> None:
        super().__init__(message)
        self.errno = errno_  # OSError(message) leaves it None


def _problem(exc: OSError) -> str:
    """'no space left on device' from an OSError (the strerror, lower-cased first letter)."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def check_output_path(path: Path, what: str) -> None:
    """Refuse an existing output path that is not a regular file, saying what it is.

    Only ``stat`` is used, so a FIFO is never opened (opening one for writing blocks until a
    reader appears).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return  # a new file (or a dangling symlink, which open() follows and creates)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(f"{what}: {str(path)!r} is a symlink loop") from None
        raise OSError(f"{what}: cannot use {str(path)!r}: {_problem(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{what}: {str(path)!r} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise ValueError(f"{what}: {str(path)!r} is {kind}; file sinks write regular files only")


class AppendFile:
    """A new output file written in whole pieces (a header, then one piece per frame).

    Each piece goes to the operating system in unbuffered ``os.write`` calls as it is given, so
    the file ends at a piece boundary whenever :meth:`append` returns. If a write fails (no
    space left on device, an I/O error), the partial piece is cut off again (``ftruncate`` to
    the previous end) and the OSError propagates: the file then holds exactly the pieces
    appended before. Opened with O_NONBLOCK and checked with fstat, so a FIFO put there in a
    race never blocks.

    With ``header``, the file is first written under a temporary name in the same folder
    (``.NAME.PID.part``) and renamed to ``path`` once the header is in it, so a process killed
    at any moment leaves either no file (perhaps that temporary file) or one that starts with
    the whole header; if the header cannot be written, the temporary file is removed and the
    OSError propagates. A symlink at ``path`` is followed (its target is replaced).
    """

    #: The write system call; a seam for tests that simulate a full disk.
    _os_write = staticmethod(os.write)

    def __init__(self, path: Path, header: bytes | None = None) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        target = Path(os.path.realpath(path)) if header is not None else path
        where = (target.with_name(f".{target.name}.{os.getpid()}.part") if header is not None
                 else path)
        fd = os.open(where, flags, 0o666)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ValueError(f"{str(path)!r} is not a regular file")
        self._fd: int | None = fd
        self.path = path
        self.size = 0  #: bytes in the file, always at a piece boundary
        if header is not None:
            try:
                self.append(header)
                os.replace(where, target)  # atomic: the path never names a headless file
            except BaseException:
                self.close()
                with contextlib.suppress(OSError):
                    os.unlink(where)
                raise

    def _fileno(self) -> int:
        if self._fd is None:
            raise ValueError(f"{str(self.path)!r} is closed")
        return self._fd

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` whole, or (on an OSError) not at all, and re-raise the error."""
        fd = self._fileno()
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                n = self._os_write(fd, view[done:])
                if n <= 0:  # pragma: no cover - a regular file never returns 0 for len > 0
                    raise OSError(errno.EIO, "the write made no progress")
                done += n
        except OSError:
            if done:  # cut the partial piece: the file must end where the last piece ended
                try:
                    os.ftruncate(fd, self.size)
                    os.lseek(fd, self.size, os.SEEK_SET)  # else the next write leaves a hole
                except OSError:  # pragma: no cover - truncating never needs space
                    pass  # the write's error is the one to report
            raise
        self.size += done

    def write_at(self, offset: int, data: bytes) -> None:
        """Overwrite bytes already in the file (a header), without moving the append position."""
        os.pwrite(self._fileno(), data, offset)

    def dup(self) -> int:
        """A second descriptor of the open file (for an fsync that may outlive ``close``)."""
        return os.dup(self._fileno())

    def close(self) -> None:
        """Close the file (idempotent). Nothing is buffered, so closing cannot lose data."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd is None


def _fsync(fd: int, directory: Path | None) -> None:
    """fsync ``fd`` (then close it) and, the first time, the folder (the new name's entry)."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if directory is not None:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def frame_source_name(node: ProcessingNode) -> str:
    """The id of the upstream node a sink's current frame came from (its own id if unknown)."""
    ctx = node.context
    if ctx.current_input and ctx.current_input != "trigger":
        return ctx.current_input
    return ctx.inputs[0] if len(ctx.inputs) == 1 else ctx.node_id


@dataclass(frozen=True)
class SinkStatistics:
    """What a file sink has written so far."""

    path: str
    frames: int
    samples: int
    closed: bool


class FileSinkConfig(NodeConfig):
    """Settings shared by file sinks."""

    path: OutputPath = Field(..., min_length=1, description="Output file. A relative path is "
                             "relative to the config file's folder; missing parent directories "
                             "are created.")
    passthrough: bool = Field(False, description="Also emit every frame unchanged (default: the "
                              "sink is terminal and emits nothing).")


class IncrementalSinkConfig(FileSinkConfig):
    """Settings of the sinks that write as frames arrive (.jsonl, .csv, .npy, .slrec)."""

    flush_interval_s: float | None = Field(
        1.0, ge=0, le=86400, description="Seconds between fsyncs of the file (its data "
        "reaches the disk, so it survives a power loss or an OS crash too): in a background "
        "thread at the first frame after the interval, and at the end. 0: at every frame, "
        "before the next is taken. null: never (the OS writes it back on its own, typically "
        "within 30 s). A killed process (kill -9) loses nothing either way: every frame is "
        "handed to the OS as it arrives.")


class FileSink(ProcessingNode):
    """Base of file sinks: opens at the first frame, writes per frame, finishes in on_stop.

    Subclasses implement ``_open(frame)``, ``_write(frame)`` and ``_finish()``.
    """

    Config: ClassVar[type[NodeConfig]] = FileSinkConfig
    #: Sinks with columns require the same channels in every frame.
    fixed_channels: ClassVar[bool] = True
    #: The format stores events (then the sink settles them itself: ``handles_events``).
    stores_events: ClassVar[bool] = False

    def on_create(self, config: Any) -> None:
        self.config = config
        self.path = Path(config.path).expanduser()
        self._names: tuple[str, ...] | None = None
        self._opened = False
        self._closed = False
        self._frames = 0
        self._samples = 0
        self._file: Any = None  # set by _open
        self._warned_events = False
        self._last_sync = 0.0
        self._sync_thread: threading.Thread | None = None
        self._sync_error: OSError | None = None
        self._dir_synced = False

    def process(self, frame: DataFrame) -> DataFrame | None:
        if not frame.events:
            return self._process(frame)
        if not self.stores_events:
            if not self._warned_events:  # once per run: the ledger counts every one
                self._warned_events = True
                self.context.logger.warning(
                    "%s %r cannot store events: frame %d's events (and any later ones) are "
                    "not written to %s", type(self).__name__, self.node_id, frame.sequence_id,
                    self.path)
            return self._process(frame)
        # A sink that stores events settles them (handles_events): carried into the file once
        # the frame is written, dropped with a frame that is not.
        out = self._process(frame)  # a failed write: the runtime settles the events dropped
        self.context.settle_events("carried", len(frame.events))
        return out

    def _process(self, frame: DataFrame) -> DataFrame | None:
        if self._closed:
            raise ValueError(f"{type(self).__name__} {self.node_id!r}: {str(self.path)!r} is "
                             "already finished")
        if not self._opened:
            self._names = frame.channels
            check_output_path(self.path, f"{type(self).__name__} {self.node_id!r}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._open(frame)
            except OSError as exc:
                self._discard_partial()
                raise self._write_error(exc, "could not start the file; no file was left") \
                    from exc
            self._opened = True
            self._last_sync = time.monotonic()
        elif self.fixed_channels and frame.channels != self._names:
            raise ValueError(f"{type(self).__name__} {self.node_id!r}: frame "
                             f"{frame.sequence_id} has channels {list(frame.channels)}, but "
                             f"{str(self.path)!r} was started with {list(self._names or ())}")
        if self._sync_error is not None:  # a background fsync failed: say so, once
            failed, self._sync_error = self._sync_error, None
            raise self._write_error(failed, f"syncing the file to disk failed; frame "
                                    f"{frame.sequence_id} was not written") from failed
        try:
            self._write(frame)
        except SinkWriteError:
            raise
        except OSError as exc:
            self._after_write_error()
            raise self._write_error(exc, f"frame {frame.sequence_id} was not written; the file "
                                    f"holds the {self._frames} frames before it") from exc
        self._frames += 1
        self._samples += frame.n_samples
        self._maybe_sync(frame)
        return frame if self.config.passthrough else None

    # -- durability (flush_interval_s): fsync, never needed for a killed process --------------
    def _sync_interval(self) -> float | None:
        return getattr(self.config, "flush_interval_s", None)

    def _sync_dir(self) -> Path | None:
        """The folder to fsync once (the new file's name lives there), then None."""
        if self._dir_synced:
            return None
        self._dir_synced = True
        return Path(os.path.realpath(self.path)).parent

    def _maybe_sync(self, frame: DataFrame) -> None:
        interval = self._sync_interval()
        if interval is None or not isinstance(self._file, AppendFile) or self._file.closed:
            return
        now = time.monotonic()
        if interval == 0:  # at every frame, before process() returns
            try:
                _fsync(self._file.dup(), self._sync_dir())
            except OSError as exc:
                raise self._write_error(exc, f"frame {frame.sequence_id} was written but "
                                        "syncing it to disk failed") from exc
            return
        if now - self._last_sync < interval or (
                self._sync_thread is not None and self._sync_thread.is_alive()):
            return
        self._last_sync = now
        # A thread: an fsync can take long, and the sink may run on the event loop's thread.
        # It syncs its own descriptor, so closing the file meanwhile is safe.
        thread = threading.Thread(target=self._sync_in_background,
                                  args=(self._file.dup(), self._sync_dir()),
                                  name=f"streamlab-fsync:{self.node_id}", daemon=True)
        self._sync_thread = thread
        thread.start()

    def _sync_in_background(self, fd: int, directory: Path | None) -> None:
        try:
            _fsync(fd, directory)
        except OSError as exc:  # reported at the next frame or at the end (never lost)
            self._sync_error = exc

    def _close_file(self) -> None:
        """Close the AppendFile; with ``flush_interval_s`` set, fsync it first. A failed
        fsync (now or in the background) raises the OSError after the file is closed."""
        try:
            if self._sync_thread is not None:
                self._sync_thread.join()
                self._sync_thread = None
            if self._sync_interval() is not None and not self._file.closed:
                _fsync(self._file.dup(), self._sync_dir())
        finally:
            self._file.close()
        if self._sync_error is not None:
            failed, self._sync_error = self._sync_error, None
            raise failed

    def on_stop(self) -> None:
        if self._opened and not self._closed:
            self._closed = True
            try:
                self._finish()
            except SinkWriteError:
                raise
            except OSError as exc:
                raise self._write_error(exc, "could not finish the file") from exc
        elif not self._opened:
            self.context.logger.info("%s %r received no frame; %s not written",
                                     type(self).__name__, self.node_id, self.path)

    def _write_error(self, exc: OSError, outcome: str) -> SinkWriteError:
        return SinkWriteError(f"{type(self).__name__} {self.node_id!r}: writing "
                              f"{str(self.path)!r} failed: {_problem(exc)}; {outcome}", exc.errno)

    def _after_write_error(self) -> None:
        """Bring the file back to a readable state after a failed ``_write`` (AppendFile has
        already cut the partial frame; NpySink also rewrites its header)."""

    def _discard_partial(self) -> None:
        """Remove a file whose header could not be written (it would not be readable)."""
        if self._file is not None:  # only a file this sink created (never someone else's)
            self._file.close()
            self.path.unlink(missing_ok=True)

    def _open(self, frame: DataFrame) -> None:
        raise NotImplementedError

    def _write(self, frame: DataFrame) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _sample_rate(self, frame: DataFrame, configured: float | None) -> float | None:
        if configured is not None:
            return float(configured)
        text = frame.metadata.get("sample_rate")
        if text is None:
            return None
        try:
            return float(text)
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__} {self.node_id!r}: metadata sample_rate "
                             f"{text!r} is not a number") from exc

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(str(self.path), self._frames, self._samples, self._closed)

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"<{type(self).__name__} id={self.node_id!r} path={s.path!r} frames={s.frames} "
                f"samples={s.samples} closed={s.closed}>")


class JsonlSinkConfig(IncrementalSinkConfig):
    """Settings of JsonlSink."""

    flush: bool = Field(False, description="Kept for compatibility: every line is now handed "
                        "to the operating system as it is written, so readers that follow the "
                        "file see it at once.")

    @model_validator(mode="after")
    def _check(self) -> JsonlSinkConfig:
        require_suffix(self.path, (".jsonl", ".json", ".ndjson"), "JsonlSink")
        return self


@register_node
class JsonlSink(FileSink):
    """Write frames as JSON Lines, in the same format as ``streamlab run --output``.

    One line per frame: ``{"node", "timestamp", "sequence_id", "payload": {channel: [floats]},
    "metadata"}``, where ``node`` is the upstream node the frame came from, plus ``"events"``
    (a list of :meth:`Event.to_dict <streamlab.events.Event.to_dict>`) when the frame has
    events. Floats are written with ``repr`` precision (exact round trip); NaN and inf as
    ``NaN``/``Infinity``. ``DataFrame.from_dict`` reads a line back (the ``node`` key aside).

    >>> import json, tempfile, os
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "out.jsonl")
    >>> run_node(JsonlSink, {"path": path}, [make_frame(x=[0.5, 1.0], sequence_id=3)])
    []
    >>> json.loads(open(path).readline())["payload"]
    {'x': [0.5, 1.0]}
    """

    Config = JsonlSinkConfig
    fixed_channels = False
    stores_events = True
    handles_events = True

    def _open(self, frame: DataFrame) -> None:
        self._file = AppendFile(self.path)

    def _write(self, frame: DataFrame) -> None:
        line = json.dumps({"node": frame_source_name(self), **frame.to_dict()}) + "\n"
        self._file.append(line.encode("utf-8"))

    def _finish(self) -> None:
        self._close_file()


class CsvSinkConfig(IncrementalSinkConfig):
    """Settings of CsvSink."""

    time_column: str | None = Field(
        None, min_length=1, description="If set, a first column of this name holds each "
        "sample's timestamp in µs (needs the sample rate).")
    sample_rate: float | None = Field(None, gt=0, description="Hz, for time_column (default: "
                                      "metadata['sample_rate']).")

    @model_validator(mode="after")
    def _check(self) -> CsvSinkConfig:
        require_suffix(self.path, (".csv",), "CsvSink")
        return self


@register_node
class CsvSink(FileSink):
    """Write frames as CSV: a header row of channel names, then one row per sample.

    Values are written with 17 significant digits (exact float64 round trip), so FileSource
    reads the file back unchanged. With ``time_column``, each row starts with the sample's
    timestamp in µs: ``frame.timestamp + round(i * 1e6 / sample_rate)``.

    >>> import tempfile, os
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "out.csv")
    >>> _ = run_node(CsvSink, {"path": path}, [make_frame(a=[0.1, 2.0], b=[3.0, -4.0])])
    >>> print(open(path).read().strip())
    a,b
    0.10000000000000001,3
    2,-4
    """

    Config = CsvSinkConfig

    def _open(self, frame: DataFrame) -> None:
        cfg = self.config
        self._rate = None
        if cfg.time_column is not None:
            self._rate = self._sample_rate(frame, cfg.sample_rate)
            if self._rate is None:
                raise ValueError(f"CsvSink {self.node_id!r}: time_column needs a sample rate: "
                                 "set sample_rate in the config or metadata['sample_rate']")
            if cfg.time_column in frame.channels:
                raise ValueError(f"CsvSink {self.node_id!r}: time_column {cfg.time_column!r} "
                                 "is also a channel name")
        header = ([cfg.time_column] if cfg.time_column else []) + list(frame.channels)
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(header)
        self._file = AppendFile(self.path, text.getvalue().encode("utf-8"))

    def _write(self, frame: DataFrame) -> None:
        rows = np.asarray(frame.block()).T
        text = io.StringIO()  # the whole frame, then one write: a frame lands whole or not at all
        if self._rate is not None:
            n = rows.shape[0]
            times = frame.timestamp + np.round(np.arange(n) * (1e6 / self._rate)).astype(np.int64)
            for t, row in zip(times.tolist(), rows.tolist(), strict=True):
                text.write(f"{t}," + ",".join(f"{v:.17g}" for v in row) + "\n")
        else:
            np.savetxt(text, rows, delimiter=",", fmt="%.17g")
        self._file.append(text.getvalue().encode("utf-8"))

    def _finish(self) -> None:
        self._close_file()


_NPY_HEADER_LEN = 128  # fixed, so the final shape can be written over the placeholder


def npy_header(n_samples: int, n_channels: int) -> bytes:
    """A .npy v1.0 header for a little-endian float64 C-order (n_samples, n_channels) array."""
    d = f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({n_samples}, {n_channels}), }}"
    body_len = _NPY_HEADER_LEN - 10
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + (
        d.ljust(body_len - 1) + "\n").encode("latin1")


class NpySinkConfig(IncrementalSinkConfig):
    """Settings of NpySink."""

    @model_validator(mode="after")
    def _check(self) -> NpySinkConfig:
        require_suffix(self.path, (".npy",), "NpySink")
        return self


@register_node
class NpySink(FileSink):
    """Write the samples to a .npy file, shape samples x channels (float64), frames concatenated.

    The data is appended as it arrives, and after every frame the fixed 128-byte header is
    rewritten with the rows in the file, so ``np.load`` reads every complete frame at any
    moment: during the run, after ``kill -9``, after a failed write (see the module
    docstring). Timestamps and metadata are not stored: use NpzSink or Recorder for those.
    Channel order is the first frame's.

    >>> import numpy as np, tempfile, os
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "out.npy")
    >>> _ = run_node(NpySink, {"path": path}, [make_frame(a=[1.0, 2.0], b=[3.0, 4.0]),
    ...                                       make_frame(a=[5.0], b=[6.0])])
    >>> np.load(path).tolist()
    [[1.0, 3.0], [2.0, 4.0], [5.0, 6.0]]
    """

    Config = NpySinkConfig

    def _open(self, frame: DataFrame) -> None:
        self._file = AppendFile(self.path, npy_header(0, len(frame.channels)))

    def _write(self, frame: DataFrame) -> None:
        self._file.append(np.ascontiguousarray(frame.block().T, dtype="<f8").tobytes())
        # The header's row count follows every frame (one 128-byte pwrite over bytes already
        # in the file: no new space), so np.load finds every complete row after a kill -9.
        self._file.write_at(0, npy_header(self._rows_in_file(), len(self._names or ())))

    def _rows_in_file(self) -> int:
        row = 8 * max(len(self._names or ()), 1)
        return (self._file.size - _NPY_HEADER_LEN) // row

    def _after_write_error(self) -> None:
        # Overwrites bytes already on disk, so it needs no new space.
        self._file.write_at(0, npy_header(self._rows_in_file(), len(self._names or ())))

    def _finish(self) -> None:
        try:
            self._file.write_at(0, npy_header(self._rows_in_file(), len(self._names or ())))
        finally:
            self._close_file()


class NpzSinkConfig(FileSinkConfig):
    """Settings of NpzSink."""

    compressed: bool = Field(False, description="Write a compressed archive (np.savez_compressed).")

    @model_validator(mode="after")
    def _check(self) -> NpzSinkConfig:
        require_suffix(self.path, (".npz",), "NpzSink")
        return self


@register_node
class NpzSink(FileSink):
    """Write samples and frame timing to a .npz archive at the end of the run.

    Arrays: ``data`` (samples x channels, float64), ``channels`` (names), ``timestamps``,
    ``sequence_ids`` and ``frame_lengths`` (one int64 per frame) and ``sample_rate`` (the first
    frame's metadata value, NaN if absent). The frames are held in memory until ``on_stop``
    (an .npz is a zip archive); for long runs use NpySink or Recorder.

    >>> import numpy as np, tempfile, os
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "out.npz")
    >>> _ = run_node(NpzSink, {"path": path}, [make_frame(a=[1.0, 2.0], timestamp=5)])
    >>> z = np.load(path)
    >>> z["data"].tolist(), z["channels"].tolist(), z["timestamps"].tolist()
    ([[1.0], [2.0]], ['a'], [5])
    """

    Config = NpzSinkConfig

    def _open(self, frame: DataFrame) -> None:
        self._blocks: list[np.ndarray] = []
        self._stamps: list[tuple[int, int, int]] = []
        rate = frame.metadata.get("sample_rate")
        self._rate = self._sample_rate(frame, None) if rate is not None else float("nan")

    def _write(self, frame: DataFrame) -> None:
        self._blocks.append(frame.block())
        self._stamps.append((frame.timestamp, frame.sequence_id, frame.n_samples))

    def _finish(self) -> None:
        names = list(self._names or ())
        data = (np.concatenate(self._blocks, axis=1).T if self._blocks
                else np.empty((0, len(names))))
        stamps = np.array(self._stamps, dtype=np.int64).reshape(-1, 3)
        save = np.savez_compressed if self.config.compressed else np.savez
        try:
            with open(self.path, "wb") as f:
                save(f, data=np.ascontiguousarray(data), channels=np.array(names, dtype=str),
                     timestamps=stamps[:, 0], sequence_ids=stamps[:, 1],
                     frame_lengths=stamps[:, 2], sample_rate=np.float64(self._rate))
        except OSError as exc:
            # A zip archive cut short is unreadable: leave no file rather than a broken one.
            self.path.unlink(missing_ok=True)
            raise self._write_error(exc, f"the archive of {self._frames} frames could not be "
                                    "completed and was removed") from exc
        finally:
            self._blocks = []


class WavSinkConfig(FileSinkConfig):
    """Settings of WavSink."""

    sample_rate: int | None = Field(None, gt=0, le=2**31 - 1, description="Hz (an integer: "
                                    "WAV stores one). Default: metadata['sample_rate'].")
    subtype: str = Field("FLOAT", description="soundfile subtype: FLOAT (32-bit float, the "
                         "default: no clipping), DOUBLE, PCM_16, PCM_24, PCM_32. PCM subtypes "
                         "clip samples outside [-1, 1).")

    @model_validator(mode="after")
    def _check(self) -> WavSinkConfig:
        require_suffix(self.path, (".wav",), "WavSink")
        return self


@register_node
class WavSink(FileSink):
    """Write frames to a .wav file (soundfile), channels in the first frame's order.

    The sample rate comes from the config or ``metadata["sample_rate"]`` and must be a whole
    number of Hz. Samples are written as they arrive; the header is finished in ``on_stop``.

    >>> import soundfile as sf, tempfile, os
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "out.wav")
    >>> meta = {"sample_rate": "8000.0"}
    >>> _ = run_node(WavSink, {"path": path}, [make_frame(l=[0.5, -0.25], r=[0.0, 1.0],
    ...                                                  metadata=meta)])
    >>> data, rate = sf.read(path)
    >>> data.tolist(), rate
    ([[0.5, 0.0], [-0.25, 1.0]], 8000)
    """

    Config = WavSinkConfig

    def on_create(self, config: WavSinkConfig) -> None:
        super().on_create(config)
        self._sf = _import_soundfile()
        if not self._sf.check_format("WAV", config.subtype):
            known = sorted(self._sf.available_subtypes("WAV"))
            raise ValueError(f"WavSink: unknown WAV subtype {config.subtype!r}; one of {known}")

    def _open(self, frame: DataFrame) -> None:
        rate = self._sample_rate(frame, self.config.sample_rate)
        if rate is None or rate <= 0 or rate != round(rate):
            raise ValueError(f"WavSink {self.node_id!r}: needs a whole, positive sample rate in "
                             f"Hz from the config or metadata['sample_rate'], got {rate}")
        self._file = self._sf.SoundFile(str(self.path), "w", samplerate=int(rate),
                                        channels=len(frame.channels), subtype=self.config.subtype,
                                        format="WAV")

    def _write(self, frame: DataFrame) -> None:
        self._file.write(np.ascontiguousarray(frame.block().T))

    def _finish(self) -> None:
        self._close_file()

