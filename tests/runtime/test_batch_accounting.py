"""A batch in which a handled failure is followed by one that propagates: every frame the
node took has exactly one fate (the second failure is counted from the batch's start)."""

from __future__ import annotations

import pytest

from streamlab import AsyncPipeline, DataFrame, PipelineError
from streamlab.node import ProcessingNode
from streamlab.registry import register_node, unregister_node
from tests.conftest import run


class _SkipThenFail(ProcessingNode):
    """ValueError on frame 2 (handled by the policy), TypeError on frame 5 (not handled)."""

    def process(self, frame: DataFrame) -> DataFrame:
        if frame.sequence_id == 2:
            raise ValueError("handled")
        if frame.sequence_id == 5:
            raise TypeError("not handled")
        return frame


@pytest.fixture(autouse=True)
def node_type():
    register_node(_SkipThenFail, name="TestSkipThenFail")
    yield
    unregister_node("TestSkipThenFail")


@pytest.mark.parametrize("fusion", [False, True])
def test_second_failure_in_a_batch_keeps_the_ledger_exact(fusion):
    config = {"pipeline_config": {"fusion": fusion},
              "nodes": [{"id": "src", "type": "Passthrough"},
                        {"id": "n", "type": "TestSkipThenFail",
                         "error_policy": {"policy": "SkipFrame", "on": ["ValueError"]}},
                        {"id": "out", "type": "Passthrough"}],
              "connections": [{"from": "src", "to": "n"}, {"from": "n", "to": "out"}]}
    frames = [DataFrame(timestamp=i, sequence_id=i) for i in range(10)]

    async def go():
        pipe = AsyncPipeline(config)
        with pytest.raises(PipelineError):  # frames queue together: the node takes a batch
            await pipe.run(frames=frames)
        return pipe

    pipe = run(go())
    m = pipe.metrics["n"]
    assert m.received == m.accounted()
    assert m.received == pipe.metrics["src"].delivered  # each frame it was sent, once
    assert (m.delivered, m.skipped, m.aborted) == (4, 1, m.received - 5)
