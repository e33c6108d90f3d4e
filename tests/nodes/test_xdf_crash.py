"""XdfSink after kill -9: a real ``streamlab run`` writing 64 channels at 1 kHz is killed at
random moments; pyxdf (through XdfSource's loader, which reads the complete chunks) must find
every sample stamped up to one flush interval before the kill, each one exact."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streamlab.formats.xdf import load, repair, scan

pytest.importorskip("pyxdf")

RATE, FRAME, CHANNELS = 1000.0, 50, 64


def start_writer(tmp_path: Path, out: Path) -> subprocess.Popen:
    config = {"name": "rec", "nodes": [
        {"id": "gen", "type": "SineGenerator",
         "config": {"mode": "free", "realtime": True, "frequency": 7.0, "sample_rate": RATE,
                    "samples_per_frame": FRAME,
                    "channels": [f"c{i}" for i in range(CHANNELS)]}},
        {"id": "rec", "type": "XdfSink", "config": {"path": str(out), "flush_interval_s": 1.0}}],
        "connections": [{"from": "gen", "to": "rec"}]}
    cfg = tmp_path / f"{out.stem}.json"
    cfg.write_text(json.dumps(config))
    src = str(Path(__file__).resolve().parents[2] / "src")
    return subprocess.Popen([sys.executable, "-m", "streamlab", "run", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": src})


def test_kill_9_leaves_everything_up_to_one_flush_interval_before(tmp_path):
    rng = random.Random(12)
    report = []
    for k in range(3):
        out = tmp_path / f"kill{k}.xdf"
        proc = start_writer(tmp_path, out)
        try:
            deadline = time.monotonic() + 60
            while not (out.exists() and out.stat().st_size > 0):  # the header is written
                assert proc.poll() is None and time.monotonic() < deadline, "writer did not start"
                time.sleep(0.02)
            time.sleep(rng.uniform(1.5, 3.5))
            killed_at_us = time.time_ns() // 1000
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(30)
        layout = scan(out)  # never a corrupt chunk: at worst the last one is cut
        streams, _ = load(out, synchronize_clocks=True, dejitter_timestamps=False,
                          allow_truncated=True)
        [s] = streams
        data, stamps = s["time_series"], np.rint(s["time_stamps"] * 1e6).astype(np.int64)
        n = len(stamps)
        assert n > 0 and data.shape == (n, CHANNELS)
        # a gap-free prefix of the signal, each sample exactly what the generator made
        idx = np.arange(n)
        assert np.array_equal(stamps - stamps[0], np.rint(idx * 1e6 / RATE).astype(np.int64))
        assert np.array_equal(data[:, 0], np.sin(2 * math.pi * 7.0 * idx / RATE))
        assert np.array_equal(data[:, 63], data[:, 0])
        t0 = int(stamps[0])
        due = int((killed_at_us - 1_000_000 - t0) * RATE / 1e6) + 1  # stamped <= kill - 1 s
        written_by_kill = int((killed_at_us - t0) * RATE / 1e6) + 1
        report.append((k, due, n, written_by_kill, layout.truncated is not None))
        # a busy machine may delay the writer's flush: allow 0.5 s more than the interval
        assert n >= due - int(0.5 * RATE), report
        if layout.truncated:
            assert repair(out) > 0 and scan(out).truncated is None
    print("\nkill -9 (k, samples stamped <= kill-1s, samples read, samples by kill, cut mid-"
          "chunk):", report)
