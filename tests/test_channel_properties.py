"""Channel accounting as properties over random send / take / release sequences.

Whatever the overflow policy and however the receiver takes frames (one at a time, in
batches, holding them in hand), every offered frame is counted exactly once and every
accepted frame is either received, still queued, evicted, drained or discarded:

    offered == sent + dropped + discarded on arrival (after the receiver left)
    sent == received + depth + drained + discarded from the queue

Mutation testing found that a leaky edge with frames in hand could forget to count an
accepted frame in ``sent`` without any other test noticing (docs/testing.md); writing this
property found that ``Channel.offered`` counted a frame discarded from the queue twice.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlab.channel import Channel, ChannelClosed, Inlet, Outlet, WouldBlock
from streamlab.errors import EndOfStream
from streamlab.frame import DataFrame

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 3)),
        st.tuples(st.just("take"), st.one_of(st.none(), st.integers(1, 4))),
        st.tuples(st.just("receive"), st.none()),
        st.tuples(st.just("release"), st.none()),
        st.tuples(st.just("drain"), st.none()),
        st.tuples(st.just("close_receiver"), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 4), overflow=st.sampled_from(["block", "drop_oldest", "drop_newest"]),
       ops=OPS)
def test_every_frame_has_one_fate(capacity, overflow, ops):
    ch = Channel(capacity, overflow=overflow, name="e")
    seq = offered = refused = drained = discarded_queued = 0
    taken: list[int] = []
    peak = 0
    for op, arg in ops:
        if op == "send":
            for _ in range(arg):
                depth, in_hand, gone = ch.depth, ch.in_hand, ch._receiver_closed
                frame = DataFrame(0, seq)
                accepted = ch.try_send(frame)
                if accepted:
                    offered += 1
                    seq += 1
                    if overflow != "block" and not gone:
                        # a leaky edge never waits, and the newest frame is queued unless
                        # drop_newest dropped it on a full queue
                        if overflow == "drop_oldest" or depth < capacity:
                            assert ch._q[-1] is frame
                else:
                    refused += 1
                    assert overflow == "block" and not gone
                    assert depth + in_hand >= capacity and ch.full
                    with pytest.raises(WouldBlock):
                        ch.send_nowait(frame)
        elif op == "take":
            batch = ch.take_ready(arg)
            assert len(batch) <= (arg or capacity)
            if batch:
                assert ch.in_hand == len(batch)
            taken += [f.sequence_id for f in batch]
        elif op == "receive":
            try:
                taken.append(ch.receive_nowait().sequence_id)
                assert ch.in_hand == 1
            except WouldBlock:
                assert ch.depth == 0 and ch.in_hand == 0
        elif op == "release":
            ch.release()
            assert ch.in_hand == 0 and not (overflow == "block" and ch.depth < capacity
                                            and ch.full)
        elif op == "drain":
            drained += len(ch.drain_nowait())
            assert ch.depth == 0
        elif op == "close_receiver":
            discarded_queued += ch.close_receiver()
            assert ch.depth == 0 and not ch.full
        peak = max(peak, ch.depth)
        s = ch.statistics()
        # every offered frame counted exactly once (frames discarded from the queue when the
        # receiver left were accepted first: they are in `sent` and in `discarded`)
        assert ch.offered == offered == s.sent + s.dropped + s.discarded - discarded_queued
        # every accepted frame is received, queued, drained or discarded from the queue
        assert s.received + s.depth + drained + discarded_queued == s.sent
        assert s.received == len(taken)
        # FIFO: frames come out in the order they were offered, none twice
        assert taken == sorted(set(taken))
        # capacity: a blocking edge bounds queued + in hand, a leaky one the queue
        if overflow == "block":
            assert s.depth + s.in_hand <= capacity and s.dropped == 0
        assert s.depth <= capacity
        assert s.peak_depth == peak
        assert (s.name, s.capacity, s.overflow, s.closed) == ("e", capacity, overflow, False)
        assert (s.depth, s.in_hand) == (ch.depth, ch.in_hand)


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 3), n=st.integers(0, 12))
def test_drop_newest_keeps_the_first_frames_and_drop_oldest_the_last(capacity, n):
    newest, oldest = (Channel(capacity, overflow=p) for p in ("drop_newest", "drop_oldest"))
    for s in range(n):
        newest.send_nowait(DataFrame(0, s))
        oldest.send_nowait(DataFrame(0, s))
    kept = min(n, capacity)
    assert [f.sequence_id for f in newest.take_ready()] == list(range(kept))
    assert [f.sequence_id for f in oldest.take_ready()] == list(range(n - kept, n))
    assert newest.dropped == oldest.dropped == n - kept
    assert newest.sent == kept and oldest.sent == kept


def test_close_then_drain_then_end_of_stream():
    ch = Channel(2, name="c")
    ch.send_nowait(DataFrame(0, 0))
    ch.close()
    assert ch.closed and not ch.exhausted
    with pytest.raises(ChannelClosed, match="channel 'c' is closed"):
        ch.send_nowait(DataFrame(0, 1))
    assert ch.receive_nowait().sequence_id == 0
    assert ch.exhausted
    with pytest.raises(EndOfStream):
        ch.receive_nowait()
    assert ch.take_ready() == []


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5])
def test_bad_capacity(capacity):
    with pytest.raises(ValueError, match=f"channel 'x': capacity must be an int >= 1, got {capacity!r}"):
        Channel(capacity, name="x")


def test_bad_overflow():
    with pytest.raises(ValueError, match="channel 'x': unknown overflow policy 'spill'"):
        Channel(2, overflow="spill", name="x")  # type: ignore[arg-type]


def test_a_blocked_sender_resumes_when_the_receiver_takes_and_counts_its_wait():
    async def main():
        ch = Channel(1)
        ch.send_nowait(DataFrame(0, 0))
        sender = asyncio.ensure_future(ch.send(DataFrame(0, 1)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not sender.done() and ch.full
        assert [f.sequence_id for f in ch.take_ready()] == [0]
        for _ in range(5):
            await asyncio.sleep(0)
        assert not sender.done()  # the taken frame is still in hand
        ch.release()
        await asyncio.wait_for(sender, 5)
        assert ch.blocked_seconds > 0
        assert [f.sequence_id for f in await ch.receive_batch()] == [1]

    asyncio.run(main())


def test_a_cancelled_send_leaves_nothing_and_wakes_the_next_sender():
    async def main():
        ch = Channel(1)
        ch.send_nowait(DataFrame(0, 0))
        first = asyncio.ensure_future(ch.send(DataFrame(0, 1)))
        second = asyncio.ensure_future(ch.send(DataFrame(0, 2)))
        for _ in range(5):
            await asyncio.sleep(0)
        first.cancel()
        ch.receive_nowait()
        ch.release()
        await asyncio.wait_for(second, 5)
        assert [f.sequence_id for f in ch.take_ready()] == [2]
        assert first.cancelled() and ch.sent == 2

    asyncio.run(main())


def test_outlet_fan_out_is_all_or_nothing_and_inlet_merges_round_robin():
    async def main():
        a, b = Channel(1, name="a"), Channel(2, name="b")
        out = Outlet([a, b])
        assert out.try_send(DataFrame(0, 0))
        assert not out.try_send(DataFrame(0, 1))  # a is full: neither branch gets it
        assert (a.depth, b.depth, out.sent) == (1, 1, 1)
        inlet = Inlet([a, b], sources=["up_a", "up_b"])
        assert (await inlet.receive_from())[0] == "up_a"
        assert (await inlet.receive_from())[0] == "up_b"
        assert inlet.taken == 2
        out.close()
        with pytest.raises(EndOfStream):
            inlet.receive_nowait()
        assert inlet.exhausted

    asyncio.run(main())


async def _settle(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_defaults_names_and_messages():
    ch = Channel()
    assert (ch.capacity, ch.name, ch.overflow) == (16, "", "block")
    s = Channel(1, name="c").statistics()
    assert (s.blocked_seconds, s.closed, s.sent, s.in_hand) == (0.0, False, 0, 0)
    c = Channel(1, name="c")
    with pytest.raises(WouldBlock) as e:
        c.receive_nowait()
    assert str(e.value) == "c"
    c.send_nowait(DataFrame(0, 0))
    with pytest.raises(WouldBlock, match=r"^channel 'c' is full \(1 frames\)$"):
        c.send_nowait(DataFrame(0, 1))
    assert repr(c) == "<Channel 'c' open depth=1/1 peak=1 sent=1 dropped=0>"
    c.close()
    c.take_ready()
    with pytest.raises(EndOfStream) as e:
        c.receive_nowait()
    assert str(e.value) == "c"
    assert repr(c) == "<Channel 'c' closed depth=0/1 peak=1 sent=1 dropped=0>"


def test_a_waiting_receiver_is_woken_by_a_frame_and_by_close():
    async def main():
        ch = Channel(2, name="w")
        first = asyncio.ensure_future(ch.receive())
        await _settle()
        assert not first.done()
        ch.send_nowait(DataFrame(0, 7))
        assert (await asyncio.wait_for(first, 5)).sequence_id == 7
        batch = asyncio.ensure_future(ch.receive_batch())
        await _settle()
        ch.close()
        await _settle()
        assert batch.done()
        with pytest.raises(EndOfStream) as e:
            batch.result()
        assert str(e.value) == "w"

    asyncio.run(main())


def test_receive_batch_honours_its_limit():
    async def main():
        ch = Channel(4)
        for s in range(3):
            ch.send_nowait(DataFrame(0, s))
        assert [f.sequence_id for f in await ch.receive_batch(2)] == [0, 1]
        assert [f.sequence_id for f in await ch.receive_batch(2)] == [2]

    asyncio.run(main())


def test_blocked_seconds_add_up_over_waits_and_stay_within_the_time_spent():
    async def main():
        t0 = time.perf_counter()
        ch = Channel(1)
        ch.send_nowait(DataFrame(0, 0))
        sender = asyncio.ensure_future(ch.send(DataFrame(0, 1)))
        await asyncio.sleep(0.05)  # a long first wait
        ch.receive_nowait()
        ch.release()
        await asyncio.wait_for(sender, 5)
        first = ch.blocked_seconds
        assert first > 0
        sender = asyncio.ensure_future(ch.send(DataFrame(0, 2)))
        await _settle(2)  # a short second wait
        ch.receive_nowait()
        ch.release()
        await asyncio.wait_for(sender, 5)
        assert first < ch.blocked_seconds <= time.perf_counter() - t0
        assert ch.statistics().blocked_seconds == ch.blocked_seconds

    asyncio.run(main())


def test_inlet_round_robin_sources_and_limits():
    async def main():
        chans = [Channel(4, name=n) for n in "abc"]
        for ch in chans:
            for s in range(2):
                ch.send_nowait(DataFrame(0, s, metadata={"from": ch.name}))
        inlet = Inlet(chans, sources=["A", "B", "C"])
        assert inlet.last_source is None
        got = [(await inlet.receive_from())[0] for _ in range(3)]
        assert got == ["A", "B", "C"] and inlet.last_source == "C"
        frame = await inlet.receive()
        assert frame.metadata["from"] == "a" and inlet.last_source == "A"
        assert inlet.receive_nowait().metadata["from"] == "b"
        assert inlet.taken == 5
        chans[2].send_nowait(DataFrame(0, 9))
        assert [f.sequence_id for f in await inlet.receive_batch(1)] == [1]  # c's second
        assert inlet.last_source == "C"
        assert [f.sequence_id for f in await inlet.receive_batch()] == [9]
        with pytest.raises(WouldBlock, match="^no input ready$"):
            inlet.receive_nowait()
        assert repr(inlet) == "<Inlet from=['A', 'B', 'C'] taken=7>"
        for ch in chans:
            ch.close()
        with pytest.raises(EndOfStream, match="^all inputs closed$"):
            await inlet.receive_batch()

    asyncio.run(main())


def test_a_single_input_inlet():
    async def main():
        ch = Channel(4, name="up")
        for s in range(3):
            ch.send_nowait(DataFrame(0, s))
        inlet = Inlet([ch])
        assert inlet.sources == ["up"] and inlet.last_source == "up"
        assert [f.sequence_id for f in await inlet.receive_batch(2)] == [0, 1]
        assert [f.sequence_id for f in await inlet.receive_batch(2)] == [2]
        assert inlet.taken == 3
        ch.send_nowait(DataFrame(0, 3))
        ch.close()
        assert [f.sequence_id async for f in inlet] == [3]

    asyncio.run(main())


def test_an_inlet_that_waited_leaves_its_channels_usable():
    async def main():
        a, b = Channel(2, name="a"), Channel(2, name="b")
        inlet = Inlet([a, b])
        waiting = asyncio.ensure_future(inlet.receive())
        await _settle()
        assert not waiting.done()
        b.send_nowait(DataFrame(0, 1))
        assert (await asyncio.wait_for(waiting, 5)).sequence_id == 1
        a.send_nowait(DataFrame(0, 2))  # no stale waiter left behind
        b.send_nowait(DataFrame(0, 3))
        a.close()
        b.close()
        assert sorted([f.sequence_id async for f in inlet]) == [2, 3]

    asyncio.run(main())


def test_outlet_single_and_fan_out_sends_wait_for_room_and_count():
    async def main():
        a = Channel(1, name="a")
        one = Outlet([a])
        assert one.targets == ["a"] and Outlet([a], targets=["x"]).targets == ["x"]
        assert one.try_send(DataFrame(0, 0)) and one.sent == 1
        pending = asyncio.ensure_future(one.send(DataFrame(0, 1)))
        await _settle()
        assert not pending.done()
        a.receive_nowait()
        a.release()
        await asyncio.wait_for(pending, 5)
        await one.send_all([])  # nothing to send
        assert one.sent == 2 and a.take_ready()[0].sequence_id == 1
        a.release()
        await one.send(DataFrame(0, 2))
        assert one.sent == 3
        assert repr(one) == "<Outlet to=['a'] sent=3>"

        b, c = Channel(1, name="b"), Channel(1, name="c")
        fan = Outlet([b, c])
        await fan.send_all([DataFrame(0, 10)])
        pending = asyncio.ensure_future(fan.send(DataFrame(0, 11)))
        await _settle()
        assert not pending.done() and (b.depth, c.depth) == (1, 1)
        for ch in (b, c):
            ch.receive_nowait()
            ch.release()
        await asyncio.wait_for(pending, 5)
        assert [f.sequence_id for f in b.take_ready()] == [11]
        assert [f.sequence_id for f in c.take_ready()] == [11]
        assert fan.sent == 2

    asyncio.run(main())


def test_a_leaky_edge_with_a_frame_in_hand_counts_and_tracks_peak():
    ch = Channel(2, overflow="drop_newest")
    ch.send_nowait(DataFrame(0, 0))
    assert [f.sequence_id for f in ch.take_ready()] == [0] and ch.in_hand == 1
    ch.send_nowait(DataFrame(0, 1))
    ch.send_nowait(DataFrame(0, 2))  # queue + in hand at capacity: the queue alone bounds it
    assert (ch.depth, ch.sent, ch.dropped, ch.peak_depth) == (2, 3, 0, 2)
    ch.send_nowait(DataFrame(0, 3))  # the queue itself is full: dropped
    assert (ch.depth, ch.sent, ch.dropped, ch.peak_depth, ch.offered) == (2, 3, 1, 2, 4)
    assert [f.sequence_id for f in ch.take_ready()] == [1, 2]


def test_frames_go_through_outlets_and_inlets_unchanged():
    async def main():
        a, b, c = (Channel(4, name=n) for n in "abc")
        frames = [DataFrame(0, s) for s in range(4)]
        one = Outlet([a])
        assert one.try_send(frames[0])
        await one.send(frames[1])
        await one.send_all(frames[2:])
        inlet = Inlet([a, b, c])
        got = [inlet.receive_nowait() for _ in range(4)]
        assert all(g is f for g, f in zip(got, frames))
        # round robin goes on after the last channel served and skips an empty one: after
        # a comes b (empty), so c, not a again
        a.send_nowait(DataFrame(0, 10))
        a.send_nowait(DataFrame(0, 11))
        c.send_nowait(DataFrame(0, 30))
        order = [(await inlet.receive_from())[0] for _ in range(3)]
        assert order == ["c", "a", "a"]
        fan = Outlet([b, c])
        await fan.send_all(frames[:1])
        assert b.take_ready()[0] is frames[0] and c.take_ready()[0] is frames[0]

    asyncio.run(main())


def test_a_receiver_that_waited_leaves_the_channel_usable():
    async def main():
        ch = Channel(2)
        waiting = asyncio.ensure_future(ch.receive())
        await _settle()
        ch.send_nowait(DataFrame(0, 1))
        assert (await asyncio.wait_for(waiting, 5)).sequence_id == 1
        ch.send_nowait(DataFrame(0, 2))  # no stale waiter left behind
        assert ch.receive_nowait().sequence_id == 2

    asyncio.run(main())
