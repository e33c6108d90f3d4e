"""The plan is data: fusion, channels and executors computed without starting a task."""

from __future__ import annotations

from streamlab.clock import SYSTEM_CLOCK
from streamlab.config import load_config
from streamlab.runtime.build import build_graph
from streamlab.runtime.plan import TRIGGER, EdgePlan, TaskPlan, make_plan

SINE = {"frequency": 5.0, "sample_rate": 100.0, "samples_per_frame": 10, "channels": ["a"]}


def plan_of(nodes, connections, *, fusion=True, capacity=16, **pc):
    spec = load_config({"pipeline_config": pc, "nodes": nodes, "connections": connections})
    built = build_graph(spec, clock=SYSTEM_CLOCK, pipeline_name="p")
    return make_plan(built, fusion=fusion, capacity=capacity)


def chain(*ids, **extra):
    nodes = [{"id": "src", "type": "SineGenerator", "config": SINE, **extra.get("src", {})}]
    nodes += [{"id": i, "type": "Gain", "config": {"gain": 2}, **extra.get(i, {})} for i in ids]
    names = ["src", *ids]
    return nodes, [{"from": a, "to": b} for a, b in zip(names, names[1:])]


def test_linear_chain_fuses_into_one_inline_task_with_a_trigger_channel():
    plan = plan_of(*chain("a", "b"))
    assert plan.tasks == (TaskPlan(("src", "a", "b"), "inlet", "inline", (TRIGGER,), ()),)
    assert plan.edges == ()
    assert plan.triggers == (EdgePlan(TRIGGER, "src", 16),)
    assert plan.tasks[0].terminal and plan.chains == [["src", "a", "b"]]


def test_without_fusion_every_edge_is_a_channel():
    plan = plan_of(*chain("a", "b"), fusion=False, capacity=4)
    assert [t.nodes for t in plan.tasks] == [("src",), ("a",), ("b",)]
    assert plan.edges == (EdgePlan("src", "a", 4), EdgePlan("a", "b", 4))
    assert plan.task_of("a").inputs == ("src",) and plan.task_of("a").outputs == ("b",)


def test_executors_and_edge_settings_break_chains():
    nodes, conns = chain("a", "b", "c", a={"executor": "thread"})
    conns[2]["capacity"] = 3  # b -> c has its own capacity
    plan = plan_of(nodes, conns)
    assert [(t.nodes, t.executor) for t in plan.tasks] == [
        (("src",), "inline"), (("a",), "thread"), (("b",), "inline"), (("c",), "inline")]
    assert EdgePlan("b", "c", 3) in plan.edges


def test_free_running_source_is_fed_by_itself_and_takes_no_triggers():
    nodes, conns = chain("a", src={"config": {**SINE, "mode": "free", "max_frames": 5}})
    plan = plan_of(nodes, conns)
    assert plan.tasks == (TaskPlan(("src", "a"), "source", "inline", (), ()),)
    assert plan.triggers == ()


def test_dead_letter_edge_is_a_channel_and_its_node_is_not_fused():
    nodes, conns = chain("a", "dl")
    nodes[1]["dead_letter"] = "dl"
    nodes[1]["error_policy"] = {"policy": "SkipFrame"}
    conns = conns[:1]  # a -> dl only as a dead-letter edge
    plan = plan_of(nodes, conns)
    a = plan.task_of("a")
    assert a.nodes == ("a",) and a.dead_letters == ((0, "dl"),) and a.outputs == ()
    assert EdgePlan("a", "dl", 16) in plan.edges
