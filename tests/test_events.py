"""Events on frames: the type, sorting and positions, derivation, serialisation, the ledger."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from streamlab import AsyncPipeline, DataFrame
from streamlab.distributed.backend import pack_frames, unpack_frames
from streamlab.errors import FrameError
from streamlab.events import EVENT_FATES, Event, event_from_dict, sort_events
from streamlab.node import ProcessingNode
from streamlab.registry import register_node, unregister_node
from streamlab.runtime import worker
from tests.conftest import run
from tests.event_nodes import event_nodes  # noqa: F401 - the fixture


def frame(n=4, events=(), **meta):
    return DataFrame(1_000, 7, {"a": np.arange(n, dtype=float), "b": np.ones(n)}, meta,
                     events)


def test_event_fields_are_validated():
    with pytest.raises(FrameError, match="event time"):
        Event(1.5, "x")  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="event label"):
        Event(1, 2)  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="event duration"):
        Event(1, "x", duration=-1)
    with pytest.raises(FrameError, match="event sample"):
        Event(1, "x", sample=-1)
    with pytest.raises(FrameError, match="event value"):
        Event(1, "x", value="high")  # type: ignore[arg-type]


def test_events_are_sorted_by_sample_then_time_and_must_lie_on_the_frame():
    e1, e2, e3 = Event(30, "c", sample=1), Event(10, "a", sample=2), Event(20, "b", sample=1)
    f = frame(events=[e2, e1, e3])
    assert f.events == (e3, e1, e2)
    with pytest.raises(FrameError, match="beyond the frame"):
        frame(events=[Event(0, "x", sample=4)])
    assert DataFrame(events=[Event(0, "marker")]).events == (Event(0, "marker"),)
    with pytest.raises(FrameError, match="expected Event"):
        sort_events(["x"])  # type: ignore[list-item]


def test_derived_frames_keep_events_and_with_events_replaces_them():
    ev = (Event(5, "stim", 1.0, sample=2),)
    f = frame(events=ev)
    assert f.with_channels(a=f.payload["a"] * 2).events == ev
    assert f.with_block(f.block() * 2).events == ev
    assert f.with_payload({"z": np.zeros(4)}).events == ev
    assert f.with_metadata(k="v").events == ev
    assert f.replace(sequence_id=9).events == ev
    assert f.with_events(()).events == ()
    g = f.with_events([Event(9, "late", sample=3), *ev])
    assert [e.label for e in g.events] == ["stim", "late"]
    assert frame().events == () and "events" not in repr(frame()) and "events=1" in repr(f)


def test_equality_includes_events():
    assert frame(events=[Event(1, "x")]) != frame()
    assert frame(events=[Event(1, "x")]) == frame(events=[Event(1, "x")])


@pytest.mark.parametrize("ev", [(), (Event(5, "stim", 2.5, 100, sample=1), Event(6, "r", sample=3))])
def test_events_survive_every_serialisation(ev):
    f = frame(events=ev)
    assert DataFrame.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    assert ("events" in f.to_dict()) == bool(ev)
    assert pickle.loads(pickle.dumps(f)) == f
    assert worker.unpack(worker.pack(f)) == f
    batch = [f, frame(events=ev[:1])]
    assert unpack_frames(pickle.loads(pickle.dumps(pack_frames(batch)))) == batch


def test_event_from_dict_names_the_problem():
    assert event_from_dict({"time": 3, "label": "x", "value": 1}) == Event(3, "x", 1)
    with pytest.raises(FrameError, match="missing field 'label'"):
        event_from_dict({"time": 3})
    with pytest.raises(FrameError, match="event value"):
        event_from_dict({"time": 3, "label": "x", "value": "a"})


# -- the event ledger through a running pipeline ------------------------------------------------
pytestmark = pytest.mark.usefixtures("event_nodes")  # TestMark, TestDropOdd


SINE = {"frequency": 5.0, "sample_rate": 100.0, "samples_per_frame": 10, "channels": ["a"]}


def config(*middle, fusion=True):
    nodes = [{"id": "src", "type": "SineGenerator", "config": SINE},
             {"id": "mark", "type": "TestMark", "config": {"every": 1}}, *middle,
             {"id": "g", "type": "Gain", "config": {"gain": 2}}]
    ids = [n["id"] for n in nodes]
    return {"pipeline_config": {"debug": True, "fusion": fusion}, "nodes": nodes,
            "connections": [{"from": a, "to": b} for a, b in zip(ids, ids[1:])]}


@pytest.mark.parametrize("fusion", [True, False])
def test_events_are_carried_to_the_sink_and_counted(fusion):
    pipe = AsyncPipeline(config(fusion=fusion))
    report = run(pipe.run(triggers=6))
    out = pipe.results["g"]
    assert [e.label for f in out for e in f.events] == [f"m{i}" for i in range(6)]
    mark, g = report.nodes["mark"], report.nodes["g"]
    assert (mark.events_received, mark.events_emitted) == (0, 6)
    assert g.events_received == 6 and g.event_fates["carried"] == 6
    assert set(g.event_fates) == set(EVENT_FATES)


@pytest.mark.parametrize("fusion", [True, False])
def test_events_of_a_skipped_frame_are_dropped_and_counted(fusion):
    drop = {"id": "drop", "type": "TestDropOdd", "error_policy": {"policy": "SkipFrame"}}
    pipe = AsyncPipeline(config(drop, fusion=fusion))
    report = run(pipe.run(triggers=6))
    d = report.nodes["drop"]
    assert d.events_received == 6
    assert (d.event_fates["carried"], d.event_fates["dropped"]) == (3, 3)
    assert report.nodes["g"].events_received == 3


def test_events_lost_in_a_leaky_channel_are_counted():
    cfg = config(fusion=False)
    cfg["connections"][-1].update(capacity=1, overflow="drop_oldest")
    pipe = AsyncPipeline(cfg)
    report = run(pipe.run(triggers=50))
    g = report.nodes["g"]
    assert g.events_received == 50
    assert g.event_fates["dropped"] == report.fates()["g"]["dropped_overflow"]
    assert g.event_fates["carried"] + g.event_fates["dropped"] == 50


class _Keeper(ProcessingNode):
    """Test node that settles its own events (carried) and fails on odd sequence ids."""

    handles_events = True

    def process(self, frame):
        if frame.sequence_id % 2:
            raise ValueError("odd")
        self.context.settle_events("carried", len(frame.events))
        return frame


@pytest.mark.parametrize(("policy", "fates"), [
    ({"policy": "SkipFrame"}, {"carried": 3, "dropped": 3}),
    ({"policy": "UseDefault"}, {"carried": 6, "dropped": 0}),
])
def test_a_node_that_settles_its_events_gets_failed_frames_settled_for_it(policy, fates):
    register_node(_Keeper, name="TestKeeper")
    try:
        keep = {"id": "keep", "type": "TestKeeper", "error_policy": policy}
        report = run(AsyncPipeline(config(keep)).run(triggers=6))  # debug: the ledger balances
    finally:
        unregister_node("TestKeeper")
    k = report.nodes["keep"]
    assert k.events_received == 6
    assert {f: k.event_fates[f] for f in fates} == fates
