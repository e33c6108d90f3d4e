"""DataFrame and Payload edge cases that mutation testing showed the other tests let through.

Each test pins a behaviour a small realistic bug would break (`make mutate MODULES=frame`;
docs/testing.md): read-only stacked blocks, defaults, what derivation keeps, the exact errors.
"""

import numpy as np
import pytest

from streamlab import DataFrame, FrameError, Payload


def test_a_block_stacked_from_separate_channels_is_read_only():
    f = DataFrame(0, 0, {"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert not f.payload.is_block
    block = f.block()
    assert block.shape == (2, 2) and block.dtype == np.float64
    assert not block.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        block[0, 0] = 9.0
    assert f.payload["a"].tolist() == [1.0, 2.0]


def test_the_empty_payload():
    f = DataFrame()
    assert (f.timestamp, f.sequence_id, f.channels, f.n_samples) == (0, 0, (), 0)
    assert len(f.payload) == 0 and dict(f.metadata) == {}
    block = f.block()
    assert block.shape == (0, 0) and not block.flags.writeable


def test_channels_of_different_lengths_name_their_lengths():
    f = DataFrame(0, 0, {"a": [1.0], "b": [1.0, 2.0]})
    with pytest.raises(FrameError, match=r"cannot form a block: \{'a': 1, 'b': 2\}"):
        f.block()


def test_numpy_integers_are_accepted_as_plain_ints():
    f = DataFrame(np.int64(5), np.int32(7))
    assert (f.timestamp, f.sequence_id) == (5, 7)
    assert type(f.timestamp) is int and type(f.sequence_id) is int


@pytest.mark.parametrize("field, kwargs, got", [
    ("timestamp", {"timestamp": True}, "bool"),
    ("sequence_id", {"sequence_id": True}, "bool"),
    ("sequence_id", {"sequence_id": 1.5}, "float"),
])
def test_non_int_fields_are_errors_naming_the_type(field, kwargs, got):
    with pytest.raises(FrameError, match=f"^{field}: expected int.*, got {got}$"):
        DataFrame(**kwargs)


@pytest.mark.parametrize("channels, message", [
    ({"x": "abc"}, "channel 'x': expected a sequence of numbers, got str"),
    ({1: [1.0]}, "channel names must be str, got int 1"),
])
def test_channel_errors_name_the_type(channels, message):
    with pytest.raises(FrameError, match=f"^{message}$"):
        DataFrame(0, 0, channels)


def test_metadata_errors_name_both_types():
    with pytest.raises(FrameError, match=r"got str 'a' -> int 1$"):
        DataFrame(0, 0, {}, {"a": 1})  # type: ignore[dict-item]


def test_a_payload_from_pairs_and_a_payload_subclass():
    p = Payload([("x", [1.0, 2.0])])
    assert p.names == ("x",) and p["x"].tolist() == [1.0, 2.0]

    class Tagged(Payload):
        __slots__ = ()

    t = Tagged({"y": [3.0]})
    f = DataFrame(0, 0, t)
    assert f.payload is t


def test_frames_differing_in_any_field_are_not_equal():
    f = DataFrame(1, 2, {"x": [1.0]}, {"k": "v"})
    assert f == DataFrame(1, 2, {"x": [1.0]}, {"k": "v"})
    assert f != DataFrame(9, 2, {"x": [1.0]}, {"k": "v"})
    assert f != DataFrame(1, 9, {"x": [1.0]}, {"k": "v"})
    assert f != DataFrame(1, 2, {"y": [1.0]}, {"k": "v"})
    assert f != DataFrame(1, 2, {"x": [1.0]}, {"k": "w"})
    assert f != DataFrame(1, 2, {"x": [2.0]}, {"k": "v"})


def test_from_dict_defaults_and_round_trip():
    assert DataFrame.from_dict({}) == DataFrame()
    f = DataFrame(3, 4, {"x": [1.0]}, {"k": "v"})
    assert DataFrame.from_dict(f.to_dict()) == f


def test_derivations_keep_timestamp_sequence_and_metadata():
    f = DataFrame(11, 22, {"x": [1.0, 2.0]}, {"k": "v"})
    derived = {
        "with_channels(mapping)": f.with_channels({"y": [5.0, 6.0]}),
        "with_channels(kw)": f.with_channels(y=[5.0, 6.0]),
        "with_payload(mapping)": f.with_payload({"y": [5.0, 6.0]}),
        "with_payload(Payload)": f.with_payload(Payload({"y": [5.0, 6.0]})),
        "with_block(default names)": f.with_block(np.array([[7.0, 8.0]])),
        "with_block(names)": f.with_block(np.array([[7.0, 8.0]]), names=["z"]),
        "with_metadata(mapping)": f.with_metadata({"m": "n"}),
        "with_metadata(kw)": f.with_metadata(m="n"),
        "without_channels": f.with_channels(y=[0.0, 0.0]).without_channels("y"),
        "replace(nothing)": f.replace(),
    }
    for how, g in derived.items():
        assert (g.timestamp, g.sequence_id) == (11, 22), how
        assert g.metadata["k"] == "v", how
    assert derived["with_channels(mapping)"].payload["y"].tolist() == [5.0, 6.0]
    assert derived["with_payload(mapping)"].channels == ("y",)
    assert derived["with_payload(Payload)"].channels == ("y",)
    assert derived["with_block(default names)"].payload["x"].tolist() == [7.0, 8.0]
    assert derived["with_block(names)"].channels == ("z",)
    assert dict(derived["with_metadata(mapping)"].metadata) == {"k": "v", "m": "n"}
    assert dict(derived["with_metadata(kw)"].metadata) == {"k": "v", "m": "n"}
    assert derived["without_channels"] == f


def test_replace_replaces_only_what_is_given():
    f = DataFrame(1, 2, {"x": [1.0]}, {"k": "v"})
    assert f.replace(timestamp=5) == DataFrame(5, 2, {"x": [1.0]}, {"k": "v"})
    assert f.replace(sequence_id=6) == DataFrame(1, 6, {"x": [1.0]}, {"k": "v"})
    assert f.replace(payload={"y": [2.0]}) == DataFrame(1, 2, {"y": [2.0]}, {"k": "v"})
    assert f.replace(metadata={"a": "b"}) == DataFrame(1, 2, {"x": [1.0]}, {"a": "b"})


def test_derived_dict_payloads_are_not_blocks():
    f = DataFrame.from_block(("a", "b"), np.ones((2, 3)))
    g = f.without_channels("b")
    assert not g.payload.is_block and g.block().shape == (1, 3)
    h = f.with_channels(c=[0.0, 0.0, 0.0])
    assert not h.payload.is_block and h.block().shape == (3, 3)


def test_from_block_defaults_and_metadata():
    f = DataFrame.from_block(["a"], np.zeros((1, 2)))
    assert (f.timestamp, f.sequence_id, f.channels) == (0, 0, ("a",))
    g = DataFrame.from_block(("a",), np.zeros((1, 2)), timestamp=3, sequence_id=4,
                             metadata={"k": "v"})
    assert (g.timestamp, g.sequence_id, dict(g.metadata)) == (3, 4, {"k": "v"})


@pytest.mark.parametrize("block, message", [
    (np.zeros(1), r"^block: expected a 2-D array \(channels x samples\), got \(1,\)$"),
    (np.zeros((1, 1, 1)), r"^block: expected a 2-D array \(channels x samples\), got \(1, 1, 1\)$"),
    ([[1.0]], r"^block: expected a 2-D array \(channels x samples\), got list$"),
    (np.zeros((1, 1), dtype=np.int64), r"^block: expected float64 samples, got dtype int64$"),
])
def test_from_block_rejects_what_is_not_a_float_2d_array(block, message):
    with pytest.raises(FrameError, match=message):
        Payload.from_block(("a",), block)


def test_from_block_accepts_a_2d_ndarray_subclass_and_converts_float32():
    class Sub(np.ndarray):
        pass

    p = Payload.from_block(("a",), np.zeros((1, 2)).view(Sub))
    assert p["a"].tolist() == [0.0, 0.0]
    q = Payload.from_block(("a", "b"), np.ones((2, 2), dtype=np.float32))
    assert q.block().dtype == np.float64 and q["b"].tolist() == [1.0, 1.0]


def test_from_block_names_must_be_str():
    with pytest.raises(FrameError, match=r"^channel names must be str, got int 1$"):
        Payload.from_block((1,), np.zeros((1, 1)))  # type: ignore[arg-type]


def test_payload_iteration_size_and_repr():
    p = Payload({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert list(p) == ["a", "b"] and p.nbytes() == 32
    assert repr(p) == "<Payload a[2], b[2]>"
    q = Payload.from_block([f"c{i}" for i in range(9)], np.zeros((9, 1)))
    assert q.nbytes() == 72 and list(q)[-1] == "c8"
    assert repr(q) == ("<Payload block c0[1], c1[1], c2[1], c3[1], c4[1], c5[1], c6[1], c7[1], "
                       "...>")
