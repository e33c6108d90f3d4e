"""RayBackend on a real single-machine Ray cluster bound to 127.0.0.1 (started once per module)."""

import asyncio
import os
import random
import signal
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'streamlab[ray]'")
psutil = pytest.importorskip("psutil")

from streamlab import AsyncPipeline, BackendError, DataFrame, PipelineError  # noqa: E402
from streamlab.distributed import DistributedPool, RayBackend, init_local_ray  # noqa: E402
from tests.conftest import run  # noqa: E402
from tests.distributed.test_backend import FAIL, HANG, SINE  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
T = 30.0  # bound on every wait in this module
# A new actor is a new Python process importing Ray: on a loaded 2-core machine (load 18
# measured) that took over 30 s, and each restart as long.
T_ACTOR = 120.0
SLOW = pytest.mark.timeout(600)  # tests that start and restart their own actors


@pytest.fixture(scope="module")
def backend():
    init_local_ray(num_cpus=2, object_store_memory=100 * 1024 * 1024)
    b = RayBackend(2, cpus_per_actor=1, cancel_timeout=5.0, start_timeout=T_ACTOR)
    try:
        run(asyncio.wait_for(b.start(), 2 * T_ACTOR))
        yield b
    finally:
        run(b.aclose())
        ray.shutdown()


async def until(predicate, what):
    """Poll an async predicate every 10 ms for at most T seconds."""
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_cluster_listens_on_loopback_only(backend):
    me = psutil.Process()
    listening = set()
    for proc in [me, *me.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        listening |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
    assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, listening


def test_instances_spread_over_actors_and_match_a_local_run(backend):
    async def go():
        pool = DistributedPool(SINE, backend, max_concurrent=4)
        results = await asyncio.wait_for(
            asyncio.gather(*(pool.execute(triggers=20) for _ in range(6))), T)
        local = AsyncPipeline(SINE)
        await local.run(triggers=20)
        await pool.aclose()
        return pool, results, local.results

    pool, results, local = run(go())
    assert [r.instance for r in results] == [f"sine-gain#{i}" for i in range(6)]
    assert len({r.worker for r in results}) == 2 and backend.workers == 2
    for r in results:
        assert r.report["state"] == "completed" and r.report["outputs"] == {"gain": 20}
        assert r.report["nodes"]["sine"]["fates"]["delivered"] == 20
        assert [f.sequence_id for f in r.results["gain"]] == list(range(20))
        assert all(np.array_equal(a.block(), b.block()) and a.metadata == b.metadata
                   for a, b in zip(r.results["gain"], local["gain"]))
    assert pool.statistics().completed == 6 and backend.workers == 2  # not closed by the pool
    assert repr(pool).startswith("<DistributedPool backend=ray workers=2 running=0")


def test_trigger_frames_travel_to_the_worker(backend):
    cfg = {"name": "g", "nodes": [{"id": "g", "type": "Gain", "config": {"gain": -2.0}}]}
    frames = [DataFrame.from_block(("a", "b"), np.arange(6.0).reshape(2, 3), timestamp=7 + i,
                                   sequence_id=i, metadata={"sample_rate": "3.0"})
              for i in range(4)]

    async def go():
        pool = DistributedPool(cfg, backend)
        return await asyncio.wait_for(pool.execute(frames=frames), T)

    out = run(go()).results["g"]
    assert [(f.timestamp, f.sequence_id) for f in out] == [(7, 0), (8, 1), (9, 2), (10, 3)]
    assert out[3].block().tolist() == [[-0.0, -2.0, -4.0], [-6.0, -8.0, -10.0]]
    assert out[0].metadata == {"sample_rate": "3.0"}


def test_pipeline_failure_in_a_worker_raises_pipeline_error(backend):
    async def go():
        pool = DistributedPool(FAIL, backend)
        return await asyncio.wait_for(
            asyncio.gather(pool.execute(triggers=4), pool.execute(triggers=1),
                           return_exceptions=True), T)

    failed, ok = run(go())
    assert isinstance(failed, PipelineError) and failed.node_id == "f"
    assert "'fail#0' failed: node 'f': FaultInjected" in str(failed)
    assert ok.report["state"] == "completed"


def test_node_type_missing_in_the_worker_is_a_backend_error(backend):
    # TestSlow is registered by tests/conftest.py in this process only, not in the actors.
    cfg = {"name": "local-only", "nodes": [{"id": "s", "type": "TestSlow"}]}

    async def go():
        return await asyncio.wait_for(DistributedPool(cfg, backend).execute(), T)

    with pytest.raises(BackendError, match="'local-only#0': worker ray-worker-.* could not "
                                           "build the pipeline.*TestSlow"):
        run(go())


def test_cancel_stops_the_remote_instance_and_admission_holds(backend):
    async def go():
        pool = DistributedPool(HANG, backend, max_concurrent=3)
        handles = [pool.execute(triggers=3) for _ in range(5)]
        running = await until(
            lambda: _when(pool.snapshot(), lambda s: len(s) == 3 and all(
                i.nodes["f"]["received"] >= 1 for i in s.values())), "3 hanging instances")
        assert pool.statistics().waiting == 2
        for h in handles:
            h.cancel()
        done = await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), T)
        after = await pool.snapshot()
        return pool, running, done, after

    pool, running, done, after = run(go())
    assert sorted(running) == ["hang#0", "hang#1", "hang#2"]
    assert len({s.worker for s in running.values()}) == 2  # spread over both actors
    assert all(isinstance(d, asyncio.CancelledError) for d in done)
    assert after == {}  # every remote instance was stopped
    st = pool.statistics()
    assert (st.cancelled, st.running, st.peak_running) == (5, 0, 3)


async def _dead(actor):
    try:
        await actor.info.remote()
    except ray.exceptions.RayActorError:
        return True
    return False


async def _when(coro, check):
    value = await coro
    return value if check(value) else None


@SLOW
def test_killed_actor_fails_its_instance_and_is_restarted(backend):
    async def go():
        # cancel_timeout bounds snapshot(): a fresh actor builds its first pipeline (imports)
        # on its event loop, seconds on a busy machine
        b = RayBackend(1, max_restarts=1, cpus_per_actor=0, cancel_timeout=T,
                       start_timeout=T_ACTOR)  # joins the module's cluster
        await asyncio.wait_for(b.start(), 2 * T_ACTOR)
        try:
            pool = DistributedPool(HANG, b)
            handle = pool.execute(triggers=3)
            seen = await until(lambda: pool.snapshot(), "a running instance")
            ray.kill(b._slots[0].actor, no_restart=False)
            with pytest.raises(BackendError) as info:
                await asyncio.wait_for(handle, 2 * T_ACTOR)
            again = await asyncio.wait_for(DistributedPool(SINE, b).execute(triggers=2), T_ACTOR)
            ray.kill(b._slots[0].actor, no_restart=False)  # no restart left
            await until(lambda: _dead(b._slots[0].actor), "the actor to die")  # kill is async
            with pytest.raises(BackendError) as gone:
                await asyncio.wait_for(DistributedPool(SINE, b).execute(triggers=1), T)
            with pytest.raises(BackendError, match="no Ray worker left"):
                await asyncio.wait_for(DistributedPool(SINE, b).execute(triggers=1), T)
            return pool, seen["hang#0"].worker, info.value, again, gone.value, b.workers
        finally:
            await b.aclose()

    pool, first, err, again, gone, workers = run(go())
    assert f"instance 'hang#0': Ray actor {first} died while running it" in str(err)
    assert f"Ray restarted it as {again.worker}" in str(err)
    assert again.report["state"] == "completed" and again.worker != first  # a new process
    assert pool.statistics().worker_failures == 1
    assert "it is gone; 0 of 1 workers remain" in str(gone) and workers == 0
    assert backend.workers == 2  # the module's actors are untouched


@SLOW
def test_actor_killed_from_outside_is_awaited_while_it_restarts(backend):
    # SIGKILL from outside Ray (as the OOM killer would): the driver sees the run fail before
    # Ray has restarted the actor, and a probe at once may fail too. A restarting actor is not
    # a dead one: the backend must wait for it (this failed at the 2nd kill before the fix).
    async def go():
        b = RayBackend(1, max_restarts=2, cpus_per_actor=0, cancel_timeout=T,
                       start_timeout=T_ACTOR)  # joins the module's cluster
        await asyncio.wait_for(b.start(), 2 * T_ACTOR)
        errors, workers = [], []
        try:
            for _ in range(2):
                pool = DistributedPool(HANG, b)
                handle = pool.execute(triggers=3)
                await until(pool.snapshot, "a running instance")
                pid = (await asyncio.wait_for(b._slots[0].actor.info.remote(), T))["pid"]
                os.kill(pid, signal.SIGKILL)
                with pytest.raises(BackendError) as info:
                    await asyncio.wait_for(handle, 2 * T_ACTOR)
                errors.append(str(info.value))
                workers.append(b.workers)
            after = await asyncio.wait_for(DistributedPool(SINE, b).execute(triggers=2), T_ACTOR)
            return errors, workers, after
        finally:
            await b.aclose()

    errors, workers, after = run(go())
    assert workers == [1, 1], errors
    assert all("died while running it" in e and "Ray restarted it as" in e for e in errors), errors
    assert after.report["state"] == "completed"
    assert backend.workers == 2  # the module's actors are untouched


def test_cancelling_at_random_instants_never_leaves_a_remote_run(backend, caplog):
    rng = random.Random(5)

    async def go():
        pool = DistributedPool(SINE, backend, max_concurrent=4)
        handles = [pool.execute(triggers=rng.choice([1, 50, 2000])) for _ in range(24)]
        for h in handles:
            if rng.random() < 0.6:
                await asyncio.sleep(rng.random() * 0.01)
                h.cancel()
        done = await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), T)
        return pool, done, await pool.snapshot()

    pool, done, after = run(go())
    st = pool.statistics()
    cancelled = sum(isinstance(d, asyncio.CancelledError) for d in done)
    assert st.cancelled == cancelled > 0 and st.completed + st.cancelled == 24
    assert st.failed == 0 and st.running == 0 and st.peak_running <= 4
    assert after == {} and backend.workers == 2
    assert "killing the actor" not in caplog.text  # every cancel was confirmed in time


def test_worker_cancel_by_token_before_and_during_a_run(backend):
    actor = backend._slots[0].actor
    key = "k-hang"

    async def go():
        early = await actor.cancel.remote("tok-early")  # before its run reaches the actor
        with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.RayTaskError)):
            await asyncio.wait_for(actor.run.remote("tok-early", "x#0", HANG, key, 3, None, {}), T)
        ref = actor.run.remote("tok-late", "x#1", HANG, key, 3, None, {})
        await until(lambda: _when(actor.snapshot.remote(), lambda s: len(s) == 1), "a run")
        during = await actor.cancel.remote("tok-late")
        with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.RayTaskError)):
            await asyncio.wait_for(ref, T)
        return early, during, await actor.snapshot.remote()

    assert run(go()) == (False, True, [])
