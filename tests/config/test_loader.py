import json

import pytest

from streamlab import ConfigError, load_config
from streamlab.config import LIMITS, json_path, pipeline_json_schema


def base(**kw):
    cfg = {
        "name": "t",
        "nodes": [
            {"id": "src", "type": "SineGenerator",
             "config": {"frequency": 1, "sample_rate": 10, "samples_per_frame": 5}},
            {"id": "g", "type": "Gain", "config": {"gain": 2}},
        ],
        "connections": [{"from": "src", "to": "g"}],
    }
    cfg.update(kw)
    return cfg


def problems(cfg):
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    return [str(p) for p in info.value.problems]


def test_valid_config_resolves_types_and_configs():
    spec = load_config(base())
    assert spec.node_type("g").__name__ == "Gain"
    assert spec.node_config("g").gain == 2.0
    assert spec.pipeline_config.channel_capacity == 16


def test_json_path_format():
    assert json_path(("nodes", 2, "config", "gain")) == "$.nodes[2].config.gain"
    assert json_path(("config", "a b")) == '$.config["a b"]'


def test_every_problem_reported_at_once_with_paths():
    cfg = base()
    cfg["nodes"].append({"id": "g", "type": "Gian", "config": {}})
    cfg["nodes"][1]["config"]["gain"] = "x"
    cfg["connections"] += [{"from": "g", "to": "nowhere", "capacity": 0}, {"from": "ghost", "to": "g"}]
    found = problems(cfg)
    expect_prefixes = [
        "$.connections[1].capacity: Input should be greater than or equal to 1 (got 0)",
        "$.connections[1].to: no node with id 'nowhere'",
        "$.connections[2].from: no node with id 'ghost'",
        "$.nodes[1].config.gain: Input should be a valid number",
        "$.nodes[2].id: duplicate node id 'g'",
        "$.nodes[2].type: unknown node type 'Gian' (did you mean 'Gain'?)",
    ]
    assert len(found) == len(expect_prefixes)
    for text, prefix in zip(found, expect_prefixes):
        assert text.startswith(prefix), (text, prefix)


def test_cycle_is_named():
    cfg = base(nodes=base()["nodes"] + [{"id": "h", "type": "Gain", "config": {"gain": 1}}])
    cfg["connections"] += [{"from": "g", "to": "h"}, {"from": "h", "to": "g"}]
    (msg,) = problems(cfg)
    assert msg.startswith("$.connections[") and "cycle: g -> h -> g" in msg


@pytest.mark.parametrize(
    "mutate, prefix",
    [
        (lambda c: c["pipeline_config"].update(channel_capacity=0),
         "$.pipeline_config.channel_capacity: Input should be greater than or equal to 1"),
        (lambda c: c["pipeline_config"].update(channel_capacity=10**9),
         f"$.pipeline_config.channel_capacity: Input should be less than or equal to {LIMITS.max_capacity}"),
        (lambda c: c["connections"][0].update(capacity=-3), "$.connections[0].capacity"),
        (lambda c: c["nodes"][0]["config"].update(frequency=9), "$.nodes[0].config: Value error, frequency must be at most sample_rate/2"),
        (lambda c: c["nodes"][0]["config"].update(bogus=1), "$.nodes[0].config.bogus: unknown key"),
        (lambda c: c["nodes"][1].update(id=""), "$.nodes[1].id"),
        (lambda c: c["nodes"][1].update(id="bad id!"), "$.nodes[1].id: String should match pattern"),
        (lambda c: c["connections"].append({"from": "g", "to": "g"}), "$.connections[1]: self-loop"),
        (lambda c: c["connections"].append({"from": "src", "to": "g"}), "$.connections[1]: duplicate connection"),
        (lambda c: c.update(extra=1), "$.extra: unknown key"),
        (lambda c: c["nodes"][1].update(restart={"strategy": "Exponential"}, error_policy={"policy": "Propagate"}),
         "$.nodes[1].restart: restart strategy Exponential needs error_policy SkipFrame or UseDefault"),
        (lambda c: c["nodes"][1].update(breaker={"failure_threshold": 0}),
         "$.nodes[1].breaker.failure_threshold: Input should be greater than or equal to 1"),
        (lambda c: c["nodes"][1].update(breaker={"reset_timeout_s": 0.0}),
         "$.nodes[1].breaker.reset_timeout_s: Input should be greater than 0"),
        (lambda c: c["nodes"][1].update(dead_letter="nope"), "$.nodes[1].dead_letter: no node with id 'nope'"),
        (lambda c: c.update(nodes=[]), "$.nodes: empty"),
        (lambda c: c.pop("nodes"), "$.nodes: missing"),
    ],
)
def test_rules(mutate, prefix):
    cfg = base(pipeline_config={})
    mutate(cfg)
    found = problems(cfg)
    assert any(p.startswith(prefix) for p in found), found


def test_hostile_text(tmp_path):
    cases = {
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "nan.json": '{"nodes": [{"id": "a", "type": "Gain", "config": {"gain": NaN}}]}',
        "huge.json": '{"nodes": [{"id": "a", "type": "Gain", "config": {"gain": ' + "9" * 5000 + "}}]}",
        "bad.json": '{"nodes": [',
        "list.json": "[1, 2]",
        "utf.json": b"\xff\xfe{",
        "import.json": json.dumps({"nodes": [{"id": "a", "type": "os.system", "config": {"command": "echo hi"}}]}),
    }
    expected = {
        "deep.json": "nested deeper than 64",
        "nan.json": "NaN is not valid JSON",
        "huge.json": "invalid JSON",
        "bad.json": "invalid JSON at line 1",
        "list.json": "expected a JSON object at the top level",
        "utf.json": "not valid UTF-8",
        "import.json": "$.nodes[0].type: unknown node type 'os.system'",
    }
    import sys

    before = set(sys.modules)
    for name, text in cases.items():
        p = tmp_path / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(ConfigError) as info:
            load_config(p)
        assert expected[name] in str(info.value), (name, str(info.value))
        assert all(str(pr).startswith("$") for pr in info.value.problems)
    assert set(sys.modules) - before == set()


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="got a directory"):
        load_config(tmp_path)


def test_huge_file_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(LIMITS, "max_file_bytes", 100)
    p = tmp_path / "big.json"
    p.write_text(json.dumps(base()))
    with pytest.raises(ConfigError, match="the limit is 100"):
        load_config(p)


def test_json_string_and_spec_round_trip():
    spec = load_config(json.dumps(base()))
    again = load_config(spec.to_json_dict())
    assert again.to_json_dict() == spec.to_json_dict()
    assert load_config(spec) is spec


def test_schema_includes_node_configs():
    schema = pipeline_json_schema()
    defs = schema["$defs"]
    assert "config.Gain" in defs and "gain" in defs["config.Gain"]["properties"]
    rules = defs["NodeSpec"]["allOf"]
    assert {"if": {"properties": {"type": {"const": "Gain"}}, "required": ["type"]},
            "then": {"properties": {"config": {"$ref": "#/$defs/config.Gain"}}}} in rules
    assert "SineGenerator" in defs["NodeSpec"]["properties"]["type"]["enum"]
    json.dumps(schema)  # serialisable


def test_capacities_must_be_integers_not_booleans():
    found = problems(base(pipeline_config={"channel_capacity": True},
                          connections=[{"from": "src", "to": "g", "capacity": 2.5}]))
    assert any(p.startswith("$.pipeline_config.channel_capacity: Input should be a valid integer")
               for p in found), found
    assert any(p.startswith("$.connections[0].capacity: Input should be a valid integer")
               for p in found), found
