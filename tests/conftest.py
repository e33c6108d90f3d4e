"""Shared fixtures: test-only node types, and a guard against leaked asyncio tasks."""

from __future__ import annotations

import asyncio

import pytest

from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.registry import register_node, unregister_node


class _Slow(ProcessingNode):
    """Test node: awaits ``delay`` seconds per frame on the real loop."""

    class Config(NodeConfig):
        delay: float = 0.001

    async def process(self, frame: DataFrame) -> DataFrame:
        await asyncio.sleep(self.config.delay)
        return frame


class _Boom(ProcessingNode):
    """Test node: raises on frames whose sequence_id is in ``fail_on``."""

    class Config(NodeConfig):
        fail_on: list[int] = []

    def process(self, frame: DataFrame) -> DataFrame:
        if frame.sequence_id in self.config.fail_on:
            raise ValueError(f"boom at {frame.sequence_id}")
        return frame


@pytest.fixture(scope="session", autouse=True)
def test_nodes():
    register_node(_Slow, name="TestSlow")
    register_node(_Boom, name="TestBoom")
    yield
    unregister_node("TestSlow")
    unregister_node("TestBoom")


def run(coro):
    """Run a coroutine on a fresh loop and fail if it leaves tasks behind."""

    async def guarded():
        before = asyncio.all_tasks()
        result = await coro
        await asyncio.sleep(0)
        leaked = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
        assert not leaked, f"leaked tasks: {leaked}"
        return result

    return asyncio.run(guarded())
