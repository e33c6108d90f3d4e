"""Events at the command line (issue 11, "Bad input" and item 7), run as a user runs them.

Bad input (an events file with a missing column, unsorted or non-numeric onsets; ``tmin >
tmax``; a baseline outside the epoch): ``streamlab validate`` and ``streamlab run`` exit 2
with one problem line that starts with the JSON path and names the file and line, and no
traceback. A label no Epoch asks for is not an error: it is counted (``unmatched``), and every
node's events add up (``received == sum of fates``) in ``--summary`` and the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXIT_BAD_INPUT = 2
EVENTS_OK = "onset\ttrial_type\n0.5\ttarget\n1.0\tstandard\n1.5\tbreak\n2.0\ttarget\n9.0\ttarget\n"


def cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))  # this checkout's streamlab
    return subprocess.run([sys.executable, "-m", "streamlab", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def pipeline(tmp_path: Path, events: str, epoch: dict | None = None) -> Path:
    """Sine data + an events file -> Attach -> Epoch, all on the trigger clock (triggered
    sources start at the first trigger's timestamp), debug mode (the event ledger is checked)."""
    (tmp_path / "events.tsv").write_text(events)
    cfg = {"name": "ev", "pipeline_config": {"debug": True},
           "nodes": [{"id": "eeg", "type": "SineGenerator",
                      "config": {"frequency": 5.0, "sample_rate": 100.0,
                                 "samples_per_frame": 10, "mode": "triggered"}},
                     {"id": "stim", "type": "EventsFileSource",
                      "config": {"path": "events.tsv", "start_us": None, "mode": "triggered"}},
                     {"id": "att", "type": "Attach",
                      "config": {"data": "eeg", "markers": "stim", "max_marker_delay_s": 100.0}},
                     {"id": "ep", "type": "Epoch",
                      "config": {"tmin": -0.1, "tmax": 0.2, "labels": ["target", "standard"],
                                 **(epoch or {})}}],
           "connections": [{"from": "eeg", "to": "att"}, {"from": "stim", "to": "att"},
                           {"from": "att", "to": "ep"}]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(cfg))
    return path


def problem_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    """The problem lines of a bad-input exit (after the '<file>: N problem(s)' header)."""
    assert r.returncode == EXIT_BAD_INPUT, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].endswith("1 problem(s)"), lines
    return lines[1:]


@pytest.mark.parametrize("text,where,problem", [
    ("trial_type\tduration\ngo\t0\n", "line 1", "missing column 'onset'"),
    ("onset\ttrial_type\n2\tgo\n1\tgo\n", "line 3, column 1 ('onset')",
     "onset 1 is before the previous onset 2.0 (line 2); events files must be sorted"),
    ("onset\ttrial_type\n0.5\tgo\nsoon\tgo\n", "line 3, column 1 ('onset')",
     "expected the onset in seconds (a finite number), got 'soon'"),
], ids=["missing-column", "unsorted-onsets", "non-numeric-onset"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_bad_events_file_is_one_line_naming_the_json_path_file_and_line(
        tmp_path, text, where, problem, command):
    r = cli(command, pipeline(tmp_path, text), cwd=tmp_path)
    [line] = problem_lines(r)
    events = tmp_path / "events.tsv"
    assert line.startswith(f"$.nodes[1].config.path: {str(events)!r}, {where}: "), line
    assert problem in line and "[node 'stim', type 'EventsFileSource']" in line


@pytest.mark.parametrize("epoch,path,text", [
    ({"tmin": 0.5, "tmax": 0.1}, "$.nodes[3].config.tmax", "tmax must be greater than tmin"),
    ({"baseline": [-0.5, 0.0]}, "$.nodes[3].config.baseline",
     "baseline [-0.5, 0.0] s is outside the epoch [-0.1, 0.2] s"),
], ids=["tmin-after-tmax", "baseline-outside"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_bad_epoch_window_is_one_line_naming_its_json_path(tmp_path, epoch, path, text,
                                                             command):
    r = cli(command, pipeline(tmp_path, EVENTS_OK, epoch), cwd=tmp_path)
    [line] = problem_lines(r)
    assert line.startswith(path + ": ") and text in line, line


def test_a_label_no_epoch_asks_for_is_counted_and_every_event_has_a_fate(tmp_path):
    summary = tmp_path / "summary.json"
    r = cli("run", pipeline(tmp_path, EVENTS_OK), "--triggers", 30, "--summary", summary,
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "warning" not in r.stderr.lower(), r.stderr
    nodes = json.loads(summary.read_text())["nodes"]
    att, ep = nodes["att"], nodes["ep"]
    # 5 markers: the one at 9 s is after the 3 s of data; 'break' is asked for by no Epoch
    assert att["events_received"] == 5
    assert {k: v for k, v in att["event_fates"].items() if v} == {"carried": 4, "out_of_range": 1}
    assert ep["events_received"] == 4
    assert {k: v for k, v in ep["event_fates"].items() if v} == {"epoched": 3, "unmatched": 1}
    assert ep["events_emitted"] == 3 and ep["frames_out"] == 3
    for name, node in nodes.items():  # the event ledger balances on every node
        assert node["events_received"] == sum(node["event_fates"].values()), name
    assert "events at ep: in=4 out=3 epoched=3 unmatched=1" in r.stderr
