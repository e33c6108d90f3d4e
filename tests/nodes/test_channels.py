"""Channel selection, arithmetic and Merge (fan-in) through the public API and a pipeline."""

from __future__ import annotations

import asyncio
import doctest

import numpy as np
import pytest
from pydantic import ValidationError

import streamlab.nodes.channels as channels
from streamlab.errors import NodeError
from streamlab.frame import DataFrame
from streamlab.node import NodeContext
from streamlab.nodes.channels import (
    ChannelMath,
    DropChannels,
    Merge,
    MergeStatistics,
    RenameChannels,
    ReorderChannels,
    SelectChannels,
)
from streamlab.runtime.async_pipeline import AsyncPipeline
from streamlab.testing import make_frame, run_node

NAMES = ("Fz", "Cz", "Pz", "A1")
BLOCK = np.arange(12.0).reshape(4, 3) ** 1.5


def block_frame(**kw):
    return DataFrame.from_block(NAMES, BLOCK, timestamp=5, sequence_id=2,
                                metadata={"sample_rate": "10.0"}, **kw)


def dict_frame():
    return DataFrame(5, 2, {n: BLOCK[i] for i, n in enumerate(NAMES)})


def test_doctests():
    assert doctest.testmod(channels).failed == 0


@pytest.mark.parametrize("make", [block_frame, dict_frame])
def test_select_drop_reorder_rename(make):
    f = make()
    sel = run_node(SelectChannels, {"channels": ["Pz", "?z"]}, [f])[0]
    assert sel.channels == ("Pz", "Fz", "Cz")
    np.testing.assert_array_equal(sel.block(), BLOCK[[2, 0, 1]])
    assert (sel.timestamp, sel.sequence_id, dict(sel.metadata)) == (5, 2, dict(f.metadata))
    drop = run_node(DropChannels, {"channels": ["A*"]}, [f])[0]
    assert drop.channels == NAMES[:3]
    np.testing.assert_array_equal(drop.block(), BLOCK[:3])
    order = run_node(ReorderChannels, {"order": ["A1", "Pz"]}, [f])[0]
    assert order.channels == ("A1", "Pz", "Fz", "Cz")
    np.testing.assert_array_equal(order.payload["Fz"], BLOCK[0])
    only = run_node(ReorderChannels, {"order": ["Cz"], "rest": "drop"}, [f])[0]
    assert only.channels == ("Cz",)
    ren = run_node(RenameChannels, {"mapping": {"A1": "ref"}, "suffix": "_uV"}, [f])[0]
    assert ren.channels == ("Fz_uV", "Cz_uV", "Pz_uV", "ref_uV")
    np.testing.assert_array_equal(ren.payload["ref_uV"], BLOCK[3])


def test_selection_errors_and_ignore():
    f = block_frame()
    with pytest.raises(NodeError, match="no channel matches 'O1'"):
        run_node(SelectChannels, {"channels": ["O1"]}, [f])
    assert run_node(SelectChannels, {"channels": ["O1", "Fz"], "missing": "ignore"},
                    [f])[0].channels == ("Fz",)
    with pytest.raises(NodeError, match="not in 'order'"):
        run_node(ReorderChannels, {"order": ["Fz"], "rest": "error"}, [f])
    with pytest.raises(NodeError, match="duplicate names"):
        run_node(RenameChannels, {"mapping": {"Fz": "Cz"}}, [f])


def test_layout_change_is_replanned():
    out = run_node(SelectChannels, {"channels": ["b"]},
                   [make_frame(a=[1.0], b=[2.0]), make_frame(c=[0.0], b=[3.0])])
    assert [f.payload["b"].tolist() for f in out] == [[2.0], [3.0]]


def test_channel_math_reference_car_difference_mean():
    f = block_frame()
    ref = run_node(ChannelMath, {"operation": "reference", "reference": "A1"}, [f])[0]
    np.testing.assert_array_equal(ref.block()[:3], BLOCK[:3] - BLOCK[3])
    np.testing.assert_array_equal(ref.payload["A1"], BLOCK[3])
    car = run_node(ChannelMath, {"operation": "common_average", "channels": ["?z"]}, [f])[0]
    np.testing.assert_allclose(car.block()[:3], BLOCK[:3] - BLOCK[:3].mean(axis=0))
    np.testing.assert_array_equal(car.payload["A1"], BLOCK[3])
    diff = run_node(ChannelMath, {"operation": "difference", "pairs": [["Fz", "Pz"]],
                                  "keep_inputs": False}, [f])[0]
    assert diff.channels == ("Fz-Pz",)
    np.testing.assert_array_equal(diff.payload["Fz-Pz"], BLOCK[0] - BLOCK[2])
    mean = run_node(ChannelMath, {"operation": "mean", "output": "avg"}, [f])[0]
    assert mean.channels == NAMES + ("avg",)
    np.testing.assert_allclose(mean.payload["avg"], BLOCK.mean(axis=0))


def test_channel_math_nan_stays_in_its_channel():
    f = make_frame(a=[np.nan, 1.0], b=[1.0, 2.0], r=[0.5, 0.5])
    out = run_node(ChannelMath, {"operation": "reference", "reference": "r"}, [f])[0]
    assert np.isnan(out.payload["a"][0]) and out.payload["b"].tolist() == [0.5, 1.5]


def test_channel_math_config_errors():
    with pytest.raises(ValidationError, match="needs 'reference'"):
        ChannelMath.Config(operation="reference")
    with pytest.raises(ValidationError, match="needs 'pairs'"):
        ChannelMath.Config(operation="difference")


def merge_node(**cfg):
    return Merge.create(cfg, NodeContext(node_id="m", inputs=("x", "y")))


def feed(node, src, frame):
    node.context.current_input = src
    return node.process(frame)


def test_merge_aligns_by_sequence_id_and_drops_unmatched():
    m = merge_node()
    assert feed(m, "x", make_frame(a=[1.0], sequence_id=0)) is None
    assert feed(m, "x", make_frame(a=[2.0], sequence_id=1)) is None
    # y lost seq 0: its seq 1 matches x's seq 1; x's seq 0 can never match and is dropped
    out = feed(m, "y", make_frame(b=[20.0], sequence_id=1, timestamp=7))
    assert out.channels == ("a", "b") and out.block().tolist() == [[2.0], [20.0]]
    assert out.sequence_id == 1
    assert m.statistics() == MergeStatistics(merged=1, unmatched=1, overflowed=0, pending=0)
    assert "unmatched=1" in repr(m)


def test_merge_by_timestamp_within_tolerance_and_metadata_precedence():
    m = merge_node(align="timestamp", tolerance_us=100, prefix=True, separator=":")
    feed(m, "x", make_frame(a=[1.0], timestamp=1000, metadata={"k": "x", "only_x": "1"}))
    out = feed(m, "y", make_frame(a=[2.0], timestamp=1080, metadata={"k": "y"}))
    assert out.channels == ("x:a", "y:a") and out.timestamp == 1000
    assert dict(out.metadata) == {"k": "x", "only_x": "1"}
    feed(m, "x", make_frame(a=[1.0], timestamp=2000))
    assert feed(m, "y", make_frame(a=[1.0], timestamp=2200)) is None  # too far apart: x dropped
    assert m.statistics().unmatched == 1 and m.statistics().pending == 1


def test_merge_buffer_is_bounded_and_leftovers_counted_on_stop():
    m = merge_node(max_pending=4)
    for i in range(10):
        assert feed(m, "x", make_frame(a=[float(i)], sequence_id=i)) is None
    s = m.statistics()
    assert (s.pending, s.overflowed) == (4, 6)
    m.on_stop()
    assert m.statistics() == MergeStatistics(merged=0, unmatched=4, overflowed=6, pending=0)


def test_merge_errors():
    with pytest.raises(NodeError, match="duplicate channel names"):
        m = merge_node()
        feed(m, "x", make_frame(a=[1.0]))
        feed(m, "y", make_frame(a=[1.0]))
    with pytest.raises(NodeError, match="unknown input 'z'"):
        feed(merge_node(), "z", make_frame(a=[1.0]))
    with pytest.raises(NodeError, match="needs its inputs"):
        run_node(Merge, {}, [make_frame(a=[1.0])])


def test_merge_fan_in_in_a_pipeline():
    gen = {"sample_rate": 100.0, "samples_per_frame": 10}
    spec = {"name": "fan-in", "nodes": [
        {"id": "left", "type": "SineGenerator", "config": dict(gen, frequency=5.0, channels=["s"])},
        {"id": "right", "type": "ConstantGenerator", "config": dict(gen, value=2.0, channels=["c"])},
        {"id": "merge", "type": "Merge", "config": {"prefix": True}}],
        "connections": [{"from": "left", "to": "merge"}, {"from": "right", "to": "merge"}]}
    pipe = AsyncPipeline(spec)
    asyncio.run(pipe.run(triggers=6))
    frames = pipe.results["merge"]
    assert [f.sequence_id for f in frames] == list(range(6))
    assert all(f.channels == ("left.s", "right.c") for f in frames)
    assert all(f.payload.is_block for f in frames)
    c = np.concatenate([f.payload["right.c"] for f in frames])
    s = np.concatenate([f.payload["left.s"] for f in frames])
    assert (c == 2.0).all()
    np.testing.assert_allclose(s, np.sin(2 * np.pi * 5 * np.arange(60) / 100), atol=1e-12)
