"""Recording sinks after ``kill -9`` (#12 item 4): a real ``streamlab run`` killed with SIGKILL
at seeded random moments leaves files that the formats' own readers open, holding every frame
the operating system had been given 1 s before the kill (in fact every complete frame).

The parent watches the files while the child writes: every ~20 ms it notes, from the raw
bytes, how many whole frames each file holds (what has reached the OS). After the kill the
bound is the count noted at the last look at least 1 s before the kill."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streamlab.frame import DataFrame
from streamlab.nodes import sinks as sinks_module
from streamlab.nodes.record import Recorder, RecordingError, iter_recording
from streamlab.nodes.sinks import CsvSink, JsonlSink, NpySink, SinkWriteError

REPO = Path(__file__).resolve().parents[2]
RATE, SPF, FREQ = 1000.0, 20, 7.0  # 50 frames per second, paced in real time
KINDS = {"npy": "NpySink", "csv": "CsvSink", "jsonl": "JsonlSink", "slrec": "Recorder"}


def expected(n_rows: int) -> np.ndarray:
    """What SineGenerator emits: sin(2 pi f n / rate) on both channels."""
    return np.sin(2 * np.pi * FREQ * np.arange(n_rows) / RATE)


def write_config(folder: Path) -> Path:
    nodes = [{"id": "gen", "type": "SineGenerator", "config": {
        "mode": "free", "realtime": True, "sample_rate": RATE, "samples_per_frame": SPF,
        "frequency": FREQ, "channels": ["a", "b"]}}]
    nodes += [{"id": ext, "type": kind, "config": {"path": f"out.{ext}"}}
              for ext, kind in KINDS.items()]
    cfg = {"name": "crash", "nodes": nodes,
           "connections": [{"from": "gen", "to": ext} for ext in KINDS]}
    path = folder / "p.json"
    path.write_text(json.dumps(cfg))
    return path


def raw_frames(path: Path, ext: str) -> int:
    """Whole frames in the file's raw bytes now (what the OS has), 0 if there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if ext == "npy":
        return max(len(data) - 128, 0) // (16 * SPF)
    if ext == "csv":
        return max(data.count(b"\n") - 1, 0) // SPF
    if ext == "jsonl":
        return data.count(b"\n")
    return sum(1 for _ in iter_recording(path, allow_truncated=True)) if data else 0


def read_back(path: Path, ext: str) -> tuple[int, np.ndarray]:
    """(complete frames, the samples of channel a) read with the format's own reader."""
    if ext == "npy":
        data = np.load(path)
        assert data.shape[1] == 2 and data.shape[0] % SPF == 0  # whole frames only
        return data.shape[0] // SPF, data[:, 0]
    if ext == "slrec":
        try:  # the strict reader: every complete record, then at most a truncated last one
            frames = list(iter_recording(path))
        except RecordingError as exc:
            assert "truncated" in str(exc)
            frames = list(iter_recording(path, allow_truncated=True))
        assert [f.sequence_id for f in frames] == list(range(len(frames)))
        return len(frames), np.array([v for f in frames for v in f.payload["a"]])
    text = path.read_text()
    complete = text[:text.rfind("\n") + 1]  # a last line without its newline is cut short
    if ext == "csv":
        rows = list(csv.reader(io.StringIO(complete)))
        assert rows[0] == ["a", "b"]
        data = np.array(rows[1:], dtype=float).reshape(-1, 2)
        return data.shape[0] // SPF, data[:, 0]
    # .jsonl
    lines = [json.loads(x) for x in complete.splitlines()]
    assert [x["sequence_id"] for x in lines] == list(range(len(lines)))
    return len(lines), np.array([v for x in lines for v in x["payload"]["a"]])


def test_kill_9_at_random_moments_leaves_readable_files(tmp_path):
    rng = random.Random(20261201)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    lags = []
    for round_ in range(5):
        folder = tmp_path / f"r{round_}"
        folder.mkdir()
        config = write_config(folder)
        proc = subprocess.Popen([sys.executable, "-m", "streamlab", "run", str(config), "-q"],
                                cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            # Round 0 kills at a random moment from the start (maybe before any file);
            # the others at a random moment 0-2.5 s after the first frames reached the files.
            started = time.monotonic()
            kill_after = rng.uniform(0.0, 3.0) if round_ == 0 else rng.uniform(0.0, 2.5)
            history: list[tuple[float, dict[str, int]]] = []
            first = None
            deadline = started + 120
            while time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                now = time.monotonic()
                counts = {ext: raw_frames(folder / f"out.{ext}", ext) for ext in KINDS}
                history.append((now, counts))
                if first is None and (round_ == 0 or all(counts.values())):
                    first = now
                if first is not None and now - first >= kill_after:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the run wrote no frame within 120 s")
            killed_at = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
            if proc.stderr:
                proc.stderr.close()
        bound = {ext: 0 for ext in KINDS}
        for t, counts in history:
            if t <= killed_at - 1.0:
                bound = counts
        last = history[-1][1]
        for ext in KINDS:
            path = folder / f"out.{ext}"
            if not path.exists():  # killed before the first frame: no file, no frame lost
                assert bound[ext] == 0, (round_, ext)
                continue
            n, a = read_back(path, ext)
            assert n >= bound[ext], (round_, ext, n, bound)
            np.testing.assert_array_equal(a[:n * SPF], expected(len(a))[:n * SPF])
            lags.append((ext, last[ext] - n))
        # Nothing but the outputs (and perhaps a header not yet renamed into place).
        assert {p.name for p in folder.iterdir()} <= {"p.json", *(f"out.{e}" for e in KINDS)} | {
            p.name for p in folder.glob(".out.*.part")}
    # For the record (-s): frames the OS had at the last look before the kill minus frames read.
    print("frames lost vs the last look before the kill:", lags)


# -- flush_interval_s: fsync (power loss), never needed for a killed process --------------------

NODES = {"npy": NpySink, "csv": CsvSink, "jsonl": JsonlSink, "slrec": Recorder}


def frames(n: int) -> list[DataFrame]:
    return [DataFrame.from_block(["a", "b"], np.full((2, 3), float(k)), timestamp=k,
                                 sequence_id=k) for k in range(n)]


class Fsyncs:
    """Counts os.fsync calls on regular files (the folder's fsync is counted apart)."""

    def __init__(self, fail: bool = False) -> None:
        self.files = 0
        self.dirs = 0
        self.fail = fail

    def __call__(self, fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            self.dirs += 1
            return
        if self.fail:
            raise OSError(5, "Input/output error")
        self.files += 1


@pytest.mark.parametrize("ext", list(NODES))
@pytest.mark.parametrize(("interval", "at_least", "at_most"),
                         [(0, 5, 5), (None, 0, 0), (3600, 1, 1)])
def test_flush_interval_sets_how_often_the_file_is_synced(tmp_path, monkeypatch, ext, interval,
                                                          at_least, at_most):
    calls = Fsyncs()
    monkeypatch.setattr(os, "fsync", calls)
    node = NODES[ext].create({"path": str(tmp_path / f"o.{ext}"), "flush_interval_s": interval})
    for f in frames(4):
        node.process(f)
    node.on_stop()  # 0: 4 frames + the end; 3600: only the end; None: never
    assert at_least <= calls.files <= at_most
    assert calls.dirs == (0 if interval is None else 1)  # the new name's folder, once


def test_a_background_fsync_runs_while_frames_arrive(tmp_path, monkeypatch):
    calls = Fsyncs()
    monkeypatch.setattr(os, "fsync", calls)
    clock = [0.0]
    monkeypatch.setattr(sinks_module.time, "monotonic", lambda: clock[0])
    node = NpySink.create({"path": str(tmp_path / "o.npy"), "flush_interval_s": 1.0})
    for k, f in enumerate(frames(5)):
        clock[0] = 0.6 * k  # due at 1.2 s and 2.4 s
        node.process(f)
        if node._sync_thread is not None:
            node._sync_thread.join(timeout=60)
    assert calls.files == 2
    node.on_stop()
    assert calls.files == 3


def test_a_failed_background_fsync_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", Fsyncs(fail=True))
    node = JsonlSink.create({"path": str(tmp_path / "o.jsonl"), "flush_interval_s": 0})
    with pytest.raises(SinkWriteError, match=r"o\.jsonl'.*input/output error; frame 0 was "
                       "written but syncing it to disk failed"):
        node.process(frames(1)[0])
    node = JsonlSink.create({"path": str(tmp_path / "p.jsonl"), "flush_interval_s": 3600})
    node.process(frames(1)[0])
    with pytest.raises(SinkWriteError, match=r"p\.jsonl'.*input/output error; could not "
                       "finish the file"):
        node.on_stop()
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 1  # written all the same


def test_the_path_never_names_a_file_without_its_header(tmp_path, monkeypatch):
    """Killed between creating the file and writing its header, a sink leaves no headless
    .npy/.csv/.slrec: the header is written under a temporary name first."""
    seen = []
    real = sinks_module.AppendFile._os_write

    def spy(fd, data):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return real(fd, data)

    monkeypatch.setattr(sinks_module.AppendFile, "_os_write", staticmethod(spy))
    (tmp_path / "o.npy").write_bytes(b"old")  # replaced only once the new header is whole
    node = NpySink.create({"path": str(tmp_path / "o.npy")})
    node.process(frames(1)[0])
    node.on_stop()
    assert seen[0] == [f".o.npy.{os.getpid()}.part", "o.npy"]
    assert np.load(tmp_path / "o.npy").shape == (3, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npy"]


# -- repair: cut a killed run's files back to complete records ---------------------------------
def cut_short(tmp_path: Path) -> dict[str, tuple[Path, int]]:
    """Each sink's file after 4 frames, with the start of a 5th frame appended (what a kill
    in the middle of a write leaves), and the size of the complete part."""
    out = {}
    for ext, node_type in NODES.items():
        path = tmp_path / f"o.{ext}"
        node = node_type.create({"path": str(path), "flush_interval_s": None})
        for f in frames(4):
            node.process(f)
        node.on_stop()
        complete = path.stat().st_size
        probe = node_type.create({"path": str(tmp_path / f"probe.{ext}")})
        for f in frames(5):
            probe.process(f)
        probe.on_stop()
        tail = (tmp_path / f"probe.{ext}").read_bytes()[complete:]
        (tmp_path / f"probe.{ext}").unlink()
        with open(path, "ab") as f:
            f.write(tail[:3])  # less than one row or line: a frame cut short
        out[ext] = (path, complete)
    return out


def test_repair_cuts_back_to_the_complete_records(tmp_path, capsys):
    from streamlab.cli.main import main
    from streamlab.nodes.record import repair_recording

    files = cut_short(tmp_path)
    # Before: the strict readers fail or (csv) may read a number cut short.
    with pytest.raises(RecordingError, match="truncated"):
        list(iter_recording(files["slrec"][0]))
    with pytest.raises(json.JSONDecodeError):
        [json.loads(x) for x in files["jsonl"][0].read_text().splitlines()]
    code = main(["repair", *(str(p) for p, _ in files.values())])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    for (ext, (path, complete)), line in zip(files.items(), out, strict=True):
        assert path.stat().st_size == complete, ext
        kept = 12 if ext in ("npy", "csv") else 4  # rows (3 per frame) or frames
        assert line.startswith(f"{path}: {kept} records kept, "), line
    assert np.load(files["npy"][0]).shape == (12, 2)
    assert len(list(iter_recording(files["slrec"][0]))) == 4
    assert np.loadtxt(files["csv"][0], delimiter=",", skiprows=1).shape == (12, 2)
    assert len([json.loads(x) for x in files["jsonl"][0].read_text().splitlines()]) == 4
    again = repair_recording(files["slrec"][0])  # a complete file is left as it is
    assert (again.records, again.bytes_removed) == (4, 0)


def test_repair_sets_a_stale_npy_header(tmp_path):
    from streamlab.nodes.record import repair_recording
    from streamlab.nodes.sinks import npy_header

    path = tmp_path / "old.npy"  # what NpySink before #12 left after kill -9: shape (0, 2)
    path.write_bytes(npy_header(0, 2) + np.arange(10.0).tobytes() + b"\x01\x02")
    r = repair_recording(path)
    assert (r.records, r.bytes_removed) == (5, 2)
    np.testing.assert_array_equal(np.load(path), np.arange(10.0).reshape(5, 2))


def test_repair_refuses_what_it_does_not_know(tmp_path, capsys):
    from streamlab.cli.main import main

    (tmp_path / "a.wav").write_bytes(b"RIFF")
    np.save(tmp_path / "b.npy", np.zeros(3, dtype=np.int32))
    code = main(["repair", str(tmp_path / "a.wav"), str(tmp_path / "b.npy"),
                 str(tmp_path / "missing.csv")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 3 and all(e.startswith("error: ") for e in err), err
    assert "cannot repair a .wav file" in err[0]
    assert "not the .npy layout NpySink writes" in err[1]
    assert "missing.csv" in err[2]
    assert np.load(tmp_path / "b.npy").tolist() == [0, 0, 0]  # untouched


def test_a_failed_interval_fsync_is_reported_at_the_next_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", Fsyncs(fail=True))
    clock = [0.0]
    monkeypatch.setattr(sinks_module.time, "monotonic", lambda: clock[0])
    node = Recorder.create({"path": str(tmp_path / "o.slrec"), "flush_interval_s": 1.0})
    fs = frames(3)
    node.process(fs[0])
    clock[0] = 5.0
    node.process(fs[1])  # starts the (failing) background sync
    node._sync_thread.join(timeout=60)
    with pytest.raises(SinkWriteError, match=r"o\.slrec'.*input/output error; syncing the file "
                       "to disk failed; frame 2 was not written"):
        node.process(fs[2])
    assert len(list(iter_recording(tmp_path / "o.slrec"))) == 2


@pytest.mark.parametrize("ext", ["xdf", "edf", "bdf"])
def test_repair_also_cuts_xdf_edf_and_bdf_files_back(tmp_path, capsys, ext):
    """`streamlab repair` takes the XDF and EDF/BDF sinks' files too (it used to refuse them,
    while their docs point users at a repair step)."""
    from streamlab.cli.main import main
    from streamlab.registry import get_node_type

    node_type, cfg = {"xdf": ("XdfSink", {}),
                      "edf": ("EdfSink", {"physical_min": -10, "physical_max": 10}),
                      "bdf": ("EdfSink", {"physical_min": -10, "physical_max": 10})}[ext]
    path = tmp_path / f"o.{ext}"
    node = get_node_type(node_type).create({"path": str(path), **cfg})
    for k in range(4):
        node.process(DataFrame.from_block(["a", "b"], np.full((2, 50), float(k)),
                                          timestamp=1_000_000 + k * 500_000, sequence_id=k,
                                          metadata={"sample_rate": "100.0"}))
    node.on_stop()
    complete = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b"\x01\x40\x03\x00")  # xdf: a Samples chunk of 64 bytes, cut short
    assert main(["repair", str(path)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{path}: ") and line.endswith("4 bytes of a cut-short record "
                                                          "removed"), line
    assert path.read_bytes() == complete
    assert main(["repair", str(path)]) == 0
    assert capsys.readouterr().out.strip().endswith("complete (" + line.split(": ")[1]
                                                    .split(" records")[0] + " records)")
