"""Record a session to XDF with XdfSink, then replay it through a graph with XdfSource.

    python examples/xdf_replay.py                    # record out/xdf/session.xdf, replay it
    python examples/xdf_replay.py --xdf REC.xdf --stream EEG-NAME   # replay your recording

Step 1 (skipped with ``--xdf``): a simulated 4-channel EEG at 250 Hz and a marker stream
(MarkerGenerator: "target"/"standard") are written by XdfSink, as LabRecorder would record
them from LSL: one double64 stream and one string marker stream. Step 2: XdfSource reads the
file with pyxdf (clock sync and dejitter on), attaches the markers to the data as events
(each on the first sample at or after it), and Epoch cuts -0.1 .. 0.3 s around each marker.
The script prints the streams pyxdf sees and the epochs per label. Needs ``streamlab[xdf]``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from pathlib import Path

from streamlab.runtime import AsyncPipeline

ROOT = Path(__file__).resolve().parents[1]


def record(path: Path) -> None:
    config = {"name": "xdf-record", "nodes": [
        {"id": "eeg", "type": "SineGenerator",
         "config": {"mode": "free", "frequency": 10.0, "sample_rate": 250.0,
                    "samples_per_frame": 25, "max_frames": 400,
                    "channels": ["Fz", "Cz", "Pz", "Oz"]}},
        {"id": "stim", "type": "MarkerGenerator",
         "config": {"mode": "free", "probabilities": {"target": 0.25, "standard": 0.75},
                    "isi_s": [0.3, 0.5], "count": 20, "seed": 1}},
        {"id": "rec", "type": "XdfSink",
         "config": {"path": str(path), "streams": {"eeg": {"name": "EEG", "type": "EEG"}},
                    "units": {"Fz": "uV", "Cz": "uV", "Pz": "uV", "Oz": "uV"}}}],
        "connections": [{"from": "eeg", "to": "rec"}, {"from": "stim", "to": "rec"}]}
    asyncio.run(AsyncPipeline(config).run())


def replay(path: Path, stream: str) -> list:
    config = {"name": "xdf-replay", "nodes": [
        {"id": "src", "type": "XdfSource",
         "config": {"path": str(path), "stream": {"name": stream}, "frame_size": 50}},
        {"id": "epochs", "type": "Epoch", "config": {"tmin": -0.1, "tmax": 0.3,
                                                     "baseline": None}},
        {"id": "out", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "src", "to": "epochs"}, {"from": "epochs", "to": "out"}]}
    pipe = AsyncPipeline(config)
    asyncio.run(pipe.run())
    return pipe.results["out"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--xdf", type=Path, help="an XDF file to replay (default: record one)")
    ap.add_argument("--stream", default="EEG", help="name of the data stream to replay")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "xdf" / "session.xdf",
                    help="where step 1 records")
    args = ap.parse_args(argv)
    path = args.xdf
    if path is None:
        path = args.out
        path.parent.mkdir(parents=True, exist_ok=True)
        record(path)
        print(f"recorded {path}")
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(path))
    for s in streams:
        info = s["info"]
        print(f"  stream {info['name'][0]!r} ({info['type'][0]}): {len(s['time_stamps'])} "
              f"samples, {info['channel_count'][0]} channels, {info['nominal_srate'][0]} Hz")
    epochs = replay(path, args.stream)
    labels = Counter(e.label for f in epochs for e in f.events)
    print(f"replayed {args.stream!r}: {len(epochs)} epochs {dict(sorted(labels.items()))}")


if __name__ == "__main__":
    main()
