import pytest

from streamlab.graph import Graph, find_cycle


def test_topological_order_is_stable():
    g = Graph.build(["c", "a", "b", "d"], [("a", "d"), ("c", "d"), ("b", "d")])
    assert g.topological_order() == ["c", "a", "b", "d"]
    assert g.sources == ("c", "a", "b") and g.sinks == ("d",)
    assert g.inputs["d"] == ("a", "c", "b")


def test_cycles():
    assert find_cycle("abc", [("a", "b"), ("b", "c"), ("c", "a")]) == ["a", "b", "c", "a"]
    assert find_cycle("abc", [("a", "b"), ("b", "c")]) is None
    with pytest.raises(ValueError, match="cycle"):
        Graph.build(["a", "b"], [("a", "b"), ("b", "a")])


def test_chains_split_at_fanout_fanin_and_unfusable():
    # s -> a -> b -> (c, d) ; c -> e ; d -> e ; e -> f
    edges = [("s", "a"), ("a", "b"), ("b", "c"), ("b", "d"), ("c", "e"), ("d", "e"), ("e", "f")]
    g = Graph.build(list("sabcdef"), edges)
    assert g.chains() == [["s", "a", "b"], ["c"], ["d"], ["e", "f"]]
    assert g.chains(can_fuse=set("sbcdef")) == [["s"], ["a"], ["b"], ["c"], ["d"], ["e", "f"]]
    assert g.chains(can_join=lambda x, y: (x, y) != ("s", "a")) == [["s"], ["a", "b"], ["c"], ["d"], ["e", "f"]]


def test_renderings():
    g = Graph.build(["a", "b-1"], [("a", "b-1")])
    mer = g.to_mermaid({"a": "a: Src"})
    assert mer.startswith("flowchart LR") and 'n_a["a: Src"]' in mer and "n_a --> n_b_2d_1" in mer
    dot = g.to_dot()
    assert '"a" -> "b-1";' in dot and dot.startswith('digraph "pipeline"')
