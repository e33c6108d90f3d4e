"""streamlab.wire: the one way a frame crosses a process (pickle, process worker, backends)."""

import pickle

import numpy as np
import pytest

from streamlab import DataFrame, wire
from streamlab.distributed import pack_frames, unpack_frames
from streamlab.runtime import worker

BLOCK = DataFrame.from_block(("a", "b"), np.arange(6.0).reshape(2, 3), timestamp=7,
                             sequence_id=3, metadata={"k": "v"})
RAGGED = DataFrame(5, 9, {"x": [1.0, 2.0], "y": [3.0]}, {"m": "1"})
EMPTY = DataFrame()


def _same(a: DataFrame, b: DataFrame) -> None:
    assert a == b
    assert dict(a.metadata) == dict(b.metadata)
    assert a.payload.is_block == b.payload.is_block  # the layout survives
    for name in b.payload.names:
        assert not b.payload[name].flags.writeable
        with pytest.raises(ValueError):
            b.payload[name][...] = 0.0


@pytest.mark.parametrize("frame", [BLOCK, RAGGED, EMPTY], ids=["block", "ragged", "empty"])
def test_every_path_round_trips_both_layouts_metadata_and_empty_frames_read_only(frame):
    via_parts = wire.frame_from_parts(pickle.loads(pickle.dumps(wire.frame_to_parts(frame))))
    via_pickle = pickle.loads(pickle.dumps(frame, protocol=5))
    via_worker = worker.unpack(pickle.loads(pickle.dumps(worker.pack(frame))))
    (via_batch,) = unpack_frames(pickle.loads(pickle.dumps(pack_frames([frame]))))
    for back in (via_parts, via_pickle, via_worker):
        _same(frame, back)
    assert via_batch == frame and dict(via_batch.metadata) == dict(frame.metadata)


def test_parts_are_plain_data_and_share_the_arrays():
    ts, seq, names, data, meta = wire.frame_to_parts(BLOCK)
    assert (ts, seq, names, meta) == (7, 3, ("a", "b"), {"k": "v"}) and type(meta) is dict
    assert data is BLOCK.payload.block()  # not copied until pickled
    _, _, names, data, _ = wire.frame_to_parts(RAGGED)
    assert names == ("x", "y") and set(data) == {"x", "y"}


def test_the_three_boundaries_all_go_through_wire(monkeypatch):
    calls: list[str] = []
    to_parts, from_parts = wire.frame_to_parts, wire.frame_from_parts

    def spy_to(frame):
        calls.append("to")
        return to_parts(frame)

    def spy_from(parts):
        calls.append("from")
        return from_parts(parts)

    monkeypatch.setattr(wire, "frame_to_parts", spy_to)
    monkeypatch.setattr(wire, "frame_from_parts", spy_from)
    # 1. DataFrame.__reduce__ (pickle by reference to the spy is impossible: call it directly)
    fn, args = BLOCK.__reduce__()
    assert calls == ["to"] and fn(*args) == BLOCK and calls == ["to", "from"]
    # 2. the process executor's pickled path
    calls.clear()
    assert worker.unpack(worker.pack(RAGGED)) == RAGGED and calls == ["to", "from"]
    # 3. the distributed backends' batches
    calls.clear()
    assert unpack_frames(pack_frames([BLOCK, BLOCK])) == [BLOCK, BLOCK]
    assert calls == ["to", "to", "from", "from"]


def test_bad_parts_raise_a_frame_error():
    from streamlab.errors import FrameError

    with pytest.raises(FrameError, match="block"):
        wire.frame_from_parts((0, 0, ("a",), np.zeros(3), {}))
