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
