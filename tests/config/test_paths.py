"""File paths in node configs: resolved against the config file's folder, checked before running."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamlab import ConfigError, Pipeline, load_config, node_types
from streamlab.config import InputPath, OutputPath, path_fields

ROOT = Path(__file__).resolve().parents[2]


def file_pipeline(src_path, out_path):
    return {
        "name": "files",
        "nodes": [
            {"id": "src", "type": "FileSource",
             "config": {"path": src_path, "samples_per_frame": 4, "sample_rate": 100.0}},
            {"id": "out", "type": "JsonlSink", "config": {"path": out_path}},
        ],
        "connections": [{"from": "src", "to": "out"}],
    }


def write_config(folder, cfg):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipe.json"
    path.write_text(json.dumps(cfg))
    return path


def cli(*args, cwd, stdin=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-m", "streamlab", *map(str, args)], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


# -- which fields are paths -----------------------------------------------------------------------
def test_every_file_node_marks_its_path_fields():
    """Every registered type with a field named like a file path declares its role, so that
    resolution and checks cover it (a new file node without the marker fails here)."""
    unmarked = []
    for name, cls in node_types().items():
        marked = path_fields(cls.Config)
        for field in cls.Config.model_fields:
            if ("path" in field or "file" in field) and field not in marked:
                unmarked.append(f"{name}.{field}")
    assert unmarked == []
    assert path_fields(node_types()["FileSource"].Config) == {"path": "input"}
    assert path_fields(node_types()["Replay"].Config) == {"path": "input"}
    for sink in ("JsonlSink", "CsvSink", "NpySink", "NpzSink", "WavSink", "PlotSink", "Recorder"):
        assert path_fields(node_types()[sink].Config) == {"path": "output"}, sink


def test_marker_works_for_third_party_configs():
    from pydantic import Field

    from streamlab import NodeConfig

    class Cfg(NodeConfig):
        model_in: InputPath = Field(..., min_length=1)
        log: OutputPath | None = None
        gain: float = 1.0

    assert path_fields(Cfg) == {"model_in": "input", "log": "output"}


# -- resolution ---------------------------------------------------------------------------------
def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    cfg_dir = tmp_path / "configs"
    path = write_config(cfg_dir, file_pipeline("data/x.npy", "../out/y.jsonl"))
    spec = load_config(path)
    assert spec.node_config("src").path == str(cfg_dir / "data/x.npy")
    assert spec.node_config("out").path == str(cfg_dir / "../out/y.jsonl")
    # the spec's JSON holds the resolved paths, so it round-trips (pools, worker processes)
    assert load_config(spec.to_json_dict()).node_config("src").path == str(cfg_dir / "data/x.npy")


def test_dicts_keep_working_directory_semantics_unless_base_dir(tmp_path):
    cfg = file_pipeline("data/x.npy", "/abs/y.jsonl")
    assert load_config(cfg).node_config("src").path == "data/x.npy"
    assert load_config(json.dumps(cfg)).node_config("src").path == "data/x.npy"
    spec = load_config(cfg, base_dir=tmp_path)
    assert spec.node_config("src").path == str(tmp_path / "data/x.npy")
    assert spec.node_config("out").path == "/abs/y.jsonl"  # absolute paths are kept


def test_home_is_expanded(tmp_path):
    spec = load_config(file_pipeline("~/x.npy", "y.jsonl"), base_dir=tmp_path)
    assert spec.node_config("src").path == str(Path.home() / "x.npy")


def test_pipeline_from_another_directory_reads_and_writes_next_to_the_config(tmp_path):
    cfg_dir = tmp_path / "project"
    (cfg_dir / "data").mkdir(parents=True)
    np.save(cfg_dir / "data/x.npy", np.arange(8.0).reshape(8, 1))
    path = write_config(cfg_dir, file_pipeline("data/x.npy", "out/y.jsonl"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = cli("run", path, "-q", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    lines = (cfg_dir / "out/y.jsonl").read_text().splitlines()
    assert [json.loads(x)["payload"]["ch0"] for x in lines] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert list(elsewhere.iterdir()) == []


def test_stdin_config_is_relative_to_the_working_directory(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(4.0).reshape(4, 1))
    cfg = json.dumps(file_pipeline("x.npy", "y.jsonl"))
    r = cli("run", "-", "-q", cwd=tmp_path, stdin=cfg)
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "y.jsonl").read_text().splitlines()) == 1


# -- checks before running ----------------------------------------------------------------------
def check(cfg, **kw):
    with pytest.raises(ConfigError) as info:
        load_config(cfg, check_files=True, **kw)
    return [str(p) for p in info.value.problems]


def test_missing_input_reported_with_its_path_and_folder(tmp_path):
    path = write_config(tmp_path, file_pipeline("missing.npy", "y.jsonl"))
    assert check(path) == [
        f"$.nodes[0].config.path: no such file {str(tmp_path / 'missing.npy')!r} (relative paths "
        f"are relative to the config file's folder {str(tmp_path)!r}) [node 'src', type 'FileSource']"
    ]
    load_config(path)  # without check_files, the file is only needed when the node is created


def test_absolute_missing_input_has_no_folder_note(tmp_path):
    assert check(file_pipeline(str(tmp_path / "nope.npy"), str(tmp_path / "y.jsonl"))) == [
        f"$.nodes[0].config.path: no such file {str(tmp_path / 'nope.npy')!r} "
        "[node 'src', type 'FileSource']"
    ]


def test_replay_input_is_checked_too(tmp_path):
    cfg = {"nodes": [{"id": "r", "type": "Replay", "config": {"path": "run.slrec"}}]}
    (problem,) = check(cfg, base_dir=tmp_path)
    assert problem.startswith(f"$.nodes[0].config.path: no such file {str(tmp_path / 'run.slrec')!r}")
    assert problem.endswith("[node 'r', type 'Replay']")


def test_directory_fifo_and_device_are_not_files(tmp_path):
    (tmp_path / "d.npy").mkdir()
    (tmp_path / "d.jsonl").mkdir()
    fifo = tmp_path / "f.npy"
    os.mkfifo(fifo)  # never opened: opening a FIFO would block the check
    assert check(file_pipeline("d.npy", "d.jsonl"), base_dir=tmp_path) == [
        f"$.nodes[0].config.path: {str(tmp_path / 'd.npy')!r} is a directory; expected a regular "
        "file to read [node 'src', type 'FileSource']",
        f"$.nodes[1].config.path: {str(tmp_path / 'd.jsonl')!r} is a directory; expected a regular "
        "file to write [node 'out', type 'JsonlSink']",
    ]
    (tmp_path / "null.jsonl").symlink_to("/dev/null")
    assert check(file_pipeline(str(fifo), str(tmp_path / "null.jsonl"))) == [
        f"$.nodes[0].config.path: {str(fifo)!r} is a FIFO; expected a regular file to read "
        "[node 'src', type 'FileSource']",
        f"$.nodes[1].config.path: {str(tmp_path / 'null.jsonl')!r} is a device; expected a "
        "regular file to write [node 'out', type 'JsonlSink']",
    ]


def test_output_under_a_file_is_reported(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 1)))
    (tmp_path / "blocker").write_text("")
    assert check(file_pipeline("x.npy", "blocker/sub/y.jsonl"), base_dir=tmp_path) == [
        f"$.nodes[1].config.path: cannot create {str(tmp_path / 'blocker/sub/y.jsonl')!r}: "
        f"{str(tmp_path / 'blocker')!r} is not a directory [node 'out', type 'JsonlSink']"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder_is_reported(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 1)))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (problem,) = check(file_pipeline("x.npy", "locked/new/y.jsonl"), base_dir=tmp_path)
    finally:
        locked.chmod(0o700)
    assert problem.startswith("$.nodes[1].config.path: cannot create ")
    assert f"directory {str(locked)!r} is not writable" in problem


def test_two_nodes_writing_one_file(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 1)))
    cfg = file_pipeline("x.npy", "y.jsonl")
    cfg["nodes"].append({"id": "again", "type": "JsonlSink", "config": {"path": "./y.jsonl"}})
    cfg["connections"].append({"from": "src", "to": "again"})
    assert check(cfg, base_dir=tmp_path) == [
        f"$.nodes[2].config.path: {str(tmp_path / './y.jsonl')!r} is also written by "
        "$.nodes[1].config.path; two nodes cannot write the same file [node 'again', type 'JsonlSink']"
    ]


def test_valid_files_pass_and_missing_output_folders_are_fine(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 1)))
    spec = load_config(file_pipeline("x.npy", "new/deeper/y.jsonl"), base_dir=tmp_path,
                       check_files=True)
    assert spec.node_config("out").path == str(tmp_path / "new/deeper/y.jsonl")


def test_cli_validate_reports_a_missing_input_exit_2(tmp_path):
    """Before: 'ok' from validate, then exit 1 from run. Now both exit 2 naming the JSON path."""
    path = write_config(tmp_path / "cfg", file_pipeline("missing.npy", "y.jsonl"))
    for command in ("validate", "run"):
        r = cli(command, path, cwd=tmp_path)
        assert r.returncode == 2, (command, r.stderr)
        assert r.stderr.splitlines() == [
            f"{path}: 1 problem(s)",
            f"$.nodes[0].config.path: no such file {str(path.parent / 'missing.npy')!r} (relative "
            f"paths are relative to the config file's folder {str(path.parent)!r}) "
            "[node 'src', type 'FileSource']",
        ]
        assert "Traceback" not in r.stderr


def test_cli_graph_does_not_need_the_files(tmp_path):
    path = write_config(tmp_path, file_pipeline("missing.npy", "y.jsonl"))
    r = cli("graph", path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "src: FileSource" in r.stdout


def test_python_pipeline_resolves_against_the_config_folder(tmp_path):
    cfg_dir = tmp_path / "c"
    cfg_dir.mkdir()
    np.save(cfg_dir / "x.npy", np.arange(4.0).reshape(4, 1))
    pipe = Pipeline(write_config(cfg_dir, file_pipeline("x.npy", "y.jsonl")))
    pipe.process_sync()
    pipe.close_sync()
    assert (cfg_dir / "y.jsonl").exists()
