"""``streamlab batch`` (#12 item 6): one run per recording, the source's path substituted,
outputs and summaries per recording, failures isolated and counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamlab.cli.main import main
from streamlab.frame import DataFrame
from streamlab.nodes.record import Recorder, iter_recording
from streamlab.testing import run_node

REPO = Path(__file__).resolve().parents[2]


def source(path: str = "placeholder.npy", node_id: str = "src") -> dict:
    return {"id": node_id, "type": "FileSource",
            "config": {"path": path, "samples_per_frame": 50, "sample_rate": 500.0}}


def write_config(folder: Path, nodes: list[dict], connections: list[tuple[str, str]]) -> Path:
    path = folder / "p.json"
    path.write_text(json.dumps({"name": "batch", "nodes": nodes, "connections": [
        {"from": a, "to": b} for a, b in connections]}))
    return path


def recordings(folder: Path, n: int, ext: str = "npy") -> list[np.ndarray]:
    folder.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        data = np.random.default_rng(i).standard_normal((300 + 50 * i, 3))
        if ext == "npy":
            np.save(folder / f"rec{i}.npy", data)
        else:
            np.savetxt(folder / f"rec{i}.csv", data, delimiter=",", fmt="%.17g",
                       header="a,b,c", comments="")
        out.append(data)
    return out


def test_each_recording_runs_with_its_own_outputs_and_summary(tmp_path, capsys):
    data = recordings(tmp_path / "data", 3)
    config = write_config(tmp_path, [source(), {"id": "out", "type": "NpySink",
                                                "config": {"path": "results/y.npy"}}],
                          [("src", "out")])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "data" / "*.npy"),
                 "--out-dir", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert code == 0, err
    for i, expected in enumerate(data):
        np.testing.assert_array_equal(np.load(tmp_path / "res" / f"rec{i}" / "y.npy"), expected)
        summary = json.loads((tmp_path / "res" / f"rec{i}" / "summary.json").read_text())
        assert summary["state"] == "ok" and summary["input"].endswith(f"rec{i}.npy")
        assert summary["report"]["nodes"]["out"]["received"] == -(-len(expected) // 50)
    batch = json.loads((tmp_path / "res" / "batch.json").read_text())
    assert batch["counts"] == {"total": 3, "ok": 3, "failed": 0, "cancelled": 0}
    assert "batch: 3 recording(s): 3 ok, 0 failed" in err
    assert not (tmp_path / "results").exists()  # the config's own output path is not used


def test_csv_inputs_and_two_workers(tmp_path, capsys):
    data = recordings(tmp_path / "data", 4, ext="csv")
    config = write_config(tmp_path, [source("x.csv"), {"id": "out", "type": "CsvSink",
                                                       "config": {"path": "y.csv"}}],
                          [("src", "out")])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "data" / "*.csv"),
                 "--out-dir", str(tmp_path / "res"), "--workers", "2"])
    assert code == 0, capsys.readouterr().err
    for i, expected in enumerate(data):
        got = np.loadtxt(tmp_path / "res" / f"rec{i}" / "y.csv", delimiter=",", skiprows=1)
        np.testing.assert_array_equal(got, expected)


def test_replay_recordings(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    recorded = {}
    for name in ("a", "b"):
        frames = [DataFrame.from_block(["x"], np.full((1, 4), float(k)), timestamp=k * 1000,
                                       sequence_id=k, metadata={"who": name})
                  for k in range(3 if name == "a" else 5)]
        run_node(Recorder, {"path": str(tmp_path / "data" / f"{name}.slrec")}, frames)
        recorded[name] = frames
    config = write_config(tmp_path, [
        {"id": "replay", "type": "Replay", "config": {"path": "none.slrec"}},
        {"id": "rec", "type": "Recorder", "config": {"path": "copy.slrec"}}],
        [("replay", "rec")])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "data" / "*.slrec"),
                 "--out-dir", str(tmp_path / "res")])
    assert code == 0, capsys.readouterr().err
    for name, frames in recorded.items():
        assert list(iter_recording(tmp_path / "res" / name / "copy.slrec")) == frames


def test_a_failing_recording_is_counted_and_the_others_run(tmp_path, capsys):
    recordings(tmp_path / "data", 2)
    (tmp_path / "data" / "broken.npy").write_bytes(b"not an array")
    config = write_config(tmp_path, [source(), {"id": "out", "type": "NpySink",
                                                "config": {"path": "y.npy"}}],
                          [("src", "out")])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "data" / "*.npy"),
                 "--out-dir", str(tmp_path / "res"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"error: 1 of 3 recording(s) failed (see {str(tmp_path / 'res')!r})"]
    batch = json.loads((tmp_path / "res" / "batch.json").read_text())
    assert batch["counts"] == {"total": 3, "ok": 2, "failed": 1, "cancelled": 0}
    broken = json.loads((tmp_path / "res" / "broken" / "summary.json").read_text())
    assert broken["state"] == "failed" and "not a numeric .npy array" in broken["error"]
    assert (tmp_path / "res" / "rec1" / "y.npy").exists()


def test_the_same_stem_twice_gets_its_own_folder(tmp_path, capsys):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        np.save(tmp_path / sub / "s.npy", np.zeros((10, 1)) + (sub == "y"))
    config = write_config(tmp_path, [source(), {"id": "out", "type": "NpySink",
                                                "config": {"path": "y.npy"}}],
                          [("src", "out")])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "*" / "s.npy"),
                 "--out-dir", str(tmp_path / "res")])
    assert code == 0, capsys.readouterr().err
    assert np.load(tmp_path / "res" / "s" / "y.npy").sum() == 0
    assert np.load(tmp_path / "res" / "s-2" / "y.npy").sum() == 10


@pytest.mark.parametrize(("nodes", "extra", "message"), [
    ([{"id": "gen", "type": "SineGenerator", "config": {
        "frequency": 1.0, "sample_rate": 10.0, "samples_per_frame": 2}}], [],
     "error: no node of the config reads a file"),
    ([source(node_id="a"), source(node_id="b")], [],
     "error: several nodes read files: ['a', 'b']; choose the one to substitute with "
     "--input-node ID"),
    ([source(node_id="a")], ["--input-node", "zz"],
     "error: --input-node 'zz': no such node; nodes that read files: ['a']"),
    ([source(node_id="a"), {"id": "g", "type": "Gain", "config": {"gain": 2.0}}],
     ["--input-node", "g"], "error: --input-node 'g': node type 'Gain' reads no file"),
])
def test_which_source_is_substituted_is_never_guessed(tmp_path, capsys, nodes, extra, message):
    recordings(tmp_path / "data", 1)
    config = write_config(tmp_path, nodes, [])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "data" / "*.npy"),
                 "--out-dir", str(tmp_path / "res"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(message), err
    assert not (tmp_path / "res").exists()


def test_input_node_picks_one_of_several_sources(tmp_path, capsys):
    data = recordings(tmp_path / "data", 1)
    np.save(tmp_path / "fixed.npy", np.ones((300, 3)))
    config = write_config(tmp_path, [
        source(node_id="a"), source(str(tmp_path / "fixed.npy"), node_id="b"),
        {"id": "oa", "type": "NpySink", "config": {"path": "a.npy"}},
        {"id": "ob", "type": "NpySink", "config": {"path": "b.npy"}}],
        [("a", "oa"), ("b", "ob")])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "data" / "*.npy"),
                 "--out-dir", str(tmp_path / "res"), "--input-node", "a"])
    assert code == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.load(tmp_path / "res" / "rec0" / "a.npy"), data[0])
    np.testing.assert_array_equal(np.load(tmp_path / "res" / "rec0" / "b.npy"), np.ones((300, 3)))


def test_a_glob_that_matches_nothing_is_exit_2(tmp_path, capsys):
    config = write_config(tmp_path, [source()], [])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "*.xdf"),
                 "--out-dir", str(tmp_path / "res")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: --inputs {str(tmp_path / '*.xdf')!r}: " \
        "no file matches"


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path):
    recordings(tmp_path / "data", 2)
    config = write_config(tmp_path, [source(), {"id": "out", "type": "NpySink",
                                                "config": {"path": "y.npy"}}],
                          [("src", "out")])
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    base = [sys.executable, "-m", "streamlab", "batch", str(config), "--inputs",
            str(tmp_path / "data" / "*.npy")]
    plain = subprocess.run([*base, "--out-dir", str(tmp_path / "r1")], env=env,
                           capture_output=True, text=True, timeout=120)
    bar = subprocess.run([*base, "--out-dir", str(tmp_path / "r2"), "--progress"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and bar.returncode == 0, (plain.stderr, bar.stderr)
    assert "2/2" not in plain.stderr and "Traceback" not in plain.stderr
    assert "2/2" in bar.stderr and "0 failed" in bar.stderr  # rich's bar, completed


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_on_ray_workers(tmp_path, capsys):
    pytest.importorskip("ray")
    data = recordings(tmp_path / "data", 3)
    (tmp_path / "data" / "broken.npy").write_bytes(b"x")
    config = write_config(tmp_path, [source(), {"id": "out", "type": "NpySink",
                                                "config": {"path": "y.npy"}}],
                          [("src", "out")])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "data" / "*.npy"),
                 "--out-dir", str(tmp_path / "res"), "--backend", "ray", "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "batch: 4 recording(s): 3 ok, 1 failed" in err
    for i, expected in enumerate(data):
        np.testing.assert_array_equal(np.load(tmp_path / "res" / f"rec{i}" / "y.npy"), expected)


@pytest.mark.parametrize(("extra", "message"), [
    (["--address", "127.0.0.1:6379"], "error: --address needs --backend ray"),
    (["--workers", "0"], "error: --workers must be >= 1, got 0"),
    (["--workers", "0", "--triggers", "-1", "--address", "x:1"],  # every problem at once
     "error: --workers must be >= 1, got 0\nerror: --triggers must be >= 0, got -1\n"
     "error: --address needs --backend ray"),
])
def test_bad_options_are_exit_2(tmp_path, capsys, extra, message):
    recordings(tmp_path / "data", 1)
    config = write_config(tmp_path, [source()], [])
    code = main(["batch", str(config), "--inputs", str(tmp_path / "data" / "*.npy"),
                 "--out-dir", str(tmp_path / "res"), *extra])
    assert code == 2 and capsys.readouterr().err.strip() == message
