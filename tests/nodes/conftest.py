"""Fixtures shared by the node tests."""
from __future__ import annotations

import pytest

from streamlab.errors import EndOfStream
from streamlab.frame import DataFrame
from streamlab.node import SourceNode
from streamlab.registry import register_node, unregister_node

_FRAMES: list[DataFrame] = []


class _Frames(SourceNode):
    """Test source: the frames of ``_FRAMES``, one per trigger."""

    def on_create(self, config):
        super().on_create(config)
        self._it = iter(list(_FRAMES))

    def process(self, frame):
        try:
            return next(self._it)
        except StopIteration:
            raise EndOfStream from None


@pytest.fixture
def frames_source():
    """Registers node type ``TestFrames``, which emits the frames appended to this list."""
    register_node(_Frames, name="TestFrames")
    yield _FRAMES
    unregister_node("TestFrames")
    _FRAMES.clear()
