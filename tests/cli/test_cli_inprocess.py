"""The CLI called in process (``streamlab.cli.main.main([...])``): exact output and exit codes.

``test_cli.py`` runs ``python -m streamlab`` in subprocesses, which is what a user sees but
which mutation testing cannot credit; these tests check the same behaviours in process, with
capsys, value for value.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from pathlib import Path

import pytest

import streamlab.cli.run as run_cli
from streamlab.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, build_parser, main
from streamlab.cli.observe import progress_of
from streamlab.config import load_config, pipeline_json_schema
from streamlab.registry import node_types
from streamlab.runtime.async_pipeline import AsyncPipeline

ROOT = Path(__file__).resolve().parents[2]
SINE_GAIN = ROOT / "examples" / "sine_gain.json"

SINE = {"id": "sine", "type": "SineGenerator",
        "config": {"frequency": 10.0, "sample_rate": 1000.0, "samples_per_frame": 4,
                   "channels": ["x"]}}
GAIN = {"id": "gain", "type": "Gain", "config": {"gain": 0.5}}


def write(tmp_path: Path, data: dict, name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def pipeline(*nodes: dict, connections=None, **top) -> dict:
    conns = connections if connections is not None else [
        {"from": a["id"], "to": b["id"]} for a, b in zip(nodes, nodes[1:])]
    return {"name": "t", "nodes": list(nodes), "connections": conns, **top}


def stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# -- main ------------------------------------------------------------------------------------
def test_exit_code_constants():
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE) == (0, 1, 2)


def test_version(capsys):
    from streamlab import __version__
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0
    assert capsys.readouterr().out == f"streamlab {__version__}\n"


def test_help_lists_every_command(capsys):
    assert main([]) == EXIT_USAGE
    out = capsys.readouterr().out
    assert out.startswith("usage: streamlab ")
    assert "Run, check and inspect StreamLab pipelines (JSON node graphs)." in out
    for cmd in ("run", "validate", "nodes", "schema", "graph"):
        assert re.search(rf"^\s+{cmd}\s", out, re.M), cmd
    assert "-v, --verbose" in out


@pytest.mark.parametrize("flags, level", [([], logging.WARNING), (["-v"], logging.INFO),
                                          (["-vv"], logging.DEBUG), (["-vvv"], logging.DEBUG)])
def test_verbose_sets_the_log_level(flags, level, monkeypatch, capsys):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # basicConfig only acts without handlers
    monkeypatch.setattr(root, "level", root.level)
    assert main([*flags, "schema"]) == 0
    assert root.level == level
    assert len(root.handlers) == 1
    handler = root.handlers[0]
    assert handler.stream is sys.stderr
    assert handler.formatter._fmt == "%(levelname)s %(name)s: %(message)s"


def test_broken_pipe_is_a_quiet_success(monkeypatch):
    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["schema"]) == EXIT_OK


def test_parser_prog_and_subcommands():
    parser = build_parser()
    assert parser.prog == "streamlab"
    args = parser.parse_args(["graph", "x.json", "--format", "dot", "--set", "a=1", "--set", "b=2"])
    assert (args.command, args.config, args.format, args.overrides) == (
        "graph", "x.json", "dot", ["a=1", "b=2"])
    args = parser.parse_args(["run", "x.json"])
    assert (args.triggers, args.output, args.summary, args.timeout, args.debug, args.quiet,
            args.loop, args.overrides, args.verbose) == (1, None, None, None, False, False,
                                                         "auto", [], 0)
    assert (args.monitor, args.monitor_interval, args.metrics_port, args.metrics_addr,
            args.metrics_linger, args.deadline_log_interval) == (False, None, None,
                                                                  "127.0.0.1", 0.0, 5.0)


# -- validate -----------------------------------------------------------------------------
def test_validate_ok(capsys):
    assert main(["validate", str(SINE_GAIN)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"ok: {SINE_GAIN}: 2 nodes, 1 connections\n"
    assert captured.err == ""


def test_validate_problems_one_per_line(tmp_path, capsys):
    bad = dict(GAIN, config={"gain": "x"})
    path = write(tmp_path, pipeline(SINE, bad, connections=[{"from": "sine", "to": "nope"}]))
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}: 2 problem(s)",
        "$.connections[0].to: no node with id 'nope'",
        "$.nodes[1].config.gain: Input should be a valid number, unable to parse string as a "
        "number (got 'x') [node 'gain', type 'Gain']",
    ]


def test_validate_with_set(tmp_path, capsys):
    assert main(["validate", str(SINE_GAIN), "--set", "nodes.gain.config.gain=oops"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{SINE_GAIN}: 1 problem(s)"
    assert err[1].startswith("$.nodes[1].config.gain: Input should be a valid number")
    assert main(["validate", str(SINE_GAIN), "--set", "nodes.gain.config.gain=3"]) == 0


def test_validate_stdin(monkeypatch, capsys):
    stdin(monkeypatch, json.dumps(pipeline(SINE, GAIN)).encode())
    assert main(["validate", "-"]) == 0
    assert capsys.readouterr().out == "ok: -: 2 nodes, 1 connections\n"


def test_validate_stdin_problems_name_stdin(monkeypatch, capsys):
    stdin(monkeypatch, json.dumps(pipeline(SINE, dict(GAIN, type="Gian"))).encode())
    assert main(["validate", "-"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "<stdin>: 1 problem(s)"
    assert err[1].startswith("$.nodes[1].type: unknown node type 'Gian'")


def test_validate_stdin_bad_json(monkeypatch, capsys):
    stdin(monkeypatch, b"{")
    assert main(["validate", "-"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "<stdin>: 1 problem(s)",
        "$: invalid JSON at line 1 column 2: Expecting property name enclosed in double quotes",
    ]


def test_validate_stdin_with_set(monkeypatch, capsys):
    stdin(monkeypatch, json.dumps(pipeline(SINE, GAIN)).encode())
    assert main(["validate", "-", "--set", "nodes.gain.config.gain=z"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == "<stdin>: 1 problem(s)"


def test_validate_checks_files_but_graph_does_not(tmp_path, capsys):
    src = {"id": "f", "type": "FileSource", "config": {"path": "missing.npy", "samples_per_frame": 4,
                                                    "sample_rate": 100.0}}
    path = write(tmp_path, pipeline(src, GAIN))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{path}: 1 problem(s)"
    assert err[1].startswith("$.nodes[0].config.path: ")
    assert "missing.npy" in err[1] and "[node 'f', type 'FileSource']" in err[1]
    assert main(["graph", str(path)]) == 0


def test_validate_missing_file(tmp_path, capsys):
    missing = tmp_path / "none.json"
    assert main(["validate", str(missing)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{missing}: 1 problem(s)", f"$: config file not found: {missing}"]


# -- graph, nodes, schema -------------------------------------------------------------------
def test_graph_mermaid(capsys):
    assert main(["graph", str(SINE_GAIN)]) == 0
    assert capsys.readouterr().out == (
        "flowchart LR\n"
        '    n_sine["sine: SineGenerator"]\n'
        '    n_gain["gain: Gain"]\n'
        "    n_sine --> n_gain\n")


def test_graph_dot(capsys):
    assert main(["graph", "--format", "dot", str(SINE_GAIN)]) == 0
    assert capsys.readouterr().out == (
        'digraph "sine-gain" {\n'
        "    rankdir=LR;\n"
        "    node [shape=box];\n"
        '    "sine" [label="sine: SineGenerator"];\n'
        '    "gain" [label="gain: Gain"];\n'
        '    "sine" -> "gain";\n'
        "}\n")


def test_graph_with_set_and_problems(tmp_path, capsys):
    assert main(["graph", str(SINE_GAIN), "--set", "nodes.gain.type=Nope"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{SINE_GAIN}: 1 problem(s)"
    assert err[1].startswith("$.nodes[1].type: unknown node type 'Nope'")


def test_nodes_text(capsys, monkeypatch):
    import streamlab.cli.nodes as nodes_cli
    monkeypatch.setattr(nodes_cli, "plugin_errors", lambda: {"broken": "ImportError: x"})
    assert main(["nodes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    types = node_types()
    width = max(len(n) for n in types)
    assert lines[:-1] == [f"{n:<{width}}  {c.description()}" for n, c in types.items()]
    assert lines[-1] == f"{'broken':<{width}}  [plugin failed to load: ImportError: x]"
    assert "Gain" + " " * (width - 4) + "  Multiply every channel by a constant gain." in lines


def test_nodes_json(capsys):
    assert main(["nodes", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    types = node_types()
    assert [d["type"] for d in data] == list(types)
    gain = next(d for d in data if d["type"] == "Gain")
    assert gain["description"] == "Multiply every channel by a constant gain."
    assert gain["module"] == types["Gain"].__module__
    assert gain["source"] is False
    assert gain["config_schema"] == types["Gain"].Config.model_json_schema()
    sine = next(d for d in data if d["type"] == "SineGenerator")
    assert sine["source"] is True


def test_schema(capsys):
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == pipeline_json_schema()
    assert out.startswith('{\n  "')  # indented by 2


# -- run --------------------------------------------------------------------------------------
@pytest.fixture
def plain(monkeypatch):
    """run without the observability observer: the plain fate table."""
    monkeypatch.setattr(run_cli, "OBSERVERS", [])


def test_run_plain_fate_table(plain, capsys):
    assert main(["run", str(SINE_GAIN), "--triggers", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert re.fullmatch(r"run 'sine-gain': completed in \d+\.\d{3} s", lines[0])
    assert lines[1:] == [
        "  node " + " ".join(f"{c:>16}" for c in ("received", "delivered", "out", "errors")),
        "  sine " + " ".join(f"{v:>16}" for v in (3, 3, 3, 0)),
        "  gain " + " ".join(f"{v:>16}" for v in (3, 3, 3, 0)),
    ]


def test_run_quiet_prints_nothing(plain, capsys):
    assert main(["run", str(SINE_GAIN), "--triggers", "2", "-q"]) == 0
    assert capsys.readouterr() == ("", "")


def test_run_output_and_summary(tmp_path, plain, capsys):
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    path = write(tmp_path, pipeline(SINE, GAIN))
    assert main(["run", str(path), "--triggers", "2", "--output", str(out), "--summary",
                 str(summary), "-q", "--loop", "asyncio"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(d["node"], d["sequence_id"]) for d in lines] == [("gain", 0), ("gain", 1)]
    assert len(lines[0]["payload"]["x"]) == 4
    assert lines[0]["payload"]["x"][0] == 0.0
    report = json.loads(summary.read_text())
    assert report["pipeline"] == "t" and report["state"] == "completed"
    assert "monitor" not in report
    gain = report["nodes"]["gain"]
    assert gain["received"] == 2 and gain["fates"]["delivered"] == 2


def test_run_failure_is_one_error_line(tmp_path, plain, capsys):
    fault = {"id": "fault", "type": "FaultInjector", "config": {"every": 2}}
    path = write(tmp_path, pipeline(SINE, fault))
    assert main(["run", str(path), "--triggers", "3", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "fault" in err and "FaultInjected" in err


def test_run_failure_with_table_names_the_node(tmp_path, plain, capsys):
    fault = {"id": "fault", "type": "FaultInjector", "config": {"every": 1}}
    path = write(tmp_path, pipeline(SINE, fault))
    assert main(["run", str(path), "--triggers", "1"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"run 't': failed in \d+\.\d{3} s", lines[0])
    assert any(line.startswith("  failed: node 'fault': ") for line in lines)
    assert lines[-1].startswith("error: ")


def test_run_failure_still_writes_summary(tmp_path, plain, capsys):
    fault = {"id": "fault", "type": "FaultInjector", "config": {"every": 1}}
    path = write(tmp_path, pipeline(SINE, fault))
    summary = tmp_path / "s.json"
    out = tmp_path / "o.jsonl"
    assert main(["run", str(path), "-q", "--summary", str(summary), "--output", str(out)]) == 1
    report = json.loads(summary.read_text())
    assert report["state"] == "failed"
    assert out.read_text() == ""


def test_run_bad_config_is_a_usage_error(tmp_path, plain, capsys):
    path = write(tmp_path, pipeline(dict(SINE, type="Sine")))
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.splitlines()[0] == f"{path}: 1 problem(s)"


def test_run_checks_files(tmp_path, plain, capsys):
    src = {"id": "f", "type": "FileSource", "config": {"path": "missing.npy", "samples_per_frame": 4,
                                                    "sample_rate": 100.0}}
    path = write(tmp_path, pipeline(src, GAIN))
    assert main(["run", str(path)]) == 2


def test_run_set_override(tmp_path, plain, capsys):
    out = tmp_path / "o.jsonl"
    path = write(tmp_path, pipeline(SINE, GAIN))
    assert main(["run", str(path), "-q", "--output", str(out), "--set",
                 "nodes.sine.config.samples_per_frame=7"]) == 0
    assert len(json.loads(out.read_text())["payload"]["x"]) == 7


def test_run_free_running_source_ignores_triggers(tmp_path, plain, capsys):
    free = dict(SINE, config={**SINE["config"], "mode": "free", "max_frames": 5})
    out = tmp_path / "o.jsonl"
    path = write(tmp_path, pipeline(free, GAIN))
    assert main(["run", str(path), "-q", "--triggers", "2", "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 5


def test_run_zero_triggers_sends_none(tmp_path, plain, capsys):
    out = tmp_path / "o.jsonl"
    path = write(tmp_path, pipeline(SINE, GAIN))
    assert main(["run", str(path), "-q", "--triggers", "0", "--output", str(out)]) == 0
    assert out.read_text() == ""


def test_loop_uvloop_missing(monkeypatch, plain, capsys):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    with pytest.raises(SystemExit) as ei:
        main(["run", str(SINE_GAIN), "--loop", "uvloop"])
    assert str(ei.value.code) == (
        "error: --loop uvloop needs uvloop: pip install 'streamlab[fast]'")
    # auto falls back to asyncio's loop
    assert main(["run", str(SINE_GAIN), "-q"]) == 0


def test_loop_factory_choices(monkeypatch):
    assert run_cli._loop_factory("asyncio") is None
    uvloop = pytest.importorskip("uvloop")
    assert run_cli._loop_factory("auto") is uvloop.new_event_loop
    assert run_cli._loop_factory("uvloop") is uvloop.new_event_loop
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert run_cli._loop_factory("auto") is None


# -- run with the observability observer --------------------------------------------------
def test_run_monitor_final_report_replaces_the_table(tmp_path, capsys):
    summary = tmp_path / "s.json"
    assert main(["run", str(SINE_GAIN), "--triggers", "3", "--summary", str(summary)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("pipeline 'sine-gain': completed")
    assert "delivered=3" in err
    assert "received" not in err.splitlines()[1]  # not the plain table's header
    report = json.loads(summary.read_text())
    assert report["state"] == "completed"
    assert isinstance(report["monitor"], (dict, list)) and report["monitor"]


def test_run_monitor_quiet(capsys):
    assert main(["run", str(SINE_GAIN), "--triggers", "1", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_run_monitor_plain_lines(tmp_path, capsys):
    # a paced free-running source: the run lasts a few monitor intervals
    free = dict(SINE, config={**SINE["config"], "mode": "free", "max_frames": 25,
                              "realtime": True, "samples_per_frame": 10})
    path = write(tmp_path, pipeline(free, GAIN))
    assert main(["run", str(path), "--monitor", "--monitor-interval", "0.05"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^\[ *\d+\.\d\ds\] t running: sine ", err, re.M)  # a live line
    assert "pipeline 't': completed" in err  # and the final report


def test_run_metrics_port_in_use(capsys):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SystemExit) as ei:
            main(["run", str(SINE_GAIN), "--metrics-port", str(port)])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot serve metrics on 127.0.0.1:{port}: ")


def test_run_metrics_served(capsys):
    pytest.importorskip("prometheus_client")
    assert main(["run", str(SINE_GAIN), "-q", "--metrics-port", "0"]) == 0
    assert re.match(r"serving metrics on http://127\.0\.0\.1:\d+", capsys.readouterr().err)


# -- progress_of ------------------------------------------------------------------------------
def run_pipe(data: dict, triggers: int) -> AsyncPipeline:
    async def go() -> AsyncPipeline:
        pipe = AsyncPipeline(load_config(data))
        await pipe.run(triggers=triggers)
        return pipe
    return asyncio.run(go())


def test_progress_of_triggered_and_free():
    pipe = run_pipe(pipeline(SINE, GAIN), 3)
    assert progress_of(pipe, 3) == (3, 3, "triggers")
    assert progress_of(pipe, 5) == (3, 5, "triggers")
    assert progress_of(pipe, 0) is None
    free = dict(SINE, config={**SINE["config"], "mode": "free", "max_frames": 4})
    pipe = run_pipe(pipeline(free, GAIN), 0)
    assert progress_of(pipe, 0) == (4, 4, "frames")
    assert progress_of(pipe, 3) == (4, 4, "frames")
    unbounded = dict(SINE, config={**SINE["config"], "mode": "free"})
    pipe = AsyncPipeline(load_config(pipeline(unbounded, GAIN)))
    assert progress_of(pipe, 3) is None


# -- help texts (user-facing: usage lines, option names, metavars and help strings) --------
HELP = {  # normalised whitespace: usage line, then the arguments and options
    '': ('usage: streamlab [-h] [--version] [-v] COMMAND ...',
         "positional arguments: COMMAND run run a pipeline batch run a pipeline once per recording (files matching a glob) repair cut recordings of a killed run back to complete records validate check a pipeline config nodes list node types schema print the JSON Schema of pipeline configs graph draw a pipeline graph (mermaid or dot) ctl control a running pipeline (its --ui/--control API) options: -h, --help show this help message and exit --version show program's version number and exit -v, --verbose more log output (-vv: debug)"),
    'run': ('usage: streamlab run [-h] [--set KEY=VALUE] [--triggers N] [--output FILE.jsonl] [--summary FILE.json] [--timeout SECONDS] [--debug] [--quiet] [--loop {auto,asyncio,uvloop}] [--monitor] [--monitor-interval SECONDS] [--metrics-port PORT] [--metrics-addr ADDR] [--metrics-linger SECONDS] [--deadline-log-interval SECONDS] [--ui [PORT]] [--control [PORT]] [--ui-host ADDR] [--control-file PATH] [--ui-linger SECONDS] config',
         "positional arguments: config path to the pipeline JSON file ('-': read it from stdin; its relative paths are then relative to the working directory) options: -h, --help show this help message and exit --set KEY=VALUE override one config value before validation, e.g. nodes.r_peaks.config.height=0.5 (nodes by id; VALUE is JSON, else a string); repeatable --triggers N trigger frames sent to triggered sources (default 1) --output FILE.jsonl write terminal nodes' frames as JSON lines --summary FILE.json write the run report as JSON --timeout SECONDS force the stop SECONDS after Ctrl-C or after the input ended, and force a run whose trigger waited SECONDS with no frame moving; dropped frames are counted, exit 1 (default: wait) --debug check frame accounting at the end --quiet, -q no summary on stderr --loop {auto,asyncio,uvloop} event loop: uvloop when installed (auto, the default), or asyncio's observability: --monitor show a live table of per-node rates, latencies and queues --monitor-interval SECONDS monitor refresh period (default 0.25 on a terminal, 1 otherwise) --metrics-port PORT serve Prometheus metrics on this port (/metrics) --metrics-addr ADDR address the metrics server binds (default 127.0.0.1) --metrics-linger SECONDS keep serving metrics this long after the run (default 0) --deadline-log-interval SECONDS log deadline misses at most this often (default 5; 0: never) live control (pip install 'streamlab[web]'): --ui [PORT] serve the web dashboard and the control API (PORT: default any free) --control [PORT] serve the control API only (for streamlab ctl) --ui-host ADDR address the dashboard binds (default 127.0.0.1) --control-file PATH where to write the URL and token (mode 0600; default $XDG_RUNTIME_DIR/streamlab/control.json or ~/.streamlab/control.json) --ui-linger SECONDS keep serving this long after the run ended (default 0)"),
    'validate': ('usage: streamlab validate [-h] [--set KEY=VALUE] config',
         "positional arguments: config path to the pipeline JSON file ('-': read it from stdin; its relative paths are then relative to the working directory) options: -h, --help show this help message and exit --set KEY=VALUE override one config value before validation, e.g. nodes.r_peaks.config.height=0.5 (nodes by id; VALUE is JSON, else a string); repeatable"),
    'graph': ('usage: streamlab graph [-h] [--set KEY=VALUE] [--format {mermaid,dot}] config',
         "positional arguments: config path to the pipeline JSON file ('-': read it from stdin; its relative paths are then relative to the working directory) options: -h, --help show this help message and exit --set KEY=VALUE override one config value before validation, e.g. nodes.r_peaks.config.height=0.5 (nodes by id; VALUE is JSON, else a string); repeatable --format {mermaid,dot}"),
    'nodes': ('usage: streamlab nodes [-h] [--json]',
         'options: -h, --help show this help message and exit --json machine-readable output with config schemas'),
    'schema': ('usage: streamlab schema [-h]',
         'options: -h, --help show this help message and exit'),
}


@pytest.mark.parametrize("command", list(HELP))
def test_help_text(command, capsys):
    with pytest.raises(SystemExit) as ei:
        main(([command] if command else []) + ["--help"])
    assert ei.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    usage, arguments = HELP[command]
    assert text.startswith(usage + " ")
    assert text.endswith(arguments)


@pytest.mark.parametrize("command, first_line", [
    ("", "Run, check and inspect StreamLab pipelines (JSON node graphs)."),
    ("run", "``streamlab run CONFIG``: run a pipeline with the async runtime."),
    ("validate", "``streamlab validate CONFIG [--set KEY=VALUE ...]``: exit 0 if valid"),
    ("graph", "``streamlab graph CONFIG [--set KEY=VALUE ...]``: the pipeline graph as Mermaid"),
    ("nodes", "``streamlab nodes``: the registered node types with a one-line description"),
    ("schema", "``streamlab schema``: print the JSON Schema of the pipeline format"),
])
def test_help_description(command, first_line, capsys):
    with pytest.raises(SystemExit):
        main(([command] if command else []) + ["--help"])
    out = capsys.readouterr().out
    assert (" " + first_line) in " " + " ".join(out.split())
    if command == "run":  # its description keeps its line breaks (a bullet list)
        assert "\n* ``--output FILE.jsonl`` writes every frame" in out
        assert "\n* Ctrl-C (or SIGTERM) stops gracefully: the sources stop," in out
        assert "\n* ``--timeout SECONDS`` bounds the stop: it is forced SECONDS after it began," in out


def test_float_options_are_parsed(capsys):
    assert main(["run", str(SINE_GAIN), "-q", "--metrics-port", "0", "--metrics-linger",
                 "0.01", "--set", "nodes.gain.deadline_ms=1000",
                 "--deadline-log-interval", "0.5"]) == 0
    args = build_parser().parse_args(["run", "x", "--timeout", "2.5"])
    assert args.timeout == 2.5


def test_nodes_json_is_indented_by_two(capsys):
    assert main(["nodes", "--json"]) == 0
    assert capsys.readouterr().out.startswith('[\n  {\n    "type": ')


def test_validate_stdin_checks_files(monkeypatch, capsys):
    src = {"id": "f", "type": "FileSource",
           "config": {"path": "/nonexistent/missing.npy", "samples_per_frame": 4,
                      "sample_rate": 100.0}}
    stdin(monkeypatch, json.dumps(pipeline(src, GAIN)).encode())
    assert main(["validate", "-"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "<stdin>: 1 problem(s)"
    assert err[1].startswith("$.nodes[0].config.path: ")
