"""Bounded channels: the edges of a pipeline graph.

A :class:`Channel` belongs to one edge (not to a node), so a node can be restarted or replaced
while its queues keep their frames. It holds at most ``capacity`` frames.

* **Full channel.** With ``overflow="block"`` (the default) :meth:`Channel.send` waits until
  the receiver makes room: this is backpressure. ``"drop_oldest"`` evicts the oldest queued
  frame, ``"drop_newest"`` discards the incoming one; both count every drop in
  ``statistics().dropped`` and never block.
* **Close.** The sender calls :meth:`Channel.close` when it is done. The receiver drains what
  is queued, then gets :class:`~streamlab.errors.EndOfStream`. Sending on a closed channel
  raises :class:`ChannelClosed`.
* **Receiver gone.** If the receiving side stops early (:meth:`Channel.close_receiver`),
  queued and later frames are discarded and counted in ``statistics().discarded``; a blocked
  sender is released instead of waiting forever.
* **Batching.** :meth:`Channel.receive_batch` moves every ready frame in one wake-up.
  Capacity stays exact: a sender blocks while ``depth == capacity``.
* **Cancellation.** A cancelled ``send`` leaves nothing queued; a cancelled ``receive`` takes
  nothing.

An :class:`Inlet` merges the input channels of one node (fan-in) and an :class:`Outlet` sends
each frame to every output channel of a node (fan-out shares the frame object; payload arrays
are read-only, so no copy is needed).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from streamlab.errors import EndOfStream, StreamLabError
from streamlab.frame import DataFrame

__all__ = [
    "Channel",
    "ChannelClosed",
    "ChannelStatistics",
    "Inlet",
    "Outlet",
    "Overflow",
    "WouldBlock",
]

Overflow = Literal["block", "drop_oldest", "drop_newest"]
_perf = time.perf_counter


class ChannelClosed(StreamLabError):
    """Sending on a channel that its sender already closed."""


class WouldBlock(Exception):
    """A ``*_nowait`` call could not complete without waiting."""


@dataclass(frozen=True)
class ChannelStatistics:
    """A snapshot of one channel."""

    name: str
    capacity: int
    overflow: str
    depth: int
    peak_depth: int
    sent: int
    received: int
    dropped: int
    discarded: int
    blocked_seconds: float
    closed: bool
    in_hand: int = 0


class Channel:
    """A bounded FIFO of frames between one sender and one receiver."""

    __slots__ = (
        "name", "capacity", "overflow", "_q", "_getter", "_putters", "_closed",
        "_receiver_closed", "peak_depth", "sent", "received", "dropped", "discarded",
        "blocked_seconds", "_in_hand", "_discarded_late", "lost_events",
    )

    def __init__(self, capacity: int = 16, *, overflow: Overflow = "block", name: str = "") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"channel {name!r}: capacity must be an int >= 1, got {capacity!r}")
        if overflow not in ("block", "drop_oldest", "drop_newest"):
            raise ValueError(f"channel {name!r}: unknown overflow policy {overflow!r}")
        self.name = name
        self.capacity = capacity
        self.overflow: Overflow = overflow
        self._q: deque[DataFrame] = deque()
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._receiver_closed = False
        self.peak_depth = 0
        self.sent = 0          # frames accepted into the queue (evicted ones excluded)
        self.received = 0      # frames taken by the receiver
        self.dropped = 0       # frames dropped by the overflow policy
        self.discarded = 0     # frames thrown away because the receiver was gone
        # The part of `discarded` offered after the receiver left (never counted in `sent`);
        # the rest were queued, hence already in `sent`.
        self._discarded_late = 0
        self.lost_events = 0   # events on frames this channel dropped or discarded
        self.blocked_seconds = 0.0
        # Frames the receiver took in its last batch and may still be processing: they count
        # against the capacity until it asks for more, so capacity bounds queued + in hand.
        self._in_hand = 0

    # -- sending --------------------------------------------------------------------------
    def _wake_getter(self) -> None:
        g = self._getter
        if g is not None and not g.done():
            g.set_result(None)

    def try_send(self, frame: DataFrame) -> bool:
        """Queue ``frame`` if there is room (or the overflow policy drops); False if it must wait."""
        if self._closed:
            raise ChannelClosed(f"channel {self.name!r} is closed")
        if self._receiver_closed:
            self.discarded += 1
            self._discarded_late += 1
            if frame.events:
                self.lost_events += len(frame.events)
            return True
        q = self._q
        if len(q) + self._in_hand >= self.capacity:
            if self.overflow == "block":
                return False
            if len(q) < self.capacity:  # leaky edges bound the queue alone
                q.append(frame)
                self.sent += 1
                if len(q) > self.peak_depth:
                    self.peak_depth = len(q)
                self._wake_getter()
                return True
            self.dropped += 1
            if self.overflow == "drop_newest":
                if frame.events:
                    self.lost_events += len(frame.events)
                return True
            evicted = q.popleft()
            if evicted.events:
                self.lost_events += len(evicted.events)
            self.sent -= 1  # the evicted frame is counted as dropped instead
        q.append(frame)
        self.sent += 1
        n = len(q)
        if n > self.peak_depth:
            self.peak_depth = n
        g = self._getter
        if g is not None and not g.done():
            g.set_result(None)
        return True

    def send_nowait(self, frame: DataFrame) -> None:
        """Queue ``frame`` or raise :class:`WouldBlock` if the channel is full."""
        if not self.try_send(frame):
            raise WouldBlock(f"channel {self.name!r} is full ({self.capacity} frames)")

    async def send(self, frame: DataFrame) -> None:
        """Queue ``frame``, waiting while the channel is full (backpressure)."""
        while not self.try_send(frame):
            await self.wait_writable()

    async def wait_writable(self) -> None:
        """Wait until a send would not block: room, a leaky policy, or the receiver gone.

        Counted in ``blocked_seconds``. Cancelling it sends nothing.
        """
        loop = asyncio.get_running_loop()
        start = _perf()
        try:
            while self.full and not self._closed:
                fut = loop.create_future()
                self._putters.append(fut)
                try:
                    await fut
                finally:
                    try:
                        self._putters.remove(fut)
                    except ValueError:
                        pass
        except asyncio.CancelledError:
            self._wake_putter()
            raise
        finally:
            self.blocked_seconds += _perf() - start

    def _wake_putter(self) -> None:
        for fut in self._putters:
            if not fut.done():
                fut.set_result(None)
                return

    def close(self) -> None:
        """The sender is done: the receiver drains what is queued, then gets EndOfStream."""
        if not self._closed:
            self._closed = True
            self._wake_getter()

    # -- receiving ------------------------------------------------------------------------
    def _after_take(self) -> None:
        if self._putters:
            for fut in self._putters:
                if not fut.done():
                    fut.set_result(None)

    def receive_nowait(self) -> DataFrame:
        """Take the oldest frame; WouldBlock if empty, EndOfStream if closed and drained."""
        if self._q:
            self.received += 1
            frame = self._q.popleft()
            self._in_hand = 1
            if self._putters:
                self._after_take()
            return frame
        self.release()
        if self._closed:
            raise EndOfStream(self.name)
        raise WouldBlock(self.name)

    def take_ready(self, limit: int | None = None) -> list[DataFrame]:
        """Take every queued frame (up to ``limit``) without waiting; may be empty."""
        q = self._q
        if not q:
            self.release()
            return []
        if limit is None or limit >= len(q):
            batch = list(q)
            q.clear()
        else:
            batch = [q.popleft() for _ in range(limit)]
        self.received += len(batch)
        self._in_hand = len(batch)  # the previous batch is done: the receiver is back for more
        if self._putters:
            self._after_take()
        return batch

    def release(self) -> None:
        """The receiver is done with the frames it took: they no longer count as in hand."""
        if self._in_hand:
            self._in_hand = 0
            if self._putters:
                self._after_take()

    async def _wait_readable(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._getter = fut
        try:
            await fut
        finally:
            self._getter = None

    async def receive(self) -> DataFrame:
        """Take the oldest frame, waiting if empty; EndOfStream once closed and drained."""
        while True:
            try:
                return self.receive_nowait()
            except WouldBlock:
                await self._wait_readable()

    async def receive_batch(self, limit: int | None = None) -> list[DataFrame]:
        """Take every ready frame (at least one), waiting if empty; EndOfStream at the end."""
        while True:
            batch = self.take_ready(limit)
            if batch:
                return batch
            if self._closed:
                raise EndOfStream(self.name)
            await self._wait_readable()

    def close_receiver(self) -> int:
        """The receiver is gone: discard queued frames (counted), release blocked senders.

        Returns the number of frames discarded now.
        """
        self._receiver_closed = True
        n = len(self._q)
        self.discarded += n
        self.lost_events += sum(len(f.events) for f in self._q)
        self._q.clear()
        self._after_take()
        return n

    def drain_nowait(self) -> list[DataFrame]:
        """Remove and return every queued frame without counting them as received."""
        frames = list(self._q)
        self._q.clear()
        if self._putters:
            self._after_take()
        return frames

    # -- state ----------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._q)

    @property
    def in_hand(self) -> int:
        """Frames taken by the receiver and not yet released (they count against capacity)."""
        return self._in_hand

    @property
    def full(self) -> bool:
        """True if a send would wait (blocking edge, queued + in hand at capacity)."""
        return (self.overflow == "block" and not self._receiver_closed
                and len(self._q) + self._in_hand >= self.capacity)

    @property
    def closed(self) -> bool:
        """True once the sender closed the channel."""
        return self._closed

    @property
    def exhausted(self) -> bool:
        """True once closed and drained: a receive would raise EndOfStream."""
        return self._closed and not self._q

    @property
    def offered(self) -> int:
        """Frames the sender offered: accepted, dropped by overflow, or discarded on arrival.

        Frames discarded from the queue when the receiver left were accepted first, so they
        are in ``sent`` already and not counted twice.
        """
        return self.sent + self.dropped + self._discarded_late

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            name=self.name, capacity=self.capacity, overflow=self.overflow, depth=len(self._q),
            peak_depth=self.peak_depth, sent=self.sent, received=self.received,
            dropped=self.dropped, discarded=self.discarded,
            blocked_seconds=self.blocked_seconds, closed=self._closed, in_hand=self._in_hand,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<Channel {self.name!r} {state} depth={len(self._q)}/{self.capacity} "
                f"peak={self.peak_depth} sent={self.sent} dropped={self.dropped}>")


class Inlet:
    """The receiving side of a node: merges its input channels (fan-in).

    Frames from one channel arrive in order; across channels, in the order they became ready
    (round-robin over ready channels). :meth:`receive_from` also says which upstream node
    sent the frame. ``EndOfStream`` comes once every input channel is closed and drained.
    """

    __slots__ = ("channels", "sources", "_rr", "_waiter", "taken", "last_source")

    def __init__(self, channels: Sequence[Channel], sources: Sequence[str] | None = None) -> None:
        self.channels = list(channels)
        self.sources = list(sources) if sources is not None else [c.name for c in self.channels]
        self._rr = 0
        self._waiter: asyncio.Future[None] | None = None
        self.taken = 0
        #: The upstream node id of the most recently received batch.
        self.last_source: str | None = self.sources[0] if len(self.sources) == 1 else None

    async def _wait(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        for ch in self.channels:
            ch._getter = fut
        try:
            await fut
        finally:
            for ch in self.channels:
                ch._getter = None

    def _take(self, limit: int | None) -> tuple[int, list[DataFrame]] | None:
        chans = self.channels
        n = len(chans)
        all_done = True
        for ch in chans:  # whatever was taken before is done with
            if ch._in_hand:
                ch.release()
        for k in range(n):
            i = (self._rr + k) % n
            ch = chans[i]
            if ch._q:
                self._rr = (i + 1) % n
                self.last_source = self.sources[i]
                batch = ch.take_ready(limit)
                self.taken += len(batch)
                return i, batch
            if not ch._closed:
                all_done = False
        if all_done:
            raise EndOfStream("all inputs closed")
        return None

    async def receive_batch(self, limit: int | None = None) -> list[DataFrame]:
        """Every ready frame of one input channel (at least one), waiting if none is ready."""
        if len(self.channels) == 1:
            batch = await self.channels[0].receive_batch(limit)
            self.taken += len(batch)
            return batch
        while True:
            got = self._take(limit)
            if got is not None:
                return got[1]
            await self._wait()

    async def receive_from(self) -> tuple[str, DataFrame]:
        """The next frame and the id of the upstream node it came from."""
        while True:
            got = self._take(1)
            if got is not None:
                return self.sources[got[0]], got[1][0]
            await self._wait()

    async def receive(self) -> DataFrame:
        """The next frame from any input; EndOfStream once every input has ended."""
        return (await self.receive_from())[1]

    def receive_nowait(self) -> DataFrame:
        """The next ready frame; WouldBlock if none is ready, EndOfStream at the end."""
        got = self._take(1)
        if got is None:
            raise WouldBlock("no input ready")
        return got[1][0]

    async def __aiter__(self) -> AsyncIterator[DataFrame]:
        while True:
            try:
                batch = await self.receive_batch()
            except EndOfStream:
                return
            for frame in batch:
                yield frame

    @property
    def exhausted(self) -> bool:
        return all(ch.exhausted for ch in self.channels)

    def __repr__(self) -> str:
        return f"<Inlet from={self.sources} taken={self.taken}>"


class Outlet:
    """The sending side of a node: each frame goes to every output channel (fan-out).

    Fan-out hands the same frame object to every branch: payloads are read-only, so no copy
    is made. A send waits on the slowest full branch (backpressure). A node without outputs
    has an outlet with no channels that accepts and counts frames.
    """

    __slots__ = ("channels", "targets", "sent")

    def __init__(self, channels: Sequence[Channel], targets: Sequence[str] | None = None) -> None:
        self.channels = list(channels)
        self.targets = list(targets) if targets is not None else [c.name for c in self.channels]
        self.sent = 0

    async def send(self, frame: DataFrame) -> None:
        """Send ``frame`` to every output channel, waiting on full ones.

        All or nothing: with several outputs it waits until every blocking one has room,
        so a cancelled send leaves the frame in no channel (never in some branches only).
        """
        chans = self.channels
        if len(chans) == 1:
            if not chans[0].try_send(frame):
                await chans[0].send(frame)
            self.sent += 1
            return
        while not self.try_send(frame):
            for ch in chans:
                if ch.full:
                    await ch.wait_writable()
                    break

    def try_send(self, frame: DataFrame) -> bool:
        """Send only if no output channel would block (all or nothing)."""
        chans = self.channels
        if len(chans) == 1:
            ok = chans[0].try_send(frame)
        else:
            for ch in chans:
                if ch.full:
                    return False
            for ch in chans:
                ch.try_send(frame)
            ok = True
        if ok:
            self.sent += 1
        return ok

    async def send_all(self, frames: Iterable[DataFrame]) -> None:
        for frame in frames:
            if not self.try_send(frame):
                await self.send(frame)

    def close(self) -> None:
        for ch in self.channels:
            ch.close()

    def __repr__(self) -> str:
        return f"<Outlet to={self.targets} sent={self.sent}>"
