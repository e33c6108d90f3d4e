"""Events: markers carried with the data (a stimulus, a key press, a trigger, a detected beat).

An :class:`Event` has a ``time`` in µs on the same clock as frame timestamps, a ``label``, an
optional numeric ``value`` and a ``duration`` in µs (0: an instant). On a data frame, each
event is *positioned* on one of its samples: ``sample`` is the index (0-based, within the
frame) of the sample it belongs to. A frame's events are a sorted tuple, immutable like its
payload: :func:`sort_events` orders them by ``(sample, time, label)``.

Events ride with the frames derived from the one they arrived on (``with_channels``,
``with_block``, ``with_payload``, ``with_metadata`` keep them), so a node written by a user
keeps events unless it says otherwise (``frame.with_events(())``). Nodes that change the
number of samples map positions (see docs/events.md).

Every event that enters a node gets one *event fate* (:data:`EVENT_FATES`), counted in the
node's :class:`~streamlab.metrics.NodeMetrics` like frame fates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streamlab.errors import FrameError

__all__ = ["Event", "EVENT_FATES", "sort_events", "event_from_dict", "NO_EVENTS"]

#: What becomes of an event that enters a node.
EVENT_FATES = (
    "carried",       # left the node on an output frame
    "epoched",       # cut into an epoch (Epoch)
    "rejected",      # its epoch was rejected (peak-to-peak, flat), or refused by a node
    "out_of_range",  # could not be placed (no sample for it, epoch beyond the data)
    "late",          # arrived after the data it belongs to had left (max_marker_delay)
    "unmatched",     # no consumer asked for its label
    "dropped",       # lost with its frame (the frame was skipped, aborted or dropped)
)

NO_EVENTS: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    """A marker: ``time`` (µs), ``label``, optional ``value``, ``duration`` (µs), ``sample``.

    >>> Event(1_000_000, "target", value=1.0)
    Event(time=1000000, label='target', value=1.0, duration=0, sample=0)
    """

    time: int
    label: str
    value: float | None = None
    duration: int = 0
    sample: int = 0

    def __post_init__(self) -> None:
        if type(self.time) is not int:
            if isinstance(self.time, bool) or not isinstance(self.time, int):
                raise FrameError(f"event time: expected int µs, got {type(self.time).__name__}")
        if not isinstance(self.label, str):
            raise FrameError(f"event label: expected str, got {type(self.label).__name__}")
        if self.value is not None and not isinstance(self.value, (int, float)):
            raise FrameError(f"event value: expected a number, got {type(self.value).__name__}")
        if not isinstance(self.duration, int) or self.duration < 0:
            raise FrameError(f"event duration: expected int µs >= 0, got {self.duration!r}")
        if not isinstance(self.sample, int) or self.sample < 0:
            raise FrameError(f"event sample: expected an index >= 0, got {self.sample!r}")

    def at(self, sample: int) -> Event:
        """The same event positioned on ``sample``."""
        return Event(self.time, self.label, self.value, self.duration, sample)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``value`` omitted when None, ``duration`` when 0)."""
        d: dict[str, Any] = {"time": self.time, "label": self.label, "sample": self.sample}
        if self.value is not None:
            d["value"] = self.value
        if self.duration:
            d["duration"] = self.duration
        return d


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Inverse of :meth:`Event.to_dict`; FrameError naming the field on bad data."""
    if not isinstance(data, Mapping):
        raise FrameError(f"event: expected an object, got {type(data).__name__}")
    value = data.get("value")
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise FrameError(f"event value: expected a number, got {value!r}")
    if isinstance(value, float) and math.isnan(value):
        value = float("nan")
    try:
        return Event(int(data["time"]), data["label"], value, int(data.get("duration", 0)),
                     int(data.get("sample", 0)))
    except KeyError as exc:
        raise FrameError(f"event: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise FrameError(f"event: {exc}") from None


def _key(e: Event) -> tuple[int, int, str]:
    return (e.sample, e.time, e.label)


def sort_events(events: Iterable[Event], n_samples: int | None = None) -> tuple[Event, ...]:
    """Events as a sorted tuple; FrameError if one is not an Event or lies beyond the frame.

    ``n_samples``: the frame's samples per channel; positions must be below it (a frame
    without samples holds events at position 0).
    """
    out = tuple(events)
    for e in out:
        if type(e) is not Event:
            raise FrameError(f"events: expected Event, got {type(e).__name__}")
    if n_samples is not None:
        limit = max(1, n_samples)
        bad = [e for e in out if e.sample >= limit]
        if bad:
            raise FrameError(f"event {bad[0].label!r} at sample {bad[0].sample} is beyond the "
                             f"frame ({n_samples} samples)")
    if any(_key(a) > _key(b) for a, b in zip(out, out[1:])):
        out = tuple(sorted(out, key=_key))
    return out
