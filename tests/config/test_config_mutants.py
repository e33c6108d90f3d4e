"""load_config, parse_json and pipeline_json_schema: every message and boundary, word for word.

Each test pins what a user sees for one kind of bad input (the JSON path, then what was
expected and what was got), so that a changed path, limit or message is a failing test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamlab.config import load_config
from streamlab.config.loader import json_path, parse_json
from streamlab.config.model import LIMITS
from streamlab.config.schema import SCHEMA_ID, pipeline_json_schema
from streamlab.errors import ConfigError
from streamlab.registry import node_types

SINE_GAIN_PATH = Path(__file__).resolve().parents[2] / "examples" / "sine_gain.json"
SINE = {"id": "a", "type": "SineGenerator",
        "config": {"frequency": 1.0, "sample_rate": 100.0, "samples_per_frame": 10}}


def gain(node_id: str, **kw) -> dict:
    return {"id": node_id, "type": "Gain", "config": {"gain": 2.0}, **kw}


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_config(data)
    return [str(p) for p in ei.value.problems]


# -- top level ------------------------------------------------------------------------------
def test_top_level_must_be_an_object():
    with pytest.raises(ConfigError) as ei:
        load_config([1])  # type: ignore[arg-type]
    assert str(ei.value) == "invalid config: $: expected a JSON object at the top level, got list"


def test_unknown_top_level_key_and_non_string_name():
    assert problems({"name": 3, "extra": 1, "nodes": [SINE]}) == [
        "$.extra: unknown key (expected name, pipeline_config, nodes, connections)",
        "$.name: expected a string (got 3)",
    ]


@pytest.mark.parametrize("nodes, message", [
    (None, "$.nodes: missing: a pipeline needs at least one node"),
    ({}, "$.nodes: expected a list of nodes (got dict)"),
    ([], "$.nodes: empty: a pipeline needs at least one node"),
])
def test_nodes_missing_wrong_or_empty(nodes, message):
    data = {} if nodes is None else {"nodes": nodes}
    assert problems(data) == [message]


def test_node_count_limit(monkeypatch):
    monkeypatch.setattr(LIMITS, "max_nodes", 2)
    assert problems({"nodes": [gain("a"), gain("b"), gain("c")]}) == [
        "$.nodes: 3 nodes; the limit is 2"]
    spec = load_config({"nodes": [gain("a"), gain("b")]})  # exactly at the limit
    assert [n.id for n in spec.nodes] == ["a", "b"]


def test_connection_count_limit(monkeypatch):
    monkeypatch.setattr(LIMITS, "max_connections", 1)
    conns = [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}]
    assert problems({"nodes": [SINE, gain("b"), gain("c")], "connections": conns}) == [
        "$.connections: 2 connections; the limit is 1"]
    spec = load_config({"nodes": [SINE, gain("b")], "connections": conns[:1]})
    assert len(spec.connections) == 1


def test_fanout_limit(monkeypatch):
    monkeypatch.setattr(LIMITS, "max_fanout", 1)
    conns = [{"from": "a", "to": "b"}, {"from": "a", "to": "c"}]
    assert problems({"nodes": [SINE, gain("b"), gain("c")], "connections": conns}) == [
        "$.connections: node 'a' has 2 outputs; the limit is 1"]
    spec = load_config({"nodes": [SINE, gain("b")], "connections": conns[:1]})
    assert spec.connections[0].to == "b"


def test_connections_not_a_list():
    assert problems({"nodes": [SINE], "connections": {}}) == [
        "$.connections: expected a list (got dict)"]


def test_entries_that_are_not_objects():
    assert problems({"nodes": [SINE, 5, "x" * 100], "connections": [3]}) == [
        "$.connections[0]: expected an object (got 3)",
        "$.nodes[1]: expected an object (got 5)",
        "$.nodes[2]: expected an object (got '" + "x" * 56 + "...)",
    ]


def test_short_repr_at_exactly_sixty_characters_is_kept():
    text = "y" * 58  # repr adds two quotes: 60 characters
    assert problems({"nodes": [SINE, text]}) == [f"$.nodes[1]: expected an object (got '{text}')"]


def test_non_finite_numbers_anywhere():
    data = {"nodes": [SINE], "pipeline_config": {"channel_capacity": float("nan")},
            "x": [1.0, float("inf")]}
    assert problems(data) == [
        "$.pipeline_config.channel_capacity: number out of range (got nan)",
        "$.pipeline_config.channel_capacity: Input should be a valid integer (got nan)",
        "$.x: unknown key (expected name, pipeline_config, nodes, connections)",
        "$.x[1]: number out of range (got inf)",
    ]


def test_several_problems_are_counted_in_the_message():
    with pytest.raises(ConfigError) as ei:
        load_config({"name": 3, "extra": 1, "nodes": [SINE]})
    assert str(ei.value) == (
        "invalid config: 2 problems\n"
        "  $.extra: unknown key (expected name, pipeline_config, nodes, connections)\n"
        "  $.name: expected a string (got 3)")


# -- graph ----------------------------------------------------------------------------------
def test_dangling_connection_ends():
    data = {"nodes": [SINE, gain("b")],
            "connections": [{"from": "a", "to": "zz"}, {"from": "yy", "to": "b"}]}
    assert problems(data) == ["$.connections[0].to: no node with id 'zz'",
                              "$.connections[1].from: no node with id 'yy'"]


def test_self_loop():
    data = {"nodes": [SINE, gain("b")], "connections": [{"from": "b", "to": "b"}]}
    assert problems(data) == ["$.connections[0]: self-loop on 'b'"]


def test_duplicate_connections_name_the_first():
    c = {"from": "a", "to": "b"}
    data = {"nodes": [SINE, gain("b")], "connections": [c, c, c]}
    assert problems(data) == [
        "$.connections[1]: duplicate connection 'a' -> 'b' (first at $.connections[0])",
        "$.connections[2]: duplicate connection 'a' -> 'b' (first at $.connections[0])",
    ]


def test_cycle_through_connections():
    data = {"nodes": [SINE, gain("b"), gain("c")],
            "connections": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"},
                            {"from": "c", "to": "b"}]}
    assert problems(data) == ["$.connections[1]: cycle: b -> c -> b"]


def test_cycle_through_a_dead_letter_edge():
    data = {"nodes": [SINE, gain("b", dead_letter="c", error_policy={"policy": "SkipFrame"}),
                      gain("c")],
            "connections": [{"from": "a", "to": "b"}, {"from": "c", "to": "b"}]}
    assert problems(data) == ["$.nodes[1].dead_letter: cycle: b -> c -> b"]


def test_dead_letter_edge_that_is_also_a_connection_is_no_cycle_by_itself():
    data = {"nodes": [SINE, gain("b", dead_letter="c", error_policy={"policy": "SkipFrame"}),
                      gain("c")],
            "connections": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}]}
    spec = load_config(data)
    assert spec.nodes[1].dead_letter == "c"


def test_invalid_connections_still_report_dangling_ends():
    data = {"nodes": [SINE, gain("b")],
            "connections": [{"from": "a", "to": "nope", "capacity": -1},
                            {"from": "nope2", "to": "b", "bogus": 1},
                            {"from": 5, "to": "b", "bogus": 1}]}
    assert problems(data) == [
        "$.connections[0].capacity: Input should be greater than or equal to 1 (got -1)",
        "$.connections[0].to: no node with id 'nope'",
        "$.connections[1].bogus: unknown key (not allowed here)",
        "$.connections[1].from: no node with id 'nope2'",
        "$.connections[2].bogus: unknown key (not allowed here)",
        "$.connections[2].from: Input should be a valid string (got 5)",
    ]


def test_an_invalid_node_still_counts_as_an_existing_id():
    data = {"nodes": [SINE, {"id": "b", "type": "Gain", "config": {}}],
            "connections": [{"from": "a", "to": "b"}]}
    assert problems(data) == ["$.nodes[1].config.gain: Field required [node 'b', type 'Gain']"]


def test_duplicate_node_ids():
    assert problems({"nodes": [SINE, gain("b"), gain("b")]}) == [
        "$.nodes[2].id: duplicate node id 'b' (first at $.nodes[1])"]


def test_dead_letter_to_itself_and_to_nothing():
    assert problems({"nodes": [gain("a", dead_letter="a")]}) == [
        "$.nodes[0].dead_letter: a node cannot be its own dead letter"]
    assert problems({"nodes": [gain("a", dead_letter="q")]}) == [
        "$.nodes[0].dead_letter: no node with id 'q'"]


def test_restart_needs_a_recovering_policy():
    node = gain("a", restart={"strategy": "Immediate"}, error_policy={"policy": "Propagate"})
    assert problems({"nodes": [node]}) == [
        "$.nodes[0].restart: restart strategy Immediate needs error_policy SkipFrame or "
        "UseDefault (Propagate stops the pipeline on the first error)"]
    ok = gain("a", restart={"strategy": "Never"}, error_policy={"policy": "Propagate"})
    assert load_config({"nodes": [ok]}).nodes[0].restart.strategy == "Never"
    skip = gain("a", restart={"strategy": "Immediate"}, error_policy={"policy": "SkipFrame"})
    assert load_config({"nodes": [skip]}).nodes[0].error_policy.policy == "SkipFrame"


def test_valid_pipeline_resolves_types_and_configs():
    spec = load_config({"name": "p", "nodes": [SINE, gain("b")],
                        "connections": [{"from": "a", "to": "b"}]})
    assert spec.name == "p"
    assert [n.id for n in spec.nodes] == ["a", "b"]
    assert [(c.from_, c.to) for c in spec.connections] == [("a", "b")]
    assert spec._node_types["b"].__name__ == "Gain"
    assert spec._node_configs["b"].gain == 2.0
    assert spec._node_configs["a"].sample_rate == 100.0
    unnamed = load_config({"nodes": [gain("x")]})
    assert unnamed.name == "pipeline" and unnamed.connections == []


def test_json_string_source_and_overrides():
    text = json.dumps({"nodes": [gain("x")]})
    spec = load_config("  " + text, overrides=["nodes.x.config.gain=3.5"])
    assert spec._node_configs["x"].gain == 3.5


# -- files ----------------------------------------------------------------------------------
def test_missing_file_directory_and_size(tmp_path, monkeypatch):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as ei:
        load_config(missing)
    assert str(ei.value) == f"invalid config {missing}: $: config file not found: {missing}"
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path)
    assert ei.value.problems[0].message == f"expected a JSON file, got a directory: {tmp_path}"
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"nodes": [gain("x")]}))
    size = path.stat().st_size
    monkeypatch.setattr(LIMITS, "max_file_bytes", size)
    assert load_config(path).nodes[0].id == "x"  # exactly at the limit
    monkeypatch.setattr(LIMITS, "max_file_bytes", size - 1)
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert ei.value.problems[0].message == (
        f"config file is {size} bytes; the limit is {size - 1}")
    assert ei.value.source == str(path)


def test_dict_nested_too_deep(monkeypatch):
    monkeypatch.setattr(LIMITS, "max_depth", 4)
    with pytest.raises(ConfigError) as ei:
        load_config({"nodes": [{"config": {"a": {"b": 1}}}]})
    assert str(ei.value) == "invalid config: $: config nested deeper than 4 levels"
    # depth 4 exactly is fine as far as nesting goes (the node itself is then checked)
    # (a scalar counts as a level too)
    assert problems({"nodes": [{"id": "x"}]}) == ["$.nodes[0].type: Field required"]


# -- parse_json -----------------------------------------------------------------------------
def pj_error(text, **kw) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_json(text, **kw)
    assert len(ei.value.problems) == 1
    return str(ei.value)


def test_parse_json_messages():
    assert pj_error("[1,", source="f.json") == (
        "invalid config f.json: $: invalid JSON at line 1 column 4: Expecting value")
    assert pj_error('{"a": NaN}') == (
        "invalid config: $: invalid JSON: NaN is not valid JSON (use null or a finite number)")
    assert pj_error('{"a": -Infinity}').endswith("-Infinity is not valid JSON "
                                                  "(use null or a finite number)")
    assert pj_error(b"\xff\xfe") == (
        "invalid config: $: config is not valid UTF-8 (invalid start byte at byte 0)")
    assert pj_error(b'{"a": "\xc3"}') == (
        "invalid config: $: config is not valid UTF-8 (invalid continuation byte at byte 7)")
    assert pj_error("1" * 5000).startswith("invalid config: $: invalid JSON: Exceeds the limit")


def test_parse_json_error_source():
    with pytest.raises(ConfigError) as ei:
        parse_json(b"\xff", source="x.json")
    assert ei.value.source == "x.json"


def test_parse_json_size_limits(monkeypatch):
    monkeypatch.setattr(LIMITS, "max_file_bytes", 8)
    assert parse_json("[1,2,3] ") == [1, 2, 3]
    assert parse_json(b"[1,2,3] ") == [1, 2, 3]
    assert pj_error("[1,2,3]  ") == "invalid config: $: config is 9 characters; the limit is 8"
    assert pj_error(b"[1,2,3]  ") == "invalid config: $: config is 9 bytes; the limit is 8"
    # characters, not bytes, once decoded: 4 two-byte characters fit
    assert parse_json('"éé"'.encode()) == "éé"


def test_parse_json_depth_boundary():
    deepest = "[" * LIMITS.max_depth + "]" * LIMITS.max_depth
    assert parse_json(deepest) == json.loads(deepest)
    too_deep = "[" + deepest + "]"
    assert pj_error(too_deep) == f"invalid config: $: JSON nested deeper than {LIMITS.max_depth} levels"
    obj = '{"a":' * (LIMITS.max_depth + 1) + "1" + "}" * (LIMITS.max_depth + 1)
    assert pj_error(obj).endswith("JSON nested deeper than 64 levels")


def test_parse_json_depth_counts_nesting_not_brackets():
    many = "[" + ",".join(["[]"] * 200) + "]"
    assert len(parse_json(many)) == 200
    objs = "[" + ",".join(["{}"] * 200) + "]"
    assert len(parse_json(objs)) == 200


def test_parse_json_brackets_inside_strings_do_not_count():
    text = json.dumps({"a": "[" * 100, "b": "{" * 100})
    assert parse_json(text) == {"a": "[" * 100, "b": "{" * 100}
    # an escaped quote does not end the string; an escaped backslash does not escape the quote
    esc = json.dumps({"a": '"' + "[" * 100, "b": "\\", "c": "{" * 100})
    assert parse_json(esc)["c"] == "{" * 100
    # after a string ends, brackets count again
    deep = '["x",' + "[" * LIMITS.max_depth + "]" * LIMITS.max_depth + "]"
    assert pj_error(deep).endswith("nested deeper than 64 levels")


def test_json_path():
    assert json_path(("nodes", 2, "config", "gain")) == "$.nodes[2].config.gain"
    assert json_path(("a b", "x-y", 1)) == '$["a b"]["x-y"][1]'
    assert json_path(("x",), root="#") == "#.x"
    assert json_path(()) == "$"


# -- JSON Schema ----------------------------------------------------------------------------
def test_schema_header_and_node_type_rules():
    schema = pipeline_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID == "https://streamlab.dev/schema/pipeline.json"
    assert schema["title"] == "StreamLab pipeline"
    types = node_types()
    node_def = schema["$defs"]["NodeSpec"]
    assert node_def["properties"]["type"]["enum"] == sorted(types)
    assert node_def["properties"]["type"]["type"] == "string"
    rules = node_def["allOf"]
    assert len(rules) == len(types)
    for rule, name in zip(rules, types):
        assert rule == {
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {"properties": {"config": {"$ref": f"#/$defs/config.{name}"}}},
        }
        assert f"config.{name}" in schema["$defs"]


def test_schema_node_configs_descriptions_and_nested_defs():
    schema = pipeline_json_schema()
    defs = schema["$defs"]
    gain_def = defs["config.Gain"]
    assert gain_def["description"] == "Multiply every channel by a constant gain."
    assert gain_def["properties"]["gain"]["type"] == "number"
    assert "$defs" not in gain_def
    # a config's own docstring wins over the node's description
    assert defs["config.CsvSink"]["description"] == "Settings of CsvSink."
    # nested models of a node config are hoisted to the top-level $defs, refs point there
    assert "SineComponent" in defs
    assert "$defs" not in defs["config.TestSignalGenerator"]
    assert "#/$defs/SineComponent" in json.dumps(defs["config.TestSignalGenerator"])
    # the pipeline's own models are there too
    assert {"ConnectionSpec", "PipelineSettings", "NodeSpec"} <= set(defs)
    assert "#/$defs/NodeSpec" in json.dumps(schema["properties"]["nodes"])


def test_schema_connection_uses_aliases():
    schema = pipeline_json_schema()
    assert "from" in schema["$defs"]["ConnectionSpec"]["properties"]
    assert "from_" not in schema["$defs"]["ConnectionSpec"]["properties"]


# -- more exact values: sources, spec shortcuts, graph corner cases --------------------------
def test_every_error_names_its_source(tmp_path, monkeypatch):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[1,")
    bad_shape = tmp_path / "shape.json"
    bad_shape.write_text("[1]")
    bad_doc = tmp_path / "doc.json"
    bad_doc.write_text('{"nodes": []}')
    for path in (bad_json, bad_shape, bad_doc, tmp_path):
        with pytest.raises(ConfigError) as ei:
            load_config(path)
        assert ei.value.source == str(path), path
    with pytest.raises(ConfigError) as ei:
        load_config(SINE_GAIN_PATH, overrides=["nope=1"])
    assert ei.value.source == str(SINE_GAIN_PATH)
    with pytest.raises(ConfigError) as ei:
        load_config({"nodes": []})
    assert ei.value.source == ""
    for text in ('{"a": NaN}', "[" * 70, "1" * 5000):
        with pytest.raises(ConfigError) as ei:
            parse_json(text, source="s.json")
        assert ei.value.source == "s.json", text
    monkeypatch.setattr(LIMITS, "max_file_bytes", 2)
    for text in ("[1, 2]", b"[1, 2]"):
        with pytest.raises(ConfigError) as ei:
            parse_json(text, source="s.json")
        assert ei.value.source == "s.json"


def test_nesting_counts_down_after_each_close():
    # 60 levels, one in and out, then 5 more: 65 levels, one too many
    text = "[" * 60 + "[]," + "[" * 5 + "]" * 65
    assert pj_error(text).endswith("nested deeper than 64 levels")
    # an escaped backslash ends its escape: the quote after it closes the string
    deep = '["\\\\",' + "[" * LIMITS.max_depth + "]" * LIMITS.max_depth + "]"
    assert pj_error(deep).endswith("nested deeper than 64 levels")


def test_pipeline_config_and_json_dict_round_trip():
    data = {"name": "p", "pipeline_config": {"channel_capacity": 64},
            "nodes": [gain("a"), gain("b")], "connections": [{"from": "a", "to": "b"}]}
    spec = load_config(data)
    assert spec.pipeline_config.channel_capacity == 64
    d = spec.to_json_dict()
    assert d["connections"] == [{"from": "a", "to": "b", "overflow": "block"}]
    assert d["pipeline_config"]["channel_capacity"] == 64
    assert "deadline_ms" not in d["pipeline_config"]  # None values are left out
    assert json.loads(json.dumps(d)) == d
    assert load_config(d).to_json_dict() == d


def test_loading_a_spec_again():
    from streamlab.config.model import PipelineSpec
    spec = load_config({"nodes": [gain("a")]})
    assert load_config(spec) is spec
    again = load_config(spec, overrides=["nodes.a.config.gain=5"])
    assert again is not spec and again._node_configs["a"].gain == 5
    assert spec._node_configs["a"].gain == 2.0
    assert load_config(spec, check_files=True) is not spec
    assert load_config(spec, base_dir=".") is not spec
    raw = PipelineSpec.model_validate({"nodes": [gain("a")]})
    loaded = load_config(raw)
    assert loaded._node_configs["a"].gain == 2.0


def test_a_node_that_fails_validation_still_counts_as_an_id():
    data = {"nodes": [SINE, {"id": "b", "type": "Gain", "bogus": 1}],
            "connections": [{"from": "a", "to": "b"}]}
    assert problems(data) == ["$.nodes[1].bogus: unknown key (not allowed here)"]


def test_repeated_dangling_connection_is_no_duplicate():
    c = {"from": "a", "to": "zz"}
    data = {"nodes": [SINE], "connections": [c, c]}
    assert problems(data) == ["$.connections[0].to: no node with id 'zz'",
                              "$.connections[1].to: no node with id 'zz'"]


def test_every_node_is_checked_after_an_unknown_type():
    data = {"nodes": [dict(SINE, type="Nope"), {"id": "b", "type": "Gain", "config": {}}]}
    out = problems(data)
    assert len(out) == 2
    assert out[0].startswith("$.nodes[0].type: unknown node type 'Nope'")
    assert out[1] == "$.nodes[1].config.gain: Field required [node 'b', type 'Gain']"


def test_two_outputs_to_different_files_are_fine(tmp_path):
    sinks = [{"id": f"s{i}", "type": "CsvSink", "config": {"path": str(tmp_path / f"{i}.csv")}}
             for i in range(2)]
    data = {"nodes": [SINE, *sinks],
            "connections": [{"from": "a", "to": "s0"}, {"from": "a", "to": "s1"}]}
    spec = load_config(data, check_files=True)
    assert len(spec.nodes) == 3


def test_missing_input_note_says_where_relative_paths_are_resolved(tmp_path, monkeypatch):
    src = {"id": "f", "type": "FileSource",
           "config": {"path": "missing.npy", "samples_per_frame": 4, "sample_rate": 100.0}}
    with pytest.raises(ConfigError) as ei:
        load_config({"nodes": [src]}, base_dir=tmp_path, check_files=True)
    assert f"(relative paths are relative to base_dir {str(tmp_path)!r})" in str(ei.value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_config({"nodes": [src]}, check_files=True)
    assert (f"(relative paths are relative to the working directory {str(tmp_path)!r})"
            in str(ei.value))
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"nodes": [src]}))
    with pytest.raises(ConfigError) as ei:
        load_config(path, check_files=True)
    assert f"(relative paths are relative to the config file's folder {str(tmp_path)!r})" \
        in str(ei.value)


def test_schema_refs_are_exact_and_nested_defs_kept():
    schema = pipeline_json_schema()
    assert schema["properties"]["nodes"]["items"]["$ref"] == "#/$defs/NodeSpec"
    defs = schema["$defs"]
    assert defs["SineComponent"]["type"] == "object"
    refs = json.dumps(defs["config.TestSignalGenerator"])
    assert '"$ref": "#/$defs/SineComponent"' in refs
