"""DataFrame: the unit of data that flows along a pipeline's edges.

A frame carries a ``timestamp`` (int, µs since the epoch, of its first sample), a
``sequence_id`` (int), a ``payload`` mapping channel names to 1-D float64 arrays, and
``metadata`` mapping str to str.

Frames are immutable values. Payload arrays are read-only (``writeable=False``), so fan-out
hands the *same* arrays to every branch without copying, and a node that tries to write into
a shared array gets ``ValueError: assignment destination is read-only`` instead of corrupting
its neighbours. Nodes derive new frames with :meth:`DataFrame.with_channels`,
:meth:`DataFrame.with_metadata` and :meth:`DataFrame.replace`, which keep every unchanged
channel shared.

A :class:`Payload` is a read-only mapping of our own. When all channels share a length it can
be backed by one 2-D block (channels are rows, each a read-only view), so vectorised nodes make
one numpy call per frame (:meth:`DataFrame.block`) instead of one per channel. NaN and inf are
data, not errors.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from types import MappingProxyType
from typing import Any

import numpy as np

from streamlab.errors import FrameError
from streamlab.events import NO_EVENTS, Event, event_from_dict, sort_events

__all__ = ["DataFrame", "Payload", "readonly"]

_F64 = np.dtype(np.float64)
_ndarray = np.ndarray
_new_payload = object.__new__
_new_frame = object.__new__
_EMPTY_META: Mapping[str, str] = MappingProxyType({})

#: True once a frame with events has been made in this process; never reset. A frame carries
#: events only if it was made with them (the constructor, ``with_events``, ``_make``,
#: unpickling all pass here), so while this is False no frame anywhere has an event and the
#: runtime skips its event ledger scan (``runtime.driver``): event-free streams pay nothing.
events_seen = False


def _saw_events() -> None:
    global events_seen
    events_seen = True


def readonly(array: np.ndarray) -> np.ndarray:
    """Return ``array`` if already read-only, else a read-only view of it (no copy)."""
    if array.flags.writeable:
        array = array.view()
        array.setflags(False)  # type: ignore[call-arg]  # positional: 3x cheaper than write=False, 6x than flags.writeable
    return array


def _handed_over(name: object, value: Any) -> np.ndarray:
    """A channel a node hands over in an output frame (with_channels, with_payload).

    The emitting node gives the array away: a float64 1-D ndarray that owns its data is made
    read-only *in place* (no view, no copy), so neither the node nor anyone downstream can
    write it afterwards. A writeable *view* (of a buffer the node keeps, e.g. a ring buffer)
    is not flipped, since the node may still write its buffer through it: the frame holds a
    read-only view of it instead, as :func:`readonly` does (the frame's array cannot be
    written, but later writes into the node's own buffer show through, because nothing is
    copied). Anything else goes through full validation (:func:`_channel`).
    """
    if type(value) is np.ndarray and value.dtype is _F64 and value.ndim == 1 and type(name) is str:
        if value.base is None:
            value.setflags(False)  # type: ignore[call-arg]  # no-op if already read-only
            return value
        return readonly(value)
    return _channel(name, value)


def _hand_over(arrays: dict[str, np.ndarray], new: Mapping[str, Any],
               str_names: bool = False) -> dict[str, np.ndarray]:
    """``arrays`` (a dict of our own) updated with ``new``'s channels, handed over.

    See :func:`_handed_over`. The common case, a fresh float64 1-D array, is inlined: per
    channel a few attribute checks and one ``setflags``; the dict is filled by one C-level
    ``update`` and only a channel that needs converting is stored again. ``str_names``: the
    names are known to be str (keyword arguments), so the first pass looks at values only.
    """
    arrays.update(new)
    if str_names:
        for value in new.values():
            if (type(value) is _ndarray and value.base is None and value.dtype is _F64
                    and value.ndim == 1):
                value.setflags(False)  # type: ignore[call-arg]  # numpy stub: keyword-only
            else:
                break
        else:
            return arrays
    for name, value in new.items():  # the general pass (setflags again is harmless)
        if (type(value) is _ndarray and value.base is None and value.dtype is _F64
                and value.ndim == 1 and type(name) is str):
            value.setflags(False)  # type: ignore[call-arg]  # numpy stub: keyword-only
        else:
            arrays[name] = _handed_over(name, value)
    return arrays


_checked_names: dict[tuple[str, ...], None] = {}


def _check_names(names: tuple[str, ...]) -> None:
    """Unique str channel names; remembered (up to 1024 tuples) so steady streams skip it."""
    for n in names:
        if not isinstance(n, str):
            raise FrameError(f"channel names must be str, got {type(n).__name__} {n!r}")
    if len(set(names)) != len(names):
        raise FrameError(f"block: duplicate channel names in {list(names)}")
    if len(_checked_names) >= 1024:
        _checked_names.clear()
    _checked_names[names] = None


def _channel(name: object, value: Any) -> np.ndarray:
    if not isinstance(name, str):
        raise FrameError(f"channel names must be str, got {type(name).__name__} {name!r}")
    if isinstance(value, np.ndarray):
        arr = value
        if arr.dtype != _F64:
            if arr.dtype.kind != "f":
                raise FrameError(
                    f"channel {name!r}: expected float64 samples, got dtype {arr.dtype}"
                )
            arr = arr.astype(_F64)
    else:
        try:
            arr = np.asarray(value, dtype=_F64)
        except (TypeError, ValueError) as exc:
            raise FrameError(
                f"channel {name!r}: expected a sequence of numbers, got {type(value).__name__}"
            ) from exc
    if arr.ndim != 1:
        raise FrameError(f"channel {name!r}: expected a 1-D array, got shape {arr.shape}")
    return readonly(arr)


class Payload(Mapping[str, np.ndarray]):
    """Read-only mapping of channel name -> read-only 1-D float64 array.

    Either a dict of independent arrays, or a 2-D block whose rows are the channels. The
    mapping methods (``items``, ``values``, ``keys``, ``get``, ``in``, iteration) are native:
    they go straight to a dict of the arrays (for a block, a dict of its row views, made once
    on first use and kept), not through the generic ``Mapping`` mix-ins.
    ``items()``/``values()``/``keys()`` return live views of that private dict: reading only.
    """

    __slots__ = ("_arrays", "_names", "_block", "_rows")

    def __init__(self, channels: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        items = channels.items() if isinstance(channels, Mapping) else channels
        arrays: dict[str, np.ndarray] = {}
        for n, v in items:
            # fast path: a float64 1-D ndarray under a str name needs only to be read-only;
            # the caller keeps its own array writeable (the frame holds a read-only view)
            if type(v) is np.ndarray and v.dtype is _F64 and v.ndim == 1 and type(n) is str:
                arrays[n] = readonly(v)
            else:
                arrays[n] = _channel(n, v)
        self._arrays: dict[str, np.ndarray] | None = arrays
        self._names: tuple[str, ...] = tuple(arrays)
        self._block: np.ndarray | None = None
        self._rows: dict[str, np.ndarray] | None = arrays

    @classmethod
    def from_block(cls, names: Iterable[str], block: np.ndarray) -> Payload:
        """A payload whose channels are the rows of ``block`` (shape channels x samples).

        ``block`` is made read-only (a view if it was writeable); it is not copied.
        """
        names = names if type(names) is tuple else tuple(names)
        if type(block) is not np.ndarray or block.ndim != 2:
            if not isinstance(block, np.ndarray) or block.ndim != 2:
                raise FrameError(
                    f"block: expected a 2-D array (channels x samples), got "
                    f"{getattr(block, 'shape', type(block).__name__)}"
                )
        if block.dtype is not _F64 and block.dtype != _F64:
            if block.dtype.kind != "f":
                raise FrameError(f"block: expected float64 samples, got dtype {block.dtype}")
            block = block.astype(_F64)
        if block.shape[0] != len(names):
            raise FrameError(
                f"block: {block.shape[0]} rows for {len(names)} channel names {list(names)}"
            )
        if names not in _checked_names:
            _check_names(names)
        return cls._of_block(names, readonly(block))

    @classmethod
    def _of_block(cls, names: tuple[str, ...], block: np.ndarray) -> Payload:
        self = _new_payload(cls)
        self._arrays = None
        self._names = names
        self._block = block
        self._rows = None
        return self

    @classmethod
    def _of_arrays(cls, arrays: dict[str, np.ndarray]) -> Payload:
        """Trusted constructor: arrays already validated and read-only; the dict is taken."""
        self = _new_payload(cls)
        self._arrays = arrays
        self._names = tuple(arrays)
        self._block = None
        self._rows = arrays
        return self

    def _row_dict(self) -> dict[str, np.ndarray]:
        """Name -> array: the arrays' dict, or (block) the rows' read-only views, made once."""
        rows = self._rows
        if rows is None:
            # iterating a 2-D array yields its rows as views (read-only: the block is)
            rows = self._rows = dict(zip(self._names, self._block))  # type: ignore[arg-type]
        return rows

    # Mapping protocol: native, no generic mix-in on the per-frame path ------------------
    def __getitem__(self, name: str) -> np.ndarray:
        rows = self._rows
        if rows is None:
            rows = self._row_dict()
        return rows[name]

    def get(self, name: str, default: Any = None) -> Any:
        rows = self._rows
        if rows is None:
            rows = self._row_dict()
        return rows.get(name, default)

    def items(self) -> ItemsView[str, np.ndarray]:  # dict_items: a set-like read-only view
        rows = self._rows
        if rows is None:
            rows = self._row_dict()
        return rows.items()

    def values(self) -> ValuesView[np.ndarray]:
        rows = self._rows
        if rows is None:
            rows = self._row_dict()
        return rows.values()

    def keys(self) -> KeysView[str]:
        rows = self._rows
        if rows is None:
            rows = self._row_dict()
        return rows.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        rows = self._rows
        if rows is not None:
            return name in rows
        return name in self._names

    @property
    def names(self) -> tuple[str, ...]:
        """Channel names in order."""
        return self._names

    @property
    def is_block(self) -> bool:
        """True if the channels are rows of one 2-D block."""
        return self._block is not None

    def block(self) -> np.ndarray:
        """The channels as one read-only 2-D array (channels x samples).

        Free for a block-backed payload; otherwise the channels are stacked (one copy), which
        raises FrameError if their lengths differ.
        """
        if self._block is not None:
            return self._block
        arrays = list(self._arrays.values())  # type: ignore[union-attr]
        if not arrays:
            return readonly(np.empty((0, 0)))
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            lengths = {k: len(v) for k, v in self._arrays.items()}  # type: ignore[union-attr]
            raise FrameError(f"channels differ in length, cannot form a block: {lengths}")
        return readonly(np.stack(arrays))

    def to_dict(self) -> dict[str, np.ndarray]:
        """A new plain dict of the (shared, read-only) arrays."""
        rows = self._rows
        if rows is None:
            rows = self._row_dict()
        return rows.copy()

    def nbytes(self) -> int:
        """Bytes held by the channel data."""
        if self._block is not None:
            return int(self._block.nbytes)
        # _arrays is set whenever _block is None
        return sum(int(a.nbytes) for a in self._arrays.values())  # type: ignore[union-attr, misc]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}[{len(self[n])}]" for n in self._names[:8])
        more = ", ..." if len(self._names) > 8 else ""
        kind = "block " if self._block is not None else ""
        return f"<Payload {kind}{shapes}{more}>"


def _metadata(metadata: Mapping[str, str] | None) -> Mapping[str, str]:
    if not metadata:
        return _EMPTY_META
    if isinstance(metadata, MappingProxyType):
        return metadata
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise FrameError(
                f"metadata must map str to str, got {type(k).__name__} {k!r} -> "
                f"{type(v).__name__} {v!r}"
            )
    return MappingProxyType(dict(metadata))


class DataFrame:
    """One frame: timestamp (µs), sequence_id, read-only payload channels, metadata.

    >>> f = DataFrame(timestamp=1_000, sequence_id=0, payload={"x": [1.0, 2.0]})
    >>> f.payload["x"].tolist()
    [1.0, 2.0]
    >>> g = f.with_channels(x=f.payload["x"] * 2)
    >>> g.payload["x"].tolist(), g.sequence_id
    ([2.0, 4.0], 0)
    """

    # ingress_ns: the runtime's monotonic ns when a source emitted the frame (None until then),
    # for end-to-end latency; not part of the frame's value (eq, pickle, to_dict ignore it).
    __slots__ = ("timestamp", "sequence_id", "payload", "metadata", "events", "ingress_ns")

    timestamp: int
    sequence_id: int
    payload: Payload
    metadata: Mapping[str, str]
    events: tuple[Event, ...]  # sorted, positioned on samples (see streamlab.events)
    ingress_ns: int | None

    def __init__(
        self,
        timestamp: int = 0,
        sequence_id: int = 0,
        payload: Payload | Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        events: Iterable[Event] = NO_EVENTS,
    ) -> None:
        if type(timestamp) is not int:  # the common case costs one identity check
            if isinstance(timestamp, bool) or not isinstance(timestamp, (int, np.integer)):
                raise FrameError(f"timestamp: expected int µs, got {type(timestamp).__name__}")
            timestamp = int(timestamp)
        if type(sequence_id) is not int:
            if isinstance(sequence_id, bool) or not isinstance(sequence_id, (int, np.integer)):
                raise FrameError(f"sequence_id: expected int, got {type(sequence_id).__name__}")
            sequence_id = int(sequence_id)
        self.timestamp = timestamp
        self.sequence_id = sequence_id
        if type(payload) is Payload:
            self.payload = payload
        elif payload is None:
            self.payload = Payload()
        elif isinstance(payload, Payload):
            self.payload = payload
        else:
            self.payload = Payload(payload)
        self.metadata = _EMPTY_META if metadata is None else _metadata(metadata)
        if events is NO_EVENTS:
            self.events = NO_EVENTS
        else:
            self.events = sort_events(events, self.n_samples)
            if self.events:
                _saw_events()
        self.ingress_ns = None

    @classmethod
    def _make(
        cls, timestamp: int, sequence_id: int, payload: Payload, metadata: Mapping[str, str],
        events: tuple[Event, ...] = NO_EVENTS,
    ) -> DataFrame:
        """Trusted constructor for derived frames: no validation."""
        f = object.__new__(cls)
        f.timestamp = timestamp
        f.sequence_id = sequence_id
        f.payload = payload
        f.metadata = metadata
        f.events = events
        if events:
            _saw_events()
        f.ingress_ns = None
        return f

    @classmethod
    def from_block(
        cls,
        names: Iterable[str],
        block: np.ndarray,
        *,
        timestamp: int = 0,
        sequence_id: int = 0,
        metadata: Mapping[str, str] | None = None,
    ) -> DataFrame:
        """A frame whose channels are the rows of ``block`` (channels x samples), not copied."""
        return cls(timestamp, sequence_id, Payload.from_block(names, block), metadata)

    # Derivation: unchanged channels stay shared ---------------------------------------------
    def with_channels(self, channels: Mapping[str, Any] | None = None, /, **kw: Any) -> DataFrame:
        """A new frame with some channels replaced or added; the others are shared.

        The new arrays are *handed over*: a float64 1-D array that owns its data (a fresh
        result such as ``a * 2``) becomes read-only in place, without a view or a copy, so
        the node cannot write it afterwards either; a writeable view of a buffer the node
        keeps is wrapped in a read-only view (the buffer stays the node's, not copied). Other
        values are converted and checked as by the constructor.
        """
        new: Mapping[str, Any]
        if kw:
            new = kw if channels is None else {**channels, **kw}
        elif channels is None:
            new = {}
        else:
            new = channels
        p = self.payload
        rows = p._rows
        arrays = _hand_over((p._row_dict() if rows is None else rows).copy(), new,
                            channels is None)  # keyword names are str
        payload = _new_payload(Payload)
        payload._arrays = payload._rows = arrays
        payload._names = p._names if len(arrays) == len(p._names) else tuple(arrays)
        payload._block = None
        f = _new_frame(DataFrame)
        f.timestamp = self.timestamp
        f.sequence_id = self.sequence_id
        f.payload = payload
        f.metadata = self.metadata
        f.events = self.events
        f.ingress_ns = self.ingress_ns  # a derived frame entered the pipeline with its input
        return f

    def with_payload(self, payload: Payload | Mapping[str, Any]) -> DataFrame:
        """A new frame with the whole payload replaced (same timestamp, id and metadata).

        A mapping's arrays are handed over as in :meth:`with_channels` (fresh arrays become
        read-only in place); a :class:`Payload` is taken as it is.
        """
        tp = type(payload)
        # exact type checks first: isinstance against the Mapping ABC costs ~0.3 us each
        if tp is dict or (tp is not Payload and not isinstance(payload, Payload)
                          and isinstance(payload, Mapping)):
            arrays = _hand_over({}, payload)
            payload = _new_payload(Payload)
            payload._arrays = payload._rows = arrays
            payload._names = tuple(arrays)
            payload._block = None
        elif tp is not Payload and not isinstance(payload, Payload):
            payload = Payload(payload)  # pairs: checked as by the constructor
        f = _new_frame(DataFrame)
        f.timestamp = self.timestamp
        f.sequence_id = self.sequence_id
        # a Payload by now; the exact type checks above are faster than a narrowing isinstance
        f.payload = payload  # type: ignore[assignment]
        f.metadata = self.metadata
        f.events = self.events
        f.ingress_ns = self.ingress_ns  # a derived frame entered the pipeline with its input
        return f

    def with_block(self, block: np.ndarray, names: Iterable[str] | None = None) -> DataFrame:
        """A new frame whose channels are the rows of ``block`` (names default to this frame's).

        The frame takes ``block`` without copying and makes it read-only in place: pass a
        fresh result (``frame.block() * 2``), not an array you will write to again.
        """
        if names is None:
            names = self.payload._names
            trusted = True
        else:
            names = tuple(names)
            trusted = names in _checked_names
        if (trusted and type(block) is np.ndarray and block.dtype is _F64 and block.ndim == 2
                and block.shape[0] == len(names)):
            block.setflags(False)  # type: ignore[call-arg]  # numpy stub: keyword-only
            payload = _new_payload(Payload)
            payload._arrays = None
            payload._names = names
            payload._block = block
            payload._rows = None
        else:
            payload = Payload.from_block(names, block)
        f = _new_frame(DataFrame)
        f.timestamp = self.timestamp
        f.sequence_id = self.sequence_id
        f.payload = payload
        f.metadata = self.metadata
        f.events = self.events
        f.ingress_ns = self.ingress_ns
        return f

    def without_channels(self, *names: str) -> DataFrame:
        """A new frame without the named channels (missing names are an error)."""
        missing = [n for n in names if n not in self.payload]
        if missing:
            raise FrameError(f"no such channels {missing}; frame has {list(self.payload.names)}")
        arrays = {n: a for n, a in self.payload.to_dict().items() if n not in names}
        return self.with_payload(Payload._of_arrays(arrays))

    def with_metadata(self, metadata: Mapping[str, str] | None = None, /, **kw: str) -> DataFrame:
        """A new frame with metadata entries added or replaced."""
        merged = dict(self.metadata)
        merged.update(metadata or {}, **kw)
        return DataFrame._make(self.timestamp, self.sequence_id, self.payload, _metadata(merged),
                               self.events)

    def with_events(self, events: Iterable[Event]) -> DataFrame:
        """A new frame with its events replaced (sorted; each must lie on one of its samples)."""
        f = DataFrame._make(self.timestamp, self.sequence_id, self.payload, self.metadata,
                            sort_events(events, self.n_samples))
        f.ingress_ns = self.ingress_ns
        return f

    def replace(
        self,
        *,
        timestamp: int | None = None,
        sequence_id: int | None = None,
        payload: Payload | Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        events: Iterable[Event] | None = None,
    ) -> DataFrame:
        """A new frame with the given fields replaced; the rest shared."""
        return DataFrame(
            self.timestamp if timestamp is None else timestamp,
            self.sequence_id if sequence_id is None else sequence_id,
            self.payload if payload is None else payload,
            self.metadata if metadata is None else metadata,
            self.events if events is None else events,
        )

    # Conveniences ------------------------------------------------------------------------
    @property
    def channels(self) -> tuple[str, ...]:
        """Channel names in order."""
        return self.payload.names

    @property
    def n_samples(self) -> int:
        """Samples per channel (0 for an empty payload; the first channel's length otherwise)."""
        p = self.payload
        if p._block is not None and p._names:  # no row view needed
            return int(p._block.shape[1])
        names = p._names
        return len(p[names[0]]) if names else 0

    def block(self) -> np.ndarray:
        """All channels as one read-only 2-D array (channels x samples); see Payload.block."""
        return self.payload.block()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: lists of floats (NaN/inf kept as floats)."""
        d: dict[str, Any] = {
            "timestamp": self.timestamp,
            "sequence_id": self.sequence_id,
            "payload": {n: self.payload[n].tolist() for n in self.payload.names},
            "metadata": dict(self.metadata),
        }
        if self.events:
            d["events"] = [e.to_dict() for e in self.events]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataFrame:
        """Inverse of :meth:`to_dict`."""
        return cls(
            int(data.get("timestamp", 0)),
            int(data.get("sequence_id", 0)),
            dict(data.get("payload", {})),
            dict(data.get("metadata", {})),
            [event_from_dict(e) for e in data.get("events", ())],
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle support (multiprocessing, Ray): through :mod:`streamlab.wire`, rebuilt
        read-only, blocks kept as blocks."""
        from streamlab import wire  # wire imports this module

        return (wire.frame_from_parts, (wire.frame_to_parts(self),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataFrame):
            return NotImplemented
        if (self.timestamp, self.sequence_id, self.payload.names, dict(self.metadata),
                self.events) != (other.timestamp, other.sequence_id, other.payload.names,
                                 dict(other.metadata), other.events):
            return False
        return all(
            np.array_equal(self.payload[n], other.payload[n], equal_nan=True)
            for n in self.payload.names
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<DataFrame seq={self.sequence_id} t={self.timestamp}us "
            f"channels={len(self.payload)}x{self.n_samples} meta={len(self.metadata)}"
            + (f" events={len(self.events)}>" if self.events else ">")
        )


def _unpickle_frame(timestamp: int, sequence_id: int, names: tuple[str, ...], data: Any,
                    metadata: dict[str, str]) -> DataFrame:
    """Frames pickled before :mod:`streamlab.wire` existed still load."""
    from streamlab import wire

    return wire.frame_from_parts((timestamp, sequence_id, names, data, metadata))
