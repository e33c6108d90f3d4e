"""``streamlab run`` hardening (issue 9): --output agrees with the summary whatever happens,
never hangs; --timeout forces; signals; bad --output/--summary paths; --metrics-port.

Every test runs the CLI as a user would (a subprocess, real signals) and asserts exact exit
codes and exact one-line messages. Waits poll a condition with a generous deadline.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fault_tolerance.json"
SINE_GAIN = ROOT / "examples" / "sine_gain.json"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
DEADLINE_S = 60.0  # generous: the machine is shared; a hang fails the test instead of CI


def cli(*args: Any, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamlab", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def fault_config(tmp_path: Path, fault: dict[str, Any], policy: str = "Propagate",
                 **extra: Any) -> Path:
    """examples/fault_tolerance.json (sine -> fault -> gain) with the fault node replaced."""
    cfg = json.loads(EXAMPLE.read_text())
    for node in cfg["nodes"]:
        if node["id"] == "fault":
            node["config"] = fault
            node["error_policy"] = {"policy": policy}
            node.update(extra)
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(cfg))
    return path


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def check_accounting(summary: dict[str, Any]) -> None:
    for name, node in summary["nodes"].items():
        assert node["received"] == sum(node["fates"].values()), name


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert proc.poll() is None, f"streamlab run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Running:
    """``streamlab run`` in the background, stderr in a file so it can be polled."""

    def __init__(self, tmp_path: Path, *args: Any) -> None:
        self.err_path = tmp_path / "stderr.txt"
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "streamlab", "run", *map(str, args)],
                                     stdout=subprocess.DEVNULL, stderr=self._err, text=True,
                                     env=ENV)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_output(self, out: Path, lines: int = 1) -> None:
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= lines,
                 self.proc, f"{lines} line(s) in {out.name}")

    def wait_stderr(self, text: str, times: int = 1) -> None:
        wait_for(lambda: self.stderr.count(text) >= times, self.proc, f"{times} x {text!r}")

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=DEADLINE_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._err.close()


# -- 1. --output holds every frame delivered before a failure ---------------------------------
@pytest.mark.parametrize("at", [500, 37])
def test_output_has_every_frame_delivered_before_a_failure(tmp_path, at):
    path = fault_config(tmp_path, {"at": [at]})
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    for _ in range(2):
        r = cli("run", path, "--triggers", 1000, "--output", out, "--summary", summary, "-q")
        assert r.returncode == 1
        assert len(errors(r.stderr)) == 1
        report = json.loads(summary.read_text())
        got = lines_of(out)
        assert len(got) == report["outputs"]["gain"] == at
        assert [x["sequence_id"] for x in got] == list(range(at))
        check_accounting(report)


def test_output_has_every_frame_when_a_dead_letter_node_fails(tmp_path):
    """fault skips every 7th frame to a dead-letter node that fails on its 3rd frame."""
    cfg = json.loads(EXAMPLE.read_text())
    cfg["nodes"][1]["dead_letter"] = "dl"
    cfg["nodes"].append({"id": "dl", "type": "FaultInjector", "config": {"every": 3},
                         "error_policy": {"policy": "Propagate"}})
    path = tmp_path / "dl.json"
    path.write_text(json.dumps(cfg))
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    r = cli("run", path, "--triggers", 100, "--output", out, "--summary", summary, "-q")
    assert r.returncode == 1
    [err] = errors(r.stderr)
    assert "'dl'" in err and "FaultInjected" in err
    report = json.loads(summary.read_text())
    got = lines_of(out)
    by_node = {n: sum(1 for x in got if x["node"] == n) for n in report["outputs"]}
    assert by_node == report["outputs"]
    assert sum(report["outputs"].values()) > 0
    check_accounting(report)


# -- 2. --output never hangs: tampered recordings, a full disk --------------------------------
_REC = struct.Struct("<IQ")
_U32 = struct.Struct("<I")
_MAGIC = b"SLREC1\n"


def _recording(tmp_path: Path) -> tuple[bytes, list[tuple[dict[str, Any], bytes]]]:
    """Record 10 frames with the Recorder node; return the file's prefix and its records."""
    rec = tmp_path / "good.slrec"
    cfg = {"name": "rec", "nodes": [
        {"id": "sine", "type": "SineGenerator",
         "config": {"frequency": 10.0, "sample_rate": 1000.0, "samples_per_frame": 10}},
        {"id": "rec", "type": "Recorder", "config": {"path": str(rec)}}],
        "connections": [{"from": "sine", "to": "rec"}]}
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(cfg))
    assert cli("run", path, "--triggers", 10, "-q").returncode == 0
    raw = rec.read_bytes()  # the format of streamlab.nodes.record's docstring
    assert raw.startswith(_MAGIC)
    pos = len(_MAGIC) + _U32.size + _U32.unpack_from(raw, len(_MAGIC))[0]
    prefix, records = raw[:pos], []
    while pos < len(raw):
        h, d = _REC.unpack_from(raw, pos)
        pos += _REC.size
        records.append((json.loads(raw[pos:pos + h]), raw[pos + h:pos + h + d]))
        pos += h + d
    assert len(records) == 10
    return prefix, records


@pytest.mark.parametrize("tamper", ["no_c", "t_abc", "huge_data"])
@pytest.mark.parametrize("where", [0, 5])
def test_tampered_recording_with_output_exits_1_and_never_hangs(tmp_path, tamper, where):
    prefix, records = _recording(tmp_path)
    body = b""
    for k, (head, data) in enumerate(records):
        dlen = len(data)
        if k == where:
            head = dict(head)
            if tamper == "no_c":
                del head["c"]
            elif tamper == "t_abc":
                head["t"] = "abc"
            else:
                dlen = 2 ** 62
        hb = json.dumps(head).encode()
        body += _REC.pack(len(hb), dlen) + hb + data
    bad = tmp_path / "bad.slrec"
    bad.write_bytes(prefix + body)
    cfg = {"name": "rp", "nodes": [{"id": "rp", "type": "Replay", "config": {"path": str(bad)}},
                                   {"id": "gain", "type": "Gain", "config": {"gain": 0.5}}],
           "connections": [{"from": "rp", "to": "gain"}]}
    path = tmp_path / "rp.json"
    path.write_text(json.dumps(cfg))
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    r = cli("run", path, "--output", out, "--summary", summary, "-q")
    assert r.returncode == 1, r.stderr
    assert len(errors(r.stderr)) == 1
    report = json.loads(summary.read_text())
    assert len(lines_of(out)) == report["outputs"]["gain"] <= where
    check_accounting(report)


def test_output_on_a_full_device_exits_1_with_one_line():
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    r = cli("run", SINE_GAIN, "--triggers", 100_000, "--output", "/dev/full", "-q")
    assert r.returncode == 1
    assert errors(r.stderr) == ["error: cannot write --output '/dev/full': No space left on device"]


def test_output_on_a_full_tmpfs_exits_1_with_one_line(tmp_path):
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a 1 MB tmpfs needs root (the /dev/full test covers ENOSPC)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        out = mnt / "o.jsonl"
        r = cli("run", SINE_GAIN, "--triggers", 100_000, "--output", out, "-q")
        assert r.returncode == 1
        assert errors(r.stderr) == [f"error: cannot write --output '{out}': No space left on device"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# -- 3. --timeout forces ----------------------------------------------------------------------
def _forced_line(prefix: str, report: dict[str, Any]) -> str:
    dropped = sum(n["fates"]["dropped_shutdown"] for n in report["nodes"].values())
    nodes = ", ".join(repr(n) for n in report["forced_nodes"])
    return f"error: {prefix}: forced node(s) {nodes}; {dropped} frame(s) dropped"


def test_timeout_forces_a_drain_that_hangs(tmp_path):
    """10 triggers all fit in the queues: the input ends, the hung node holds the drain."""
    path = fault_config(tmp_path, {"at": [5], "mode": "hang"})
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    r = cli("run", path, "--triggers", 10, "--timeout", 1, "--output", out, "--summary", summary,
            "-q")
    assert r.returncode == 1
    report = json.loads(summary.read_text())
    assert report["state"] == "forced" and "fault" in report["forced_nodes"]
    assert errors(r.stderr) == [_forced_line("stop forced after --timeout 1 s", report)]
    assert report["nodes"]["fault"]["fates"]["dropped_shutdown"] == 5  # 5..9, counted
    assert len(lines_of(out)) == report["outputs"]["gain"] == 5
    check_accounting(report)


def test_timeout_forces_a_node_hanging_while_triggers_wait(tmp_path):
    path = fault_config(tmp_path, {"at": [5], "mode": "hang"})
    summary = tmp_path / "s.json"
    r = cli("run", path, "--triggers", 1000, "--timeout", 1, "--summary", summary, "-q")
    assert r.returncode == 1
    report = json.loads(summary.read_text())
    assert report["state"] == "forced"
    assert errors(r.stderr) == [_forced_line(
        "no frame moved for --timeout 1 s while a trigger was waiting", report)]
    assert report["nodes"]["fault"]["fates"]["dropped_shutdown"] > 0
    check_accounting(report)


def test_timeout_forces_the_stop_after_ctrl_c(tmp_path):
    """A free-running source (no triggers, so no stall detection) held up by a hung node:
    only Ctrl-C ends its input; --timeout then forces the stop."""
    path = fault_config(tmp_path, {"at": [5], "mode": "hang"})
    cfg = json.loads(path.read_text())
    cfg["nodes"][0]["config"]["mode"] = "free"
    path.write_text(json.dumps(cfg))
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    run = Running(tmp_path, path, "--timeout", 1, "--output", out, "--summary", summary, "-q")
    run.wait_output(out, 5)  # 0..4 passed the hang: the run is under way, handlers installed
    run.proc.send_signal(signal.SIGINT)
    code = run.finish()
    report = json.loads(summary.read_text())
    assert code == 1, run.stderr
    assert errors(run.stderr) == [_forced_line("stop forced after --timeout 1 s", report)]
    assert report["state"] == "forced"
    check_accounting(report)


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_bad_timeout_is_a_usage_error(value):
    r = cli("run", SINE_GAIN, "--timeout", value)
    assert r.returncode == 2
    assert errors(r.stderr) == [f"error: --timeout must be a number of seconds >= 0, "
                                f"got {float(value)}"]


# -- 4. signals -------------------------------------------------------------------------------
def test_second_ctrl_c_while_triggers_wait_exits_130(tmp_path):
    path = fault_config(tmp_path, {"at": [5], "mode": "hang"})
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    # The monitor's plain lines (stderr is not a terminal) show the run under way; the hang
    # holds frame 5 from the first milliseconds: the queues fill and the triggers wait.
    run = Running(tmp_path, path, "--triggers", 1000, "--output", out, "--summary", summary,
                  "-q", "--monitor", "--monitor-interval", 0.1)
    run.wait_stderr("fault-tolerance running", times=3)
    run.proc.send_signal(signal.SIGINT)
    run.wait_stderr("stopping gracefully")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130, run.stderr
    assert errors(run.stderr) == []
    report = json.loads(summary.read_text())
    assert report["state"] == "forced"
    assert len(lines_of(out)) == report["outputs"]["gain"] == 5
    check_accounting(report)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_while_triggers_wait_stops_gracefully(tmp_path, sig):
    """A slow node (20 ms a frame): the trigger feed waits on backpressure most of the time."""
    path = fault_config(tmp_path, {"every": 1, "mode": "delay", "delay_ms": 20})
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    run = Running(tmp_path, path, "--triggers", 100_000, "--output", out, "--summary", summary,
                  "-q", "--monitor", "--monitor-interval", 0.1)
    run.wait_stderr("fault-tolerance running", times=3)
    run.proc.send_signal(sig)
    assert run.finish() == 0, run.stderr
    assert errors(run.stderr) == []
    report = json.loads(summary.read_text())
    assert report["state"] == "stopped"
    fates = report["nodes"]["gain"]["fates"]
    assert len(lines_of(out)) == report["outputs"]["gain"] == fates["delivered"] > 0
    assert sum(n["fates"]["dropped_shutdown"] for n in report["nodes"].values()) == 0
    check_accounting(report)


# -- 11. --output / --summary paths -----------------------------------------------------------
def test_missing_directories_are_created(tmp_path):
    out, summary = tmp_path / "a" / "b" / "o.jsonl", tmp_path / "c" / "s.json"
    r = cli("run", SINE_GAIN, "--triggers", 3, "--output", out, "--summary", summary, "-q")
    assert r.returncode == 0, r.stderr
    assert len(lines_of(out)) == 3 and json.loads(summary.read_text())["state"] == "completed"


@pytest.mark.parametrize("option", ["--output", "--summary"])
def test_a_directory_is_a_usage_error(tmp_path, option):
    r = cli("run", SINE_GAIN, option, tmp_path)
    assert r.returncode == 2
    assert errors(r.stderr) == [f"error: {option} '{tmp_path}': is a directory, expected a "
                                f"file path"]
    assert "run 'sine-gain'" not in r.stderr  # nothing ran


@pytest.mark.parametrize("option", ["--output", "--summary"])
def test_a_path_under_a_file_is_a_usage_error(tmp_path, option):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    target = afile / "sub" / "x.json"
    r = cli("run", SINE_GAIN, option, target)
    assert r.returncode == 2
    assert errors(r.stderr) == [f"error: {option} '{target}': '{afile}' is a file, not a "
                                f"directory"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes through file permissions")
def test_an_unwritable_path_is_a_usage_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = cli("run", SINE_GAIN, "--summary", ro / "s.json")
    finally:
        ro.chmod(0o700)
    assert r.returncode == 2
    assert errors(r.stderr) == [f"error: --summary '{ro / 's.json'}': cannot write: "
                                f"Permission denied"]


def test_an_unwritable_proc_file_is_a_usage_error():
    if not Path("/proc/version").is_file():
        pytest.skip("no /proc/version")
    r = cli("run", SINE_GAIN, "--summary", "/proc/version")
    assert r.returncode == 2
    [line] = errors(r.stderr)
    assert line.startswith("error: --summary '/proc/version': cannot write: ")


# -- 12. --metrics-port out of range ----------------------------------------------------------
@pytest.mark.parametrize("port", [99999, 65536, -1])
def test_metrics_port_out_of_range_is_a_usage_error(port):
    r = cli("run", SINE_GAIN, "--metrics-port", port)
    assert r.returncode == 2
    assert errors(r.stderr) == [f"error: --metrics-port must be 0..65535, got {port}"]
