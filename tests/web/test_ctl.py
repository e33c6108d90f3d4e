"""``streamlab ctl`` against ``streamlab run examples/live_eeg.json --ui`` (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the control API needs aiohttp (pip install 'streamlab[web]')")

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "streamlab", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def running(tmp_path):
    """The live EEG example with --ui; yields its environment (STREAMLAB_CONTROL_FILE set)."""
    env = {**os.environ, "STREAMLAB_CONTROL_FILE": str(tmp_path / "control.json")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlab", "run",
                             "examples/live_eeg.json", "--ui"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "control.json").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no token file"
        time.sleep(0.1)
    yield env, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_ctl_drives_a_running_pipeline(running):
    env, proc = running
    r = cli("ctl", "graph", env=env)
    assert r.returncode == 0, r.stderr
    assert "node gain" in r.stdout and "edge band -> gain: queue" in r.stdout
    r = cli("ctl", "config", "band", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["cutoff"] == [1.0, 40.0]
    r = cli("ctl", "stats", env=env)
    assert r.returncode == 0 and "pipeline 'live-eeg': running" in r.stdout
    r = cli("ctl", "set", "gain", "gain=abc", env=env)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "error: node 'gain': invalid change: nothing was changed (HTTP 422)",
        "  $.gain: Input should be a valid number, unable to parse string as a number (got 'abc')"]
    r = cli("ctl", "set", "nope", "gain=1", env=env)
    assert (r.returncode, r.stderr) == (1, "error: pipeline 'live-eeg' has no node 'nope'; nodes: "
                                   "eeg, mains, band, gain, window, power (HTTP 404)\n")
    r = cli("ctl", "set", "gain", "gain", env=env)
    assert (r.returncode, r.stderr) == (2, "error: expected key=value, got 'gain'\n")
    r = cli("ctl", "stop", env=env)
    assert r.returncode == 0 and r.stdout.startswith("stop requested")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "serving the dashboard on http://127.0.0.1:" in err and "token: " in err
    assert "Traceback" not in err
    assert not Path(env["STREAMLAB_CONTROL_FILE"]).exists()


def test_ctl_without_a_server_says_so(tmp_path):
    env = {**os.environ, "STREAMLAB_CONTROL_FILE": str(tmp_path / "none.json")}
    r = cli("ctl", "stats", env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: no token file at ")
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"url": "http://127.0.0.1:9", "token": "x"}))
    r = cli("ctl", "--file", stale, "stats", env=env)
    assert r.returncode == 2 and "cannot reach http://127.0.0.1:9" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("ctl", env=env)
    assert r.returncode == 2 and "needs an action" in r.stderr


def test_ui_port_in_use_is_a_usage_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {**os.environ, "STREAMLAB_CONTROL_FILE": str(tmp_path / "c.json")}
        r = cli("run", "examples/sine_gain.json", "--ui", port, env=env)
    assert r.returncode == 2 and r.stderr.startswith(f"error: cannot serve on 127.0.0.1:{port}")
    assert "Traceback" not in r.stderr
