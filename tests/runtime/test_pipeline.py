import numpy as np
import pytest

from streamlab import DataFrame, Pipeline, PipelineError
from tests.conftest import run

SINE = {"frequency": 5.0, "sample_rate": 100.0, "samples_per_frame": 10, "channels": ["a", "b"]}


def diamond():
    return {
        "nodes": [
            {"id": "src", "type": "SineGenerator", "config": SINE},
            {"id": "l", "type": "Gain", "config": {"gain": 2}},
            {"id": "r", "type": "Gain", "config": {"gain": -1}},
            {"id": "join", "type": "Passthrough"},
            {"id": "tap", "type": "Passthrough"},
        ],
        "connections": [
            {"from": "src", "to": "l"}, {"from": "src", "to": "r"},
            {"from": "l", "to": "join"}, {"from": "r", "to": "join"}, {"from": "src", "to": "tap"},
        ],
    }


def test_linear_runs_in_topological_order_and_carries_state():
    p = Pipeline({"nodes": [{"id": "src", "type": "SineGenerator", "config": SINE},
                            {"id": "g", "type": "Gain", "config": {"gain": 3}}],
                  "connections": [{"from": "src", "to": "g"}]})
    outs = [p.process_sync()["g"][0] for _ in range(4)]
    x = np.concatenate([f.payload["a"] for f in outs])
    n = np.arange(40)
    np.testing.assert_allclose(x, 3 * np.sin(2 * np.pi * 5 * n / 100), atol=1e-12)
    assert [f.sequence_id for f in outs] == [0, 1, 2, 3]


def test_fanout_fanin_diamond():
    p = Pipeline(diamond())
    res = p.process_sync(DataFrame(1_000, 0))
    assert set(res) == {"join", "tap"}
    join = res["join"]
    assert len(join) == 2  # one frame from each branch
    a = res["tap"][0].payload["a"]
    got = sorted(tuple(f.payload["a"][:3]) for f in join)
    assert got == sorted([tuple(2 * a[:3]), tuple(-a[:3])])
    assert p.metrics["join"].received == 2 and p.metrics["join"].delivered == 2


def test_propagate_failure_names_node():
    p = Pipeline({"nodes": [{"id": "src", "type": "Passthrough"},
                            {"id": "bad", "type": "TestBoom", "config": {"fail_on": [1]}}],
                  "connections": [{"from": "src", "to": "bad"}]})
    assert p.process_sync(DataFrame(0, 0))["bad"][0].sequence_id == 0
    with pytest.raises(PipelineError, match="node 'bad': ValueError: boom at 1") as info:
        p.process_sync(DataFrame(0, 1))
    assert info.value.node_id == "bad" and isinstance(info.value.__cause__, ValueError)


def test_async_nodes_sync_and_async_entry_points():
    cfg = {"nodes": [{"id": "s", "type": "TestSlow", "config": {"delay": 0.001}}]}
    p = Pipeline(cfg)
    assert p.process_sync(DataFrame(0, 3))["s"][0].sequence_id == 3
    p.close_sync()

    async def go():
        async with Pipeline(cfg) as p:
            with pytest.raises(PipelineError, match="use 'await pipeline.process"):
                p.process_sync()
            return await p.process(DataFrame(0, 4))

    assert run(go())["s"][0].sequence_id == 4
