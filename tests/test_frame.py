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
