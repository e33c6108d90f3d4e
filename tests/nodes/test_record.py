"""Recorder and Replay (streamlab.nodes.record): lossless round trips, identical replays."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlab.errors import EndOfStream, NodeError
from streamlab.frame import DataFrame
from streamlab.nodes.record import MAGIC, Recorder, RecordingError, Replay, iter_recording
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


# -- corrupt and hostile recordings -------------------------------------------------------------
def _two_records(path) -> tuple[bytes, int, dict, bytes]:
    """Record two frames; return the bytes up to record 1, its offset, header and data."""
    import json
    import struct

    frames = [make_frame(x=[1.0, 2.0], sequence_id=0), make_frame(x=[3.0, 4.0], sequence_id=1)]
    run_node(Recorder, {"path": str(path)}, frames)
    raw = path.read_bytes()
    off = len(MAGIC) + 4 + struct.unpack("<I", raw[len(MAGIC):len(MAGIC) + 4])[0]
    h, d = struct.unpack("<IQ", raw[off:off + 12])
    off += 12 + h + d  # record 1 starts here
    h, d = struct.unpack("<IQ", raw[off:off + 12])
    head = json.loads(raw[off + 12:off + 12 + h])
    return raw[:off], off, head, raw[off + 12 + h:off + 12 + h + d]


def _record(head, data: bytes, *, d: int | None = None, h: int | None = None) -> bytes:
    import json
    import struct

    hb = head if isinstance(head, bytes) else json.dumps(head).encode()
    return struct.pack("<IQ", len(hb) if h is None else h,
                       len(data) if d is None else d) + hb + data


def _with(head: dict, **changes) -> dict:
    out = {k: v for k, v in head.items() if k not in changes or changes[k] is not _DROP}
    out.update({k: v for k, v in changes.items() if v is not _DROP})
    return out


_DROP = object()

# (id, how record 1 is rewritten from (head, data), expected message)
CORRUPT = [
    ("prefix-cut", lambda hd, dt: _record(hd, dt)[:5], r"truncated record length prefix"),
    ("header-cut", lambda hd, dt: _record(hd, dt)[:20], r"truncated record header"),
    ("data-cut", lambda hd, dt: _record(hd, dt)[:-3], r"truncated record data"),
    ("header-len-4GiB", lambda hd, dt: _record(hd, dt, h=2**32 - 1),
     r"record header length 4294967295 exceeds the limit"),
    ("header-len-past-end", lambda hd, dt: _record(hd, dt, h=60_000_000),
     r"truncated record header"),
    ("data-len-2^62", lambda hd, dt: _record(hd, dt, d=2**62),
     r"add up to 2 samples \(16 bytes\).*declares 4611686018427387904 bytes"),
    ("data-len-2^64-1", lambda hd, dt: _record(hd, dt, d=2**64 - 1), r"declares 1844674407"),
    ("data-len-odd", lambda hd, dt: _record(hd, dt, d=13), r"declares 13 bytes"),
    ("bad-json", lambda hd, dt: _record(b'{"t": 0, "s"', dt), r"not valid JSON"),
    ("not-utf8", lambda hd, dt: _record(b'{"t": "\xff"}', dt), r"not valid JSON"),
    ("too-deep", lambda hd, dt: _record(b"[" * 200_000, dt), r"nested too deeply"),
    ("huge-int", lambda hd, dt: _record(b'{"t": 1' + b"0" * 5000 + b"}", dt), r"not valid JSON"),
    ("not-object", lambda hd, dt: _record(b"[1, 2]", dt), r"expected a JSON object, got list"),
    ("no-c", lambda hd, dt: _record(_with(hd, c=_DROP), dt), r"missing field\(s\) \['c'\]"),
    ("t-str", lambda hd, dt: _record(_with(hd, t="abc"), dt), r'timestamp "t".*got \'abc\''),
    ("t-bool", lambda hd, dt: _record(_with(hd, t=True), dt), r'timestamp "t" must be an int'),
    ("s-float", lambda hd, dt: _record(_with(hd, s=1.5), dt), r'sequence id "s"'),
    ("m-not-str", lambda hd, dt: _record(_with(hd, m={"a": 1}), dt), r'metadata "m"'),
    ("c-not-str", lambda hd, dt: _record(_with(hd, c=[1]), dt), r'channel names "c"'),
    ("c-duplicate", lambda hd, dt: _record(_with(hd, c=["x", "x"], n=[1, 1]), dt),
     r"duplicate channel names"),
    ("n-negative", lambda hd, dt: _record(_with(hd, n=[-1]), dt), r'lengths "n"'),
    ("n-inconsistent", lambda hd, dt: _record(_with(hd, c=["x", "y"], n=[1000, 5]), dt),
     r"lengths \[1000, 5\] add up to 1005 samples \(8040 bytes\).*declares 16 bytes"),
    ("n-c-count", lambda hd, dt: _record(_with(hd, n=[1, 1]), dt), r"1 channel names but 2"),
    ("i-not-str", lambda hd, dt: _record(_with(hd, i=5), dt), r'input id "i"'),
]


@pytest.mark.parametrize("rewrite,message", [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_corrupt_record_is_a_clear_error_naming_file_record_and_offset(tmp_path, rewrite,
                                                                       message):
    path = tmp_path / "bad.slrec"
    before, offset, head, data = _two_records(path)
    path.write_bytes(before + rewrite(head, data))
    where = rf"bad\.slrec'?: record 1 \(at byte {offset}\): .*"
    with pytest.raises(RecordingError, match=where + message):
        list(iter_recording(path))
    node = Replay.create({"path": str(path)})  # the node emits record 0, then fails on record 1
    assert asyncio.run(node.process(None)) == make_frame(x=[1.0, 2.0], sequence_id=0)
    with pytest.raises(RecordingError, match=where + message):
        asyncio.run(node.process(None))
    assert "open=False" in repr(node)  # the file is closed at the error


def test_corrupt_recording_ends_the_cli_with_one_error_line(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "bad.slrec"
    before, offset, head, data = _two_records(path)
    path.write_bytes(before + _record(head, data, d=2**62))
    cfg = {"name": "t", "nodes": [{"id": "r", "type": "Replay", "config": {"path": "bad.slrec"}},
                                  {"id": "o", "type": "Passthrough", "config": {}}],
           "connections": [{"from": "r", "to": "o"}]}
    (tmp_path / "p.json").write_text(json.dumps(cfg))
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.run([sys.executable, "-m", "streamlab", "run", "p.json", "-q"],
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(src)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert f"bad.slrec': record 1 (at byte {offset})" in lines[0]
    assert "declares 4611686018427387904 bytes" in lines[0]


@pytest.mark.parametrize("kind", ["directory", "fifo", "loop", "dangling"])
def test_replay_says_what_a_non_file_path_is(tmp_path, kind):
    import os

    path = tmp_path / "r.slrec"
    if kind == "directory":
        path.mkdir()
        message = "is a directory"
    elif kind == "fifo":
        os.mkfifo(path)  # opening it would block: the node must not open it
        message = r"is a FIFO \(named pipe\), not a regular file"
    elif kind == "loop":
        os.symlink(tmp_path / "other.slrec", path)
        os.symlink(path, tmp_path / "other.slrec")
        message = "is a symlink loop"
    else:
        os.symlink(tmp_path / "gone.slrec", path)
        message = "is a symlink to .*gone.slrec.*which does not exist"
    with pytest.raises(OSError if kind != "fifo" else ValueError, match=rf"r\.slrec.*{message}"):
        Replay.create({"path": str(path)})


class _StuckClock(VirtualClock):
    """A clock whose sleeps never end by themselves (a long gap in a recording)."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.Event().wait()


@pytest.mark.parametrize("node_type", ["Replay", "XdfSource"])
def test_a_stop_ends_a_realtime_replay_waiting_for_a_long_gap(tmp_path, node_type):
    """A graceful stop must not wait for the next frame's time (it used to: one hour here)."""
    from streamlab.node import NodeContext

    frames = [make_frame(x=[float(i)], sequence_id=i, timestamp=i * 3_600_000_000)
              for i in range(2)]
    if node_type == "Replay":
        path = str(tmp_path / "r.slrec")
        run_node(Recorder, {"path": path}, frames)
        cfg = {"path": path, "realtime": True}
    else:
        path = str(tmp_path / "r.xdf")
        run_node(node_types()["XdfSink"], {"path": path}, frames)
        cfg = {"path": path, "realtime": True, "frame_size": "chunks",
               "dejitter_timestamps": False}
    clock, stop = _StuckClock(), asyncio.Event()

    async def go():
        node = node_types()[node_type].create(cfg, NodeContext(node_id="r", clock=clock,
                                                               stop_requested=stop))
        first = await node.process(None)
        waiting = asyncio.ensure_future(node.process(None))
        await asyncio.sleep(0.01)
        assert not waiting.done() and clock.sleeps == [3600.0]
        stop.set()
        with pytest.raises(EndOfStream):
            await asyncio.wait_for(waiting, 30)
        return first

    assert asyncio.run(go()).payload["x"].tolist() == [0.0]
