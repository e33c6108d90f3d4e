"""File sinks on a full disk (#9 item 6): the file stays readable by its format's own reader,
holds every complete frame written before the failure, and the error says what happened."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from streamlab.frame import DataFrame
from streamlab.nodes.record import Recorder, iter_recording
from streamlab.nodes.sinks import AppendFile, CsvSink, JsonlSink, NpySink, NpzSink, SinkWriteError
from tests.nodes.full_disk import FullDisk

REPO = Path(__file__).resolve().parents[2]


def frames(n: int = 8, samples: int = 3) -> list[DataFrame]:
    rng = np.random.default_rng(5)
    return [DataFrame.from_block(["a", "b"], rng.standard_normal((2, samples)), timestamp=k,
                                 sequence_id=k) for k in range(n)]


def read_npy(path: Path) -> np.ndarray:
    return np.load(path)


def read_csv(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["a", "b"]
    return np.array(rows[1:], dtype=float).reshape(-1, 2)


def read_jsonl(path: Path) -> np.ndarray:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    return np.array([v for x in lines for v in zip(x["payload"]["a"], x["payload"]["b"],
                                                   strict=True)]).reshape(-1, 2)


def read_slrec(path: Path) -> np.ndarray:
    return np.array([r for f in iter_recording(path) for r in f.block().T]).reshape(-1, 2)


SINKS = {"npy": (NpySink, read_npy), "csv": (CsvSink, read_csv),
         "jsonl": (JsonlSink, read_jsonl), "slrec": (Recorder, read_slrec)}




@pytest.mark.parametrize("ext", list(SINKS))
def test_full_disk_leaves_a_readable_file_of_the_complete_frames(tmp_path, monkeypatch, ext):
    node_type, read = SINKS[ext]
    path = tmp_path / f"o.{ext}"
    fs = frames()
    # The size of the file after 4 whole frames, measured, plus half of the 5th frame.
    probe = node_type.create({"path": str(tmp_path / f"probe.{ext}")})
    sizes = []
    for f in fs:
        probe.process(f)
        sizes.append((tmp_path / f"probe.{ext}").stat().st_size)
    probe.on_stop()
    disk = FullDisk(sizes[3] + (sizes[4] - sizes[3]) // 2)
    monkeypatch.setattr(AppendFile, "_os_write", staticmethod(disk))

    node = node_type.create({"path": str(path)})
    for f in fs[:4]:
        node.process(f)
    with pytest.raises(SinkWriteError, match=rf"o\.{ext}'.*no space left on device; frame 4 "
                       r"was not written; the file holds the 4 frames before it") as info:
        node.process(fs[4])
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    expected = np.concatenate([f.block() for f in fs[:4]], axis=1).T
    assert np.array_equal(read(path), expected)  # readable at once, not only after on_stop
    with pytest.raises(SinkWriteError):  # still full: the next frame fails the same way
        node.process(fs[5])
    disk.budget = 10**9  # space is back (SkipFrame policy: the sink goes on after the gap)
    node.process(fs[6])
    node.on_stop()
    expected = np.concatenate([f.block() for f in [*fs[:4], fs[6]]], axis=1).T
    assert np.array_equal(read(path), expected)
    assert node.statistics().frames == 5


def test_npy_header_counts_the_complete_rows_only(tmp_path, monkeypatch):
    path = tmp_path / "o.npy"
    monkeypatch.setattr(AppendFile, "_os_write", staticmethod(FullDisk(128 + 48 + 20)))
    node = NpySink.create({"path": str(path)})
    node.process(frames()[0])
    with pytest.raises(SinkWriteError):
        node.process(frames()[1])
    assert path.stat().st_size == 128 + 48  # the partial row was cut off
    assert np.load(path).shape == (3, 2)  # without on_stop: the header was rewritten at once
    node.on_stop()
    assert np.load(path).shape == (3, 2)


def test_a_header_that_does_not_fit_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(AppendFile, "_os_write", staticmethod(FullDisk(10)))
    node = NpySink.create({"path": str(tmp_path / "o.npy")})
    with pytest.raises(SinkWriteError, match="no space left on device; could not start the file"):
        node.process(frames()[0])
    assert not (tmp_path / "o.npy").exists()


def test_npz_that_cannot_be_completed_is_removed(tmp_path, monkeypatch):
    node = NpzSink.create({"path": str(tmp_path / "o.npz")})
    node.process(frames()[0])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(SinkWriteError, match=r"o\.npz'.*no space left on device; the archive "
                       "of 1 frames could not be completed and was removed"):
        node.on_stop()
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_sink_refuses_a_path_that_is_not_a_regular_file(tmp_path, kind):
    path = tmp_path / "o.npy"
    if kind == "directory":
        path.mkdir()
        message = "is a directory"
    else:
        os.mkfifo(path)  # opening it for writing would block until a reader comes
        message = r"is a FIFO \(named pipe\); file sinks write regular files only"
    node = NpySink.create({"path": str(path)})
    with pytest.raises((OSError, ValueError), match=rf"NpySink.*o\.npy'? {message}"):
        node.process(frames()[0])


# -- a real full disk: a small tmpfs, through the CLI ------------------------------------------
@pytest.fixture
def small_tmpfs(tmp_path):
    """A 192 KiB tmpfs mounted under tmp_path (root only), unmounted at teardown."""
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("a real full disk needs root to mount a small tmpfs (the injected-error "
                    "tests above cover the same code)")
    where = tmp_path / f"full-{uuid.uuid4().hex[:8]}"
    where.mkdir()
    proc = subprocess.run([mount, "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(where)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("ext", list(SINKS))
def test_real_full_disk_through_the_cli(tmp_path, small_tmpfs, ext):
    node_type, read = SINKS[ext]
    data = np.random.default_rng(6).standard_normal((40_000, 2))  # 640 KB as float64
    np.save(tmp_path / "in.npy", data)
    out = small_tmpfs / f"o.{ext}"
    cfg = {"name": "full", "nodes": [
        {"id": "src", "type": "FileSource",
         "config": {"path": str(tmp_path / "in.npy"), "samples_per_frame": 100,
                    "sample_rate": 1000.0, "channels": ["a", "b"]}},
        {"id": "sink", "type": node_type.__name__, "config": {"path": str(out)}}],
        "connections": [{"from": "src", "to": "sink"}]}
    (tmp_path / "p.json").write_text(json.dumps(cfg))
    proc = subprocess.run([sys.executable, "-m", "streamlab", "run", "p.json", "-q"],
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert f"o.{ext}" in lines[0] and "no space left on device" in lines[0], lines[0]
    got = read(out)
    assert 0 < len(got) < len(data) and len(got) % 100 == 0  # whole frames only
    assert np.array_equal(got, data[:len(got)])
