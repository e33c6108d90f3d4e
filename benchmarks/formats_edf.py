"""EDF+/BDF+ throughput: EdfSink writing and EdfSource reading 64 channels at 1 kHz.

    python -m benchmarks.formats_edf [--seconds 600] [--frame 100] [--repeat 3]

Writes ``--seconds`` of a 64-channel 1 kHz stream (frames of ``--frame`` samples, with a
marker event every second) with EdfSink, then reads it back with EdfSource (frames of the same
size, annotations -> events), each as node calls without a pipeline around them (what the
format costs, not the scheduler). Prints, per format, the best of ``--repeat`` runs as
"x real time" (seconds of signal per second of wall clock); the target is >= 50x.
Not asserted anywhere (wall-clock figures on a shared machine).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from streamlab.errors import EndOfStream
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import NodeContext
from streamlab.nodes.edf import EdfSink, EdfSource

RATE, CHANNELS = 1000, 64


def frames(seconds: float, frame: int) -> list[DataFrame]:
    rng = np.random.default_rng(0)
    names = [f"ch{i}" for i in range(CHANNELS)]
    block = rng.uniform(-100, 100, (CHANNELS, frame))
    out = []
    for k in range(int(seconds * RATE) // frame):
        f = DataFrame.from_block(names, block, timestamp=k * frame * 1000, sequence_id=k,
                                 metadata={"sample_rate": str(RATE)})
        if (k * frame) % RATE == 0:
            f = f.with_events([Event(f.timestamp, "tick", sample=0)])
        out.append(f)
    return out


def write(path: Path, data: list[DataFrame]) -> float:
    node = EdfSink.create({"path": str(path)}, NodeContext(node_id="sink"))
    t = time.perf_counter()
    for f in data:
        node.process(f)
    node.on_stop()
    return time.perf_counter() - t


def read(path: Path, frame: int) -> tuple[float, int, int]:
    t = time.perf_counter()
    node = EdfSource.create({"path": str(path), "samples_per_frame": frame},
                            NodeContext(node_id="src"))
    samples = events = 0
    while True:
        try:
            f = node.process(None)
        except EndOfStream:
            break
        samples += f.n_samples
        events += len(f.events)
    node.on_stop()
    return time.perf_counter() - t, samples, events


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--frame", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    data = frames(args.seconds, args.frame)
    seconds = len(data) * args.frame / RATE
    print(f"{CHANNELS} channels x {RATE} Hz, {seconds:g} s of signal, frames of {args.frame}")
    with tempfile.TemporaryDirectory() as tmp:
        for ext in ("edf", "bdf"):
            path = Path(tmp) / f"bench.{ext}"
            w = min(write(path, data) for _ in range(args.repeat))
            runs = [read(path, args.frame) for _ in range(args.repeat)]
            r = min(x[0] for x in runs)
            _, samples, events = runs[0]
            assert samples == int(seconds * RATE) and events == int(seconds), (samples, events)
            size = path.stat().st_size / 2**20
            print(f"{ext}: write {seconds / w:7.0f}x real time ({w:.2f} s), "
                  f"read {seconds / r:7.0f}x real time ({r:.2f} s), {size:.0f} MiB")


if __name__ == "__main__":
    main()
