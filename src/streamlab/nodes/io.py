"""File source: ``FileSource`` reads .npy, .csv and .wav files in frames.

A relative path in a config loaded from a file is relative to that file's folder (resolved by
:func:`streamlab.config.load_config`); in a config given as a dict, to the working directory.

:class:`FileSource` picks the format by extension. ``.npy`` files are memory
mapped (``np.load(mmap_mode="r")``) and ``.wav`` files are read block by block with soundfile,
so a large file is never loaded whole; ``.csv`` files are parsed at once (CSV is a text
format meant for small data). Frames carry ``samples_per_frame`` samples (the last frame
holds what is left and may be shorter), as a block payload (channels x samples), timestamped
with their first sample: ``t0 + round(n * 1e6 / sample_rate)`` µs, sequence ids from 0, and
``metadata["sample_rate"]``. At the end of the file the source raises EndOfStream, so
``streamlab run`` ends on its own (``mode`` defaults to ``"free"`` for this node).

The file sinks (JsonlSink, CsvSink, NpySink, NpzSink, WavSink, FileSink) moved to
:mod:`streamlab.nodes.sinks`; importing them from here still works (a lazy re-export, so
``sinks`` can import this module's helpers without an import cycle).
"""

from __future__ import annotations

import csv
import errno
import io
import os
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamlab.config.paths import InputPath
from streamlab.errors import EndOfStream, missing_extra
from streamlab.events import Event
from streamlab.frame import DataFrame, Payload
from streamlab.node import SourceConfig, SourceNode
from streamlab.registry import register_node

__all__ = ["BlockSource", "FileSource", "FileSourceConfig", "check_regular_file", "open_reader",
           "path_problem", "require_suffix", "FILE_MODE", "SAMPLES_PER_FRAME"]

_READ_SUFFIXES = (".npy", ".csv", ".wav")


def require_suffix(path: str, allowed: tuple[str, ...], what: str) -> None:
    """Raise ValueError unless ``path`` ends with one of ``allowed`` (case-insensitive)."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{what}: path {path!r} must end with {' or '.join(allowed)} "
                         f"(got {suffix or 'no extension'!r})")


def _import_soundfile() -> Any:
    try:
        import soundfile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise missing_extra("soundfile", "dsp") from exc
    return soundfile


def _missing(path: Path, what: str = "file") -> FileNotFoundError:
    return FileNotFoundError(f"no such {what} {str(path)!r} (relative paths are relative to the "
                             f"working directory {str(Path.cwd())!r})")


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def path_problem(path: Path, what: str = "file") -> OSError | ValueError | None:
    """Why ``path`` cannot be read as a regular file (None if it can), as an exception to raise.

    Only ``stat`` calls: nothing is opened, so a FIFO never blocks. The message says what the
    path is: missing, a dangling symlink, a symlink loop, a directory, a FIFO, a device, or
    permission denied.
    """
    p = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return FileNotFoundError(f"{what} {p!r} is a symlink to {os.readlink(path)!r}, "
                                     "which does not exist")
        return _missing(path, what)
    except PermissionError:
        return PermissionError(f"{what} {p!r}: permission denied (a directory on the path "
                               "cannot be searched)")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return OSError(f"{what} {p!r} is a symlink loop (the links never reach a file)")
        if exc.errno == errno.ENOTDIR:
            return NotADirectoryError(f"{what} {p!r}: a component of the path is a file, "
                                      "not a directory")
        return OSError(f"{what} {p!r}: cannot access it: {exc.strerror}")
    if stat.S_ISDIR(st.st_mode):
        return IsADirectoryError(f"{what} {p!r} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        return ValueError(f"{what} {p!r} is {_kind(st.st_mode)}, not a regular file "
                          "(only regular files can be read)")
    if not os.access(path, os.R_OK):
        return PermissionError(f"{what} {p!r}: permission denied (the file is not readable)")
    return None


def check_regular_file(path: Path, what: str = "file") -> None:
    """Raise the error of :func:`path_problem`, if any."""
    problem = path_problem(path, what)
    if problem is not None:
        raise problem


# -- readers ------------------------------------------------------------------------------------
class _Reader:
    """Reads consecutive blocks (channels x samples, float64) from one file."""

    n_channels: int
    sample_rate: float | None = None
    names: tuple[str, ...] | None = None

    def read(self, count: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file (idempotent)."""


class _ArrayReader(_Reader):
    """Blocks from a 2-D (samples x channels) array, possibly memory mapped."""

    def __init__(self, path: Path, data: np.ndarray) -> None:
        if data.ndim == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2:
            raise ValueError(f"{str(path)!r}: expected a 1-D or 2-D array (samples x channels), "
                             f"got shape {data.shape}")
        if data.dtype.kind not in "fiu":
            raise ValueError(f"{str(path)!r}: expected real numbers, got dtype {data.dtype}")
        self._data: np.ndarray | None = data
        self.n_channels = data.shape[1]
        self._pos = 0

    def read(self, count: int) -> np.ndarray:
        if self._data is None:
            return np.empty((self.n_channels, 0))
        chunk = self._data[self._pos:self._pos + count]
        self._pos += len(chunk)
        return np.ascontiguousarray(chunk.T, dtype=np.float64)

    def close(self) -> None:
        self._data = None  # drops the memory map


def _open_npy(path: Path) -> _Reader:
    where = repr(str(path))
    try:
        # numpy warns (RuntimeWarning) instead of failing when a header's shape overflows:
        # turn that into an error, and check the shape against the file before mapping it.
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                available = os.fstat(f.fileno()).st_size - f.tell()
            if dtype.hasobject or dtype.kind not in "fiu":
                raise ValueError(f"{where}: expected real numbers, got dtype {dtype}")
            needed = dtype.itemsize
            for n in shape:
                needed *= n  # Python ints: no overflow
            if needed > available:
                raise ValueError(f"{where}: the .npy header says shape {shape} of {dtype} "
                                 f"({needed} bytes) but the file holds {available} bytes of "
                                 "data (truncated or corrupt file)")
            data = np.load(path, mmap_mode="r", allow_pickle=False)
    except RuntimeWarning as exc:
        raise ValueError(f"{where}: corrupt .npy header ({exc})") from None
    except ValueError as exc:
        if str(exc).startswith(where):
            raise
        raise ValueError(f"{where}: not a numeric .npy array ({exc})") from None
    if not isinstance(data, np.ndarray):
        raise ValueError(f"{where}: expected a .npy array, got {type(data).__name__}")
    return _ArrayReader(path, data)


def _csv_error(path: Path, line: int, problem: str) -> ValueError:
    return ValueError(f"{str(path)!r}, line {line}: {problem}")


def _header_name(cell: str) -> str:
    """A header cell without surrounding blanks and quotes ('"Fz"' -> 'Fz')."""
    name = cell.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1].strip()
    return name


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _open_csv(path: Path, header: bool | Literal["auto"] = "auto") -> _Reader:
    """Parse a CSV file at once: an optional header row of names, then rows of numbers.

    ``header``: True (the first row is names), False (it is data) or "auto" (names unless every
    cell of the first row is a number). Every error names the path, the 1-based line and the
    problem.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # -sig: a spreadsheet's byte-order mark is not a name
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _csv_error(path, line, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                         f"{column}); save the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    names: tuple[str, ...] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []  # the line of each row, for errors found later
    width: int | None = None
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if names is None and width is None and header is not False and (
                    header is True or not all(_is_number(c) for c in row)):
                names = tuple(_header_name(c) for c in row)
                if any(not n for n in names) or len(set(names)) != len(names):
                    raise _csv_error(path, reader.line_num, "the header row must hold unique, "
                                     f"non-empty channel names, got {list(names)}")
                width = len(names)
                continue
            if width is None:
                width = len(row)
            elif len(row) != width:
                expected = "names in the header" if names is not None else "values in line " \
                    f"{lines[0]}"
                raise _csv_error(path, reader.line_num, f"{len(row)} values, but {width} "
                                 f"{expected}")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise _csv_error(path, reader.line_num, f"cannot parse it as CSV ({exc})") from None
    if width is None:
        raise ValueError(f"{str(path)!r}: empty CSV file (expected rows of numbers, optionally "
                         "after a header row of channel names)")
    if not rows:
        data = np.empty((0, width))
    else:
        try:
            data = np.asarray(rows, dtype=np.float64)
        except ValueError:  # the slow path: find the first bad cell
            data = np.empty((len(rows), width))
            for i, (row, line) in enumerate(zip(rows, lines, strict=True)):
                for col, cell in enumerate(row):
                    try:
                        data[i, col] = float(cell)
                    except ValueError:
                        raise _csv_error(path, line, f"column {col + 1}: {cell[:40]!r} is not "
                                         "a number") from None
    reader_ = _ArrayReader(path, data)
    reader_.names = names
    return reader_


class _WavReader(_Reader):
    def __init__(self, path: Path) -> None:
        sf = _import_soundfile()
        try:
            self._file: Any = sf.SoundFile(str(path))
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise ValueError(f"{str(path)!r}: cannot read as audio: {exc}") from exc
        self.n_channels = self._file.channels
        self.sample_rate = float(self._file.samplerate)

    def read(self, count: int) -> np.ndarray:
        if self._file.closed:
            return np.empty((self.n_channels, 0))
        data = self._file.read(frames=count, dtype="float64", always_2d=True)
        return np.ascontiguousarray(data.T)

    def close(self) -> None:
        self._file.close()


def open_reader(path: str | Path, *, header: bool | Literal["auto"] = "auto") -> _Reader:
    """Open ``path`` for FileSource by extension; clear errors for missing or bad files.

    Anything but a regular file (a directory, a FIFO, a device, a symlink loop) is refused
    before it is opened, so a FIFO never blocks. ``header`` applies to .csv files.
    """
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in _READ_SUFFIXES:
        raise ValueError(f"{str(p)!r}: unsupported extension {suffix!r} "
                         f"(expected one of {', '.join(_READ_SUFFIXES)})")
    check_regular_file(p)
    if suffix == ".npy":
        return _open_npy(p)
    if suffix == ".csv":
        return _open_csv(p, header)
    return _WavReader(p)


# -- source -------------------------------------------------------------------------------------
_FREE: Literal["triggered", "free"] = "free"  # typed, so mypy's pydantic plugin accepts it
#: ``mode`` of the sources that read a file (FileSource, EdfSource, XdfSource, Replay): unlike
#: other sources they run free by default, to the end of the file.
FILE_MODE = Field(_FREE, description="'free' (default): read to the end of the file on its "
                  "own; 'triggered': one frame per trigger frame.")
#: ``samples_per_frame`` of the sources that cut a file into frames.
SAMPLES_PER_FRAME = Field(..., ge=1, le=10_000_000,
                          description="Samples per frame (the last frame may be shorter).")


class FileSourceConfig(SourceConfig):
    """Settings of FileSource."""

    mode: Literal["triggered", "free"] = FILE_MODE
    path: InputPath = Field(..., min_length=1, description="File to read: .npy (samples x "
                            "channels, 1-D = one channel), .csv (header row = channel names) or "
                            ".wav. A relative path is relative to the config file's folder.")
    samples_per_frame: int = SAMPLES_PER_FRAME
    sample_rate: float | None = Field(
        None, gt=0, le=1e9, description="Samples per second (Hz). Required for .npy and .csv; a "
        ".wav file carries its own rate (if given here, it must match the file's).")
    channels: list[str] | None = Field(
        None, min_length=1, max_length=4096, description="Channel names (default: the CSV "
        "header, else ch0, ch1, ...); their number must match the file's channels.")
    header: bool | Literal["auto"] = Field(
        "auto", description=".csv only: whether the first row holds channel names. 'auto' "
        "(default): it does unless every cell of it is a number; true: it does; false: the "
        "file has no header and every row is data.")
    start_timestamp: int | None = Field(
        None, ge=0, description="Timestamp (µs since the epoch) of the first sample. Default: "
        "the first trigger's timestamp, or the pipeline clock's time at the first frame.")

    @model_validator(mode="after")
    def _check(self) -> FileSourceConfig:
        require_suffix(self.path, _READ_SUFFIXES, "FileSource")
        suffix = Path(self.path).suffix.lower()
        if self.sample_rate is None and suffix in (".npy", ".csv"):
            raise ValueError(f"sample_rate is required for {suffix} files (they do not carry "
                             f"a sample rate); add \"sample_rate\": <Hz> to the config")
        if self.header != "auto" and suffix != ".csv":
            raise ValueError(f"header applies to .csv files only (the path is a {suffix} file)")
        if self.channels is not None and len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channel names must be unique, got {self.channels}")
        return self


class BlockSource(SourceNode):
    """Shared by the sources that cut a file into frames of ``samples_per_frame`` samples
    (FileSource, EdfSource): the frames' timestamps, sequence ids and the end of the file.

    A subclass sets ``_reader`` (anything with ``close()``), ``_rate`` (Hz), ``_names``,
    ``_meta``, ``_t0`` (µs of the first sample) and ``_n = _seq = 0`` in ``on_create``. Sample
    ``i`` of the file is at ``_t0 + round(i * 1e6 / _rate)``. At the end of the file the reader
    is closed; free mode raises EndOfStream, later triggers produce nothing. ``on_stop``
    closes the reader too.
    """

    _reader: Any
    _rate: float
    _names: tuple[str, ...]
    _meta: dict[str, str]
    _t0: int | None
    _n: int
    _seq: int

    @property
    def sample_rate(self) -> float:
        """The stream's sample rate in Hz."""
        return self._rate

    @property
    def channels(self) -> tuple[str, ...]:
        return self._names

    def frame_period(self) -> float | None:
        return self.config.samples_per_frame / self._rate

    def _frame(self, block: np.ndarray, events: Sequence[Event] = ()) -> DataFrame:
        """The next frame: ``block`` (channels x samples) at the next sample's time."""
        assert self._t0 is not None
        ts = self._t0 + round(self._n * 1e6 / self._rate)
        out = DataFrame(ts, self._seq, Payload.from_block(self._names,
                                                          np.ascontiguousarray(block)),
                        self._meta, events)
        self._n += block.shape[1]
        self._seq += 1
        return out

    def _end(self, trigger: DataFrame | None) -> None:
        """The file is exhausted: close it; EndOfStream in free mode, None for a trigger."""
        self._reader.close()
        if trigger is None:
            raise EndOfStream

    def on_stop(self) -> None:
        self._reader.close()


@register_node
class FileSource(BlockSource):
    """Read a .npy, .csv or .wav file and emit it in frames of samples_per_frame samples.

    Runs free by default (no triggers needed) and raises EndOfStream at the end of the file.
    In triggered mode each trigger reads one frame; triggers after the end produce nothing.
    The file is opened in ``on_create`` (a missing file, a wrong extension or a bad shape is an
    error naming the path) and closed in ``on_stop``.

    >>> import numpy as np, tempfile, os
    >>> from streamlab.testing import run_node
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(10.0).reshape(5, 2))
    >>> out = run_node(FileSource, {"path": path, "samples_per_frame": 2,
    ...                             "sample_rate": 100.0, "channels": ["a", "b"],
    ...                             "start_timestamp": 0}, triggers=9)
    >>> [f.payload["a"].tolist() for f in out], [f.timestamp for f in out]
    ([[0.0, 2.0], [4.0, 6.0], [8.0]], [0, 20000, 40000])
    """

    Config = FileSourceConfig

    def on_create(self, config: FileSourceConfig) -> None:
        self.config = config
        reader = open_reader(config.path, header=config.header)
        try:
            self._rate = self._sample_rate(config, reader)
            self._names = self._channel_names(config, reader)
        except ValueError:
            reader.close()
            raise
        self._reader = reader
        self._meta = {"sample_rate": repr(self._rate)}
        self._n = 0
        self._seq = 0
        self._t0: int | None = config.start_timestamp

    @staticmethod
    def _sample_rate(config: FileSourceConfig, reader: _Reader) -> float:
        if reader.sample_rate is None:
            assert config.sample_rate is not None  # the config validator ensures it
            return float(config.sample_rate)
        if config.sample_rate is not None and config.sample_rate != reader.sample_rate:
            raise ValueError(f"{config.path!r}: the file's sample rate is {reader.sample_rate} Hz "
                             f"but the config says sample_rate={config.sample_rate}")
        return reader.sample_rate

    @staticmethod
    def _channel_names(config: FileSourceConfig, reader: _Reader) -> tuple[str, ...]:
        if config.channels is not None:
            if len(config.channels) != reader.n_channels:
                raise ValueError(f"{config.path!r}: the file has {reader.n_channels} channels "
                                 f"but {len(config.channels)} names are configured: "
                                 f"{config.channels}")
            return tuple(config.channels)
        if reader.names is not None:
            return reader.names
        return tuple(f"ch{i}" for i in range(reader.n_channels))

    def process(self, frame: DataFrame | None) -> DataFrame | None:
        if self._t0 is None:
            self._t0 = frame.timestamp if frame is not None else self.context.clock.time_us()
        block = self._reader.read(self.config.samples_per_frame)
        if block.shape[1] == 0:
            self._end(frame)
            return None  # triggered: later triggers find the file exhausted
        return self._frame(block)
