"""Config problems: full message text and order (not prefixes), so wording and order are pinned."""

import pytest

from streamlab import ConfigError, load_config


def gain(node_id, **extra):
    return {"id": node_id, "type": "Gain", "config": {"gain": 1.0}, **extra}


def problems(cfg):
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    return [str(p) for p in info.value.problems]


def test_duplicate_ids_full_messages():
    cfg = {"nodes": [gain("a"), gain("b"), gain("a"), gain("b"), gain("a")]}
    assert problems(cfg) == [
        "$.nodes[2].id: duplicate node id 'a' (first at $.nodes[0])",
        "$.nodes[3].id: duplicate node id 'b' (first at $.nodes[1])",
        "$.nodes[4].id: duplicate node id 'a' (first at $.nodes[0])",
    ]


def test_problems_in_natural_numeric_order():
    """$.nodes[2] before $.nodes[10] (as strings, '10' < '2')."""
    nodes = [gain(f"n{i}") for i in range(12)]
    for i in (10, 2, 11):
        nodes[i]["config"]["gain"] = "x"
    assert problems({"nodes": nodes}) == [
        f"$.nodes[{i}].config.gain: Input should be a valid number, unable to parse string as a "
        f"number (got 'x') [node 'n{i}', type 'Gain']"
        for i in (2, 10, 11)
    ]


def test_connections_before_nodes_and_indices_in_numeric_order():
    nodes = [gain(f"n{i}") for i in range(11)]
    conns = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(10)]
    conns[9]["to"] = "ghost"
    conns[1]["from"] = "spook"
    nodes[10]["dead_letter"] = "nobody"
    assert problems({"nodes": nodes, "connections": conns}) == [
        "$.connections[1].from: no node with id 'spook'",
        "$.connections[9].to: no node with id 'ghost'",
        "$.nodes[10].dead_letter: no node with id 'nobody'",
    ]


def test_dead_letter_paths_exact():
    assert problems({"nodes": [gain("a", dead_letter="a")]}) == [
        "$.nodes[0].dead_letter: a node cannot be its own dead letter",
    ]
    assert problems({"nodes": [gain("a", dead_letter="zz"), gain("b")]}) == [
        "$.nodes[0].dead_letter: no node with id 'zz'",
    ]
    # a cycle through a dead-letter edge, found starting from it, is reported at its path
    cfg = {"nodes": [gain("a", dead_letter="b"), gain("b")], "connections": [{"from": "b", "to": "a"}]}
    assert problems(cfg) == ["$.nodes[0].dead_letter: cycle: a -> b -> a"]
    cfg["nodes"].reverse()
    assert problems(cfg) == ["$.connections[0]: cycle: b -> a -> b"]
