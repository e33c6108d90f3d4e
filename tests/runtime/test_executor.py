import asyncio
import glob
import os
from multiprocessing import forkserver, resource_tracker

import numpy as np
import psutil
import pytest

from streamlab import AsyncPipeline, DataFrame, PipelineError
from streamlab.channel import Channel, Inlet
from streamlab.node import NodeContext
from streamlab.registry import register_node, unregister_node
from streamlab.resilience import ResilientNode
from streamlab.runtime.driver import InletFeed, NodeDriver, stage_runner
from streamlab.runtime.executor import ProcessNode, RemoteNodeError, WorkerDied
from streamlab.testing import VirtualClock
from tests.conftest import run
from tests.runtime.process_nodes import AsyncTriple, KeepInputs, RunningSum, Scale, Shapeshifter

TYPES = {"TestRunningSum": RunningSum, "TestKeepInputs": KeepInputs,
         "TestShapeshifter": Shapeshifter, "TestScale": Scale, "TestAsyncTriple": AsyncTriple}


@pytest.fixture(autouse=True, scope="module")
def node_types():
    for name, cls in TYPES.items():
        register_node(cls, name=name)
    yield
    for name in TYPES:
        unregister_node(name)


def _helpers() -> set[int]:
    """multiprocessing's long-lived helper processes (shared by the whole test session)."""
    pids = {getattr(forkserver._forkserver, "_forkserver_pid", None),
            getattr(resource_tracker._resource_tracker, "_pid", None)}
    return {p for p in pids if p}


def _workers() -> set[int]:
    me = psutil.Process()
    return {p.pid for p in me.children(recursive=True)
            if p.pid not in _helpers() and p.status() != psutil.STATUS_ZOMBIE}


def _shm_files() -> list[str]:
    return glob.glob(f"/dev/shm/streamlab-{os.getpid()}-*")


@pytest.fixture
def no_leftovers():
    """The test must leave no worker process and no shared-memory file behind."""
    before = _workers()
    yield
    assert _workers() - before == set()
    assert _shm_files() == []


def cfg(executor, node_type="TestRunningSum", **node):
    return {"nodes": [{"id": "src", "type": "Passthrough"},
                      {"id": "sum", "type": node_type, "executor": executor, **node},
                      {"id": "after", "type": "Gain", "config": {"gain": 1.0}}],
            "connections": [{"from": "src", "to": "sum"}, {"from": "sum", "to": "after"}]}


def inputs(n=30, channels=2, samples=64):
    rng = np.random.default_rng(3)
    names = [f"c{i}" for i in range(channels)]
    return [DataFrame.from_block(names, rng.normal(size=(channels, samples)), timestamp=i,
                                 sequence_id=i, metadata={"k": str(i // 10)})
            for i in range(n)]


def run_pipe(config, frames, **kw):
    async def go():
        pipe = AsyncPipeline(config, debug=True, **kw)
        report = await pipe.run(frames=frames)
        return pipe, report
    return run(go())


def assert_same(ref, got):
    assert [f.sequence_id for f in got] == [f.sequence_id for f in ref]
    for r, g in zip(ref, got):
        assert g.channels == r.channels
        assert dict(g.metadata) == dict(r.metadata)
        assert g.timestamp == r.timestamp
        for name in r.channels:
            np.testing.assert_array_equal(r.payload[name], g.payload[name])


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_executors_match_inline_order_and_state(executor, no_leftovers):
    frames = inputs()
    ref, _ = run_pipe(cfg("inline"), frames)
    got, report = run_pipe(cfg(executor), frames)
    assert_same(ref.results["after"], got.results["after"])
    assert all(f.metadata["worker"] == "yes" for f in got.results["after"])
    assert report.fates()["sum"]["delivered"] == 30


def test_async_nodes_run_on_the_workers_own_loop(no_leftovers):
    frames = inputs(10)
    ref, _ = run_pipe(cfg("inline", "TestAsyncTriple"), frames)
    got, _ = run_pipe(cfg("process", "TestAsyncTriple"), frames)
    assert_same(ref.results["after"], got.results["after"])


def test_process_keeps_frames_in_flight(no_leftovers):
    pipe, _ = run_pipe(cfg("process"), inputs(40))
    node = pipe.built.nodes["sum"].node
    assert isinstance(node, ProcessNode)
    st = node.statistics()
    assert 2 <= st.max_in_flight <= ProcessNode.pipeline_depth and st.frames_sent == 40
    assert st.closed and st.died is None and st.in_flight == 0
    assert st.worker_process_s is not None and st.worker_cpu_s is not None
    assert "sent=40" in repr(node)


def test_process_outputs_live_in_shared_memory_and_are_read_only(no_leftovers):
    pipe, _ = run_pipe(cfg("process"), inputs(5))
    out = pipe.results["after"]
    with pytest.raises(ValueError, match="read-only"):
        out[0].payload["c0"][0] = 1.0


def test_output_slots_never_reused_while_held(no_leftovers):
    def terminal(executor):  # the process node's own outputs are collected, and all held
        return {"nodes": [{"id": "src", "type": "Passthrough"},
                          {"id": "sum", "type": "TestRunningSum", "executor": executor}],
                "connections": [{"from": "src", "to": "sum"}]}

    frames = inputs(60, channels=4, samples=256)
    ref, _ = run_pipe(terminal("inline"), frames)
    got, _ = run_pipe(terminal("process"), frames)
    assert_same(ref.results["sum"], got.results["sum"])
    node = got.built.nodes["sum"].node
    assert node.statistics().output_slots >= 60
    assert all(f.payload.is_block for f in got.results["sum"])


def test_input_slots_not_reused_while_the_worker_node_keeps_them(no_leftovers):
    frames = [DataFrame.from_block(["a", "b"], np.full((2, 32), float(i)), sequence_id=i)
              for i in range(25)]
    ref, _ = run_pipe(cfg("inline", "TestKeepInputs"), frames)
    got, report = run_pipe(cfg("process", "TestKeepInputs"), frames)
    assert report.fates()["sum"]["delivered"] == 25
    assert_same(ref.results["after"], got.results["after"])
    assert got.built.nodes["sum"].node.statistics().input_slots >= 25


def test_outputs_that_do_not_fit_a_slot_are_pickled(no_leftovers):
    frames = inputs(12)
    ref, _ = run_pipe(cfg("inline", "TestShapeshifter"), frames)
    got, _ = run_pipe(cfg("process", "TestShapeshifter"), frames)
    assert_same(ref.results["after"], got.results["after"])
    assert [f.metadata.get("part") for f in got.results["after"][1:3]] == ["a", "b"]


def test_ragged_frames_among_block_frames_keep_their_order(no_leftovers):
    frames = [DataFrame(i, i, {"x": np.arange(3.0) + i, "y": np.arange(5.0 + i % 2)})
              if i % 3 else DataFrame.from_block(["x", "y"], np.full((2, 4), float(i)),
                                                 timestamp=i, sequence_id=i)
              for i in range(24)]
    ref, _ = run_pipe(cfg("inline", "TestScale"), frames)
    got, _ = run_pipe(cfg("process", "TestScale"), frames)
    assert_same(ref.results["after"], got.results["after"])


@pytest.mark.parametrize("policy", [
    {"policy": "SkipFrame", "on": ["KeyError"]},
    {"policy": "UseDefault", "fill_value": 0.0},
])
def test_errors_with_frames_in_flight_keep_order_and_state(policy, no_leftovers):
    frames = inputs(30)
    node = {"config": {"fail_on": [3, 4, 11, 29]}, "error_policy": policy}
    ref, ref_report = run_pipe(cfg("inline", **node), frames)
    got, report = run_pipe(cfg("process", **node), frames)
    assert_same(ref.results["after"], got.results["after"])
    assert report.fates()["sum"] == ref_report.fates()["sum"]


def test_restart_gives_frames_in_flight_to_the_fresh_instance(no_leftovers):
    frames = inputs(30)
    node = {"config": {"fail_on": [5, 17]}, "error_policy": {"policy": "SkipFrame"},
            "restart": {"strategy": "Immediate", "max_restarts": 10, "within_s": 60}}
    ref, ref_report = run_pipe(cfg("inline", **node), frames)
    got, report = run_pipe(cfg("process", **node), frames)
    assert_same(ref.results["after"], got.results["after"])
    assert report.fates()["sum"] == ref_report.fates()["sum"]
    assert report.nodes["sum"].restarts == 2


def test_propagate_fails_the_run_with_the_remote_error(no_leftovers):
    with pytest.raises(PipelineError, match="node 'sum': KeyError: .*no luck at 3") as info:
        run_pipe(cfg("process", config={"fail_on": [3]}), inputs(10))
    cause = info.value.__cause__
    assert isinstance(cause, RemoteNodeError) and type(cause).__name__ == "KeyError"
    assert "no luck at 3" in cause.remote_traceback


def test_killed_worker_is_a_clear_error(no_leftovers):
    with pytest.raises(PipelineError, match=r"died \(exit code -9") as info:
        run_pipe(cfg("process", config={"kill_on": 4}), inputs(10))
    assert isinstance(info.value.__cause__, WorkerDied)


def test_killed_worker_is_replaced_by_a_restart(no_leftovers):
    frames = inputs(15)
    restart = {"error_policy": {"policy": "SkipFrame"},
               "restart": {"strategy": "Immediate", "max_restarts": 5, "within_s": 60}}
    ref, _ = run_pipe(cfg("inline", config={"fail_on": [6]}, **restart), frames)
    got, report = run_pipe(cfg("process", config={"kill_on": 6}, **restart), frames)
    assert_same(ref.results["after"], got.results["after"])
    assert report.fates()["sum"]["skipped"] == 1 and report.nodes["sum"].restarts == 1


def test_end_of_stream_from_the_worker_ends_the_node(no_leftovers):
    got, report = run_pipe(cfg("process", config={"end_on": 7}), inputs(20))
    assert [f.sequence_id for f in got.results["after"]] == list(range(7))
    fates = report.fates()["sum"]
    assert fates["delivered"] == 7 and fates["received"] == sum(
        v for k, v in fates.items() if k not in ("received", "frames_out")) == 20


def test_forced_stop_counts_frames_in_flight_and_leaves_nothing(no_leftovers):
    async def go():
        pipe = AsyncPipeline(cfg("process", config={"delay": 0.05}), debug=True)
        report = await pipe.run(frames=inputs(40), timeout=0.5)
        return pipe, report

    pipe, report = run(go())
    assert report.state == "forced"
    fates = report.fates()["sum"]
    assert fates["dropped_shutdown"] > 0
    assert fates["received"] == sum(v for k, v in fates.items()
                                    if k not in ("received", "frames_out"))


def test_stop_right_after_start_leaves_no_worker(no_leftovers):
    async def go():
        pipe = AsyncPipeline(cfg("process"))
        await pipe.start()
        return await pipe.stop(timeout=0)

    report = run(go())
    assert report.state in ("forced", "completed")


def test_collecting_out_of_order_is_refused(no_leftovers):
    async def go():
        pipe = AsyncPipeline(cfg("process"))
        node = pipe.built.nodes["sum"].node
        await node.on_start()
        try:
            a, b = inputs(2)
            node.submit(a)
            node.submit(b)
            node.submit(a)  # already in flight: not sent twice
            assert node.in_flight() == 2
            with pytest.raises(Exception, match="order they were submitted"):
                await node.process(b)
            first, second = await node.process(a), await node.process(b)
            return first, second
        finally:
            await node.on_stop()

    first, second = run(go())
    assert (first.sequence_id, second.sequence_id) == (0, 1)


class _OneAtATime(Inlet):
    """An input whose batches hold one frame each (as from a paced upstream node)."""

    async def receive_batch(self, limit=None):
        return await super().receive_batch(1)


class _Collect:
    """A terminal outlet that keeps what it gets."""

    def __init__(self) -> None:
        self.frames: list[DataFrame] = []
        self.sent = 0

    def try_send(self, frame) -> bool:
        self.frames.append(frame)
        return True

    async def send(self, frame) -> None:
        self.frames.append(frame)

    async def send_all(self, frames) -> None:
        self.frames.extend(frames)

    def close(self) -> None:
        pass


def _process_driver(frames, node_type, config, *, aborting=False):
    """A driver for one process-executor stage fed one frame per batch from a channel."""
    ch = Channel(len(frames), name="up->sum")
    for f in frames:
        assert ch.try_send(f)
    ch.close()
    ctx = NodeContext(node_id="sum", clock=VirtualClock(), inputs=["up"], outputs=["after"])
    st = ResilientNode(lambda: ProcessNode(node_type, node_type.Config(**config), ctx),
                       clock=ctx.clock)
    out = _Collect()
    d = NodeDriver([st], out, runs=[stage_runner("process")], aborting=lambda: aborting)
    d.feed = InletFeed(_OneAtATime([ch], ["up"]), st)
    return d, st, out


def test_frames_stay_in_flight_across_batch_boundaries(no_leftovers):
    """Batches of one frame: the process stage takes frames already waiting on its input, so
    the worker gets up to ``pipeline_depth`` frames at once instead of one per batch."""
    n = 24
    frames = inputs(n)
    d, st, out = _process_driver(frames, Scale, {})
    run(d.run())
    assert [f.sequence_id for f in out.frames] == list(range(n))
    np.testing.assert_array_equal(out.frames[-1].block(), frames[-1].block() * 2)
    stats = st.node.statistics()
    assert stats.frames_sent == n and stats.in_flight == 0
    assert stats.max_in_flight == ProcessNode.pipeline_depth  # not 1: the worker never drains
    m = st.metrics
    assert m.received == m.delivered == n  # the frames taken ahead are counted once each


def test_frames_taken_ahead_are_settled_when_cancelled(no_leftovers):
    n = 40
    d, st, out = _process_driver(inputs(n), RunningSum, {"delay": 0.02})

    async def go():
        task = asyncio.create_task(d.run())
        for _ in range(2000):  # until frames were taken ahead (bounded: a busy machine)
            if st.node.statistics().frames_sent >= 6:
                break
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(go())
    m = st.metrics
    assert 6 <= m.received < n and m.dropped_shutdown >= 1
    m.check_accounting()  # received == sum of fates: in flight, in hand, all settled once
    assert m.delivered == len(out.frames)
