import asyncio

import pytest

from streamlab.channel import Channel, ChannelClosed, Inlet, Outlet, WouldBlock
from streamlab.errors import EndOfStream
from streamlab.frame import DataFrame
from tests.conftest import run


def frames(n, start=0):
    return [DataFrame(i, i) for i in range(start, start + n)]


def test_capacity_must_be_positive():
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="capacity must be an int >= 1"):
            Channel(bad)


def test_fifo_close_then_end_of_stream():
    async def go():
        ch = Channel(4, name="a->b")
        for f in frames(3):
            await ch.send(f)
        ch.close()
        with pytest.raises(ChannelClosed):
            await ch.send(DataFrame())
        got = [(await ch.receive()).sequence_id for _ in range(3)]
        with pytest.raises(EndOfStream):
            await ch.receive()
        return got, ch.statistics()

    got, st = run(go())
    assert got == [0, 1, 2]
    assert (st.sent, st.received, st.peak_depth, st.closed) == (3, 3, 3, True)


def test_backpressure_blocks_sender_and_capacity_is_exact():
    async def go():
        ch = Channel(2)
        for f in frames(2):
            ch.send_nowait(f)
        with pytest.raises(WouldBlock):
            ch.send_nowait(DataFrame())
        blocked = asyncio.create_task(ch.send(DataFrame(9, 9)))
        await asyncio.sleep(0.01)
        assert not blocked.done() and ch.depth == 2
        assert (await ch.receive()).sequence_id == 0
        # frame 0 is still in the receiver's hand: queued + in hand == capacity, sender waits
        await asyncio.sleep(0.01)
        assert not blocked.done() and (ch.depth, ch.in_hand) == (1, 1)
        first = [f.sequence_id for f in await ch.receive_batch()]  # releases 0, takes 1
        await asyncio.wait_for(blocked, 1)
        second = [f.sequence_id for f in await ch.receive_batch()]
        return first, second, ch.peak_depth

    first, second, peak = run(go())
    assert (first, second, peak) == ([1], [9], 2)


def test_frames_in_hand_count_until_released():
    ch = Channel(3)
    for f in frames(3):
        ch.send_nowait(f)
    assert len(ch.take_ready()) == 3 and ch.in_hand == 3 and ch.full
    assert not ch.try_send(DataFrame())
    ch.release()
    assert ch.in_hand == 0 and ch.try_send(DataFrame())
    leaky = Channel(2, overflow="drop_newest")
    leaky.send_nowait(DataFrame())
    leaky.take_ready()
    assert leaky.try_send(DataFrame()) and leaky.depth == 1 and leaky.dropped == 0


def test_cancelled_send_leaves_nothing():
    async def go():
        ch = Channel(1)
        ch.send_nowait(DataFrame(0, 0))
        t = asyncio.create_task(ch.send(DataFrame(1, 1)))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return ch.take_ready(), ch.sent

    left, sent = run(go())
    assert [f.sequence_id for f in left] == [0] and sent == 1


@pytest.mark.parametrize("policy, expect", [("drop_oldest", [2, 3]), ("drop_newest", [0, 1])])
def test_overflow_policies_count_drops(policy, expect):
    ch = Channel(2, overflow=policy)
    for f in frames(4):
        assert ch.try_send(f)
    assert [f.sequence_id for f in ch.take_ready()] == expect
    st = ch.statistics()
    assert st.dropped == 2 and st.sent + st.dropped == 4 and ch.offered == 4


def test_closed_receiver_releases_blocked_sender_and_counts():
    async def go():
        ch = Channel(1)
        ch.send_nowait(DataFrame())
        t = asyncio.create_task(ch.send(DataFrame(1, 1)))
        await asyncio.sleep(0)
        assert ch.close_receiver() == 1
        await asyncio.wait_for(t, 1)
        return ch.statistics()

    st = run(go())
    assert st.discarded == 2 and st.depth == 0


def test_inlet_merges_and_names_the_source():
    async def go():
        a, b = Channel(4, name="a"), Channel(4, name="b")
        inlet = Inlet([a, b], ["up_a", "up_b"])
        a.send_nowait(DataFrame(0, 0))
        b.send_nowait(DataFrame(0, 100))
        a.send_nowait(DataFrame(0, 1))
        seen = [await inlet.receive_from() for _ in range(3)]
        a.close()
        b.close()
        with pytest.raises(EndOfStream):
            await inlet.receive()
        return [(s, f.sequence_id) for s, f in seen]

    seen = run(go())
    assert sorted(seen) == [("up_a", 0), ("up_a", 1), ("up_b", 100)]
    assert [x for x in seen if x[0] == "up_a"] == [("up_a", 0), ("up_a", 1)]  # per-source order


def test_inlet_wakes_on_any_input():
    async def go():
        a, b = Channel(1), Channel(1)
        inlet = Inlet([a, b])
        t = asyncio.create_task(inlet.receive_batch())
        await asyncio.sleep(0)
        b.send_nowait(DataFrame(0, 7))
        return [f.sequence_id for f in await asyncio.wait_for(t, 1)]

    assert run(go()) == [7]


def test_outlet_fanout_shares_the_frame():
    async def go():
        a, b = Channel(2), Channel(2)
        out = Outlet([a, b])
        f = DataFrame(0, 0, {"x": [1.0]})
        await out.send(f)
        return a.receive_nowait(), b.receive_nowait(), f

    fa, fb, f = run(go())
    assert fa is f and fb is f


def test_outlet_try_send_is_all_or_nothing():
    a, b = Channel(1), Channel(1)
    out = Outlet([a, b])
    assert out.try_send(DataFrame())
    b.take_ready()
    assert not out.try_send(DataFrame())  # a is full: nothing is sent to b either
    assert b.depth == 0
