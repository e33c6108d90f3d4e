"""The main process dies (SIGKILL) while a process-executor worker is busy: nothing is left."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL and /proc semantics")

ROOT = Path(__file__).resolve().parents[2]
T = 60.0  # bound on every wait here (a busy machine starts a forkserver slowly)

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from streamlab import AsyncPipeline, DataFrame
    from streamlab.registry import register_node
    from tests.runtime.process_nodes import Busy

    if __name__ == "__main__":
        register_node(Busy, name="TestBusy")
        config = {"nodes": [
            {"id": "src", "type": "Passthrough"},
            {"id": "busy", "type": "TestBusy", "executor": "process",
             "config": {"pid_file": sys.argv[1], "delay": 2.0}},
            {"id": "after", "type": "Gain", "config": {"gain": 1.0}}],
            "connections": [{"from": "src", "to": "busy"}, {"from": "busy", "to": "after"}]}
        frames = [DataFrame.from_block(["a", "b"], np.full((2, 256), float(i)), timestamp=i,
                                       sequence_id=i) for i in range(50)]
        import asyncio
        asyncio.run(AsyncPipeline(config).run(frames=frames))
""")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # nobody reaps it here
    except psutil.NoSuchProcess:
        return True


def _until(predicate, what: str) -> None:
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {T} s waiting for {what}")


def test_killed_main_process_leaves_no_worker_no_shared_memory_no_traceback(tmp_path):
    script, pid_file, err_file = tmp_path / "main.py", tmp_path / "worker.pid", tmp_path / "err"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    with open(err_file, "wb") as err:  # a file: the worker inherits it and outlives the main
        main = subprocess.Popen([sys.executable, str(script), str(pid_file)], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        _until(lambda: pid_file.exists() or main.poll() is not None, "the worker to be busy")
        assert main.poll() is None, err_file.read_text()
        worker = int(pid_file.read_text())
        # The worker sleeps in process(); the proxy has sent the next frames meanwhile.
        main.send_signal(signal.SIGKILL)
        main.wait(T)
        _until(lambda: _gone(worker), f"worker {worker} to end after its main process")
    finally:
        if main.poll() is None:
            main.kill()
            main.wait(T)
    left = glob.glob(f"/dev/shm/streamlab-{main.pid}-*")
    assert left == [], f"shared memory left behind: {left}"
    stderr = err_file.read_text()
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


def test_regions_have_no_name_left_even_without_memfd(monkeypatch):
    # Where os.memfd_create is missing, a region is a /dev/shm file unlinked at once.
    from streamlab.runtime import worker

    monkeypatch.delattr(os, "memfd_create", raising=False)
    r = worker.new_region(4096)
    try:
        assert glob.glob(f"/dev/shm/streamlab-{os.getpid()}-*") == []
        r.view((2, 4))[:] = 7.0
        twin = worker.Region(r.idx, r.size, fd=os.dup(r.fd))  # as the worker maps it
        assert twin.array((2, 4)).tolist() == [[7.0] * 4] * 2
    finally:
        r.handed_over()
    assert r.fd is None
