"""``streamlab run`` acceptance (issue 3): SkipFrame delivers exactly the other frames and
the summary says so; Propagate exits non-zero with one clear line and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "fault_tolerance.json"
STREAMLAB = str(Path(sys.executable).with_name("streamlab"))


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STREAMLAB, "run", *args], capture_output=True, text=True, timeout=60)


def test_skipframe_delivers_exactly_the_other_frames(tmp_path):
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    proc = run([str(EXAMPLE), "--triggers", "70", "--output", str(out), "--summary", str(summary)])
    assert proc.returncode == 0, proc.stderr
    seqs = [json.loads(line)["sequence_id"] for line in out.read_text().splitlines()]
    assert seqs == [s for s in range(70) if (s + 1) % 7 != 0]
    report = json.loads(summary.read_text())
    assert report["state"] == "completed"
    fault = report["nodes"]["fault"]
    assert fault["received"] == 70 and fault["errors"] == 10
    assert fault["fates"]["delivered"] == 60 and fault["fates"]["skipped"] == 10
    assert sum(fault["fates"].values()) == 70
    assert report["nodes"]["gain"]["fates"]["delivered"] == 60
    assert "skipped" in proc.stderr  # the printed summary shows the fate


def test_propagate_exits_nonzero_with_one_clear_line(tmp_path):
    cfg = json.loads(EXAMPLE.read_text())
    for node in cfg["nodes"]:
        if node["id"] == "fault":
            node["error_policy"] = {"policy": "Propagate"}
    path = tmp_path / "propagate.json"
    path.write_text(json.dumps(cfg))
    proc = run([str(path), "--triggers", "70", "--summary", str(tmp_path / "s.json")])
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "'fault'" in errors[0] and "FaultInjected" in errors[0] and "sequence_id=6" in errors[0]
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["state"] == "failed" and report["failed_node"] == "fault"
    for name, node in report["nodes"].items():
        assert node["received"] == sum(node["fates"].values()), name
