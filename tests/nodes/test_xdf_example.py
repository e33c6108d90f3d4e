"""examples/xdf_replay.py records a session with XdfSink and replays it with XdfSource;
benchmarks/formats.py runs (figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyxdf")
ROOT = Path(__file__).resolve().parents[2]


def test_xdf_replay_example_runs(tmp_path):
    out = tmp_path / "session.xdf"
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "xdf_replay.py"), "--out",
                        str(out)], capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "stream 'EEG' (EEG): 10000 samples, 4 channels, 250.0 Hz" in r.stdout
    assert "replayed 'EEG': 20 epochs" in r.stdout
    assert out.exists() and "Traceback" not in r.stderr


def test_formats_benchmark_runs():
    sys.path.insert(0, str(ROOT))
    from benchmarks.formats import xdf

    figures = xdf(seconds=1.0, frame=100, repeat=1)
    assert set(figures) == {"writer", "sink", "reader", "source", "file_mb"}
    assert all(v > 0 for v in figures.values())
