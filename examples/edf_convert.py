"""Convert a recorded session (a .slrec recording, with events) to EDF+ or BDF+.

    .venv/bin/python examples/edf_convert.py                       # a simulated session -> BDF+
    .venv/bin/python examples/edf_convert.py --format edf          # ... -> EDF+ (16 bit)
    .venv/bin/python examples/edf_convert.py --input my_run.slrec  # your own Recorder file

1. Without ``--input``, it first records a simulated session with Recorder: 8 EEG channels
   (µV: noise + 10 Hz alpha + a DC offset) at 250 Hz for ``--seconds`` s, frames of 25
   samples, with a ``target``/``standard`` marker (an Event) every 0.8-1.2 s
   (out/edf/session.slrec).
2. The conversion is a pipeline, ``Replay -> EdfSink`` (config printed), run with the event
   ledger on: every sample goes to out/edf/session.bdf (or .edf), every event becomes an
   EDF+ annotation on its sample.
3. It reads the file back with EdfSource (annotations -> events) and, when mne is installed,
   with ``mne.io.read_raw_bdf``/``read_raw_edf``, and prints what each found and the largest
   difference from the recording (within the format's quantisation step).

Values beyond ``--range`` µV are clipped and counted (EdfSink's statistics); the step is
``2 * range / 65535`` in EDF (0.098 µV for ±3200) and ``2 * range / 16777215`` in BDF.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np

from streamlab import AsyncPipeline
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import NodeContext
from streamlab.nodes.edf import EdfSource
from streamlab.nodes.record import Recorder, iter_recording
from streamlab.testing import run_node

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ["Fp1", "Fp2", "Fz", "Cz", "Pz", "P3", "P4", "Oz"]
RATE, FRAME = 250, 25


def simulate(path: Path, seconds: float, seed: int = 1) -> None:
    """A simulated session recorded with Recorder (timestamps from 2024-05-01 09:00 UTC)."""
    rng = np.random.default_rng(seed)
    t0 = 1_714_554_000_000_000
    offsets = rng.uniform(-40, 40, (len(CHANNELS), 1))
    next_marker = int(rng.uniform(0.5, 1.0) * RATE)
    rec = Recorder.create({"path": str(path)}, NodeContext(node_id="recorder"))
    for k in range(int(seconds * RATE) // FRAME):
        n = k * FRAME + np.arange(FRAME)
        alpha = 2.0 * np.sin(2 * np.pi * 10 * n / RATE)
        block = rng.normal(0, 5, (len(CHANNELS), FRAME)) + alpha + offsets
        ts = t0 + k * FRAME * 1_000_000 // RATE
        frame = DataFrame.from_block(CHANNELS, block, timestamp=ts, sequence_id=k,
                                     metadata={"sample_rate": str(RATE)})
        events = []
        while next_marker < (k + 1) * FRAME:
            i = next_marker - k * FRAME
            label = "target" if rng.random() < 0.2 else "standard"
            events.append(Event(ts + i * 1_000_000 // RATE, label, sample=i))
            next_marker += int(rng.uniform(0.8, 1.2) * RATE)
        rec.process(frame.with_events(events) if events else frame)
    rec.on_stop()


def convert(src: Path, dst: Path, limit: float) -> dict:
    config = {
        "name": "edf-convert",
        "pipeline_config": {"debug": True},  # checks every event's fate
        "nodes": [{"id": "replay", "type": "Replay", "config": {"path": str(src)}},
                  {"id": "edf", "type": "EdfSink",
                   "config": {"path": str(dst), "physical_min": -limit, "physical_max": limit,
                              "unit": "uV"}}],
        "connections": [{"from": "replay", "to": "edf"}],
    }
    print("pipeline:", json.dumps(config))
    pipe = AsyncPipeline(config)
    report = asyncio.run(pipe.run())
    sink = report.nodes["edf"]
    print(f"converted {sink.received} frames, {sink.events_received} events -> "
          f"{sink.event_fates['carried']} annotations in {dst}")
    return {"events": sink.events_received}


def check(src: Path, dst: Path) -> None:
    frames = list(iter_recording(src))
    data = np.concatenate([f.block() for f in frames], axis=1)
    labels = [e.label for f in frames for e in f.events]
    back = run_node(EdfSource, {"path": str(dst), "samples_per_frame": 1000},
                    triggers=10**6)
    got = np.concatenate([f.block() for f in back], axis=1)[:, :data.shape[1]]
    print(f"EdfSource: {len(back[0].channels)} channels, {got.shape[1] / RATE:g} s, "
          f"{sum(len(f.events) for f in back)} events; max |difference| "
          f"{np.max(np.abs(got - data)):.3g} µV")
    assert [e.label for f in back for e in f.events] == labels
    try:
        import mne
    except ImportError:
        print("mne is not installed: skipping its check")
        return
    read = mne.io.read_raw_bdf if dst.suffix == ".bdf" else mne.io.read_raw_edf
    raw = read(dst, preload=True, verbose="error")
    diff = np.max(np.abs(raw.get_data()[:, :data.shape[1]] * 1e6 - data))
    print(f"mne: {len(raw.ch_names)} channels, {raw.n_times / raw.info['sfreq']:g} s, "
          f"{len(raw.annotations)} annotations ({sorted(set(raw.annotations.description))}), "
          f"start {raw.info['meas_date']}; max |difference| {diff:.3g} µV")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, help="a Recorder file (.slrec); default: simulate one")
    ap.add_argument("--format", choices=["bdf", "edf"], default="bdf")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--range", type=float, default=3200.0, help="±µV the file holds")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "edf")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.input
    if src is None:
        src = args.out / "session.slrec"
        simulate(src, args.seconds)
        print(f"simulated {args.seconds:g} s of {len(CHANNELS)}-channel EEG -> {src}")
    dst = args.out / f"{src.stem}.{args.format}"
    convert(src, dst, args.range)
    check(src, dst)


if __name__ == "__main__":
    main()
