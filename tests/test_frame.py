import numpy as np
import pytest

from streamlab import DataFrame, FrameError, Payload


def test_fields_and_readonly_arrays():
    src = np.array([1.0, 2.0, 3.0])
    f = DataFrame(10, 3, {"x": src}, {"k": "v"})
    assert (f.timestamp, f.sequence_id, f.channels, f.n_samples) == (10, 3, ("x",), 3)
    assert f.metadata["k"] == "v"
    with pytest.raises(ValueError, match="read-only"):
        f.payload["x"][0] = 5.0
    # the caller's own array stays writeable; the frame holds a read-only view (no copy)
    assert src.flags.writeable and np.shares_memory(src, f.payload["x"])
    with pytest.raises(TypeError):
        f.metadata["k"] = "w"  # type: ignore[index]


@pytest.mark.parametrize(
    "channels, match",
    [
        ({"x": np.array([1, 2])}, "float64 samples, got dtype int64"),
        ({"x": np.zeros((2, 2))}, "1-D array, got shape"),
        ({"x": np.array([1 + 2j])}, "dtype complex128"),
        ({"x": "abc"}, "sequence of numbers"),
        ({1: [1.0]}, "channel names must be str"),
    ],
)
def test_bad_channels_are_clear_errors(channels, match):
    with pytest.raises(FrameError, match=match):
        DataFrame(0, 0, channels)


def test_bad_fields():
    with pytest.raises(FrameError, match="timestamp"):
        DataFrame(1.5, 0)  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="metadata must map str to str"):
        DataFrame(0, 0, {}, {"a": 1})  # type: ignore[dict-item]


def test_nan_is_data():
    f = DataFrame(0, 0, {"x": [np.nan, np.inf, 1.0]})
    assert np.isnan(f.payload["x"][0])
    assert f == DataFrame(0, 0, {"x": [np.nan, np.inf, 1.0]})


def test_float32_and_lists_convert():
    f = DataFrame(0, 0, {"a": np.array([1.5], dtype=np.float32), "b": [1, 2]})
    assert f.payload["a"].dtype == np.float64 and f.payload["b"].tolist() == [1.0, 2.0]


def test_derivation_shares_unchanged_channels():
    f = DataFrame(5, 1, {"x": [1.0, 2.0], "y": [3.0, 4.0]}, {"m": "1"})
    g = f.with_channels(y=[0.0, 0.0])
    assert g.payload["x"] is f.payload["x"]
    assert g.payload["y"].tolist() == [0.0, 0.0] and f.payload["y"].tolist() == [3.0, 4.0]
    assert (g.timestamp, g.sequence_id, dict(g.metadata)) == (5, 1, {"m": "1"})
    h = g.with_metadata(extra="yes")
    assert h.payload is g.payload and h.metadata["extra"] == "yes" and "extra" not in g.metadata
    assert f.without_channels("x").channels == ("y",)
    with pytest.raises(FrameError, match="no such channels"):
        f.without_channels("nope")
    r = f.replace(sequence_id=9)
    assert r.sequence_id == 9 and r.payload is f.payload


def test_block_payload_rows_are_views():
    block = np.arange(6, dtype=float).reshape(2, 3)
    f = DataFrame.from_block(["a", "b"], block, timestamp=1, sequence_id=2)
    assert f.payload.is_block and f.block() is f.payload.block()
    assert f.payload["b"].tolist() == [3.0, 4.0, 5.0]
    assert np.shares_memory(f.payload["a"], block)
    with pytest.raises(ValueError, match="read-only"):
        f.payload["a"][0] = 1
    g = f.with_block(f.block() * 2)
    assert g.channels == ("a", "b") and g.payload["b"].tolist() == [6.0, 8.0, 10.0]
    assert dict(g.payload.to_dict()).keys() == {"a", "b"}


def test_block_errors_and_stacking():
    with pytest.raises(FrameError, match="2 rows for 3 channel names"):
        Payload.from_block(["a", "b", "c"], np.zeros((2, 2)))
    with pytest.raises(FrameError, match="duplicate channel names"):
        Payload.from_block(["a", "a"], np.zeros((2, 2)))
    f = DataFrame(0, 0, {"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert f.block().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(FrameError, match="differ in length"):
        DataFrame(0, 0, {"a": [1.0], "b": [1.0, 2.0]}).block()


def test_dict_round_trip_and_equality():
    f = DataFrame(7, 8, {"x": [0.5, -1.0]}, {"sample_rate": "100.0"})
    d = f.to_dict()
    assert d == {"timestamp": 7, "sequence_id": 8, "payload": {"x": [0.5, -1.0]},
                 "metadata": {"sample_rate": "100.0"}}
    assert DataFrame.from_dict(d) == f
    assert f != f.with_channels(x=[0.5, -1.5])
    assert "seq=8" in repr(f)


def test_with_block_takes_the_block_without_copying():
    f = DataFrame.from_block(["a", "b"], np.zeros((2, 3)))
    fresh = f.block() * 2
    g = f.with_block(fresh)
    assert g.block() is fresh and not fresh.flags.writeable
    with pytest.raises(FrameError, match="2 rows for 3 channel names"):
        f.with_block(np.zeros((2, 3)), names=["x", "y", "z"])
    with pytest.raises(FrameError, match="duplicate channel names"):
        f.with_block(np.zeros((2, 3)), names=["x", "x"])


def test_frames_pickle_exactly():
    import pickle

    block = DataFrame.from_block(["a", "b"], np.array([[1.0, np.nan], [-0.0, 2.0]]),
                                 timestamp=5, sequence_id=6, metadata={"k": "v"})
    plain = DataFrame(1, 2, {"x": [1.0], "y": [2.0, 3.0]})
    for f in (block, plain):
        g = pickle.loads(pickle.dumps(f))
        assert g == f and g.payload.is_block == f.payload.is_block
        with pytest.raises(ValueError, match="read-only"):
            g.payload[g.channels[0]][0] = 0.0


# -- native mapping methods and hand-over of derived arrays -------------------------------
def _layouts():
    block = np.arange(6, dtype=float).reshape(2, 3)
    return [DataFrame(0, 0, {"a": block[0].copy(), "b": block[1].copy()}),
            DataFrame.from_block(["a", "b"], block)]


@pytest.mark.parametrize("f", _layouts(), ids=["per-channel", "block"])
def test_payload_mapping_methods_in_both_layouts(f):
    p = f.payload
    assert list(p) == list(p.keys()) == ["a", "b"] and len(p) == 2
    assert [k for k, _ in p.items()] == ["a", "b"]
    assert [v.tolist() for v in p.values()] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert "a" in p and "z" not in p and p.get("z") is None and p.get("z", 1) == 1
    assert p.get("b") is p["b"] and dict(p.items())["a"] is p["a"]  # the same array each time
    assert p.to_dict() == dict(p.items()) and p.to_dict() is not p.to_dict()
    for v in p.values():  # every channel, however reached, is read-only
        with pytest.raises(ValueError, match="read-only"):
            v[0] = 9.0
    with pytest.raises(KeyError):
        p["z"]
    with pytest.raises(TypeError):  # the views give no way to change the payload
        p.items().mapping["a"] = np.zeros(3)  # type: ignore[index]
    if p.is_block:
        assert all(np.shares_memory(v, p.block()) for v in p.values())


@pytest.mark.parametrize("f", _layouts(), ids=["per-channel", "block"])
def test_array_made_by_the_node_becomes_read_only_in_place(f):
    fresh = f.payload["a"] * 2                     # what a node makes: owns its data
    g = f.with_channels(**{k: v * 2 for k, v in f.payload.items() if k != "a"}, a=fresh)
    assert g.payload["a"] is fresh                 # taken as it is: no view, no copy
    assert not fresh.flags.writeable               # handed over: the node cannot write it now
    with pytest.raises(ValueError, match="read-only"):
        fresh[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        g.payload["a"][0] = 1.0
    assert g.payload["b"].tolist() == [6.0, 8.0, 10.0] and not g.payload.is_block
    assert f.payload["a"].tolist() == [0.0, 1.0, 2.0]  # the input frame is unchanged
    made = {k: v + 1 for k, v in f.payload.items()}     # with_payload hands over the same way
    h = f.with_payload(made)
    assert all(h.payload[k] is made[k] and not made[k].flags.writeable for k in made)


def test_a_view_of_the_nodes_own_writeable_buffer_is_wrapped_not_flipped():
    # A node that keeps a buffer (say a ring buffer) and emits a view of it: the frame gets a
    # read-only view; the node's buffer and its own view stay writeable (it may write them
    # again); nothing is copied, so a later write into the buffer shows in the frame.
    f = DataFrame(0, 0, {"a": [0.0, 0.0]})
    buf = np.arange(4, dtype=float)
    mine = buf[:2]
    g = f.with_channels(a=mine)
    out = g.payload["a"]
    assert out is not mine and np.shares_memory(out, buf)
    with pytest.raises(ValueError, match="read-only"):
        out[0] = 7.0
    assert buf.flags.writeable and mine.flags.writeable
    buf[0] = 42.0   # documented: the buffer is the node's; emit a copy to decouple
    assert out[0] == 42.0


def test_a_received_array_stays_read_only_when_passed_on():
    f = DataFrame.from_block(["a", "b"], np.ones((2, 3)))
    got = f.payload["a"]
    g = f.with_channels(a=got, c=got)
    assert g.payload["a"] is got and g.payload["c"] is got
    with pytest.raises(ValueError, match="read-only"):
        g.payload["c"][0] = 0.0
    h = g.with_payload({"x": got})
    with pytest.raises(ValueError, match="read-only"):
        h.payload["x"][0] = 0.0


def test_hand_over_still_checks_and_converts():
    f = DataFrame(0, 0, {"a": [1.0]})
    with pytest.raises(FrameError, match="float64 samples, got dtype int64"):
        f.with_channels(a=np.array([1, 2]))
    with pytest.raises(FrameError, match="1-D array, got shape"):
        f.with_channels(a=np.zeros((2, 2)))
    with pytest.raises(FrameError, match="channel names must be str"):
        f.with_channels({1: np.zeros(2)})  # type: ignore[dict-item]
    with pytest.raises(FrameError, match="channel names must be str"):
        f.with_payload({1: np.zeros(2)})  # type: ignore[dict-item]
    g = f.with_channels(b=np.array([1.5], dtype=np.float32), c=[2, 3])
    assert g.payload["b"].dtype == np.float64 and g.payload["c"].tolist() == [2.0, 3.0]
    assert g.channels == ("a", "b", "c")
    assert all(not v.flags.writeable for v in g.payload.values())
