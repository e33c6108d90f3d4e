"""``--set KEY=VALUE`` on run, validate and graph: parameter sweeps without editing the file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamlab import ConfigError, load_config
from streamlab.config import apply_overrides

ROOT = Path(__file__).resolve().parents[2]
SINE_GAIN = ROOT / "examples" / "sine_gain.json"
ECG = ROOT / "examples" / "ecg_heart_rate.json"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "streamlab", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def set_problems(data, *overrides):
    with pytest.raises(ConfigError) as info:
        load_config(data, overrides=overrides)
    return [str(p) for p in info.value.problems]


def test_run_with_set_changes_the_output(tmp_path):
    out = tmp_path / "o.jsonl"
    r = cli("run", SINE_GAIN, "--triggers", 2, "--output", out, "-q",
            "--set", "nodes.gain.config.gain=0", "--set", "nodes.sine.config.amplitude=3")
    assert r.returncode == 0, r.stderr
    frames = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(frames) == 2
    assert all(v == 0.0 for f in frames for v in f["payload"]["left"])


def test_values_are_json_with_string_fallback():
    spec = load_config(SINE_GAIN, overrides=[
        "nodes.gain.config.gain=0.25", "name=sweep-1", "pipeline_config.channel_capacity=4",
        "connections.0.overflow=drop_oldest", "nodes.sine.config.channels=[\"a\"]",
        "pipeline_config.fusion=false"])
    assert spec.node_config("gain").gain == 0.25
    assert spec.name == "sweep-1"
    assert spec.pipeline_config.channel_capacity == 4 and spec.pipeline_config.fusion is False
    assert spec.connections[0].overflow == "drop_oldest"
    assert spec.node_config("sine").channels == ["a"]


def test_a_default_can_be_set_and_objects_are_created():
    data = {"nodes": [{"id": "g", "type": "Gain"}]}
    spec = load_config(data, overrides=["nodes.g.config.gain=3", "nodes.g.error_policy.policy=SkipFrame",
                                        "pipeline_config.debug=true"])
    assert spec.node_config("g").gain == 3.0
    assert spec.node("g").error_policy.policy == "SkipFrame"
    assert spec.pipeline_config.debug is True
    assert data == {"nodes": [{"id": "g", "type": "Gain"}]}  # the caller's dict is not touched


def test_node_ids_with_dots_and_indices():
    data = {"nodes": [{"id": "a.b", "type": "Gain", "config": {"gain": 1}},
                      {"id": "a", "type": "Gain", "config": {"gain": 1}}],
            "connections": [{"from": "a.b", "to": "a"}]}
    spec = load_config(data, overrides=["nodes.a.b.config.gain=2", "nodes.1.config.gain=5"])
    assert spec.node_config("a.b").gain == 2.0 and spec.node_config("a").gain == 5.0


def test_unknown_paths_name_the_json_path_and_close_matches():
    assert set_problems(ECG, "nodes.r_peaks.config.hieght=0.5", "nodes.r_peak.config.height=1",
                        "pipline_config.debug=true", "connections.9.capacity=2",
                        "name.x=1", "nodes.r_peaks.config.height") == [
        "$.nodes[2].config.hieght: --set nodes.r_peaks.config.hieght=0.5: no such key "
        "(did you mean 'height'?)",
        "$.nodes: --set nodes.r_peak.config.height=1: no node with id 'r_peak' "
        "(did you mean 'r_peaks'?)",
        "$.pipline_config: --set pipline_config.debug=true: no such key "
        "(did you mean 'pipeline_config'?)",
        "$.connections: --set connections.9.capacity=2: no element '9': expected an index "
        "from 0 to 2",
        "$.name: --set name.x=1: str value here, not an object or a list: cannot set 'x' "
        "inside it",
        "$: --set 'nodes.r_peaks.config.height': expected KEY=VALUE, e.g. "
        "nodes.gain.config.gain=0.5",
    ]


def test_result_is_validated_like_a_file():
    assert set_problems(SINE_GAIN, "nodes.gain.config.gain=abc", "pipeline_config.channel_capacity=0") == [
        "$.nodes[1].config.gain: Input should be a valid number, unable to parse string as a "
        "number (got 'abc') [node 'gain', type 'Gain']",
        "$.pipeline_config.channel_capacity: Input should be greater than or equal to 1 (got 0)",
    ]


def test_apply_overrides_leaves_non_objects_to_the_loader():
    assert apply_overrides([1], ["a=1"]) == [1]


@pytest.mark.parametrize("command", ["validate", "graph", "run"])
def test_cli_errors_exit_2_with_the_json_path(command):
    r = cli(command, ECG, "--set", "nodes.r_peaks.config.hieght=0.5")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"{ECG}: 1 problem(s)",
        "$.nodes[2].config.hieght: --set nodes.r_peaks.config.hieght=0.5: no such key "
        "(did you mean 'height'?)",
    ]


def test_validate_and_graph_accept_set():
    r = cli("validate", ECG, "--set", "nodes.r_peaks.config.height=0.5")
    assert r.returncode == 0 and r.stdout.startswith(f"ok: {ECG}"), r.stderr
    r = cli("graph", SINE_GAIN, "--set", "nodes.gain.type=Passthrough", "--set",
            "nodes.gain.config={}")
    assert r.returncode == 0, r.stderr
    assert "gain: Passthrough" in r.stdout
