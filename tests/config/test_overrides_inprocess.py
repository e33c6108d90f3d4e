"""``--set`` overrides in process (apply_overrides, parse_value): exact documents and messages.

``tests/cli/test_set_option.py`` checks the same through ``python -m streamlab``; these pin
each path rule and message where mutation testing can see them.
"""

from __future__ import annotations

import copy

import pytest

from streamlab.config import load_config
from streamlab.config.overrides import apply_overrides, parse_value
from streamlab.errors import ConfigError

DOC = {"name": "t",
       "nodes": [{"id": "sine", "type": "SineGenerator", "config": {"frequency": 1.0}},
                 {"id": "a.b", "type": "Gain", "config": {"gain": 1.0}},
                 {"id": "a", "type": "Gain"},
                 5],
       "connections": [{"from": "sine", "to": "a.b"}]}


def apply(*overrides: str) -> dict:
    before = copy.deepcopy(DOC)
    out = apply_overrides(DOC, overrides)
    assert DOC == before  # the input is not modified
    return out


def problems(*overrides: str, doc=DOC) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        apply_overrides(doc, overrides)
    return [str(p) for p in ei.value.problems]


def test_parse_value():
    assert [parse_value(x) for x in ["0.5", "true", "[1, 2]", "null", '"0.5"', "drop_oldest",
                                     "NaN", "Infinity", "-Infinity", ""]] == [
        0.5, True, [1, 2], None, "0.5", "drop_oldest", "NaN", "Infinity", "-Infinity", ""]


def test_set_by_id_longest_id_and_index():
    out = apply("nodes.sine.config.frequency=2", "nodes.a.b.config.gain=3",
                "nodes.a.config.gain=4", "connections.0.capacity=8")
    assert out["nodes"][0]["config"] == {"frequency": 2}
    assert out["nodes"][1]["config"] == {"gain": 3}
    assert out["nodes"][2] == {"id": "a", "type": "Gain", "config": {"gain": 4}}
    assert out["connections"] == [{"from": "sine", "to": "a.b", "capacity": 8}]
    assert apply("nodes.1.config.gain=true")["nodes"][1]["config"] == {"gain": True}
    assert apply("nodes.2=7")["nodes"][2] == 7


def test_set_top_level_and_created_objects():
    assert apply("name=x y")["name"] == "x y"
    assert apply("pipeline_config.channel_capacity=64")["pipeline_config"] == {
        "channel_capacity": 64}
    assert apply("pipeline_config.restart.strategy=Immediate")["pipeline_config"] == {
        "restart": {"strategy": "Immediate"}}
    assert apply("nodes.sine.error_policy.policy=SkipFrame")["nodes"][0]["error_policy"] == {
        "policy": "SkipFrame"}
    assert apply("nodes.sine.restart.max_restarts=3")["nodes"][0]["restart"] == {
        "max_restarts": 3}
    # later overrides see earlier ones
    assert apply("name=a", "name=b")["name"] == "b"


@pytest.mark.parametrize("override, message", [
    ("nope=1", "$.nope: --set nope=1: no such key (did you mean 'nodes'?)"),
    ("nmae=1", "$.nmae: --set nmae=1: no such key (did you mean 'name'?)"),
    ("nodes.sinus.config.x=1",
     "$.nodes: --set nodes.sinus.config.x=1: no node with id 'sinus' (did you mean 'sine'?)"),
    ("nodes.sine.config.frequncy=1", "$.nodes[0].config.frequncy: --set "
     "nodes.sine.config.frequncy=1: no such key (did you mean 'frequency'?)"),
    ("nodes.sine.config.zzz=1", "$.nodes[0].config.zzz: --set nodes.sine.config.zzz=1: no such "
     "key (here: amplitude, channels, frequency, max_frames, mode, phase, realtime, "
     "sample_rate, samples_per_frame)"),
    ("connections.5.capacity=1", "$.connections: --set connections.5.capacity=1: no element "
     "'5': expected an index from 0 to 0"),
    ("connections.x=1",
     "$.connections: --set connections.x=1: no element 'x': expected an index from 0 to 0"),
    ("name.x=1", "$.name: --set name.x=1: str value here, not an object or a list: cannot set "
     "'x' inside it"),
    ("nodes.sine.dead_letter.x=1",
     "$.nodes[0].dead_letter: --set nodes.sine.dead_letter.x=1: no value here to set 'x' in"),
    ("noeq", "$: --set 'noeq': expected KEY=VALUE, e.g. nodes.gain.config.gain=0.5"),
    ("=5", "$: --set '=5': expected KEY=VALUE, e.g. nodes.gain.config.gain=0.5"),
    (" =5", "$: --set ' =5': expected KEY=VALUE, e.g. nodes.gain.config.gain=0.5"),
    ("nodes.3.x=1", "$.nodes[3]: --set nodes.3.x=1: int value here, not an object or a list: "
     "cannot set 'x' inside it"),
    ("pipeline_config.qqqqqqqq=1", "$.pipeline_config.qqqqqqqq: --set "
     "pipeline_config.qqqqqqqq=1: no such key (here: breaker, channel_capacity, deadline_ms, "
     "deadline_s, debug, error_policy, fusion, restart, stamp_config_version)"),  # deadline_ms: deprecated, still loads
    ("nodes.sine.error_policy.pollicy=1", "$.nodes[0].error_policy.pollicy: --set "
     "nodes.sine.error_policy.pollicy=1: no such key (did you mean 'policy'?)"),
    ("nodes.sine.restart.stratgy=1", "$.nodes[0].restart.stratgy: --set "
     "nodes.sine.restart.stratgy=1: no such key (did you mean 'strategy'?)"),
    ("connections.0.frm=1", "$.connections[0].frm: --set connections.0.frm=1: no such key "
     "(did you mean 'from'?)"),
    ("nodes.sine.idd=1", "$.nodes[0].idd: --set nodes.sine.idd=1: no such key (did you mean "
     "'id'?)"),
    ("nodes.a.config.anything=1", "$.nodes[2].config.anything: --set nodes.a.config.anything=1:"
     " no such key (here: gain)"),
])
def test_problems(override, message):
    assert problems(override) == [message]


def test_every_problem_is_reported_with_the_source():
    with pytest.raises(ConfigError) as ei:
        apply_overrides(DOC, ["a=1", "name=ok", "b=2"], source="f.json")
    assert ei.value.source == "f.json"
    assert [str(p) for p in ei.value.problems] == [
        "$.a: --set a=1: no such key (here: connections, name, nodes, pipeline_config)",
        "$.b: --set b=2: no such key (here: connections, name, nodes, pipeline_config)"]


def test_empty_list_and_non_dict_documents():
    assert problems("connections.0.x=1", doc={"connections": []}) == [
        "$.connections: --set connections.0.x=1: no element '0': the list is empty"]
    assert apply_overrides([1], ["a=1"]) == [1]


def test_unknown_type_config_accepts_only_existing_keys():
    doc = {"nodes": [{"id": "n", "type": "NoSuchType", "config": {"k": 1}}]}
    assert apply_overrides(doc, ["nodes.n.config.k=2"])["nodes"][0]["config"] == {"k": 2}
    assert problems("nodes.n.config.j=2", doc=doc) == [
        "$.nodes[0].config.j: --set nodes.n.config.j=2: no such key (here: k)"]


def test_many_candidates_are_cut_at_twelve():
    doc = {"nodes": [{"id": "n", "type": "NoSuchType",
                      "config": {f"key{i:02d}": i for i in range(14)}}]}
    msg = problems("nodes.n.config.zzzzzz=1", doc=doc)[0]
    assert msg.endswith("(here: " + ", ".join(f"key{i:02d}" for i in range(12)) + ", ...)")


def test_overrides_through_load_config():
    spec = load_config({"nodes": [{"id": "g", "type": "Gain", "config": {"gain": 1.0}}]},
                       overrides=["nodes.g.config.gain=2.5", "name=p2"])
    assert spec.name == "p2" and spec._node_configs["g"].gain == 2.5
    with pytest.raises(ConfigError) as ei:
        load_config({"nodes": [{"id": "g", "type": "Gain", "config": {"gain": 1.0}}]},
                    overrides=["nodes.h.config.gain=1"])
    assert str(ei.value) == ("invalid config: $.nodes: --set nodes.h.config.gain=1: no node with "
                             "id 'h' (here: g)")
