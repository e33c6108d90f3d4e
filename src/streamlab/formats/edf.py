"""EDF, EDF+, BDF and BDF+: the header, data records and annotations (TALs), byte by byte.

The layout (https://www.edfplus.info/specs/): a 256-byte fixed header, 256 bytes of signal
headers per signal, then data records. A data record holds, signal after signal, that signal's
``samples_per_record`` samples: little-endian int16 (EDF) or int24 (BDF). EDF+/BDF+ add an
annotation signal ("EDF Annotations"/"BDF Annotations") whose bytes are Time-stamped
Annotation Lists (TALs): ``+onset[\\x15duration]\\x14text\\x14\\x00``; the first TAL of each
record is the record's own start time (``+onset\\x14\\x14\\x00``, the time-keeping TAL).

This module is pure (no node graph): :class:`EdfReader` reads a file record by record with
bounded memory and refuses a malformed header with an :class:`EdfFormatError` that names the
file and the field; :func:`encode_header`, :func:`encode_records` and :func:`encode_tal` make
the bytes a streaming writer appends (:class:`streamlab.nodes.edf.EdfSink`); :func:`repair`
fixes the record count of a file whose writer was killed.

Physical values: ``physical = digital * gain + offset`` with ``gain = (pmax - pmin) /
(dmax - dmin)`` and ``offset = pmin - dmin * gain`` (the formula of mne and edfio), so the
quantisation step is ``gain``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

__all__ = ["EdfFormatError", "SignalHeader", "EdfHeader", "EdfReader", "Annotation",
           "RepairReport", "read_header", "records_field", "encode_header", "encode_records", "encode_tal",
           "parse_tals", "format_number", "repair", "EDF_DIGITAL", "BDF_DIGITAL",
           "N_RECORDS_OFFSET"]

#: The digital range of each format.
EDF_DIGITAL = (-32768, 32767)
BDF_DIGITAL = (-8388608, 8388607)
#: Byte offset of the "number of data records" field (8 ASCII characters).
N_RECORDS_OFFSET = 236
_BDF_VERSION = b"\xffBIOSEMI"
_MAX_SIGNALS = 4096
#: A data record larger than this is refused (the spec recommends <= 61440 bytes).
_MAX_RECORD_BYTES = 64 * 2**20
#: Records read and decoded at once by EdfReader (bounds memory).
_CHUNK_BYTES = 4 * 2**20

_FIELDS = [("version", 8), ("patient", 80), ("recording", 80), ("startdate", 8),
           ("starttime", 8), ("header bytes", 8), ("reserved", 44),
           ("number of data records", 8), ("duration of a data record", 8),
           ("number of signals", 4)]
_SIGNAL_FIELDS = [("label", 16), ("transducer type", 80), ("physical dimension", 8),
                  ("physical minimum", 8), ("physical maximum", 8), ("digital minimum", 8),
                  ("digital maximum", 8), ("prefiltering", 80), ("samples per record", 8),
                  ("reserved", 32)]
_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")


class EdfFormatError(ValueError):
    """A file is not valid EDF/BDF; the message names the file and the field."""


@dataclass(frozen=True)
class SignalHeader:
    """One signal's header (256 bytes per signal in the file)."""

    label: str
    transducer: str
    unit: str
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    prefiltering: str
    samples_per_record: int

    @property
    def is_annotation(self) -> bool:
        return self.label in _ANNOTATION_LABELS

    @property
    def gain(self) -> float:
        """The quantisation step: physical units per digital unit."""
        return (self.physical_max - self.physical_min) / (self.digital_max - self.digital_min)

    @property
    def offset(self) -> float:
        return self.physical_min - self.digital_min * self.gain


@dataclass(frozen=True)
class EdfHeader:
    """A parsed header, plus what the file's size says about its records."""

    path: str
    bdf: bool
    plus: bool  #: EDF+/BDF+ (reserved field starts with EDF+/BDF+)
    continuous: bool  #: not EDF+D/BDF+D
    patient: str
    recording: str
    startdate: str
    starttime: str
    header_bytes: int
    n_records_header: int  #: as the header says (-1: unknown, "during recording")
    record_duration: float
    signals: tuple[SignalHeader, ...]
    n_records: int  #: complete records the file holds
    trailing_bytes: int  #: bytes after the last complete record (a cut-off record)

    @property
    def bytes_per_sample(self) -> int:
        return 3 if self.bdf else 2

    @property
    def record_samples(self) -> int:
        return sum(s.samples_per_record for s in self.signals)

    @property
    def record_bytes(self) -> int:
        return self.record_samples * self.bytes_per_sample

    def start_datetime(self) -> dt.datetime:
        """The header's start date and time (UTC assumed: EDF has no time zone).

        Raises EdfFormatError naming the field if it is not a valid date or time.
        """
        m = re.fullmatch(r"(\d\d)\.(\d\d)\.(\d\d)", self.startdate)
        if m is None:
            raise EdfFormatError(f"{self.path!r}: header field 'startdate' is "
                                 f"{self.startdate!r}, expected dd.mm.yy")
        day, month, yy = (int(g) for g in m.groups())
        year = 1900 + yy if yy >= 85 else 2000 + yy  # the EDF clipping date: 1985..2084
        if self.plus:  # EDF+: the recording field may hold the 4-digit year
            r = re.match(r"Startdate \d\d-[A-Z]{3}-(\d{4}) ", self.recording + " ")
            if r is not None:
                year = int(r.group(1))
        t = re.fullmatch(r"(\d\d)\.(\d\d)\.(\d\d)", self.starttime)
        if t is None:
            raise EdfFormatError(f"{self.path!r}: header field 'starttime' is "
                                 f"{self.starttime!r}, expected hh.mm.ss")
        hh, mm, ss = (int(g) for g in t.groups())
        try:
            return dt.datetime(year, month, day, hh, mm, ss, tzinfo=dt.UTC)
        except ValueError as exc:
            raise EdfFormatError(f"{self.path!r}: header fields 'startdate' {self.startdate!r}"
                                 f" / 'starttime' {self.starttime!r}: {exc}") from None


def _text(raw: bytes) -> str:
    return raw.decode("latin-1").rstrip(" \x00")


def _number(path: str, name: str, raw: bytes, *, integer: bool) -> float:
    text = _text(raw).strip()
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise EdfFormatError(f"{path!r}: header field {name!r} is {text!r}, expected "
                             f"{kind}") from None
    if not math.isfinite(value):
        raise EdfFormatError(f"{path!r}: header field {name!r} is {text!r}, expected a finite "
                             "number")
    return value


def read_header(f: BinaryIO, path: str, size: int) -> EdfHeader:
    """Parse and check the header of an open file of ``size`` bytes."""
    fixed = f.read(256)
    if len(fixed) < 256:
        raise EdfFormatError(f"{path!r}: truncated header: the file holds {size} bytes, an "
                             "EDF/BDF header needs at least 256")
    raw: dict[str, bytes] = {}
    pos = 0
    for name, width in _FIELDS:
        raw[name] = fixed[pos:pos + width]
        pos += width
    version = raw["version"]
    if version == _BDF_VERSION:
        bdf = True
    elif _text(version).strip() == "0":
        bdf = False
    else:
        raise EdfFormatError(f"{path!r}: header field 'version' is {version!r}, expected "
                             "'0' (EDF) or '\\xffBIOSEMI' (BDF): not an EDF or BDF file")
    ns = int(_number(path, "number of signals", raw["number of signals"], integer=True))
    if not 1 <= ns <= _MAX_SIGNALS:
        raise EdfFormatError(f"{path!r}: header field 'number of signals' is {ns}, expected "
                             f"1 to {_MAX_SIGNALS}")
    header_bytes = int(_number(path, "header bytes", raw["header bytes"], integer=True))
    if header_bytes != 256 * (ns + 1):
        raise EdfFormatError(f"{path!r}: header field 'header bytes' is {header_bytes}, but "
                             f"{ns} signals need 256 * ({ns} + 1) = {256 * (ns + 1)}")
    if size < header_bytes:
        raise EdfFormatError(f"{path!r}: truncated header: {ns} signals need {header_bytes} "
                             f"header bytes, the file holds {size}")
    n_records_header = int(_number(path, "number of data records",
                                   raw["number of data records"], integer=True))
    if n_records_header < -1:
        raise EdfFormatError(f"{path!r}: header field 'number of data records' is "
                             f"{n_records_header}, expected -1 or more")
    duration = _number(path, "duration of a data record", raw["duration of a data record"],
                       integer=False)
    if duration <= 0:
        raise EdfFormatError(f"{path!r}: header field 'duration of a data record' is "
                             f"{duration}, expected more than 0 s (a file of annotations only "
                             "is not a signal recording)")
    block = f.read(256 * ns)
    cols: dict[str, list[bytes]] = {}
    pos = 0
    for name, width in _SIGNAL_FIELDS:
        cols[name] = [block[pos + i * width:pos + (i + 1) * width] for i in range(ns)]
        pos += width * ns
    reserved = _text(raw["reserved"])
    plus = reserved.startswith(("EDF+", "BDF+"))
    digital_limits = BDF_DIGITAL if bdf else EDF_DIGITAL
    signals = []
    for i in range(ns):
        label = _text(cols["label"][i]).strip()

        def num(name: str, integer: bool = False, i: int = i, label: str = label) -> float:
            return _number(path, f"signal {i} ({label}): {name}", cols[name][i],
                           integer=integer)
        pmin, pmax = num("physical minimum"), num("physical maximum")
        dmin = int(num("digital minimum", True))
        dmax = int(num("digital maximum", True))
        spr = int(num("samples per record", True))
        where = f"{path!r}: signal {i} ({label})"
        if not digital_limits[0] <= dmin < dmax <= digital_limits[1]:
            raise EdfFormatError(f"{where}: digital minimum {dmin} and maximum {dmax} must "
                                 f"satisfy {digital_limits[0]} <= min < max <= "
                                 f"{digital_limits[1]}")
        if pmin == pmax:
            raise EdfFormatError(f"{where}: physical minimum and maximum are both {pmin}")
        if spr < 1:
            raise EdfFormatError(f"{where}: header field 'samples per record' is {spr}, "
                                 "expected 1 or more")
        signals.append(SignalHeader(label, _text(cols["transducer type"][i]).strip(),
                                    _text(cols["physical dimension"][i]).strip(), pmin, pmax,
                                    dmin, dmax, _text(cols["prefiltering"][i]).strip(), spr))
    record_bytes = sum(s.samples_per_record for s in signals) * (3 if bdf else 2)
    if record_bytes > _MAX_RECORD_BYTES:
        raise EdfFormatError(f"{path!r}: a data record of {record_bytes} bytes (the sum of "
                             "'samples per record') is larger than the "
                             f"{_MAX_RECORD_BYTES} bytes accepted")
    data = size - header_bytes
    return EdfHeader(path, bdf, plus, not reserved.startswith(("EDF+D", "BDF+D")),
                     _text(raw["patient"]), _text(raw["recording"]), _text(raw["startdate"]),
                     _text(raw["starttime"]), header_bytes, n_records_header, duration,
                     tuple(signals), data // record_bytes, data % record_bytes)


@dataclass(frozen=True)
class Annotation:
    """One EDF+ annotation: onset and duration in seconds (onset from the file's start
    second, as stored), the text."""

    onset: float
    duration: float
    text: str


_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14((?:[^\x00]*?\x14)*?)\x00",
                  re.S)


def parse_tals(raw: bytes, where: str) -> tuple[float | None, list[Annotation]]:
    """The TALs of one record's annotation bytes: (the time-keeping onset, annotations).

    ``where`` names the file and record in errors. Trailing zero bytes are padding.
    """
    data = raw.rstrip(b"\x00")
    keeping: float | None = None
    out: list[Annotation] = []
    pos = 0
    n = len(data)
    while pos < n:
        m = _TAL.match(raw, pos)
        if m is None:
            bad = raw[pos:pos + 40]
            raise EdfFormatError(f"{where}: annotation bytes {bad!r} at byte {pos} are not a "
                                 "TAL (+onset[\\x15duration]\\x14text\\x14\\x00)")
        onset = float(m.group(1))
        duration = float(m.group(2)) if m.group(2) else 0.0
        texts = [t.decode("utf-8", errors="replace") for t in m.group(3).split(b"\x14")]
        texts = [t for t in texts if t]
        if not texts and keeping is None and pos == 0:
            keeping = onset
        for t in texts:
            out.append(Annotation(onset, duration, t))
        pos = m.end()
        while pos < n and raw[pos] == 0:  # some writers pad between TALs
            pos += 1
    return keeping, out


@dataclass
class EdfReader:
    """Reads an EDF/EDF+/BDF/BDF+ file: checks the header, then records on demand.

    Memory is bounded: :meth:`read` decodes only the records asked for, and
    :meth:`annotations` reads the annotation bytes in chunks of whole records. The number of
    records is the number of complete records in the file (the header's count may be -1, or
    disagree after a crash: :attr:`EdfHeader.n_records_header` keeps it for a warning).
    """

    path: str
    header: EdfHeader = field(init=False)

    def __post_init__(self) -> None:
        self._f: BinaryIO | None = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        try:
            size = os.fstat(self._f.fileno()).st_size
            self.header = read_header(self._f, self.path, size)
        except BaseException:
            self.close()
            raise
        h = self.header
        offsets = np.cumsum([0] + [s.samples_per_record for s in h.signals])
        self._offsets = offsets

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._f is not None:
            f, self._f = self._f, None
            f.close()

    def _file(self) -> BinaryIO:
        if self._f is None:
            raise ValueError(f"{self.path!r} is closed")
        return self._f

    def _raw(self, r0: int, r1: int) -> bytes:
        h = self.header
        f = self._file()
        f.seek(h.header_bytes + r0 * h.record_bytes)
        want = (r1 - r0) * h.record_bytes
        buf = f.read(want)
        if len(buf) != want:
            raise EdfFormatError(f"{self.path!r}: the file shrank while it was read "
                                 f"(records {r0} to {r1})")
        return buf

    def read(self, r0: int, r1: int, signals: list[int]) -> np.ndarray:
        """Digital values (int32) of records [r0, r1) of ``signals`` (which must share their
        samples per record): shape (len(signals), (r1 - r0) * samples_per_record)."""
        h = self.header
        spr = h.signals[signals[0]].samples_per_record
        r1 = min(r1, h.n_records)
        if r1 <= r0:
            return np.empty((len(signals), 0), dtype=np.int32)
        cols = (self._offsets[signals][:, None] + np.arange(spr)).ravel()
        n = r1 - r0
        buf = self._raw(r0, r1)
        if h.bdf:
            b = np.frombuffer(buf, np.uint8).reshape(n, h.record_samples, 3)[:, cols, :]
            b = b.astype(np.int32)
            d = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
            d = (d ^ 0x800000) - 0x800000  # the 24th bit is the sign
        else:
            d = np.frombuffer(buf, "<i2").reshape(n, h.record_samples)[:, cols].astype(np.int32)
        return d.reshape(n, len(signals), spr).transpose(1, 0, 2).reshape(len(signals), n * spr)

    def annotations(self) -> tuple[float, list[Annotation]]:
        """(the first record's time-keeping onset, every annotation in the file).

        The time-keeping onset is the sub-second start of the first record after the
        header's start second (0 if the file has none). Only EDF+/BDF+ files have
        annotations.
        """
        h = self.header
        idx = [i for i, s in enumerate(h.signals) if s.is_annotation]
        if not h.plus or not idx or h.n_records == 0:
            return 0.0, []
        per_chunk = max(1, _CHUNK_BYTES // h.record_bytes)
        bps = h.bytes_per_sample
        first: float | None = None
        out: list[Annotation] = []
        for r0 in range(0, h.n_records, per_chunk):
            r1 = min(h.n_records, r0 + per_chunk)
            buf = np.frombuffer(self._raw(r0, r1), np.uint8).reshape(r1 - r0, h.record_bytes)
            for k in range(r1 - r0):
                for j, i in enumerate(idx):
                    a, b = self._offsets[i] * bps, self._offsets[i + 1] * bps
                    where = f"{self.path!r}: record {r0 + k}, signal {i} ({h.signals[i].label})"
                    keeping, anns = parse_tals(buf[k, a:b].tobytes(), where)
                    if r0 + k == 0 and j == 0 and keeping is not None:
                        first = keeping
                    out.extend(anns)
        return (first or 0.0), out


# -- writing ------------------------------------------------------------------------------------
def format_number(value: float, width: int = 8) -> str:
    """``value`` as the shortest text of at most ``width`` characters that a header holds
    (digits are dropped from the fraction to fit; ValueError if the integer part does not)."""
    if value == int(value) and len(str(int(value))) <= width:
        return str(int(value))
    for digits in range(width, -1, -1):
        text = f"{value:.{digits}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if len(text) <= width:
            if text in ("-0", ""):
                text = "0"
            return text
    raise ValueError(f"{value} does not fit in {width} characters")


def _field(text: str, width: int, name: str) -> bytes:
    raw = text.encode("ascii", errors="replace")
    if len(raw) > width:
        raise ValueError(f"header field {name!r}: {text!r} is longer than {width} characters")
    return raw.ljust(width, b" ")


def encode_header(*, bdf: bool, start: dt.datetime, patient: str, recording: str,
                  n_records: int, record_duration: str, signals: list[SignalHeader]) -> bytes:
    """The header of an EDF+C/BDF+C file (``signals`` includes the annotation signal);
    ``start`` is written to the second (its sub-second part goes into the first record's
    time-keeping TAL). A year outside 1985..2084 is written as 01.01.85 with an unknown
    start date in the recording field."""
    if 1985 <= start.year <= 2084:
        startdate = start.strftime("%d.%m.%y")
        starttime = start.strftime("%H.%M.%S")
        month = ("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()[start.month - 1])
        rec = f"Startdate {start.day:02d}-{month}-{start.year} {recording}"
    else:
        startdate, starttime, rec = "01.01.85", "00.00.00", f"Startdate X {recording}"
    ns = len(signals)
    out = [_BDF_VERSION if bdf else b"0".ljust(8), _field(patient, 80, "patient"),
           _field(rec, 80, "recording"), _field(startdate, 8, "startdate"),
           _field(starttime, 8, "starttime"), _field(str(256 * (ns + 1)), 8, "header bytes"),
           _field("BDF+C" if bdf else "EDF+C", 44, "reserved"),
           _field(str(n_records), 8, "number of data records"),
           _field(record_duration, 8, "duration of a data record"),
           _field(str(ns), 4, "number of signals")]
    columns = [
        ("label", 16, lambda s: s.label), ("transducer type", 80, lambda s: s.transducer),
        ("physical dimension", 8, lambda s: s.unit),
        ("physical minimum", 8, lambda s: format_number(s.physical_min)),
        ("physical maximum", 8, lambda s: format_number(s.physical_max)),
        ("digital minimum", 8, lambda s: str(s.digital_min)),
        ("digital maximum", 8, lambda s: str(s.digital_max)),
        ("prefiltering", 80, lambda s: s.prefiltering),
        ("samples per record", 8, lambda s: str(s.samples_per_record)),
        ("reserved", 32, lambda s: "")]
    for name, width, get in columns:
        out.extend(_field(get(s), width, name) for s in signals)
    return b"".join(out)


def _seconds(value: float) -> str:
    """Seconds in a TAL: fixed point, at most 9 decimals, no exponent (mne's parser needs
    digits only)."""
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def encode_tal(onset: float, duration: float, text: str) -> bytes:
    """One annotation TAL; control characters that delimit TALs are replaced by spaces."""
    clean = re.sub(r"[\x00\x14\x15]", " ", text)
    dur = f"\x15{_seconds(duration)}" if duration > 0 else ""
    return f"{'+' if onset >= 0 else '-'}{_seconds(abs(onset))}{dur}\x14{clean}\x14\x00".encode()


def encode_records(digital: np.ndarray, spr: int, bdf: bool, tals: list[bytes],
                   annotation_bytes: int) -> bytes:
    """Data records from ``digital`` (channels x (n * spr) ints, already in range) and one
    annotation byte string per record (at most ``annotation_bytes``, zero-padded)."""
    n_ch = digital.shape[0]
    n = digital.shape[1] // spr
    bps = 3 if bdf else 2
    data = digital.reshape(n_ch, n, spr).transpose(1, 0, 2).reshape(n, n_ch * spr)
    if bdf:
        raw = np.ascontiguousarray(data, dtype="<i4").view(np.uint8).reshape(n, -1, 4)[:, :, :3]
        raw = raw.reshape(n, -1)
    else:
        raw = np.ascontiguousarray(data, dtype="<i2").view(np.uint8).reshape(n, -1)
    out = np.zeros((n, n_ch * spr * bps + annotation_bytes), np.uint8)
    out[:, :raw.shape[1]] = raw
    base = raw.shape[1]
    for k, tal in enumerate(tals):
        out[k, base:base + len(tal)] = np.frombuffer(tal, np.uint8)
    return out.tobytes()


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` found and did."""

    path: str
    records_in_header: int
    records: int  #: complete records, now in the header
    bytes_cut: int  #: a partial record at the end, removed

    @property
    def changed(self) -> bool:
        return self.records_in_header != self.records or self.bytes_cut > 0


def repair(path: str | os.PathLike[str]) -> RepairReport:
    """Make a file whose writer was killed (``kill -9``, a power cut) consistent: cut a
    partial data record at the end and write the number of complete records into the header.

    Idempotent; a consistent file is left unchanged. Raises EdfFormatError if the header
    itself is unreadable (then nothing is changed).
    """
    p = str(path)
    with open(p, "r+b") as f:
        h = read_header(f, p, os.fstat(f.fileno()).st_size)
        if h.trailing_bytes:
            f.truncate(h.header_bytes + h.n_records * h.record_bytes)
        if h.n_records_header != h.n_records:
            f.seek(N_RECORDS_OFFSET)
            f.write(records_field(h.n_records))
    return RepairReport(p, h.n_records_header, h.n_records, h.trailing_bytes)


def records_field(n: int) -> bytes:
    """The 8 bytes of the "number of data records" field."""
    return str(n).ljust(8).encode("ascii")

