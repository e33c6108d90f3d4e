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
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamlab.config.paths import InputPath
from streamlab.errors import EndOfStream, missing_extra
from streamlab.frame import DataFrame, Payload
from streamlab.node import SourceConfig, SourceNode
from streamlab.registry import register_node

__all__ = ["FileSource", "FileSourceConfig", "open_reader", "require_suffix"]

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


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"no such file {str(path)!r} (relative paths are relative to the "
                             f"working directory {str(Path.cwd())!r})")


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
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r}: not a numeric .npy array ({exc})") from exc
    if not isinstance(data, np.ndarray):
        raise ValueError(f"{str(path)!r}: expected a .npy array, got {type(data).__name__}")
    return _ArrayReader(path, data)


def _open_csv(path: Path) -> _Reader:
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise ValueError(f"{str(path)!r}: empty CSV file (expected a header row of channel names)")
    names = tuple(h.strip() for h in header)
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{str(path)!r}: the header row must hold unique, non-empty channel "
                         f"names, got {list(names)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r}: {exc}") from exc
    if data.size == 0:
        data = np.empty((0, len(names)))
    if data.shape[1] != len(names):
        raise ValueError(f"{str(path)!r}: {data.shape[1]} columns of data but "
                         f"{len(names)} names in the header")
    reader = _ArrayReader(path, data)
    reader.names = names
    return reader


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


def open_reader(path: str | Path) -> _Reader:
    """Open ``path`` for FileSource by extension; clear errors for missing or bad files."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in _READ_SUFFIXES:
        raise ValueError(f"{str(p)!r}: unsupported extension {suffix!r} "
                         f"(expected one of {', '.join(_READ_SUFFIXES)})")
    if not p.is_file():
        raise _missing(p)
    if suffix == ".npy":
        return _open_npy(p)
    if suffix == ".csv":
        return _open_csv(p)
    return _WavReader(p)


# -- source -------------------------------------------------------------------------------------
class FileSourceConfig(SourceConfig):
    """Settings of FileSource."""

    mode: Literal["triggered", "free"] = Field(
        "free", description="'free' (default): read to the end of the file on its own; "
        "'triggered': one frame per trigger frame.")
    path: InputPath = Field(..., min_length=1, description="File to read: .npy (samples x "
                            "channels, 1-D = one channel), .csv (header row = channel names) or "
                            ".wav. A relative path is relative to the config file's folder.")
    samples_per_frame: int = Field(..., ge=1, le=10_000_000,
                                   description="Samples per frame (the last frame may be shorter).")
    sample_rate: float | None = Field(
        None, gt=0, le=1e9, description="Samples per second (Hz). Required for .npy and .csv; a "
        ".wav file carries its own rate (if given here, it must match the file's).")
    channels: list[str] | None = Field(
        None, min_length=1, max_length=4096, description="Channel names (default: the CSV "
        "header, else ch0, ch1, ...); their number must match the file's channels.")
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
        if self.channels is not None and len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channel names must be unique, got {self.channels}")
        return self


@register_node
class FileSource(SourceNode):
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

    def on_create(self, config: FileSourceConfig) -> None:  # type: ignore[override]
        self.config = config
        reader = open_reader(config.path)
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

    @property
    def sample_rate(self) -> float:
        """The stream's sample rate in Hz (the file's or the config's)."""
        return self._rate

    @property
    def channels(self) -> tuple[str, ...]:
        return self._names

    def frame_period(self) -> float | None:
        return self.config.samples_per_frame / self._rate

    def process(self, frame: DataFrame | None) -> DataFrame | None:  # type: ignore[override]
        if self._t0 is None:
            self._t0 = frame.timestamp if frame is not None else self.context.clock.time_us()
        block = self._reader.read(self.config.samples_per_frame)
        if block.shape[1] == 0:
            self._reader.close()
            if frame is not None:
                return None  # triggered: later triggers find the file exhausted
            raise EndOfStream
        ts = self._t0 + round(self._n * 1e6 / self._rate)
        out = DataFrame(ts, self._seq, Payload.from_block(self._names, block), self._meta)
        self._n += block.shape[1]
        self._seq += 1
        return out

    def on_stop(self) -> None:
        self._reader.close()
