import numpy as np
import pytest

from streamlab import AsyncPipeline, DataFrame, PipelineError
from streamlab.registry import register_node, unregister_node
from tests.conftest import run
from tests.runtime.process_nodes import RunningSum


@pytest.fixture(autouse=True, scope="module")
def running_sum():
    register_node(RunningSum, name="TestRunningSum")
    yield
    unregister_node("TestRunningSum")


def cfg(executor, **node):
    return {"nodes": [{"id": "src", "type": "Passthrough"},
                      {"id": "sum", "type": "TestRunningSum", "executor": executor, **node},
                      {"id": "after", "type": "Gain", "config": {"gain": 1.0}}],
            "connections": [{"from": "src", "to": "sum"}, {"from": "sum", "to": "after"}]}


def inputs(n=30):
    rng = np.random.default_rng(3)
    return [DataFrame.from_block(["a", "b"], rng.normal(size=(2, 64)), timestamp=i, sequence_id=i)
            for i in range(n)]


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_executors_match_inline_order_and_state(executor):
    frames = inputs()

    async def go(ex):
        pipe = AsyncPipeline(cfg(ex), debug=True)
        await pipe.run(frames=frames)
        return pipe.results["after"]

    ref = run(go("inline"))
    got = run(go(executor))
    assert [f.sequence_id for f in got] == list(range(30))
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(r.block(), g.block())
        assert g.metadata["worker"] == "yes"


def test_process_outputs_live_in_shared_memory_and_are_read_only():
    async def go():
        pipe = AsyncPipeline(cfg("process"))
        await pipe.run(frames=inputs(5))
        return pipe.results["after"]

    out = run(go())
    with pytest.raises(ValueError, match="read-only"):
        out[0].payload["a"][0] = 1.0
    # every output is intact even though all of them are still held: slots were not reused
    sums = [f.payload["a"][-1] for f in out]
    assert len(set(sums)) == 5


def test_process_errors_follow_the_policy():
    async def go(policy):
        pipe = AsyncPipeline(cfg("process", config={"fail_on": [3]},
                                 error_policy={"policy": policy, "on": ["KeyError"]}))
        report = await pipe.run(frames=inputs(6))
        return pipe, report

    pipe, report = run(go("SkipFrame"))
    assert [f.sequence_id for f in pipe.results["after"]] == [0, 1, 2, 4, 5]
    assert report.fates()["sum"]["skipped"] == 1

    with pytest.raises(PipelineError, match="node 'sum': KeyError: .*no luck at 3"):
        run(go("Propagate"))
