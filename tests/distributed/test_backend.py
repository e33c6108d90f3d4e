"""The backend interface: frame packing, the worker core, InProcessBackend and FakeBackend."""

import asyncio
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlab import AsyncPipeline, BackendError, DataFrame, PipelineError
from streamlab.distributed import (
    Backend,
    FakeBackend,
    InProcessBackend,
    RunRequest,
    pack_frames,
    unpack_frames,
)
from streamlab.distributed.backend import InstanceRunner, config_key
from tests.conftest import run

SINE = json.loads((Path(__file__).parents[2] / "examples" / "sine_gain.json").read_text())
HANG = {"name": "hang",
        "nodes": [{"id": "src", "type": "Passthrough"},
                  {"id": "f", "type": "FaultInjector", "config": {"at": [1], "mode": "hang"}}],
        "connections": [{"from": "src", "to": "f"}]}
FAIL = {"name": "fail", "nodes": [{"id": "f", "type": "FaultInjector", "config": {"at": [2]}}]}


def request(config, name="i#0", **kw):
    return RunRequest(name, config, config_key(config), **kw)


# -- packing -------------------------------------------------------------------------------
finite = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def frame_lists(draw):
    n = draw(st.integers(0, 5))
    uniform = draw(st.booleans())
    names = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3, unique=True))
    samples = draw(st.integers(0, 4))
    frames = []
    for i in range(n):
        chans = {c: draw(st.lists(finite, min_size=samples, max_size=samples)) for c in names}
        if not uniform:
            chans[names[0]] = draw(st.lists(finite, min_size=0, max_size=6))
        meta = draw(st.sampled_from([{}, {"sample_rate": "250.0"}, {"k": str(i)}]))
        frames.append(DataFrame(draw(st.integers(0, 2**62)), draw(st.integers(-5, 2**40)),
                                chans, meta))
    return frames


@settings(max_examples=60, deadline=None)
@given(frame_lists())
def test_pack_round_trip_is_exact_and_picklable(frames):
    packed = pickle.loads(pickle.dumps(pack_frames(frames), protocol=5))
    back = unpack_frames(packed)
    assert back == frames
    assert all(not a.flags.writeable for f in back for a in f.payload.values())


def test_pack_uses_one_block_when_uniform_and_stores_equal_metadata_once():
    frames = [DataFrame.from_block(("x", "y"), np.full((2, 3), float(i)), sequence_id=i,
                                   metadata={"sample_rate": "100.0"}) for i in range(4)]
    packed = pack_frames(frames)
    assert packed.blocks.shape == (4, 2, 3) and packed.ragged is None
    assert len({id(m) for m in packed.metadata}) == 1 and len(packed) == 4
    back = unpack_frames(packed)
    assert [f.sequence_id for f in back] == [0, 1, 2, 3]
    assert back[2].block().tolist() == [[2.0] * 3] * 2 and back[0].payload.is_block

    ragged = pack_frames([DataFrame(0, 0, {"x": [1.0]}), DataFrame(0, 1, {"x": [1.0, 2.0]})])
    assert ragged.blocks is None and len(ragged.ragged) == 2


def test_config_key_is_stable_and_sensitive():
    same = json.loads(json.dumps(SINE))
    assert config_key(SINE) == config_key(same)
    other = json.loads(json.dumps(SINE))
    other["nodes"][1]["config"]["gain"] = 0.25
    assert config_key(other) != config_key(SINE)


# -- the worker core -----------------------------------------------------------------------
def test_runner_validates_each_config_once():
    runner = InstanceRunner("w")
    a = runner.spec(SINE, "k1")
    assert runner.spec({"not": "even valid"}, "k1") is a  # cached by key
    with pytest.raises(Exception, match="unknown key"):
        runner.spec({"not": "valid"}, "k2")


# -- InProcessBackend ----------------------------------------------------------------------
def test_in_process_backend_matches_a_local_run():
    async def go():
        backend = InProcessBackend()
        assert isinstance(backend, Backend) and backend.workers == 1
        await backend.start()
        result = await backend.run(request(SINE, triggers=5))
        pipe = AsyncPipeline(SINE)
        await pipe.run(triggers=5)
        return result, pipe.results

    result, local = run(go())
    assert result.instance == "i#0" and result.worker == "local"
    assert result.report["state"] == "completed" and result.report["outputs"] == {"gain": 5}
    assert result.report["nodes"]["gain"]["fates"]["delivered"] == 5
    assert [f.sequence_id for f in result.results["gain"]] == [0, 1, 2, 3, 4]
    assert all(np.array_equal(a.block(), b.block()) for a, b in zip(result.results["gain"],
                                                                     local["gain"]))
    json.dumps(result.report)  # plain data


def test_in_process_backend_sends_given_trigger_frames():
    cfg = {"nodes": [{"id": "g", "type": "Gain", "config": {"gain": 3.0}}]}
    frames = tuple(DataFrame(10 * i, i, {"x": [float(i)]}) for i in range(3))
    result = run(InProcessBackend().run(request(cfg, frames=frames)))
    assert [f.payload["x"].tolist() for f in result.results["g"]] == [[0.0], [3.0], [6.0]]


def test_in_process_failure_raises_pipeline_error():
    with pytest.raises(PipelineError, match="injected fault") as info:
        run(InProcessBackend().run(request(FAIL, triggers=4)))
    assert info.value.node_id == "f"


def test_in_process_cancel_forces_the_instance_and_snapshot_sees_it_running():
    async def go():
        backend = InProcessBackend()
        task = asyncio.ensure_future(backend.run(request(HANG, "h#0", triggers=3)))
        for _ in range(200):
            snap = await backend.snapshot()
            if snap.get("h#0") and snap["h#0"].nodes["f"]["received"] >= 2:
                break
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        return snap, await backend.snapshot()

    during, after = run(go())
    assert during["h#0"].state == "running" and during["h#0"].worker == "local"
    assert after == {}


def test_closed_in_process_backend_refuses_work():
    async def go():
        backend = InProcessBackend()
        await backend.aclose()
        assert backend.workers == 0
        with pytest.raises(BackendError, match="closed"):
            await backend.start()
        await backend.run(request(SINE))

    with pytest.raises(BackendError, match="'i#0'.*closed"):
        run(go())


# -- FakeBackend ---------------------------------------------------------------------------
def test_fake_backend_holds_releases_and_records():
    async def go():
        fake = FakeBackend(workers=3)
        fake.hold()
        tasks = [asyncio.ensure_future(fake.run(request(SINE, f"i#{i}", triggers=2)))
                 for i in range(3)]
        await asyncio.sleep(0.01)
        held = (list(fake.started), len(fake.requests))
        fake.release()
        results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return fake, held, results

    fake, held, results = run(go())
    assert held == ([], 3)
    assert fake.started == fake.finished == ["i#0", "i#1", "i#2"]
    assert [r.worker for r in results] == ["fake-0", "fake-1", "fake-2"]
    assert all(len(r.results["gain"]) == 2 for r in results)
    assert repr(fake).startswith("<FakeBackend workers=3 started=3")


def test_fake_backend_kill_and_reject_raise_backend_errors():
    async def go():
        fake = FakeBackend()
        fake.kill("i#1")
        with pytest.raises(BackendError, match="'i#1'.*died"):
            await fake.run(request(SINE, "i#1"))
        fake.reject = "unknown node type 'X'"
        with pytest.raises(BackendError, match="rejected the config.*unknown node type"):
            await fake.run(request(SINE, "i#2"))

    run(go())


# -- optional dependency ---------------------------------------------------------------------
def test_importing_the_package_imports_no_ray():
    code = "import sys, streamlab.distributed; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_ray_backend_without_ray_names_the_extra(monkeypatch):
    from streamlab.distributed import RayBackend

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BackendError, match=r"pip install 'streamlab\[ray\]'"):
        run(RayBackend().start())
