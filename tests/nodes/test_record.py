"""Recorder and Replay (streamlab.nodes.record): lossless round trips, identical replays."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlab.errors import EndOfStream, NodeError
from streamlab.frame import DataFrame
from streamlab.nodes.record import MAGIC, Recorder, Replay, iter_recording
from streamlab.registry import node_types
from streamlab.runtime import AsyncPipeline
from streamlab.testing import VirtualClock, make_frame, run_node

# A stateful downstream shows that replay reproduces state evolution, not just single frames.
if "IIRFilter" in node_types():
    DOWNSTREAM = {"type": "IIRFilter", "config": {"btype": "lowpass", "order": 4, "cutoff": 40.0}}
else:  # pragma: no cover - filters are built in parallel
    DOWNSTREAM = {"type": "Gain", "config": {"gain": 0.5}}


def run_free(config: dict, clock: VirtualClock | None = None) -> dict[str, list[DataFrame]]:
    async def go() -> dict[str, list[DataFrame]]:
        pipe = AsyncPipeline(config, **({"clock": clock} if clock else {}))
        await pipe.start()
        pipe.close_triggers()
        await pipe.join()
        return pipe.results

    return asyncio.run(go())


def test_replay_through_the_same_pipeline_reproduces_the_outputs(tmp_path):
    rec = str(tmp_path / "run.slrec")
    recorded = {
        "name": "record",
        "nodes": [
            {"id": "sine", "type": "SineGenerator",
             "config": {"frequency": 12.0, "sample_rate": 500.0, "samples_per_frame": 37,
                        "channels": ["a", "b"], "mode": "free", "max_frames": 40}},
            {"id": "rec", "type": "Recorder", "config": {"path": rec}},
            {"id": "down", **DOWNSTREAM},
        ],
        "connections": [{"from": "sine", "to": "rec"}, {"from": "sine", "to": "down"}],
    }
    original = run_free(recorded)["down"]
    assert len(original) == 40
    replayed = {
        "name": "replay",
        "nodes": [{"id": "replay", "type": "Replay", "config": {"path": rec}},
                  {"id": "down", **DOWNSTREAM}],
        "connections": [{"from": "replay", "to": "down"}],
    }
    again = run_free(replayed)["down"]
    assert again == original  # timestamps, ids, metadata, exact samples
    assert [f.timestamp for f in again] == [f.timestamp for f in original]


def test_replay_realtime_reproduces_the_recorded_gaps_on_the_clock(tmp_path):
    path = str(tmp_path / "r.slrec")
    stamps = [1_000_000, 1_250_000, 1_260_000, 2_260_000]
    frames = [make_frame(x=[float(i)], sequence_id=i, timestamp=t) for i, t in enumerate(stamps)]
    run_node(Recorder, {"path": path}, frames)
    cfg = {"name": "rt", "nodes": [{"id": "r", "type": "Replay",
                                    "config": {"path": path, "realtime": True, "speed": 2.0}},
                                   {"id": "out", "type": "Passthrough", "config": {}}],
           "connections": [{"from": "r", "to": "out"}]}
    clock = VirtualClock()
    out = run_free(cfg, clock)["out"]
    assert out == frames
    assert clock.sleeps == pytest.approx([0.125, 0.005, 0.5])  # gaps / speed
    assert clock.monotonic() == pytest.approx(0.63)


def test_as_fast_as_possible_does_not_sleep(tmp_path):
    path = str(tmp_path / "r.slrec")
    frames = [make_frame(x=[1.0], sequence_id=i, timestamp=i * 10**6) for i in range(5)]
    run_node(Recorder, {"path": path}, frames)
    clock = VirtualClock()
    assert run_node(Replay, {"path": path}, triggers=9, clock=clock) == frames
    assert clock.sleeps == []


finite = st.floats(allow_nan=True, allow_infinity=True, width=64)
frame_st = st.builds(
    lambda ts, seq, meta, chans: DataFrame(ts, seq, chans, meta),
    st.integers(-2**62, 2**62), st.integers(-2**62, 2**62),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=6),
                    st.lists(finite, max_size=20).map(lambda v: np.array(v, dtype=np.float64)),
                    max_size=4),
)


@settings(max_examples=40, deadline=None)
@given(frames=st.lists(frame_st, max_size=6))
def test_recording_is_lossless_bit_for_bit(tmp_path_factory, frames):
    path = tmp_path_factory.mktemp("rec") / "r.slrec"
    run_node(Recorder, {"path": str(path)}, frames)
    if not frames:
        assert not path.exists()
        return
    back = list(iter_recording(path))
    assert back == frames
    for a, b in zip(back, frames, strict=True):
        for name in a.channels:  # == treats NaNs alike and -0.0 == 0.0; the bits must match too
            assert a.payload[name].tobytes() == b.payload[name].tobytes()


def test_block_and_ragged_payloads(tmp_path):
    path = tmp_path / "r.slrec"
    block = DataFrame.from_block(["a", "b"], np.arange(6.0).reshape(2, 3), sequence_id=1)
    ragged = make_frame(a=[1.0], b=[2.0, 3.0], c=[], sequence_id=2)
    run_node(Recorder, {"path": str(path)}, [block, ragged, make_frame()])
    back = list(iter_recording(path))
    assert back == [block, ragged, make_frame()]
    assert back[0].payload.is_block


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "r.slrec"
    frames = [make_frame(x=[1.0, 2.0], sequence_id=i) for i in range(3)]
    run_node(Recorder, {"path": str(path)}, frames)
    path.write_bytes(path.read_bytes()[:-5])  # a crash in the middle of the last record
    with pytest.raises(ValueError, match=r"r.slrec.*truncated record data"):
        list(iter_recording(path))
    assert list(iter_recording(path, allow_truncated=True)) == frames[:2]
    assert run_node(Replay, {"path": str(path), "allow_truncated": True}, triggers=5) == frames[:2]
    node = Replay.create({"path": str(path)})
    asyncio.run(node.process(None))
    asyncio.run(node.process(None))
    with pytest.raises(ValueError, match="truncated"):
        asyncio.run(node.process(None))

    (tmp_path / "x.slrec").write_bytes(b"not a recording")
    with pytest.raises(ValueError, match=r"x.slrec.*not a StreamLab recording"):
        Replay.create({"path": str(tmp_path / "x.slrec")})
    cfg = {"name": "t", "nodes": [{"id": "r", "type": "Replay",
                                   "config": {"path": str(tmp_path / "missing.slrec")}}]}
    with pytest.raises(NodeError, match=r"'r'.*no such recording.*missing.slrec"):
        AsyncPipeline(cfg)


def test_file_layout_starts_with_magic_and_end_of_stream(tmp_path):
    path = tmp_path / "r.slrec"
    run_node(Recorder, {"path": str(path), "flush": True}, [make_frame(x=[1.0])])
    assert path.read_bytes().startswith(MAGIC)
    node = Replay.create({"path": str(path)})
    assert asyncio.run(node.process(None)) == make_frame(x=[1.0])
    with pytest.raises(EndOfStream):
        asyncio.run(node.process(None))
    assert "replayed=1 open=False" in repr(node)
