"""Live parameter and topology changes on a running AsyncPipeline (docs/live.md).

Every test is bounded by frame counts, never by wall-clock time: a reader consumes the output
stream (backpressure keeps the source at most a few frames ahead) and the changes are made by
another task whenever the reader has seen enough frames.
"""

import asyncio

import numpy as np
import pytest

from streamlab import AsyncPipeline
from streamlab.errors import ConfigError, PipelineStopped
from streamlab.runtime.live import NodeNotFound
from tests.conftest import run

FS = 1000.0
SPF = 32
#: Frames the reader may take per change beyond ``every``: a change waits for the batch in
#: progress (up to 16 frames of a free source) to leave its task, which needs the reader.
PER_CHANGE = 48


def budget(n, every):
    """Source frames enough for ``n`` changes every ``every`` frames (see PER_CHANGE)."""
    return n * (every + PER_CHANGE) + 200


def stream_cfg(channels=64, max_frames=1000, cutoff=40.0, extra=(), **pc):
    src = {"frequency": 3.0, "sample_rate": FS, "samples_per_frame": SPF, "mode": "free",
           "max_frames": max_frames, "channels": [f"c{i}" for i in range(channels)]}
    nodes = [{"id": "src", "type": "SineGenerator", "config": src},
             {"id": "f", "type": "IIRFilter",
              "config": {"btype": "lowpass", "cutoff": cutoff, "order": 4, "sample_rate": FS}},
             {"id": "sink", "type": "Passthrough"}]
    conns = [{"from": "src", "to": "f"}, {"from": "f", "to": "sink"}]
    return {"pipeline_config": {"debug": True, **pc}, "nodes": nodes, "connections": conns}


async def drive(pipe, changes, every, keep_frames=False, lag=64):
    """Read the output stream; call ``changes(i)`` (a coroutine returning False when done) in
    another task each time the reader has seen ``every`` more frames. Unless a change is in
    progress (it may wait for a task blocked on its outputs to reach its batch boundary), the
    reader stays at most ``every + lag`` frames ahead of the changes made, so the changes happen
    while frames flow whatever the machine's speed. Returns (sequence ids, frames or [], report)."""
    seen = done = 0
    finished = in_flight = False
    progress = asyncio.Condition()
    seqs, frames = [], []

    def ahead_ok():
        return finished or in_flight or seen < (done + 1) * every + lag

    async def reader():
        nonlocal seen
        async for _, f in pipe.outputs():
            seqs.append(f.sequence_id)
            if keep_frames:
                frames.append(f)
            async with progress:
                seen += 1
                progress.notify_all()
                await progress.wait_for(ahead_ok)

    async def changer():
        nonlocal done, finished, in_flight
        i = 0
        try:
            while True:
                async with progress:
                    await progress.wait_for(
                        lambda k=i: seen >= (k + 1) * every or pipe.state != "running")
                    in_flight = True
                    progress.notify_all()
                if pipe.state != "running" or not await changes(i):
                    return
                i += 1
                async with progress:
                    done, in_flight = i, False
                    progress.notify_all()
        finally:
            async with progress:
                finished = True
                progress.notify_all()

    await pipe.start()
    r = asyncio.create_task(reader())
    try:
        await asyncio.create_task(changer())
    finally:
        await r
    report = await pipe.stop()
    return seqs, frames, report


def assert_no_gaps_no_dups(seqs):
    assert seqs == list(range(len(seqs))), "sequence gaps or duplicates at the sink"


@pytest.mark.parametrize("fusion", [True, False])
def test_replace_filter_200_times_loses_nothing(fusion):
    n = 200

    async def go():
        pipe = AsyncPipeline(stream_cfg(max_frames=budget(n, 5), stamp_config_version=True),
                             outputs="stream", output_capacity=4, fusion=fusion)

        async def change(i):
            if i >= n:
                return False
            rec = await pipe.replace_node("f", {"type": "IIRFilter", "config": {
                "btype": "lowpass", "cutoff": 20.0 + (i % 7), "order": 2 + i % 3,
                "sample_rate": FS}})
            assert rec.ok and rec.version == i + 1 and rec.mode == "rebuilt"
            return True

        seqs, frames, report = await drive(pipe, change, every=5, keep_frames=True)
        return pipe, seqs, frames, report

    pipe, seqs, frames, report = run(go())
    assert pipe.config_version("f") == n
    assert_no_gaps_no_dups(seqs)
    assert len(seqs) == budget(n, 5)
    versions = {f.metadata["config_version.f"] for f in frames}
    assert len(versions) >= n // 10  # frames really flowed between the replacements
    f = report.nodes["f"]
    assert f.received == f.fates["delivered"] == budget(n, 5)
    assert f.config_version == n and f.config_changes == {"replace/applied": n}
    assert sum(report.nodes["f"].fates.values()) == report.nodes["f"].received


def test_update_cutoff_in_place_keeps_state_and_is_numbered():
    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=4, max_frames=400, stamp_config_version=True),
                             outputs="stream", output_capacity=4)

        async def change(i):
            if i >= 3:
                return False
            rec = await pipe.update("f", {"cutoff": 30.0 + 10 * i})
            assert rec.ok and rec.mode == "in_place" and rec.version == i + 1
            return True

        seqs, frames, report = await drive(pipe, change, every=50, keep_frames=True)
        return pipe, seqs, frames, report

    pipe, seqs, frames, report = run(go())
    assert_no_gaps_no_dups(seqs)
    assert pipe.node_config("f")["cutoff"] == 50.0
    stamps = [int(f.metadata["config_version.f"]) for f in frames]
    assert stamps == sorted(stamps) and set(stamps) == {0, 1, 2, 3}
    assert report.nodes["f"].config_version == 3
    assert [c.kind for c in pipe.changes] == ["update"] * 3


def test_bad_update_is_refused_with_json_path_and_old_config_runs():
    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=2, max_frames=300), outputs="stream",
                             output_capacity=4)
        errors = []

        async def change(i):
            if i == 0:
                before = pipe.graph()
                with pytest.raises(ConfigError) as e:
                    await pipe.update("f", {"cutoff": 600.0})   # above Nyquist
                errors.append(e.value)
                with pytest.raises(ConfigError) as e2:
                    await pipe.update("f", {"cutof": 5.0})      # unknown field
                errors.append(e2.value)
                with pytest.raises(ConfigError) as e3:
                    await pipe.replace_node("f", {"type": "IIRFiltre", "config": {}})
                errors.append(e3.value)
                with pytest.raises(NodeNotFound):
                    await pipe.update("nope", {"cutoff": 5.0})
                assert pipe.graph() == before
                return True
            return False

        seqs, _, report = await drive(pipe, change, every=20)
        return pipe, errors, seqs, report

    pipe, errors, seqs, report = run(go())
    assert errors[0].problems[0].path == "$.nodes[1].config.cutoff"
    assert "sample_rate/2" in errors[0].problems[0].message
    assert errors[1].problems[0].path == "$.nodes[1].config.cutof"
    assert errors[2].problems[0].path == "$.nodes[1].type"
    assert pipe.config_version("f") == 0
    assert pipe.node_config("f")["cutoff"] == 40.0
    assert_no_gaps_no_dups(seqs)
    assert len(seqs) == 300
    recs = pipe.changes
    assert [r.ok for r in recs] == [False] * 4 and all(r.error for r in recs)
    assert report.nodes["f"].config_changes == {"update/refused": 2, "replace/refused": 1}


def test_rebuild_field_builds_fresh_instance():
    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=2, max_frames=200), outputs="stream",
                             output_capacity=4)
        old = pipe.built.nodes["f"].node
        recs = []

        async def change(i):
            if i >= 1:
                return False
            recs.append(await pipe.update("f", {"order": 2}))   # a new structure
            return True

        seqs, _, _ = await drive(pipe, change, every=20)
        return pipe, old, recs, seqs

    pipe, old, recs, seqs = run(go())
    assert recs[0].mode == "rebuilt"
    assert pipe.built.nodes["f"].node is not old
    assert pipe.node_config("f")["order"] == 2
    assert_no_gaps_no_dups(seqs)


@pytest.mark.parametrize("fusion", [True, False])
def test_add_and_remove_nodes_while_running(fusion):
    n = 60

    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=8, max_frames=budget(n, 4)), outputs="stream",
                             output_capacity=4, fusion=fusion)

        async def change(i):
            if i >= n:
                return False
            if i % 2 == 0:
                rec = await pipe.add_node(f"g{i}", {"type": "Gain", "config": {"gain": 1.0}},
                                          after="f", before="sink")
                assert rec.ok and rec.mode == "inserted"
                g = pipe.graph()
                assert {"from": "f", "to": f"g{i}"} in [{"from": e["from"], "to": e["to"]}
                                                         for e in g["edges"]]
            else:
                rec = await pipe.remove_node(f"g{i - 1}")
                assert rec.ok and rec.mode == "bypassed"
                assert [e for e in pipe.graph()["edges"] if e["from"] == "f"][0]["to"] == "sink"
            return True

        seqs, frames, report = await drive(pipe, change, every=4, keep_frames=True)
        return pipe, seqs, frames, report

    pipe, seqs, frames, report = run(go())
    assert_no_gaps_no_dups(seqs)
    assert len(seqs) == budget(n, 4)
    # every inserted node saw frames; every one is accounted (debug mode checked it at the end)
    for i in range(0, n, 2):
        m = report.nodes[f"g{i}"]
        assert m.received == m.fates["delivered"]
    assert sum(report.nodes[f"g{i}"].received for i in range(0, n, 2)) > 0
    assert [n["id"] for n in pipe.graph()["nodes"]] == ["src", "f", "sink"]


def test_remove_and_add_refused_where_unsupported():
    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=2, max_frames=200), outputs="stream",
                             output_capacity=4)
        got = []

        async def change(i):
            if i:
                return False
            for call in (lambda: pipe.remove_node("src"),
                         lambda: pipe.add_node("x", {"type": "Gain", "config": {"gain": 1}},
                                               after="sink"),
                         lambda: pipe.add_node("f", {"type": "Gain", "config": {"gain": 1}},
                                               after="src"),
                         lambda: pipe.add_node("y", {"type": "Gain", "config": {"gain": "x"}},
                                               after="src")):
                with pytest.raises(ConfigError) as e:
                    await call()
                got.append(e.value.problems[0].path)
            return True

        seqs, _, _ = await drive(pipe, change, every=10)
        return pipe, got, seqs

    pipe, got, seqs = run(go())
    assert got == ["$.nodes[0]", "$.connections", "$.nodes[3].id", "$.nodes[3].config.gain"]
    assert [n["id"] for n in pipe.graph()["nodes"]] == ["src", "f", "sink"]
    assert_no_gaps_no_dups(seqs)


def test_tap_sees_latest_and_costs_nothing_when_closed():
    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=2, max_frames=100), outputs="stream",
                             output_capacity=4)
        tap = pipe.tap("f")
        assert tap.latest() is None and tap.seen == 0

        async def change(i):
            return False

        seqs, frames, _ = await drive(pipe, change, every=1, keep_frames=True)
        return pipe, tap, frames

    pipe, tap, frames = run(go())
    assert tap.seen == 100
    np.testing.assert_array_equal(tap.latest().block(), frames[-1].block())
    tap.close()
    assert pipe.built.nodes["f"].tap is None


def test_tap_with_history_returns_every_frame_since_a_count():
    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=2, max_frames=100), outputs="stream",
                             output_capacity=4)
        tap = pipe.tap("f", history=150)
        small = pipe.tap("f", history=10)

        async def change(i):
            return False

        seqs, frames, _ = await drive(pipe, change, every=1, keep_frames=True)
        return tap, small, frames

    tap, small, frames = run(go())
    got, n = tap.frames_since(0)
    assert n == 100 and [f.sequence_id for f in got] == [f.sequence_id for f in frames]
    got, n = tap.frames_since(90)
    assert [f.sequence_id for f in got] == [f.sequence_id for f in frames[90:]]
    assert tap.frames_since(100) == ([], 100)
    got, n = small.frames_since(0)  # fell behind: only the last 10 are kept
    assert n == 100 and [f.sequence_id for f in got] == [f.sequence_id for f in frames[-10:]]
    with pytest.raises(ValueError):
        AsyncPipeline(stream_cfg(channels=2)).tap("f", history=-1)


def test_changes_need_a_running_pipeline():
    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=2, max_frames=10))
        with pytest.raises(PipelineStopped):
            await pipe.update("f", {"cutoff": 5.0})
        assert pipe.node_schema("f")["properties"]["cutoff"]
        assert pipe.config_version("f") == 0
        await pipe.run()
        with pytest.raises(PipelineStopped):
            await pipe.update("f", {"cutoff": 5.0})
        return pipe

    pipe = run(go())
    assert [r.ok for r in pipe.changes] == [False, False]


def test_prometheus_counts_config_changes():
    pytest.importorskip("prometheus_client")
    from streamlab.metrics import MetricsCollector
    from streamlab.metrics.prometheus import render_text

    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=2, max_frames=200), outputs="stream",
                             output_capacity=4)
        collector = MetricsCollector()
        collector.register(pipe)

        async def change(i):
            if i:
                return False
            await pipe.update("f", {"cutoff": 30.0})
            with pytest.raises(ConfigError):
                await pipe.update("f", {"cutoff": -1.0})
            return True

        await drive(pipe, change, every=10)
        return render_text(collector)

    text = run(go())
    assert 'streamlab_config_changes_total{kind="update",node="f",pipeline="pipeline",' \
           'result="applied"} 1.0' in text
    assert 'result="refused"} 1.0' in text


def test_source_update_in_place_keeps_the_stream_and_refuses_a_restart():
    async def go():
        pipe = AsyncPipeline(stream_cfg(channels=2, max_frames=200), outputs="stream",
                             output_capacity=4)
        got = []

        async def change(i):
            if i:
                return False
            got.append(await pipe.update("src", {"amplitude": 3.0}))
            with pytest.raises(ConfigError) as e:
                await pipe.update("src", {"samples_per_frame": 16})
            got.append(e.value)
            return True

        seqs, frames, _ = await drive(pipe, change, every=20, keep_frames=True)
        return pipe, got, seqs, frames

    pipe, (rec, err), seqs, frames = run(go())
    assert rec.ok and rec.mode == "in_place"
    assert err.problems[0].path == "$.nodes[0].config" and "restart its data" in str(err)
    assert_no_gaps_no_dups(seqs)
    assert len(seqs) == 200 and all(f.n_samples == SPF for f in frames)
    ts = [f.timestamp for f in frames]
    assert all(b - a == SPF * 1000 for a, b in zip(ts, ts[1:]))
    assert pipe.node_config("src")["amplitude"] == 3.0 and pipe.config_version("src") == 1


def test_thread_executor_node_is_updated_and_replaced_in_its_thread_stage():
    n = 20

    async def go():
        cfg = stream_cfg(channels=4, max_frames=budget(n, 5))
        cfg["nodes"][1]["executor"] = "thread"
        pipe = AsyncPipeline(cfg, outputs="stream", output_capacity=4)

        async def change(i):
            if i >= n:
                return False
            if i % 2:
                rec = await pipe.update("f", {"cutoff": 30.0 + i})
            else:
                rec = await pipe.replace_node("f", {"type": "IIRFilter", "config": {
                    "cutoff": 25.0, "order": 2 + i % 4, "sample_rate": FS}})
            assert rec.ok
            return True

        seqs, _, report = await drive(pipe, change, every=5)
        return pipe, seqs, report

    pipe, seqs, report = run(go())
    assert_no_gaps_no_dups(seqs)
    assert pipe.config_version("f") == n
    assert report.nodes["f"].received == report.nodes["f"].fates["delivered"] == len(seqs)


def test_process_executor_node_refuses_live_changes():
    async def go():
        cfg = stream_cfg(channels=2, max_frames=50)
        cfg["nodes"][1]["executor"] = "process"
        pipe = AsyncPipeline(cfg, outputs="stream", output_capacity=4)
        got = []

        async def change(i):
            if i:
                return False
            with pytest.raises(ConfigError) as e:
                await pipe.update("f", {"cutoff": 30.0})
            got.append(e.value.problems[0].path)
            return True

        seqs, _, _ = await drive(pipe, change, every=5)
        return got, seqs

    got, seqs = run(go())
    assert got == ["$.nodes[1].executor"]
    assert_no_gaps_no_dups(seqs)
