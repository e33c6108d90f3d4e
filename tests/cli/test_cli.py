"""The command line, through subprocess calls as a user would run it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SINE_GAIN = ROOT / "examples" / "sine_gain.json"


def cli(*args, cwd=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "streamlab", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def test_run_writes_outputs_matching_the_formula(tmp_path):
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    r = cli("run", SINE_GAIN, "--triggers", 50, "--output", out, "--summary", summary)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 50 and {x["node"] for x in lines} == {"gain"}
    assert [x["sequence_id"] for x in lines] == list(range(50))
    ts = [x["timestamp"] for x in lines]
    assert all(b - a == 100_000 for a, b in zip(ts, ts[1:]))  # 100 samples at 1 kHz
    cfg = json.loads(SINE_GAIN.read_text())["nodes"][0]["config"]
    n = np.arange(50 * 100)
    expect = 0.5 * cfg["amplitude"] * np.sin(2 * np.pi * cfg["frequency"] * n / cfg["sample_rate"])
    for ch in ("left", "right"):
        got = np.concatenate([x["payload"][ch] for x in lines])
        assert np.max(np.abs(got - expect)) < 1e-9
    assert lines[0]["metadata"]["sample_rate"] == "1000.0"
    rep = json.loads(summary.read_text())
    assert rep["state"] == "completed" and rep["nodes"]["gain"]["fates"]["delivered"] == 50
    assert "gain" in r.stderr and "delivered" in r.stderr  # fate summary printed


def test_validate_ok_and_problems(tmp_path):
    r = cli("validate", SINE_GAIN)
    assert r.returncode == 0 and r.stdout.startswith("ok:")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({
        "nodes": [{"id": "a", "type": "SineGenerator", "config": {"frequency": 1}},
                  {"id": "b", "type": "Gain", "config": {"gain": "loud"}}],
        "connections": [{"from": "a", "to": "b", "capacity": 0}, {"from": "b", "to": "c"}]}))
    r = cli("validate", bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()[1:]
    assert [ln.split(":")[0] for ln in lines] == [
        "$.connections[0].capacity", "$.connections[1].to", "$.nodes[0].config.sample_rate",
        "$.nodes[0].config.samples_per_frame", "$.nodes[1].config.gain"]


@pytest.mark.parametrize("content, expect", [
    ("{not json", "$: invalid JSON at line 1 column 2"),
    (None, "$: config file not found"),
    ("DIR", "$: expected a JSON file, got a directory"),
    ('{"nodes": [{"id": "x", "type": "Gain", "config": {"gain": Infinity}}]}', "Infinity is not valid JSON"),
])
def test_bad_input_never_tracebacks(tmp_path, content, expect):
    path = tmp_path / "c.json"
    if content == "DIR":
        path = tmp_path
    elif content is not None:
        path.write_text(content)
    for cmd in ("validate", "run", "graph"):
        r = cli(cmd, path)
        assert r.returncode == 2, (cmd, r.stderr)
        assert "Traceback" not in r.stderr and expect in r.stderr, (cmd, r.stderr)


FAILING_MAIN = """
import sys
from streamlab import ProcessingNode, register_node
from streamlab.cli.main import main

@register_node
class Explode(ProcessingNode):
    def process(self, frame):
        if frame.sequence_id == 2:
            raise ZeroDivisionError("cannot divide the signal")
        return frame

raise SystemExit(main(sys.argv[1:]))
"""


def test_failing_pipeline_exits_1_with_one_clear_line(tmp_path):
    cfg = tmp_path / "f.json"
    cfg.write_text(json.dumps({
        "nodes": [{"id": "src", "type": "SineGenerator",
                   "config": {"frequency": 1, "sample_rate": 10, "samples_per_frame": 2}},
                  {"id": "bomb", "type": "Explode"}],
        "connections": [{"from": "src", "to": "bomb"}]}))
    r = subprocess.run([sys.executable, "-c", FAILING_MAIN, "run", str(cfg), "--triggers", "5"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: pipeline 'pipeline' failed: node 'bomb': ZeroDivisionError: "
                      "cannot divide the signal"]


def test_nodes_schema_graph(tmp_path):
    r = cli("nodes")
    assert r.returncode == 0 and "SineGenerator" in r.stdout and "Gain" in r.stdout
    r = cli("nodes", "--json")
    data = {d["type"]: d for d in json.loads(r.stdout)}
    assert "gain" in data["Gain"]["config_schema"]["properties"] and data["SineGenerator"]["source"]
    r = cli("schema")
    schema = json.loads(r.stdout)
    assert schema["title"] == "StreamLab pipeline" and "config.Gain" in schema["$defs"]
    r = cli("graph", SINE_GAIN)
    assert r.stdout.startswith("flowchart LR") and "n_sine --> n_gain" in r.stdout
    r = cli("graph", SINE_GAIN, "--format", "dot")
    assert '"sine" -> "gain";' in r.stdout


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "streamlab"
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("streamlab ")
