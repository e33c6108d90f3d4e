import pytest

from streamlab import (
    ProcessingNode,
    StreamLabError,
    UnknownNodeTypeError,
    get_node_type,
    node_types,
)
from streamlab.registry import register_node, unregister_node


def test_builtins_registered_under_class_names():
    types = node_types()
    for name in ("SineGenerator", "Gain", "Passthrough"):
        assert types[name].__name__ == name
    assert list(types) == sorted(types)


def test_unknown_type_suggests_close_matches():
    with pytest.raises(UnknownNodeTypeError) as info:
        get_node_type("SineGenrator", path="$.nodes[0].type")
    assert info.value.suggestions[0] == "SineGenerator"
    assert str(info.value).startswith("invalid config: $.nodes[0].type: unknown node type 'SineGenrator'")


def test_register_and_conflicts():
    class MyNode(ProcessingNode):
        """Mine."""

    register_node(MyNode)
    try:
        assert get_node_type("MyNode") is MyNode
        register_node(MyNode)  # same class again: fine

        class Other(ProcessingNode):
            pass

        with pytest.raises(StreamLabError, match="already registered"):
            register_node(Other, name="MyNode")
        with pytest.raises(TypeError, match="not a ProcessingNode"):
            register_node(int)  # type: ignore[arg-type]
    finally:
        unregister_node("MyNode")


def test_entry_point_plugins_are_loaded(monkeypatch):
    import importlib.metadata as md

    import streamlab.registry as reg

    class FakeEP:
        def __init__(self, name, target):
            self.name, self.target = name, target

        def load(self):
            if self.target is None:
                raise ImportError("no module named broken_plugin")
            return self.target

    class PluginNode(ProcessingNode):
        """From a plugin."""

    def fake_entry_points(group):
        assert group == "streamlab.nodes"
        return [FakeEP("PluginNode", PluginNode), FakeEP("Broken", None)]

    monkeypatch.setattr(md, "entry_points", fake_entry_points)
    monkeypatch.setattr(reg, "_loaded", False)
    monkeypatch.setattr(reg, "_plugin_errors", {})
    try:
        assert get_node_type("PluginNode") is PluginNode
        assert "ImportError" in reg.plugin_errors()["Broken"]
        with pytest.raises(UnknownNodeTypeError):
            get_node_type("Broken")
    finally:
        unregister_node("PluginNode")
