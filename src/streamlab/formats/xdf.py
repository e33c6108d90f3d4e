"""XDF files: a streaming writer, a bounded validating scanner, ``repair`` and a pyxdf loader.

XDF (https://github.com/sccn/xdf/wiki/Specifications) is what LabRecorder writes: the magic
``b"XDF:"``, then *chunks*, each ``[NumLengthBytes: 1, 4 or 8][Length: that many bytes, an
unsigned little-endian integer counting the tag and the content][Tag: u16][Content]``:

=====  ==============  ==================================================================
 tag    chunk           content
=====  ==============  ==================================================================
 1      FileHeader      XML ``<info><version>1.0</version>...</info>``
 2      StreamHeader    u32 stream id, XML ``<info>`` (name, type, channel_count,
                        nominal_srate, channel_format, source_id, desc/channels/channel)
 3      Samples         u32 stream id, varlen sample count, then per sample: a byte 0 (time
                        stamp deduced: previous + 1/nominal_srate) or 8 and a f64 stamp (s),
                        then the values (numeric: little-endian; string: varlen length and
                        UTF-8 bytes per channel)
 4      ClockOffset     u32 stream id, f64 collection time, f64 offset value (s)
 5      Boundary        a fixed 16-byte UUID (readers of damaged files resynchronise on it)
 6      StreamFooter    u32 stream id, XML ``<info>`` (first_timestamp, last_timestamp,
                        sample_count, clock_offsets)
=====  ==============  ==================================================================

A *varlen* integer is one byte (1, 4 or 8) giving how many little-endian bytes follow.

**Writer** (:class:`XdfWriter`). Writes the file header at once, each stream header when the
stream is added, and samples, clock offsets and boundary chunks into a memory buffer that goes
to the file in whole chunks (``os.write``; a failed write is cut off again so the file ends
at a chunk boundary) every ``flush_interval`` seconds (:meth:`XdfWriter.maybe_flush`; the
caller may also call :meth:`XdfWriter.flush`). Every sample gets an explicit f64 time stamp
(so a reader gets exactly the stamps given, nothing deduced). Each stream gets a ClockOffset
chunk (collection time = the stream's latest stamp written, value = ``clock_offset``, 0.0 by
default: the stamps are already on the recorder's clock) at its first flush, then every
``clock_offset_interval`` seconds and at close, as LabRecorder does, so
``pyxdf.load_xdf(synchronize_clocks=True)`` fits a zero offset and leaves the stamps
unchanged. A Boundary chunk follows every ``boundary_interval`` seconds. ``close`` writes one
StreamFooter per stream. A process killed before ``close`` leaves a file without footers
(pyxdf reads it) and possibly cut inside the last chunk: :func:`scan` reports that,
:func:`repair` cuts the file back to its last complete chunk, ``load(allow_truncated=True)``
reads the complete part without changing the file.

**Scanner** (:func:`scan`). Walks the chunk structure without reading sample data, checking
every length against the rest of the file before reading anything (a chunk claiming 2**62
bytes costs nothing), parsing file and stream headers as XML (at most
:data:`MAX_XML_BYTES`), checking the fields pyxdf needs, that samples, offsets and footers
belong to a declared stream, and that a samples chunk's length fits its sample count. A
problem raises :class:`XdfError` naming the file, the chunk, its byte offset and what is
wrong; a file that ends inside a chunk is reported in ``XdfLayout.truncated`` (``scan``
itself does not raise for it).
"""

from __future__ import annotations

import io
import os
import struct
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import numpy as np

__all__ = ["XdfWriter", "XdfError", "XdfLayout", "XdfStreamInfo", "scan", "repair", "load",
           "MAGIC", "BOUNDARY", "MAX_XML_BYTES", "varlen"]

MAGIC = b"XDF:"
#: The Boundary chunk's content (XDF specification).
BOUNDARY = bytes([0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F,
                  0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4])
FILE_HEADER, STREAM_HEADER, SAMPLES, CLOCK_OFFSET, BOUNDARY_TAG, STREAM_FOOTER = 1, 2, 3, 4, 5, 6
_TAG_NAMES = {1: "FileHeader", 2: "StreamHeader", 3: "Samples", 4: "ClockOffset",
              5: "Boundary", 6: "StreamFooter"}
#: Largest XML chunk (file or stream header, footer) the scanner reads.
MAX_XML_BYTES = 16 * 1024 * 1024
#: channel_format -> numpy dtype (little-endian); "string" has none.
FORMATS = {"double64": "<f8", "float32": "<f4", "int64": "<i8", "int32": "<i4",
           "int16": "<i2", "int8": "i1"}
_U16, _U32, _F64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<d")


class XdfError(ValueError):
    """An XDF file that cannot be read: the message names the file, the byte offset, what."""

    def __init__(self, message: str, path: str = "", offset: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


def varlen(n: int) -> bytes:
    """A variable-length integer: the byte 1, 4 or 8 and ``n`` in that many bytes (LE)."""
    if n < 256:
        return bytes((1, n))
    if n < 2**32:
        return b"\x04" + _U32.pack(n)
    return b"\x08" + struct.pack("<Q", n)


def _chunk(tag: int, content: bytes) -> bytes:
    return varlen(len(content) + 2) + _U16.pack(tag) + content


def _xml_text(x: object) -> str:
    return escape(str(x))


def _fmt_float(x: float) -> str:
    return repr(float(x))


# -- writer ---------------------------------------------------------------------------------
@dataclass
class _WStream:
    sid: int
    name: str
    fmt: str
    n_channels: int
    dtype: np.dtype[Any] | None
    first: float | None = None
    last: float | None = None
    count: int = 0                          # samples in the file (flushed)
    pending: int = 0                        # samples in the buffer
    pending_first: float | None = None
    pending_last: float | None = None
    offsets: list[tuple[float, float]] = field(default_factory=list)
    offset_at: float | None = None          # writer clock at the last ClockOffset
    manual: bool = False                    # offsets come from write_clock_offset


class XdfWriter:
    """Write an XDF file incrementally; see the module docstring for the layout.

    ``clock`` (seconds, monotonic) decides when the flush, clock offset and boundary
    intervals are due; a test may pass its own. On close the buffer is flushed and the
    footers written; a failed write raises the OSError after cutting the partial chunk off,
    and the buffered chunks are discarded (the file still ends at a chunk boundary).

    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "x.xdf")
    >>> w = XdfWriter(path)
    >>> sid = w.add_stream("eeg", channels=["Fz", "Cz"], nominal_srate=100.0, type="EEG")
    >>> w.write_samples(sid, np.array([1.0, 1.01]), np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> w.close()
    >>> [s.name for s in scan(path).streams.values()], scan(path).truncated
    (['eeg'], None)
    """

    def __init__(self, path: str | Path, *, flush_interval: float = 1.0,
                 boundary_interval: float = 10.0, clock_offset_interval: float = 5.0,
                 clock_offset: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from streamlab.nodes.sinks import AppendFile  # writes whole pieces, cuts failed ones

        self.path = Path(path)
        self.flush_interval = flush_interval
        self.boundary_interval = boundary_interval
        self.clock_offset_interval = clock_offset_interval
        self.clock_offset = clock_offset
        self._clock = clock
        self._file = AppendFile(self.path)
        self._buf: list[bytes] = []
        self._buf_bytes = 0
        self._streams: dict[int, _WStream] = {}
        self._closed = False
        now = clock()
        self._flushed_at = now
        self._boundary_at = now
        self.samples_lost = 0  #: samples whose buffer could not be written (a failed flush)
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")
        header = (f'<?xml version="1.0"?><info><version>1.0</version><datetime>{created}'
                  f'</datetime><writer>streamlab</writer></info>').encode()
        self._file.append(MAGIC + _chunk(FILE_HEADER, header))

    @property
    def size(self) -> int:
        """Bytes in the file (always at a chunk boundary)."""
        return int(self._file.size)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffered(self) -> int:
        """Samples waiting in the buffer (not yet in the file)."""
        return sum(s.pending for s in self._streams.values())

    def add_stream(self, name: str, *, channels: Sequence[str], nominal_srate: float = 0.0,
                   channel_format: str = "double64", type: str = "", source_id: str = "",
                   units: Sequence[str | None] | None = None) -> int:
        """Declare a stream (its header is written at once); returns its stream id (1, 2, ...).

        ``channel_format`` is one of :data:`FORMATS` or ``"string"`` (markers).
        """
        if channel_format != "string" and channel_format not in FORMATS:
            raise ValueError(f"XDF channel_format must be one of {[*FORMATS, 'string']}, got "
                             f"{channel_format!r}")
        if not channels:
            raise ValueError(f"XDF stream {name!r}: needs at least one channel")
        units = list(units) if units is not None else [None] * len(channels)
        sid = len(self._streams) + 1
        chans = "".join(
            "<channel><label>" + _xml_text(c) + "</label>"
            + (f"<unit>{_xml_text(u)}</unit>" if u else "") + "</channel>"
            for c, u in zip(channels, units, strict=True))
        xml = (f'<?xml version="1.0"?><info><name>{_xml_text(name)}</name>'
               f'<type>{_xml_text(type)}</type><channel_count>{len(channels)}</channel_count>'
               f'<channel_format>{channel_format}</channel_format>'
               f'<source_id>{_xml_text(source_id)}</source_id>'
               f'<nominal_srate>{_fmt_float(nominal_srate)}</nominal_srate>'
               f'<version>1.1</version><created_at>0</created_at><uid>{uuid.uuid4()}</uid>'
               f'<session_id>default</session_id><hostname>streamlab</hostname>'
               f'<desc><channels>{chans}</channels></desc></info>')
        dtype = None if channel_format == "string" else np.dtype(FORMATS[channel_format])
        self._check_open()
        self.flush()  # what is buffered goes first, then the header: the file stays ordered
        self._file.append(_chunk(STREAM_HEADER, _U32.pack(sid) + xml.encode("utf-8")))
        self._streams[sid] = _WStream(sid, name, channel_format, len(channels), dtype)
        return sid

    def write_samples(self, stream_id: int, timestamps: np.ndarray,
                      values: np.ndarray | Sequence[Sequence[str]]) -> None:
        """Buffer one Samples chunk: ``timestamps`` (n,) seconds, ``values`` (n, channels)."""
        self._check_open()
        s = self._streams[stream_id]
        stamps = np.ascontiguousarray(timestamps, dtype="<f8").reshape(-1)
        n = len(stamps)
        if n == 0:
            return
        if s.dtype is not None:
            vals = np.asarray(values)
            if vals.shape != (n, s.n_channels):
                raise ValueError(f"XDF stream {s.name!r}: values of shape {vals.shape}, "
                                 f"expected {(n, s.n_channels)}")
            rec = np.empty(n, dtype=np.dtype([("b", "u1"), ("t", "<f8"),
                                              ("v", s.dtype, (s.n_channels,))]))
            rec["b"] = 8
            rec["t"] = stamps
            rec["v"] = vals
            body = rec.tobytes()
        else:
            parts = []
            for t, sample in zip(stamps.tolist(), values, strict=True):
                if len(sample) != s.n_channels:
                    raise ValueError(f"XDF stream {s.name!r}: a sample of {len(sample)} "
                                     f"strings, expected {s.n_channels}")
                parts.append(b"\x08" + _F64.pack(t))
                for v in sample:
                    raw = str(v).encode("utf-8")
                    parts.append(varlen(len(raw)) + raw)
            body = b"".join(parts)
        self._add(_chunk(SAMPLES, _U32.pack(stream_id) + varlen(n) + body))
        s.pending += n
        first, last = float(stamps[0]), float(stamps[-1])
        s.pending_first = first if s.pending_first is None else s.pending_first
        s.pending_last = last

    def write_clock_offset(self, stream_id: int, time: float, value: float) -> None:
        """Buffer a ClockOffset chunk of a measured offset (for streams on another clock).

        Times must increase per stream (pyxdf fits a line through them); the automatic zero
        offsets of the module docstring are then not written for this stream.
        """
        self._check_open()
        s = self._streams[stream_id]
        self._add(_chunk(CLOCK_OFFSET, _U32.pack(stream_id) + _F64.pack(time) + _F64.pack(value)))
        s.offsets.append((float(time), float(value)))
        s.manual = True

    def _add(self, chunk: bytes) -> None:
        self._buf.append(chunk)
        self._buf_bytes += len(chunk)

    def maybe_flush(self) -> bool:
        """Flush if ``flush_interval`` has passed since the last flush; True if it did."""
        if self._buf and self._clock() - self._flushed_at >= self.flush_interval:
            self.flush()
            return True
        return False

    def flush(self, *, final: bool = False) -> None:
        """Write the buffer (plus due clock offsets and a boundary chunk) in one piece."""
        self._check_open()
        now = self._clock()
        self._flushed_at = now
        if not self._buf and not final:
            return
        for s in self._streams.values():
            due = s.offset_at is None or now - s.offset_at >= self.clock_offset_interval
            last = s.pending_last if s.pending_last is not None else s.last
            if (due or final) and not s.manual and last is not None and (not s.offsets or last > s.offsets[-1][0]):
                # strictly increasing collection times: pyxdf's fit needs distinct times
                self._add(_chunk(CLOCK_OFFSET, _U32.pack(s.sid) + _F64.pack(last)
                                 + _F64.pack(self.clock_offset)))
                s.offsets.append((last, self.clock_offset))
                s.offset_at = now
        if self._buf and now - self._boundary_at >= self.boundary_interval:
            self._add(_chunk(BOUNDARY_TAG, BOUNDARY))
            self._boundary_at = now
        data, self._buf, self._buf_bytes = b"".join(self._buf), [], 0
        try:
            self._file.append(data)
        except OSError:
            for s in self._streams.values():  # the buffer is gone; the file is as before
                self.samples_lost += s.pending
                if s.offsets and s.offset_at == now:
                    s.offsets.pop()
                s.pending, s.pending_first, s.pending_last = 0, None, None
            raise
        for s in self._streams.values():
            if s.pending:
                s.count += s.pending
                s.first = s.pending_first if s.first is None else s.first
                s.last = s.pending_last
                s.pending, s.pending_first, s.pending_last = 0, None, None

    def close(self) -> None:
        """Flush, write a footer per stream and close (idempotent)."""
        if self._closed:
            return
        try:
            self.flush(final=True)
            footers = []
            for s in self._streams.values():
                offs = "".join(f"<offset><time>{_fmt_float(t)}</time><value>{_fmt_float(v)}"
                               f"</value></offset>" for t, v in s.offsets)
                first = _fmt_float(s.first) if s.first is not None else "0"
                last = _fmt_float(s.last) if s.last is not None else "0"
                xml = (f'<?xml version="1.0"?><info><first_timestamp>{first}</first_timestamp>'
                       f'<last_timestamp>{last}</last_timestamp><sample_count>{s.count}'
                       f'</sample_count><clock_offsets>{offs}</clock_offsets></info>')
                footers.append(_chunk(STREAM_FOOTER, _U32.pack(s.sid) + xml.encode()))
            if footers:
                self._file.append(b"".join(footers))
        finally:
            self._closed = True
            self._file.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"XdfWriter: {str(self.path)!r} is closed")

    def stream_count(self, stream_id: int) -> int:
        """Samples of a stream in the file so far."""
        return self._streams[stream_id].count


# -- scanner --------------------------------------------------------------------------------
@dataclass(frozen=True)
class XdfStreamInfo:
    """A stream header as the scanner read it."""

    stream_id: int
    name: str
    type: str
    source_id: str
    channel_count: int
    nominal_srate: float
    channel_format: str
    labels: tuple[str, ...]       #: desc/channels/channel/label ('' where missing)
    units: tuple[str, ...]        #: desc/channels/channel/unit ('' where missing)
    offset: int                   #: byte offset of the header chunk


@dataclass
class XdfLayout:
    """What :func:`scan` found."""

    path: str
    size: int                                  #: file size in bytes
    end: int                                   #: end of the last complete chunk
    chunks: int                                #: complete chunks
    streams: dict[int, XdfStreamInfo]
    samples_chunks: dict[int, int]             #: stream id -> Samples chunks
    footers: set[int]                          #: stream ids with a StreamFooter
    truncated: str | None = None               #: why the file ends inside a chunk, if it does


def _text(el: ElementTree.Element, tag: str) -> str:
    child = el.find(tag)
    return (child.text or "").strip() if child is not None else ""


def _parse_xml(raw: bytes, where: str, path: str, offset: int) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(raw.decode("utf-8", "replace"))
    except ElementTree.ParseError as exc:
        raise XdfError(f"{where}: not XML ({exc}): {raw[:40]!r}", path, offset) from None


def _stream_info(sid: int, root: ElementTree.Element, where: str, path: str,
                 offset: int) -> XdfStreamInfo:
    if root.tag != "info":
        raise XdfError(f"{where}: the stream header's root element is <{root.tag}>, expected "
                       "<info>", path, offset)
    fields = {}
    for tag in ("channel_count", "nominal_srate", "channel_format"):
        text = _text(root, tag)
        if not text:
            raise XdfError(f"{where}: the stream header has no <{tag}>", path, offset)
        fields[tag] = text
    try:
        count = int(fields["channel_count"])
        srate = float(fields["nominal_srate"])
    except ValueError:
        raise XdfError(f"{where}: channel_count {fields['channel_count']!r} or nominal_srate "
                       f"{fields['nominal_srate']!r} is not a number", path, offset) from None
    fmt = fields["channel_format"]
    if fmt != "string" and fmt not in FORMATS:
        raise XdfError(f"{where}: unknown channel_format {fmt!r} (expected one of "
                       f"{[*FORMATS, 'string']})", path, offset)
    if not 0 < count <= 1_000_000 or not (srate >= 0 and np.isfinite(srate)):
        raise XdfError(f"{where}: channel_count {count} or nominal_srate {srate} is out of "
                       "range", path, offset)
    chans = root.findall("./desc/channels/channel")
    labels = tuple(_text(c, "label") for c in chans)
    units = tuple(_text(c, "unit") for c in chans)
    return XdfStreamInfo(sid, _text(root, "name"), _text(root, "type"), _text(root, "source_id"),
                         count, srate, fmt, labels, units, offset)


def _sample_bytes(info: XdfStreamInfo) -> int | None:
    if info.channel_format == "string":
        return None
    return int(np.dtype(FORMATS[info.channel_format]).itemsize) * info.channel_count


def scan(path: str | Path) -> XdfLayout:
    """Validate the chunk structure of an XDF file (bounded memory); see the module docstring.

    Raises XdfError for a file that is not XDF or has a corrupt chunk (the message names the
    file, the chunk's index and byte offset, and the problem); a file cut inside a chunk is
    not an error here: ``XdfLayout.truncated`` says where (``end`` is where to cut it).
    """
    p = str(path)
    name = repr(p)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(4)
        if magic != MAGIC:
            raise XdfError(f"{name}: not an XDF file (expected it to start with {MAGIC!r}, got "
                           f"{magic[:16]!r})", p, 0)
        layout = XdfLayout(p, size, 4, 0, {}, {}, set())
        pos, index = 4, 0

        def cut(what: str) -> XdfLayout:
            layout.truncated = (f"{name}: the file ends inside chunk {index} (at byte {pos}): "
                                f"{what}")
            return layout

        while pos < size:
            where = f"{name}: chunk {index} (at byte {pos})"
            head = f.read(9)
            nb = head[0]
            if nb not in (1, 4, 8):
                raise XdfError(f"{where}: bad length size byte {nb} (expected 1, 4 or 8)", p, pos)
            if len(head) < 1 + nb:
                return cut("truncated chunk length")
            length = int.from_bytes(head[1:1 + nb], "little")
            start = pos + 1 + nb  # of the tag
            if length < 2:
                raise XdfError(f"{where}: chunk length {length} is too small (at least 2: the "
                               "tag)", p, pos)
            if length > size - start:
                return cut(f"its length says {length} bytes, the file has {size - start} more "
                           "(or the length is corrupt)")
            f.seek(start)
            tag = _U16.unpack(f.read(2))[0]
            what = _TAG_NAMES.get(tag, f"unknown tag {tag}")
            where = f"{name}: chunk {index} ({what}, at byte {pos})"
            content = length - 2
            if tag == FILE_HEADER:
                if content > MAX_XML_BYTES:
                    raise XdfError(f"{where}: {content} bytes of XML, more than the limit of "
                                   f"{MAX_XML_BYTES}", p, pos)
                root = _parse_xml(f.read(content), where, p, pos)
                if root.tag != "info":
                    raise XdfError(f"{where}: root element <{root.tag}>, expected <info>", p, pos)
            elif tag in (STREAM_HEADER, SAMPLES, CLOCK_OFFSET, STREAM_FOOTER):
                if content < 4:
                    raise XdfError(f"{where}: {content} bytes, too short for a stream id", p, pos)
                sid = _U32.unpack(f.read(4))[0]
                body = content - 4
                if tag == STREAM_HEADER:
                    if sid in layout.streams:
                        raise XdfError(f"{where}: a second header for stream {sid}", p, pos)
                    if body > MAX_XML_BYTES:
                        raise XdfError(f"{where}: {body} bytes of XML, more than the limit of "
                                       f"{MAX_XML_BYTES}", p, pos)
                    root = _parse_xml(f.read(body), where, p, pos)
                    layout.streams[sid] = _stream_info(sid, root, where, p, pos)
                    layout.samples_chunks[sid] = 0
                else:
                    info = layout.streams.get(sid)
                    if info is None:
                        raise XdfError(f"{where}: stream {sid} has no StreamHeader before it "
                                       f"(declared: {sorted(layout.streams)})", p, pos)
                    if tag == CLOCK_OFFSET and body != 16:
                        raise XdfError(f"{where}: {body} bytes after the stream id, expected 16 "
                                       "(collection time and offset)", p, pos)
                    if tag == SAMPLES:
                        _check_samples(f, info, body, where, p, pos)
                        layout.samples_chunks[sid] += 1
                    if tag == STREAM_FOOTER:
                        if body > MAX_XML_BYTES:
                            raise XdfError(f"{where}: {body} bytes of XML, more than the limit "
                                           f"of {MAX_XML_BYTES}", p, pos)
                        layout.footers.add(sid)
            elif tag == BOUNDARY_TAG:
                if content != 16 or f.read(16) != BOUNDARY:
                    raise XdfError(f"{where}: not the boundary UUID", p, pos)
            pos = start + length
            f.seek(pos)
            index += 1
            layout.end, layout.chunks = pos, index
        return layout


def _check_samples(f: BinaryIO, info: XdfStreamInfo, body: int, where: str, p: str,
                   pos: int) -> None:
    """The sample count fits the chunk: each sample is 1 (+8) bytes plus its values."""
    raw = f.read(min(9, body))
    if not raw or raw[0] not in (1, 4, 8) or len(raw) < 1 + raw[0]:
        raise XdfError(f"{where}: bad sample count", p, pos)
    n = int.from_bytes(raw[1:1 + raw[0]], "little")
    rest = body - 1 - raw[0]
    per = _sample_bytes(info)
    if per is None:  # strings: at least the stamp flag and a length byte per channel
        low, high = n * (1 + 2 * info.channel_count), None
    else:
        low, high = n * (1 + per), n * (9 + per)
    if rest < low or (high is not None and rest > high):
        raise XdfError(f"{where}: {n} samples of stream {info.stream_id} ({info.channel_count} "
                       f"x {info.channel_format}) cannot fill {rest} bytes", p, pos)


def repair(path: str | Path) -> int:
    """Cut a file left by a crash back to its last complete chunk; returns the bytes removed.

    0 if the file was complete. Raises XdfError if the complete part itself is corrupt.
    pyxdf reads the repaired file (streams without footers are fine for it).
    """
    layout = scan(path)
    if layout.truncated is None:
        return 0
    with open(path, "r+b") as f:
        f.truncate(layout.end)
    return layout.size - layout.end


class _Prefix(io.RawIOBase):
    """The first ``limit`` bytes of a file, as a read-only raw stream (for pyxdf)."""

    def __init__(self, path: str | Path, limit: int) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._limit = limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def readinto(self, b: Any) -> int:
        left = max(0, self._limit - self._f.tell())
        view = memoryview(b).cast("B")[:left]
        return self._f.readinto(view)

    def close(self) -> None:
        self._f.close()
        super().close()


def load(path: str | Path, stream_ids: Sequence[int] | None = None, *,
         synchronize_clocks: bool = True, dejitter_timestamps: bool = True,
         allow_truncated: bool = False, layout: XdfLayout | None = None,
         chunk_sizes: dict[int, list[int]] | None = None,
         ) -> tuple[list[dict[str, Any]], XdfLayout]:
    """``pyxdf.load_xdf`` on a file validated by :func:`scan` first; returns (streams, layout).

    A truncated file raises XdfError (the message says how to repair it) unless
    ``allow_truncated``: then pyxdf reads only the complete chunks (the file is not changed).
    Any error pyxdf still raises becomes an XdfError naming the file. ``chunk_sizes``, if
    given, is filled with the number of samples of each Samples chunk, per stream id.
    """
    try:
        import pyxdf  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from streamlab.errors import missing_extra

        raise missing_extra("pyxdf", "xdf") from exc
    if layout is None:
        layout = scan(path)
    if layout.truncated is not None and not allow_truncated:
        raise XdfError(f"{layout.truncated}. A recording cut short by a crash: read its "
                       "complete part with allow_truncated, or cut it with "
                       "streamlab.formats.xdf.repair(path)", str(path), layout.end)
    source: Any = str(path)
    if layout.truncated is not None:
        source = io.BufferedReader(_Prefix(path, layout.end), buffer_size=1 << 20)
    ids = list(stream_ids) if stream_ids is not None else None
    on_chunk = None
    if chunk_sizes is not None:
        def on_chunk(values: Any, stamps: Any, info: Any, sid: int) -> tuple[Any, Any, Any]:
            chunk_sizes.setdefault(int(sid), []).append(len(stamps))
            return values, stamps, info
    try:
        streams, _ = pyxdf.load_xdf(source, select_streams=ids, on_chunk=on_chunk,
                                    synchronize_clocks=synchronize_clocks,
                                    dejitter_timestamps=dejitter_timestamps)
    except Exception as exc:  # pyxdf raises bare Exceptions: name the file and pass it on
        raise XdfError(f"{str(path)!r}: pyxdf could not read it: {type(exc).__name__}: {exc}",
                       str(path)) from exc
    finally:
        if not isinstance(source, str):
            source.close()
    return streams, layout
