"""Oddball paradigm over LSL: a simulated P300 recovered by Attach -> Epoch -> Average.

The example a BCI user tries first. Runs, on this machine:

1. a simulated 8-channel EEG amplifier (``StreamLabOddball-EEG``, 500 Hz, µV) pushing chunks of
   10 samples with explicit LSL timestamps, and a stimulus computer (``StreamLabOddball-Markers``,
   LSL strings) pushing ``target`` (20 %) and ``standard`` (80 %) markers, each with its exact
   onset time, every 0.25-0.35 s until ``--targets`` targets have been shown;
2. the pipeline ``examples/oddball.json``: LSLInlet + LSLMarkerInlet -> 50 Hz notch -> 15 Hz
   linear-phase FIR low-pass -> Attach -> Epoch (-0.2..0.8 s, baseline before 0) -> Average
   -> EvokedPlot (out/oddball/evoked.png);
3. then it measures the P300 on Pz: the peak of (target average - standard average) within
   200-500 ms after the stimulus, and compares it with the truth.

The simulated data (seeded): background EEG = white noise (``--noise`` µV sd per sample, 5 by
default, about 1.2 µV rms below 15 Hz) + a 10 Hz alpha rhythm (2 µV, drifting phase, not
locked to the stimuli) + 50 Hz mains (8 µV) + a DC offset per channel (up to 40 µV). After a target only, a P300: a Gaussian bump (sd 50 ms)
peaking ``--latency`` s (0.3) after the onset, ``--amplitude`` µV (5) on P3/Pz/P4, smaller
elsewhere (Fz 1, Cz 3, C3/C4 2.5, Oz 2 µV). Standards get nothing.

Timing, honestly: the FIR low-pass delays every sample by exactly (numtaps - 1) / 2 samples
(25 samples = 50 ms: it is linear-phase, so the bump keeps its shape). The plot shows the
filtered data as they are (the P300 at about 350 ms); the measured latency has that known
delay subtracted, read from the config. Each marker is stamped half a sample before a sample
(a stimulus falls between samples), so it lands on the next sample (Attach's rule), 1 ms after
the onset: the recovered latency is therefore 1 ms later than the truth at most.

    .venv/bin/python examples/oddball.py            # 100 targets in real time, about 2.5 min
    .venv/bin/python examples/oddball.py --fast 10  # the same data, pushed 10x faster

``--fast N`` pushes the samples N times faster than real time with the SAME timestamps (those of
a real-time recording that started now). Every node downstream uses only the timestamps
(Attach holds data by data time, Epoch cuts by sample), so the epochs and the result are the
same numbers; what it does not show is real-time behaviour (latency, pacing). Discovery stays
on 127.0.0.1 (an lsl_api.cfg in out/oddball/) unless ``LSLAPICFG`` is set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = Path(__file__).with_name("oddball.json")
LOOPBACK_CFG = "[ports]\nIPv6 = disable\n[multicast]\nResolveScope = machine\n" \
               "[lab]\nKnownPeers = {127.0.0.1}\n"
CHANNELS = ["Fz", "Cz", "C3", "C4", "P3", "Pz", "P4", "Oz"]
# P300 amplitude per channel relative to --amplitude: parietal maximum, smaller elsewhere.
TOPOGRAPHY = np.array([0.2, 0.6, 0.5, 0.5, 1.0, 1.0, 1.0, 0.4])
RATE = 500.0
CHUNK = 10  # samples per LSL chunk (20 ms)
BUMP_SD_S = 0.05
ALPHA_UV = 2.0  # amplitude of the 10 Hz alpha rhythm
ISI_S = (0.25, 0.35)
LEAD_S, TAIL_S = 1.0, 1.5  # data before the first marker (real time) and after the last one
PICK = "Pz"
WINDOW_S = (0.2, 0.5)


@dataclass
class Session:
    """The simulated recording: samples (n x channels, µV) and markers (onset sample, label)."""

    eeg: np.ndarray
    markers: list[tuple[float, str]]  # onset in samples (fractional), label


def simulate(targets: int, amplitude: float, latency: float, noise: float,
             seed: int = 1, lead_s: float = LEAD_S) -> Session:
    """A seeded oddball session with exactly `targets` targets (labels drawn with p = 0.2)."""
    rng = np.random.default_rng(seed)
    markers: list[tuple[float, str]] = []
    t, shown = lead_s, 0
    while shown < targets:
        label = "target" if rng.random() < 0.2 else "standard"
        shown += label == "target"
        # Onset half a sample before a sample: it lands on that sample (see the docstring).
        markers.append((round(t * RATE) - 0.5, label))
        t += rng.uniform(*ISI_S)
    n = int(round((t + TAIL_S) * RATE))
    time_s = np.arange(n) / RATE
    alpha_phase = 2 * np.pi * 10 * time_s + np.cumsum(rng.normal(0, 0.05, n))
    eeg = (noise * rng.standard_normal((n, len(CHANNELS)))
           + ALPHA_UV * np.sin(alpha_phase[:, None] + rng.uniform(0, 2 * np.pi, len(CHANNELS)))
           + 8 * np.sin(2 * np.pi * 50 * time_s)[:, None]
           + rng.uniform(-40, 40, len(CHANNELS)))
    half = int(4 * BUMP_SD_S * RATE)
    for onset, label in markers:
        if label != "target":
            continue
        peak = onset + latency * RATE  # in samples, fractional
        idx = np.arange(int(peak) - half, int(peak) + half + 1)
        bump = np.exp(-0.5 * ((idx - peak) / (BUMP_SD_S * RATE)) ** 2)
        eeg[idx] += amplitude * bump[:, None] * TOPOGRAPHY
    return Session(eeg, markers)


def use_loopback() -> None:
    """Point liblsl at a loopback-only config (must happen before any LSL call)."""
    path = Path("out/oddball/lsl_api.cfg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LOOPBACK_CFG)
    os.environ["LSLAPICFG"] = str(path.resolve())


def stream_names() -> tuple[str, str]:
    """The data and marker stream names the config resolves."""
    nodes = {n["id"]: n for n in json.loads(CONFIG.read_text())["nodes"]}
    return nodes["eeg"]["config"]["name"], nodes["stim"]["config"]["name"]


def run_device(session: Session, speed: float, ready: threading.Event, done: threading.Event,
               log: list[str]) -> None:
    """Publish the EEG and the markers, stamped as a real-time recording starting now.

    Samples go out `speed` times faster than their stamps (1 = real time). A marker is pushed
    once the chunk holding its onset has been pushed, with its exact onset stamp.
    """
    import pylsl

    data_name, marker_name = stream_names()
    info = pylsl.StreamInfo(data_name, "EEG", len(CHANNELS), RATE, "double64", "oddball-amp")
    info.set_channel_labels(CHANNELS)
    info.set_channel_units("microvolts")
    data = pylsl.StreamOutlet(info)
    minfo = pylsl.StreamInfo(marker_name, "Markers", 1, pylsl.IRREGULAR_RATE, "string",
                             "oddball-stim")
    stim = pylsl.StreamOutlet(minfo)
    ready.set()
    if not (data.wait_for_consumers(30.0) and stim.wait_for_consumers(30.0)):
        log.append("device: the pipeline did not connect within 30 s")
        return
    time.sleep(1.0)  # both inlets are open: let the pipeline start polling them first
    eeg, pending = session.eeg, list(session.markers)
    t0, start, n = pylsl.local_clock(), time.monotonic(), 0
    while n < len(eeg):
        block = eeg[n:n + CHUNK]
        while pending and pending[0][0] < n + len(block):  # the stimulus before its EEG
            onset, label = pending.pop(0)
            stim.push_sample([label], t0 + onset / RATE)
        data.push_chunk(np.ascontiguousarray(block), (t0 + (n + np.arange(len(block))) / RATE)
                        .tolist())
        n += len(block)
        time.sleep(max(0.0, start + n / RATE / speed - time.monotonic()))
    log.append(f"device: sent {n} samples x {len(CHANNELS)} channels "
               f"({n / RATE:.1f} s of data) and {len(session.markers)} markers")
    done.wait(30.0)  # keep the outlets until the pipeline's inlets have closed


def measure(results: dict[str, list[Any]], delay_s: float) -> dict[str, float]:
    """P300 on Pz from the last Average frame per label: peak of target - standard."""
    last = {}
    for frame in results["evoked"]:
        last[frame.metadata["label"]] = frame
    target, standard = last["target"], last["standard"]
    rate = float(target.metadata["sample_rate"])
    times = float(target.metadata["tmin"]) + np.arange(target.n_samples) / rate - delay_s
    diff = target.payload[PICK] - standard.payload[PICK]
    inside = (times >= WINDOW_S[0] - 1e-9) & (times <= WINDOW_S[1] + 1e-9)
    i = np.flatnonzero(inside)[np.argmax(diff[inside])]
    return {"amplitude": float(diff[i]), "latency": float(times[i]),
            "targets": int(target.metadata["count"]),
            "standards": int(standard.metadata["count"])}


def fir_delay_s() -> float:
    """The FIR low-pass's exact group delay, (numtaps - 1) / 2 samples, from the config."""
    nodes = {n["id"]: n for n in json.loads(CONFIG.read_text())["nodes"]}
    return (nodes["lowpass"]["config"]["numtaps"] - 1) / 2 / RATE


async def run_pipeline() -> dict[str, list[Any]]:
    from streamlab.cli.run import format_fates
    from streamlab.runtime import AsyncPipeline

    pipe = AsyncPipeline(CONFIG)  # outputs="collect": the Average frames reach "evoked"
    await pipe.start()
    pipe.close_triggers()
    report = await pipe.join()  # ends when both LSL streams go idle (idle_timeout)
    print(format_fates(report))
    for node in ("attach", "epochs"):
        fates = {k: v for k, v in report.nodes[node].event_fates.items() if v}
        print(f"  {node} event fates: {fates}")
    return pipe.results


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=100, help="targets to show (100)")
    parser.add_argument("--amplitude", type=float, default=5.0, help="P300 on Pz, µV (5)")
    parser.add_argument("--latency", type=float, default=0.3, help="P300 peak, s (0.3)")
    parser.add_argument("--noise", type=float, default=5.0,
                        help="white background noise, µV sd per sample (5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fast", type=float, default=1.0, metavar="N",
                        help="push samples N times faster than their timestamps (1)")
    parser.add_argument("--tolerance", type=float, default=0.10,
                        help="relative error allowed for amplitude and latency (0.10)")
    args = parser.parse_args(argv)
    if "LSLAPICFG" not in os.environ:
        use_loopback()
    # The first markers reach Attach about 0.1-0.2 s (wall) after the first data: in fast mode
    # that is seconds of data, enough to make them late; so the paradigm starts later there.
    lead = max(LEAD_S, 0.3 * args.fast)
    session = simulate(args.targets, args.amplitude, args.latency, args.noise, args.seed, lead)
    print(f"oddball: {len(session.markers)} markers ({args.targets} targets), "
          f"{len(session.eeg) / RATE:.0f} s of EEG, pushed at {args.fast:g}x real time")
    ready, done, log = threading.Event(), threading.Event(), []
    device = threading.Thread(target=run_device, args=(session, args.fast, ready, done, log),
                              daemon=True)
    device.start()
    ready.wait(10.0)
    try:
        results = asyncio.run(run_pipeline())
    finally:
        done.set()
        device.join(30.0)
    print("\n".join(log))
    delay = fir_delay_s()
    got = measure(results, delay)
    amp_err = abs(got["amplitude"] - args.amplitude) / args.amplitude
    lat_err = abs(got["latency"] - args.latency) / args.latency
    print(f"P300 on {PICK} (target - standard, {got['targets']} targets, "
          f"{got['standards']} standards; FIR delay {delay * 1e3:.0f} ms removed):")
    print(f"  amplitude {got['amplitude']:.2f} µV (truth {args.amplitude:g}, "
          f"error {amp_err:.1%})")
    print(f"  latency   {got['latency'] * 1e3:.0f} ms (truth {args.latency * 1e3:.0f}, "
          f"error {lat_err:.1%})")
    print("wrote out/oddball/evoked.png")
    got.update(amplitude_error=amp_err, latency_error=lat_err)
    if got["targets"] < args.targets or max(amp_err, lat_err) > args.tolerance:
        print(f"FAILED: not within {args.tolerance:.0%} of the truth with every target")
        raise SystemExit(1)
    return got


if __name__ == "__main__":
    main()
