"""Attach: join a marker stream to a data stream by time (issue 11).

``Attach`` has two inputs, named in its config by upstream node id: ``data`` (frames of
samples, ``metadata["sample_rate"]`` when they hold more than one sample) and ``markers``
(marker frames: their events are the markers, e.g. from ``LSLMarkerInlet``). Each marker
lands on the **first data sample at or after its time** (sample ``i`` of a frame is at
``timestamp + round(i * 1e6 / sample_rate)`` µs) and leaves on the data frame holding that
sample, as ``event.at(i)``: the same as ``np.searchsorted(sample_times, t, side="left")``
over the whole stream.

**Late markers.** Markers travel another path than the data and may arrive after it, so
data frames are *held* (in order) until one of:

(a) the marker stream has shown a marker later than the frame's last sample (with
    ``markers_in_order`` (default): one marker outlet sends its markers in time order, so
    none can still land on it; this releases data as soon as possible);
(b) the data stream has moved ``max_marker_delay_s`` of data time past the frame's last
    sample (the hold is bounded by data time, not wall time: a stalled data stream holds
    nothing back beyond what it already sent);
(c) the inputs have ended (held frames flush, in order).

Markers that may come **out of order** (several marker sources merged into one input, a
re-sorting network path): set ``markers_in_order: false``, so that only (b) and (c) release
data and every marker at most ``max_marker_delay_s`` behind its data still lands, whatever
its order.

A marker whose sample has already left is ``late``: counted in the event ledger and logged
(the first, then once every ``late_log_every``; the log says when it also came out of
order), never silently dropped. A marker before the
first data sample, or after the last one when the stream ends, is ``out_of_range``.
Markers arriving out of order are sorted while pending. Events already on data frames stay
on them (``carried``). Frames' fates: every frame taken is ``delivered`` (marker frames are
consumed; their events continue on data frames).

**Time order.** When both inputs have a frame ready, the earlier goes into the join first (a
marker at or before the data frame's first sample first); before each choice the node yields
once to the event loop so upstream nodes can refill their channels. Live inputs are not held
back by this (a frame alone ready is taken at once), but a replay (e.g. two ``XdfSource``
nodes reading one file, as fast as downstream takes) is joined as it was recorded: with plain
round robin, data frames longer than the marker spacing ran ahead of the markers and left
before markers that belong on them (counted ``late`` offline though they were on time
online; tests/test_online_offline.py).

The node owns its loop (``run``) so it can flush held frames at the end of its inputs; it
takes frames from its two input channels itself (``Inlet.receive_from`` for anything else).
If the run fails or is cancelled, the events it still holds are settled ``dropped``.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from streamlab.channel import WouldBlock
from streamlab.errors import EndOfStream
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, NodeContext, ProcessingNode
from streamlab.registry import register_node

__all__ = ["Attach", "MarkerJoin", "sample_times", "send_carrying"]


def sample_times(frame: DataFrame) -> np.ndarray:
    """The time (µs, int64) of each sample of ``frame``: ``timestamp + round(i * 1e6 / rate)``.

    ValueError if the frame has more than one sample and no positive ``sample_rate``.

    >>> sample_times(DataFrame.from_block(["x"], np.zeros((1, 3)), timestamp=10,
    ...                                   metadata={"sample_rate": "1000.0"})).tolist()
    [10, 1010, 2010]
    """
    n = frame.n_samples
    if n <= 1:
        return np.full(n, frame.timestamp, dtype=np.int64)
    try:
        rate = float(frame.metadata.get("sample_rate", "0"))
    except ValueError:
        rate = 0.0
    if not rate > 0 or not np.isfinite(rate):
        raise ValueError(f"data frame {frame.sequence_id} has {n} samples but no positive "
                         f"'sample_rate' metadata (got {frame.metadata.get('sample_rate')!r}); "
                         "its samples cannot be timed")
    # (i * 1e6) / rate, rounded half to even: the same as Python's round(i * 1e6 / rate)
    offsets = np.rint(np.arange(n, dtype=np.float64) * 1e6 / rate).astype(np.int64)
    return offsets + frame.timestamp


def _time(e: Event) -> int:
    return e.time


class MarkerJoin:
    """The joining logic of :class:`Attach`, without I/O (a pure state machine).

    ``data(frame)`` and ``markers(events)`` return the data frames that may leave now, in
    order; ``flush()`` returns the rest at the end of the stream. Markers that cannot be
    attached are reported through ``settle(fate, n)`` (``late``, ``out_of_range``) and
    ``on_late(event)``; events on returned frames are the caller's to settle (``carried``).
    ``held_events()`` counts the events still inside (held frames and pending markers).

    >>> j = MarkerJoin(max_delay_us=0)
    >>> f = DataFrame.from_block(["x"], np.zeros((1, 4)), timestamp=0,
    ...                          metadata={"sample_rate": "1000.0"})
    >>> j.markers([Event(1500, "go")])  # nothing to join yet
    []
    >>> [(e.label, e.sample) for e in j.data(f)[0].events]
    [('go', 2)]
    """

    def __init__(self, max_delay_us: int,
                 settle: Callable[[str, int], None] = lambda fate, n: None,
                 on_late: Callable[[Event], None] = lambda e: None,
                 in_order: bool = True) -> None:
        self.max_delay_us = max_delay_us
        self.in_order = in_order                # trust the marker order: rule (a)
        self._settle = settle
        self._on_late = on_late
        self.held: deque[tuple[DataFrame, np.ndarray]] = deque()
        self.pending: list[Event] = []          # markers waiting for their sample, by time
        self.newest_marker: int | None = None   # latest marker time seen
        self.first_sample: int | None = None    # time of the first data sample
        self.newest_sample: int | None = None   # time of the latest data sample seen
        self.emitted_until: int | None = None   # last sample time of the frames that left
        self.late = 0
        self.out_of_range = 0
        self.out_of_order = 0                   # markers older than one seen before them
        self.regressions = 0                    # data frames that start before the last one ended

    # -- inputs --------------------------------------------------------------------------
    def data(self, frame: DataFrame) -> list[DataFrame]:
        times = sample_times(frame)
        if len(times):
            if self.first_sample is None:
                self.first_sample = int(times[0])
                early = bisect.bisect_left(self.pending, self.first_sample, key=_time)
                if early:
                    del self.pending[:early]
                    self._out_of_range(early)
            elif self.newest_sample is not None and times[0] <= self.newest_sample:
                self.regressions += 1
            last = int(times[-1])
            self.newest_sample = last if self.newest_sample is None else max(self.newest_sample,
                                                                              last)
        self.held.append((frame, times))
        return self._release(final=False)

    def markers(self, events: Iterable[Event]) -> list[DataFrame]:
        for e in events:
            t = e.time
            if self.first_sample is not None and t < self.first_sample:
                self._out_of_range(1)
            elif self.emitted_until is not None and t <= self.emitted_until:
                self.late += 1
                self._settle("late", 1)
                self._on_late(e)
            else:
                bisect.insort_right(self.pending, e, key=_time)  # stable for equal times
            if self.newest_marker is None or t > self.newest_marker:
                self.newest_marker = t
            elif t < self.newest_marker:
                self.out_of_order += 1
        return self._release(final=False)

    def flush(self) -> list[DataFrame]:
        """End of the stream: every held frame, in order; markers after the data: out_of_range."""
        out = self._release(final=True)
        if self.pending:
            n = len(self.pending)
            self.pending.clear()
            self._out_of_range(n)
        return out

    def held_events(self) -> int:
        return len(self.pending) + sum(len(f.events) for f, _ in self.held)

    def clear(self) -> int:
        """Forget everything held; returns how many events that was."""
        n = self.held_events()
        self.held.clear()
        self.pending.clear()
        return n

    # -- internals -----------------------------------------------------------------------
    def _out_of_range(self, n: int) -> None:
        self.out_of_range += n
        self._settle("out_of_range", n)

    def _may_leave(self, last: int) -> bool:
        if self.in_order and self.newest_marker is not None and self.newest_marker > last:
            return True  # (a) the marker stream has moved past this frame
        assert self.newest_sample is not None
        return self.newest_sample - last >= self.max_delay_us  # (b) held long enough

    def _release(self, final: bool) -> list[DataFrame]:
        out: list[DataFrame] = []
        held = self.held
        while held:
            frame, times = held[0]
            if len(times) and not final and not self._may_leave(int(times[-1])):
                break
            held.popleft()
            out.append(self._attach(frame, times))
        return out

    def _attach(self, frame: DataFrame, times: np.ndarray) -> DataFrame:
        if not len(times):
            return frame  # a frame without samples cannot take markers
        last = int(times[-1])
        k = bisect.bisect_right(self.pending, last, key=_time)
        self.emitted_until = last if self.emitted_until is None else max(self.emitted_until, last)
        if not k:
            return frame
        take = self.pending[:k]
        del self.pending[:k]
        idx = np.searchsorted(times, np.array([e.time for e in take], dtype=np.int64), "left")
        return frame.with_events((*frame.events, *(e.at(int(i)) for e, i in zip(take, idx))))


class AttachConfig(NodeConfig):
    """Settings of Attach."""

    data: str = Field(..., min_length=1, description="Id of the upstream node sending the data.")
    markers: str = Field(..., min_length=1,
                         description="Id of the upstream node sending the markers.")
    max_marker_delay_s: float = Field(
        1.0, ge=0, le=3600, description="Hold data frames until the marker stream has passed "
        "them or for at most this much data time (s), so markers that arrive after their data "
        "are still attached; later markers are counted 'late'.")
    markers_in_order: bool = Field(
        True, description="The markers come in time order (one marker outlet): a marker past "
        "a data frame releases it at once. false: they may come out of order (merged marker "
        "streams); frames are held the whole max_marker_delay_s.")
    late_log_every: int = Field(100, ge=1, description="Log the first late marker, then one "
                                "in this many.")

    @model_validator(mode="after")
    def _check(self) -> AttachConfig:
        if self.data == self.markers:
            raise ValueError(f"data and markers must be different inputs, both are {self.data!r}")
        return self


async def send_carrying(context: NodeContext, tx: Any, outs: list[DataFrame]) -> None:
    """Send ``outs`` in order, settling each frame's events as carried once it has left.

    For nodes that own their loop and re-position events (Attach, Align): a frame still in
    ``outs`` when a send fails or is cancelled keeps its events unsettled, so the caller's
    failure path can count them (it removes each frame from ``outs`` only once sent).
    """
    m = context.metrics
    while outs:
        f = outs[0]
        await tx.send(f)
        outs.pop(0)
        if f.events:
            context.settle_events("carried", len(f.events))
            if m is not None:
                m.events_emitted += len(f.events)


@register_node
class Attach(ProcessingNode):
    """Attach markers to the data sample at or after their time (holds data for late markers).

    >>> cfg = Attach.Config(data="eeg", markers="stim", max_marker_delay_s=0.5)
    >>> cfg.max_marker_delay_s
    0.5
    """

    Config = AttachConfig
    handles_events = True

    def on_create(self, config: AttachConfig) -> None:
        self.config = config
        self.join = MarkerJoin(round(config.max_marker_delay_s * 1e6),
                               self.context.settle_events, self._late, config.markers_in_order)

    def on_start(self) -> None:
        inputs = set(self.context.inputs)
        if not inputs:
            return  # used on its own (tests): nothing to check
        cfg = self.config
        wanted = {"data": cfg.data, "markers": cfg.markers}
        for key, upstream in wanted.items():
            if upstream not in inputs:
                raise ValueError(f"Attach {self.node_id!r}: config.{key} is {upstream!r}, which "
                                 f"is not one of its inputs {sorted(inputs)}")
        extra = inputs - set(wanted.values())
        if extra:
            raise ValueError(f"Attach {self.node_id!r}: inputs {sorted(extra)} are neither "
                             f"config.data nor config.markers")

    def _late(self, e: Event) -> None:
        j = self.join
        n = j.late
        if (n - 1) % self.config.late_log_every == 0:  # the 1st, then one in N
            hint = "raise max_marker_delay_s?"
            if j.in_order and j.newest_marker is not None and e.time < j.newest_marker:
                hint = ("it came after a later marker: set markers_in_order false if the "
                        "markers can come out of order")
            self.context.logger.warning(
                "Attach %r: marker %r at %d µs arrived after its data left (%d late so far; "
                "%s)", self.node_id, e.label, e.time, n, hint)

    def _received(self, n: int) -> None:
        m = self.context.metrics
        if m is not None:  # the runtime counts received events for process(), not run()
            m.events_received += n

    async def _receive(self, rx: Any) -> tuple[str, DataFrame]:
        """The next frame to join and its input: of the frames ready on both inputs, the
        earlier (see "Time order" in the module docstring); EndOfStream once both ended.

        Frames are taken from the channels into ``self._ahead`` (one per input at most) and
        their events counted received there, so a failure can settle them.
        """
        chans = getattr(rx, "channels", None)
        if chans is None or len(chans) != 2:
            src, frame = await rx.receive_from()
            self._received(len(frame.events))
            return src, frame
        await asyncio.sleep(0)  # let upstream nodes refill their channels first
        ahead = self._ahead
        for src, ch in zip(rx.sources, chans, strict=True):
            if src in ahead or src in self._ended:
                continue
            try:
                frame = ch.receive_nowait()
            except WouldBlock:
                continue
            except EndOfStream:
                self._ended.add(src)
                continue
            self._received(len(frame.events))
            ahead[src] = frame
        cfg = self.config
        mk, data = ahead.get(cfg.markers), ahead.get(cfg.data)
        if mk is not None and (data is None or mk.timestamp <= data.timestamp):
            return cfg.markers, ahead.pop(cfg.markers)
        if data is not None:
            return cfg.data, ahead.pop(cfg.data)
        if len(self._ended) == 2:
            raise EndOfStream
        src, frame = await rx.receive_from()  # nothing ready: wait for either input
        self._received(len(frame.events))
        return src, frame

    async def run(self, rx: Any, tx: Any) -> None:
        """Receive from both inputs until both end, then flush; see the module docstring."""
        cfg, join = self.config, self.join
        outs: list[DataFrame] = []
        in_hand = 0  # events received on the frame being joined (not yet inside ``join``)
        self._ahead: dict[str, DataFrame] = {}
        self._ended: set[str] = set()
        try:
            while True:
                try:
                    src, frame = await self._receive(rx)
                except EndOfStream:
                    break
                in_hand = len(frame.events)
                if src == cfg.markers:
                    outs = join.markers(frame.events)
                elif src == cfg.data:
                    outs = join.data(frame)
                else:
                    raise ValueError(f"Attach {self.node_id!r}: frame from {src!r}, which is "
                                     f"neither config.data nor config.markers")
                in_hand = 0
                await send_carrying(self.context, tx, outs)
            outs = join.flush()
            await send_carrying(self.context, tx, outs)
        except BaseException:
            # Failure or forced stop: what is still held, or made but unsent, is lost.
            lost = in_hand + join.clear() + sum(len(f.events) for f in outs) \
                + sum(len(f.events) for f in self._ahead.values())
            self._ahead.clear()
            if lost:
                self.context.settle_events("dropped", lost)
            raise
        if join.regressions:
            self.context.logger.warning("Attach %r: %d data frames started before the previous "
                                        "one ended; markers near them may land on the wrong "
                                        "sample", self.node_id, join.regressions)

    def __repr__(self) -> str:
        j = self.join
        return (f"<Attach id={self.node_id!r} held={len(j.held)} pending={len(j.pending)} "
                f"late={j.late} out_of_range={j.out_of_range}>")

