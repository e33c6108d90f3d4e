"""``streamlab run`` with frames that carry events: the --output lines hold them exactly, the
--summary file and the terminal report account for them (in process, with a test node)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamlab import DataFrame
from streamlab.cli.main import EXIT_OK, main
from streamlab.events import Event
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.registry import register_node, unregister_node


class _Mark(ProcessingNode):
    """Test node: two events on every frame whose sequence id is a multiple of ``every``."""

    class Config(NodeConfig):
        every: int = 2

    def process(self, frame):
        if frame.sequence_id % self.config.every:
            return frame
        i = frame.sequence_id
        return frame.with_events([Event(frame.timestamp, f"m{i}", 0.1 * i + 0.2, 0, 0),
                                  Event(frame.timestamp + 5, "end", None, 40_000, 3)])


@pytest.fixture(autouse=True)
def _nodes():
    register_node(_Mark, name="TestCliMark")
    yield
    unregister_node("TestCliMark")


def config(tmp_path: Path) -> Path:
    cfg = {"name": "ev", "pipeline_config": {"debug": True},
           "nodes": [{"id": "src", "type": "SineGenerator",
                      "config": {"frequency": 5.0, "sample_rate": 100.0, "samples_per_frame": 4,
                                 "channels": ["a"]}},
                     {"id": "mark", "type": "TestCliMark"},
                     {"id": "gain", "type": "Gain", "config": {"gain": 2.0}}],
           "connections": [{"from": "src", "to": "mark"}, {"from": "mark", "to": "gain"}]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(cfg))
    return path


def test_output_lines_carry_events_and_summary_and_report_count_them(tmp_path, capsys):
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    code = main(["run", str(config(tmp_path)), "--triggers", "5", "--output", str(out),
                 "--summary", str(summary)])
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["sequence_id"] for x in lines] == [0, 1, 2, 3, 4]
    assert ["events" in x for x in lines] == [True, False, True, False, True]
    ts = lines[2]["timestamp"]
    assert lines[2]["events"] == [{"time": ts, "label": "m2", "sample": 0, "value": 0.4},
                                  {"time": ts + 5, "label": "end", "sample": 3,
                                   "duration": 40_000}]
    back = DataFrame.from_dict({k: v for k, v in lines[4].items() if k != "node"})
    assert [e.label for e in back.events] == ["m4", "end"]
    assert back.events[0].value == 0.1 * 4 + 0.2  # exact float round trip

    nodes = json.loads(summary.read_text())["nodes"]
    assert (nodes["mark"]["events_received"], nodes["mark"]["events_emitted"]) == (0, 6)
    assert nodes["gain"]["events_received"] == 6 and nodes["gain"]["events_emitted"] == 6
    assert nodes["gain"]["event_fates"] == {"carried": 6, "epoched": 0, "rejected": 0,
                                            "out_of_range": 0, "late": 0, "unmatched": 0,
                                            "dropped": 0}
    assert nodes["src"]["events_received"] == 0
    # The terminal report: one events line per node that saw events, none for src.
    assert "  events at mark: in=0 out=6\n" in err + "\n"
    assert "  events at gain: in=6 out=6 carried=6" in err
    assert "events at src" not in err


def test_event_free_run_report_has_no_events_line(tmp_path, capsys):
    cfg = json.loads(config(tmp_path).read_text())
    cfg["nodes"][1] = {"id": "mark", "type": "Passthrough"}
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(cfg))
    assert main(["run", str(path), "--triggers", "3", "--output", str(tmp_path / "o.jsonl")]) \
        == EXIT_OK
    assert "events" not in capsys.readouterr().err
    assert all("events" not in json.loads(x)
               for x in (tmp_path / "o.jsonl").read_text().splitlines())
