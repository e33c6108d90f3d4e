"""Recording formats: write and read throughput, 64 channels at 1 kHz, as x real time.

    python -m benchmarks.formats [--seconds 60] [--frame 256] [--repeat 3]

Per format, four figures (best of ``--repeat``; seconds of signal / wall seconds):

* ``writer``: the format module alone (XDF: ``streamlab.formats.xdf.XdfWriter``, one Samples
  chunk per frame, flushed every second of wall time, then closed);
* ``sink``: a pipeline ``SineGenerator (free, as fast as possible) -> XdfSink`` (what a
  recording costs inside a graph, generator included);
* ``reader``: ``streamlab.formats.xdf.load`` (the bounded chunk scan, then pyxdf.load_xdf
  with its defaults: clock sync and dejitter on);
* ``source``: a pipeline ``XdfSource -> Passthrough`` (outputs discarded): load + frames.

Target: >= 50x real time each. Not asserted anywhere (wall-clock figures on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamlab.formats.xdf import XdfWriter, load
from streamlab.runtime import AsyncPipeline

CHANNELS, RATE = 64, 1000.0


def _best(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def xdf(seconds: float, frame: int, repeat: int) -> dict[str, float]:
    """The four XDF figures (x real time)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-xdf-"))
    path = folder / "w.xdf"
    n = int(seconds * RATE)
    block = np.random.default_rng(0).standard_normal((n, CHANNELS))
    stamps = 1.7e9 + np.arange(n) / RATE

    def write() -> None:
        w = XdfWriter(path)
        sid = w.add_stream("eeg", channels=[f"c{i}" for i in range(CHANNELS)],
                           nominal_srate=RATE)
        for k in range(0, n, frame):
            w.write_samples(sid, stamps[k:k + frame], block[k:k + frame])
            w.maybe_flush()
        w.close()

    sink_path = folder / "sink.xdf"
    sink_cfg = {"name": "bench-sink", "nodes": [
        {"id": "gen", "type": "SineGenerator",
         "config": {"mode": "free", "frequency": 10.0, "sample_rate": RATE,
                    "samples_per_frame": frame, "max_frames": n // frame,
                    "channels": [f"c{i}" for i in range(CHANNELS)]}},
        {"id": "rec", "type": "XdfSink", "config": {"path": str(sink_path)}}],
        "connections": [{"from": "gen", "to": "rec"}]}
    src_cfg = {"name": "bench-source", "nodes": [
        {"id": "src", "type": "XdfSource", "config": {"path": str(path), "frame_size": frame}},
        {"id": "out", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "src", "to": "out"}]}

    def run(cfg: dict) -> None:
        asyncio.run(AsyncPipeline(cfg, outputs="discard").run())

    out = {"writer": seconds / _best(write, repeat),
           "sink": seconds / _best(lambda: run(sink_cfg), repeat),
           "reader": seconds / _best(lambda: load(path), repeat),
           "source": seconds / _best(lambda: run(src_cfg), repeat)}
    out["file_mb"] = path.stat().st_size / 1e6
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    return out


#: format -> benchmark function (seconds, frame, repeat) -> figures
FORMATS: dict[str, Callable[[float, int, int], dict[str, float]]] = {"xdf": xdf}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of signal")
    ap.add_argument("--frame", type=int, default=256, help="samples per frame")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions (best is kept)")
    ap.add_argument("--only", default=None, help="comma-separated formats")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else list(FORMATS)
    print(f"{CHANNELS} channels x {RATE:g} Hz, {args.seconds:g} s of signal, frames of "
          f"{args.frame}; x real time (target >= 50x)")
    for name in names:
        figures = FORMATS[name](args.seconds, args.frame, args.repeat)
        size = figures.pop("file_mb", None)
        cells = "  ".join(f"{k} {v:7.1f}x" for k, v in figures.items())
        print(f"{name:5s} {cells}" + (f"  ({size:.1f} MB)" if size else ""))


if __name__ == "__main__":
    main()
