"""Test nodes shared by the event tests: one that marks frames, one that fails on odd ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.registry import register_node, unregister_node


class Mark(ProcessingNode):
    """Test node: an event on every frame whose sequence id is a multiple of ``every``."""

    class Config(NodeConfig):
        every: int = 1

    def process(self, frame: DataFrame) -> DataFrame:
        if frame.sequence_id % self.config.every:
            return frame
        return frame.with_events([Event(frame.timestamp, f"m{frame.sequence_id}")])


class DropOdd(ProcessingNode):
    """Test node: fails on odd sequence ids (with SkipFrame their events are dropped)."""

    def process(self, frame: DataFrame) -> DataFrame:
        if frame.sequence_id % 2:
            raise ValueError("odd")
        return frame


@pytest.fixture
def event_nodes() -> Iterator[None]:
    """Register ``TestMark`` and ``TestDropOdd`` for one test."""
    register_node(Mark, name="TestMark")
    register_node(DropOdd, name="TestDropOdd")
    yield
    unregister_node("TestMark")
    unregister_node("TestDropOdd")
