"""Shared fixtures: test-only node types, and a guard against leaked asyncio tasks.

Test runs leave ``git status`` clean: tests write into ``tmp_path``, and Hypothesis keeps its
example database (which replays past failures) in ``out/hypothesis/``, git-ignored, instead of
``.hypothesis/`` in whatever directory pytest was started from.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from hypothesis import configuration as hypothesis_configuration

from streamlab.errors import EndOfStream
from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode, SourceConfig, SourceNode
from streamlab.registry import register_node, unregister_node

REPO = Path(__file__).resolve().parents[1]
# An explicit HYPOTHESIS_STORAGE_DIRECTORY wins (CI may point it at a cache).
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    hypothesis_configuration.set_hypothesis_home_dir(REPO / "out" / "hypothesis")


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


class _Countdown(SourceNode):
    """Test source: emits ``count`` frames (triggered or free), then EndOfStream."""

    class Config(SourceConfig):
        count: int = 3

    def on_create(self, config):
        self.config = config
        self.left = config.count

    def process(self, frame):
        if self.left == 0:
            raise EndOfStream
        self.left -= 1
        return DataFrame(0, self.config.count - self.left - 1, {"x": [float(self.left)]})


class _AsyncCountdown(_Countdown):
    """Test source: like TestCountdown with an async process."""

    async def process(self, frame):
        await asyncio.sleep(0)
        return _Countdown.process(self, frame)


@pytest.fixture(scope="session", autouse=True)
def test_nodes():
    names = {"TestSlow": _Slow, "TestBoom": _Boom, "TestCountdown": _Countdown,
             "TestAsyncCountdown": _AsyncCountdown}
    for name, cls in names.items():
        register_node(cls, name=name)
    yield
    for name in names:
        unregister_node(name)


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
