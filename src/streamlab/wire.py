"""The one way a :class:`~streamlab.frame.DataFrame` crosses a process boundary.

:func:`frame_to_parts` turns a frame into plain picklable parts and :func:`frame_from_parts`
rebuilds it. Every path that moves frames between processes goes through this pair:

* ``DataFrame.__reduce__`` (plain pickle: multiprocessing, Ray object arguments);
* the process executor's pickled path (``runtime.worker``: frames that cannot go through
  shared memory, and list outputs);
* the distributed backends' batches (``distributed.backend.pack_frames``: the parts of many
  frames, with uniform blocks stacked into one 3-D array that Ray moves without a copy).

**Parts** are ``(timestamp, sequence_id, names, data, metadata[, events])``: ``data`` is the payload's
2-D ``channels x samples`` block when the payload is block-backed, else a dict of 1-D arrays
(channels may differ in length); ``metadata`` is a plain dict; ``events``, present only when the
frame has events, is a tuple of ``(time, label, value, duration, sample)`` tuples. The rebuilt frame is read-only
like every frame (its arrays are read-only views; nothing else holds the unpickled buffers),
keeps its layout (a block stays a block), and has no ingress time (it is a new arrival).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from streamlab.events import NO_EVENTS, Event
from streamlab.frame import DataFrame, Payload

__all__ = ["FrameParts", "frame_from_parts", "frame_to_parts"]

#: ``(timestamp, sequence_id, names, block-or-channel-dict, metadata)``
FrameParts = tuple[int, int, tuple[str, ...], "np.ndarray | dict[str, np.ndarray]",
                   Mapping[str, str]]


def frame_to_parts(frame: DataFrame) -> FrameParts:
    """A frame as picklable parts; arrays are shared, not copied (pickling copies them)."""
    p = frame.payload
    data: np.ndarray | dict[str, np.ndarray] = p.block() if p.is_block else p.to_dict()
    if frame.events:
        events = tuple((e.time, e.label, e.value, e.duration, e.sample) for e in frame.events)
        return (frame.timestamp, frame.sequence_id, p.names, data, dict(frame.metadata),
                events)  # type: ignore[return-value]
    return (frame.timestamp, frame.sequence_id, p.names, data, dict(frame.metadata))


def frame_from_parts(parts: FrameParts | tuple[Any, ...]) -> DataFrame:
    """Inverse of :func:`frame_to_parts`; FrameError if the parts are not a valid frame."""
    timestamp, sequence_id, names, data, metadata = parts[:5]
    payload = Payload.from_block(names, data) if isinstance(data, np.ndarray) else Payload(data)
    events = [Event(*e) for e in parts[5]] if len(parts) > 5 else NO_EVENTS
    return DataFrame(timestamp, sequence_id, payload, metadata, events)
