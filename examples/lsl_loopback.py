"""LSL in and out on one machine: a simulated EEG device -> StreamLab -> a consumer.

Runs three things at once and prints what each saw:

1. a simulated 8-channel EEG amplifier publishing the LSL stream ``StreamLabDemo-EEG``
   (250 Hz, 10 Hz alpha + 50 Hz mains + noise, in µV), in real time for ``--seconds``;
2. the pipeline ``examples/lsl_loopback.json``: LSLInlet -> 1-40 Hz band-pass -> LSLOutlet
   ``StreamLabDemo-filtered`` (plus a Recorder and a PlotSink writing to out/lsl/);
3. a consumer reading ``StreamLabDemo-filtered`` with plain pylsl.

    .venv/bin/python examples/lsl_loopback.py                 # everything, about 5 s
    .venv/bin/python examples/lsl_loopback.py --device-only   # just the device; then, in
    .venv/bin/streamlab run examples/lsl_loopback.json        #   another terminal, the pipeline

Stream discovery is kept on this machine (127.0.0.1) with an lsl_api.cfg written to out/lsl/,
unless ``LSLAPICFG`` is already set or ``--network`` is given (run it from the repository root).
The pipeline's outputs go to ../out/lsl/ from the config's folder, i.e. out/lsl/ at the root.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from pathlib import Path

CONFIG = Path(__file__).with_name("lsl_loopback.json")
LOOPBACK_CFG = "[ports]\nIPv6 = disable\n[multicast]\nResolveScope = machine\n" \
               "[lab]\nKnownPeers = {127.0.0.1}\n"
CHANNELS = ["Fp1", "Fp2", "C3", "C4", "P3", "P4", "O1", "O2"]
RATE = 250.0


def use_loopback() -> None:
    """Point liblsl at a loopback-only config (must happen before any LSL call)."""
    path = Path("out/lsl/lsl_api.cfg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LOOPBACK_CFG)
    os.environ["LSLAPICFG"] = str(path.resolve())


def run_device(seconds: float, ready: threading.Event, done: threading.Event,
               sent: list[int]) -> None:
    """Publish StreamLabDemo-EEG in real time, 10 samples (40 ms) per chunk."""
    import numpy as np
    import pylsl

    info = pylsl.StreamInfo("StreamLabDemo-EEG", "EEG", len(CHANNELS), RATE, "double64",
                            "streamlab-demo-device")
    info.set_channel_labels(CHANNELS)
    info.set_channel_units("microvolts")
    outlet = pylsl.StreamOutlet(info)
    ready.set()
    if not outlet.wait_for_consumers(15.0):
        print("device: nobody connected within 15 s")
        return
    rng = np.random.default_rng(0)
    gains = np.linspace(0.5, 1.5, len(CHANNELS))[:, None]
    start, n, chunk = time.monotonic(), 0, 10
    while n < seconds * RATE:
        t = (n + np.arange(chunk)) / RATE
        eeg = (20 * gains * np.sin(2 * np.pi * 10 * t) + 15 * np.sin(2 * np.pi * 50 * t)
               + 5 * rng.standard_normal((len(CHANNELS), chunk)) + 30)
        outlet.push_chunk(np.ascontiguousarray(eeg.T))
        n += chunk
        time.sleep(max(0.0, start + n / RATE - time.monotonic()))
    sent.append(n)
    done.wait(15.0)  # keep the outlet until the pipeline's inlet has closed


def run_consumer(expected: int, result: list[int]) -> None:
    """Read StreamLabDemo-filtered with plain pylsl until `expected` samples or a timeout."""
    import pylsl

    found = pylsl.resolve_bypred("name='StreamLabDemo-filtered'", 1, 15.0)
    if not found:
        print("consumer: StreamLabDemo-filtered not found")
        return
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(5.0)
    got, deadline = 0, time.monotonic() + expected / RATE + 10.0
    while got < expected and time.monotonic() < deadline:
        _, stamps = inlet.pull_chunk(timeout=0.2, max_samples=1024)
        got += len(stamps)
    inlet.close_stream()  # close before the pipeline's outlet goes away
    result.append(got)


async def run_pipeline() -> None:
    from streamlab.cli.run import format_fates
    from streamlab.runtime import AsyncPipeline

    pipe = AsyncPipeline(CONFIG, outputs="discard")
    await pipe.start()
    pipe.close_triggers()
    report = await pipe.join()  # ends 1 s after the device stops (idle_timeout)
    print(format_fates(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="device run time")
    parser.add_argument("--device-only", action="store_true", help="only run the device")
    parser.add_argument("--network", action="store_true", help="use liblsl's default discovery")
    args = parser.parse_args()
    if not args.network and "LSLAPICFG" not in os.environ:
        use_loopback()
    ready, done, sent, received = threading.Event(), threading.Event(), [], []
    device = threading.Thread(target=run_device, args=(args.seconds, ready, done, sent),
                              daemon=True)
    device.start()
    ready.wait(10.0)
    if args.device_only:
        print("device: publishing StreamLabDemo-EEG once a consumer connects (Ctrl-C to quit)")
        while device.is_alive() and not sent:
            device.join(0.5)
        time.sleep(4.0)  # let the pipeline's inlet notice the end (idle_timeout) and close first
        return
    expected = int(args.seconds * RATE)
    consumer = threading.Thread(target=run_consumer, args=(expected, received), daemon=True)
    consumer.start()
    asyncio.run(run_pipeline())
    done.set()
    consumer.join(15.0)
    device.join(15.0)
    print(f"device sent {sent[0] if sent else 0} samples x {len(CHANNELS)} channels; "
          f"consumer received {received[0] if received else 0} filtered samples")
    print("wrote out/lsl/filtered.slrec and out/lsl/filtered.png")
    if not received or received[0] != expected:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
