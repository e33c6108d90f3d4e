"""Calibrate, then decode: a simulated motor-imagery session through Epoch -> Decoder.

1. Simulates (seeded) a 4-channel EEG at 100 Hz (C3, C4, Cz, Pz: white noise, sd 1) with a
   10 Hz mu rhythm (amplitude 1) on C3 and C4. A cue every 4 s (jittered) asks for left or
   right hand imagery: for 3 s the mu amplitude on the contralateral channel (C4 for left, C3
   for right) drops by ``--erd`` (0.25: an event-related desynchronisation). ``--calib``
   trials per class, a ``calibration_end`` marker, then ``--test`` trials per class.
2. Writes out/decode_mi/eeg.npy and events.tsv, and runs examples/decode_mi.json: FileSource +
   EventsFileSource -> Attach -> Epoch (0.5..2.5 s after the cue) -> Decoder (CSP + LDA),
   which calibrates, fits in a worker process (the data path's latency stays unchanged), then
   predicts each test trial. The data (one sample per frame, so that an epoch's end is the
   moment its frame is sent) also reaches the Decoder as ticks (``ticks_from``): test trials
   that came during the fit are predicted as soon as it ends, not with the next trial.
3. Prints the accuracy on the test trials, the cross-validated calibration accuracy, and the
   latency from the end of each epoch (its last sample) to its prediction.

    .venv/bin/python examples/decode_mi.py              # replayed in real time (~13 min)
    .venv/bin/python examples/decode_mi.py --calib 20 --test 10   # a shorter one (~4.5 min)
    .venv/bin/python examples/decode_mi.py --fast      # as fast as possible (latency: n/a)

The latency of the last test trial includes Attach's hold after the last marker (no later
marker can release its data: ``max_marker_delay_s``, 0.5 s here), so the max is that trial.

Expected accuracy from the effect size: the log-variance of an epoch's C3 (C4) has about
sd sqrt(2/201) = 0.10, the classes differ on each by log(1.5 / (1 + 0.5 (1 - erd)^2)) (0.158
for erd = 0.25), so the optimal rule on log(var C3) - log(var C4) reaches about
Phi(0.158 * 2 / (2 * 0.141)) = 0.87.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).with_name("decode_mi.json")
OUT = Path(__file__).resolve().parent.parent / "out" / "decode_mi"
CHANNELS = ["C3", "C4", "Cz", "Pz"]
RATE = 100.0
MU_HZ, MU_AMP = 10.0, 1.0
TRIAL_S, ISI_S = 3.0, (4.0, 4.5)
TMIN, TMAX = 0.5, 2.5


def simulate(calib: int, test: int, erd: float, seed: int = 7,
             end_marker: bool = True) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(samples x 4 channels, [(cue sample, label)]): ``calib`` then ``test`` trials per
    class in random order, ``calibration_end`` between them (when ``end_marker``)."""
    rng = np.random.default_rng(seed)
    labels = [str(x) for x in rng.permutation(["left"] * calib + ["right"] * calib)]
    labels += [str(x) for x in rng.permutation(["left"] * test + ["right"] * test)]
    cues: list[tuple[int, str]] = []
    t = 2.0
    for i, lab in enumerate(labels):
        if i == 2 * calib and end_marker:
            cues.append((round(t * RATE), "calibration_end"))
            t += 3.5
        cues.append((round(t * RATE), lab))
        t += rng.uniform(*ISI_S)
    n = round((t + 2.0) * RATE)
    x = rng.standard_normal((n, len(CHANNELS)))
    time = np.arange(n) / RATE
    gain = np.ones((n, 2))  # mu amplitude on C3, C4
    for s, lab in cues:
        if lab in ("left", "right"):
            gain[s:s + round(TRIAL_S * RATE), 1 if lab == "left" else 0] = 1.0 - erd
    phase = rng.uniform(0, 2 * np.pi, 2)
    for c in range(2):
        x[:, c] += MU_AMP * gain[:, c] * np.sin(2 * np.pi * MU_HZ * time + phase[c])
    return x, cues


def write_session(folder: Path, x: np.ndarray, cues: list[tuple[int, str]]) -> None:
    """eeg.npy (samples x channels) and a BIDS-style events.tsv (onset in s on sample times)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "eeg.npy", x)
    rows = ["onset\tduration\ttrial_type"] + [f"{s / RATE!r}\t0\t{lab}" for s, lab in cues]
    (folder / "events.tsv").write_text("\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=40, help="calibration trials per class")
    ap.add_argument("--test", type=int, default=50, help="test trials per class")
    ap.add_argument("--erd", type=float, default=0.25, help="mu amplitude drop (0..1)")
    ap.add_argument("--fast", action="store_true", help="replay as fast as possible")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the session files")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from streamlab import AsyncPipeline, load_config

    try:  # CSP's fit logs every covariance at INFO
        import mne

        mne.set_log_level("WARNING")
    except ImportError:
        pass
    x, cues = simulate(args.calib, args.test, args.erd)
    write_session(args.out, x, cues)
    import asyncio

    pipe = AsyncPipeline(load_config(session_config(args.out, args.fast), base_dir=CONFIG.parent))
    report = asyncio.run(pipe.run())
    if report.state != "completed":
        print(f"error: the pipeline {report.state}: {report.error}", file=sys.stderr)
        return 1
    print_results(pipe.results["decoder"], args.fast)
    return 0


def session_config(folder: Path, fast: bool) -> dict:
    """examples/decode_mi.json reading the session in ``folder`` (as fast as possible or not)."""
    cfg = json.loads(CONFIG.read_text())
    for n in cfg["nodes"]:
        if n["type"] == "FileSource":
            n["config"]["path"] = str(folder / "eeg.npy")
            n["config"]["realtime"] = not fast
        elif n["type"] == "EventsFileSource":
            n["config"]["path"] = str(folder / "events.tsv")
        elif n["type"] == "Decoder" and fast:
            # faster than real time, the test trials would all arrive during the fit and the
            # stream end before it: the decoder awaits the fit instead (nothing is lost)
            n["config"]["while_fitting"] = "wait"
    return cfg


def print_results(preds: list, fast: bool) -> None:
    """The accuracy on the test trials, and the latency from each epoch's end to its label."""
    right = [f.metadata["predicted_label"] == f.metadata["true_label"] for f in preds]
    lat = [int(f.metadata["latency_us"]) / 1000 for f in preds]
    print(f"test trials: {len(preds)}, accuracy {sum(right) / max(1, len(right)):.3f}"
          f" (calibration, cross-validated: {preds[0].metadata['cv_accuracy'] if preds else '-'})")
    if fast:
        print("latency from epoch end to prediction: n/a (--fast: timestamps are not wall time)")
    elif lat:
        worst = int(np.argmax(lat))
        print(f"latency from epoch end to prediction: median {statistics.median(lat):.1f} ms, "
              f"max {max(lat):.1f} ms (test trial {worst + 1} of {len(lat)})")

if __name__ == "__main__":
    raise SystemExit(main())
