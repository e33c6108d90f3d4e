"""Marker-to-epoch latency: from a marker's arrival until its epoch leaves Epoch, at 1 kHz.

    python -m benchmarks.marker_latency [--markers 40] [--delays 0.01 0.02 0.1 0.5]

A real-time pipeline on the system clock: SineGenerator (1 kHz, 10 samples = 10 ms per frame,
``realtime``) and MarkerGenerator (``realtime``, ISI 0.2-0.3 s) -> Attach -> Epoch (-0.1 ..
0.3 s) -> the output stream. A marker arrives when it is due (``realtime``: its event time
is the clock's time when it is emitted), so the latency of one epoch is the clock's time when
the epoch is read from ``AsyncPipeline.outputs()`` minus its ``event_time``. The floor is
``tmax`` (the data must exist); the target is ``tmax + one frame period + 5 ms``.

Attach holds a data frame until the marker stream shows a later marker or the data has moved
``max_marker_delay_s`` past it, so that, and not Epoch, sets the latency: run with several
values. Caveat: the generator emits a frame when its FIRST sample is due (a real amplifier
sends it after its last one, one frame period later), so the figures are one frame period
optimistic for an amplifier.

Prints, per ``max_marker_delay_s``: epochs, late markers, latency median / p95 / max in ms,
and where the median goes: ``last sample`` (from the marker to the time of the epoch's last
sample: ``tmax`` + up to one sample, where the marker lands) and ``after`` (from then until
the epoch is read: Attach's hold of ``max_marker_delay_s`` of data time, minus up to one frame
period as the generator sends a frame at its first sample's time, plus delivery). Not asserted anywhere (wall-clock figures on a shared machine).

Where the time goes (profiled, 2 cores shared with other jobs): at ``max_marker_delay_s``
0.02 the median 318 ms is 296 ms until the frame is due + 21 ms held in Attach (the two 10-ms
frames that take the data 20 ms past the frame, + about 1 ms until the second one arrives) +
0.05 ms from Attach into Epoch + 0.2 ms until it is read: Epoch cuts the epoch in the call
that receives the frame holding its last sample (no extra frame), and Attach holds exactly
``max_marker_delay_s`` of data time. The target ``tmax + one frame period + 5 ms`` is met
with a delay of at most one frame period (0.01: about 309 ms); a longer delay adds itself.
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

from streamlab.runtime import AsyncPipeline

RATE, FRAME, TMIN, TMAX, ISI = 1000.0, 10, -0.1, 0.3, (0.2, 0.3)


def config(markers: int, delay: float) -> dict:
    seconds = 0.5 + markers * ISI[1] + 1.0
    return {
        "name": "marker-latency",
        "nodes": [
            {"id": "data", "type": "SineGenerator",
             "config": {"frequency": 10.0, "sample_rate": RATE, "samples_per_frame": FRAME,
                        "mode": "free", "realtime": True,
                        "max_frames": int(seconds * RATE / FRAME)}},
            {"id": "stim", "type": "MarkerGenerator",
             "config": {"probabilities": {"target": 0.2, "standard": 0.8}, "isi_s": list(ISI),
                        "mode": "free", "realtime": True, "count": markers, "seed": 3}},
            {"id": "attach", "type": "Attach",
             "config": {"data": "data", "markers": "stim", "max_marker_delay_s": delay}},
            {"id": "epochs", "type": "Epoch",
             "config": {"tmin": TMIN, "tmax": TMAX, "baseline": None}},
        ],
        "connections": [{"from": "data", "to": "attach"}, {"from": "stim", "to": "attach"},
                        {"from": "attach", "to": "epochs"}],
    }


async def measure(markers: int, delay: float) -> tuple[np.ndarray, dict[str, int]]:
    pipe = AsyncPipeline(config(markers, delay), outputs="stream")
    await pipe.start()
    pipe.close_triggers()
    latencies, due = [], []
    async for _, frame in pipe.outputs():
        event = int(frame.metadata["event_time"])
        latencies.append(pipe.clock.time_us() - event)
        # the time of the epoch's last sample: tmax after the sample the marker landed on
        due.append(frame.timestamp + round((frame.n_samples - 1) * 1e6 / RATE) - event)
    report = await pipe.join()
    fates = {k: v for k, v in report.nodes["attach"].event_fates.items() if v}
    return np.array(latencies, dtype=float) / 1e3, np.array(due, dtype=float) / 1e3, fates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markers", type=int, default=40)
    parser.add_argument("--delays", type=float, nargs="+", default=[0.01, 0.02, 0.1, 0.5])
    args = parser.parse_args()
    target = (TMAX + FRAME / RATE) * 1e3 + 5
    print(f"1 kHz, {FRAME}-sample frames, epoch {TMIN}..{TMAX} s, ISI {ISI[0]}-{ISI[1]} s; "
          f"target <= {target:.0f} ms")
    for delay in args.delays:
        ms, due, fates = asyncio.run(measure(args.markers, delay))
        if len(ms) == 0:
            print(f"max_marker_delay_s={delay}: no epochs; attach fates {fates}")
            continue
        print(f"max_marker_delay_s={delay}: {len(ms)} epochs, attach fates {fates}; latency ms "
              f"median {np.median(ms):.1f}, p95 {np.percentile(ms, 95):.1f}, "
              f"max {ms.max():.1f}; median last sample {np.median(due):.1f}, after "
              f"{np.median(ms - due):.1f}")


if __name__ == "__main__":
    main()
