"""Data-path latency before, during and after a Decoder's fit: the fit must not stall frames.

    python -m benchmarks.decode_latency [--per-class 60] [--fit-in thread process] [--while-fitting hold wait]

A real-time pipeline on the system clock: WhiteNoiseGenerator (16 channels, 500 Hz, 10-sample
frames = 20 ms, ``realtime``) fanned out to a Passthrough (``raw``: the data path measured
here) and to Attach <- MarkerGenerator (left/right, ISI 0.08-0.12 s, ``realtime``) -> Epoch
(0..0.5 s) -> Decoder (Covariances(oas) + TangentSpace + LogisticRegression, 5-fold CV,
calibration ends at ``--per-class`` epochs per class). The latency of a raw frame is the
clock's time when it is read from ``AsyncPipeline.outputs()`` minus its timestamp (the time
of its first sample, which is when the generator emits it). Phases are told apart by the
Decoder's log records ("fitting on ..." and "fitted in ...").

Prints, per fit location: raw frames expected / received / dropped (fates other than
delivered, over every node), the fit's duration, and the raw frames' latency p50 / p99 / max
in ms before, during and after the fit. Not asserted anywhere (wall-clock figures on a shared
machine).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import numpy as np

from streamlab.runtime import AsyncPipeline

RATE, FRAME, ISI = 500.0, 10, (0.08, 0.12)


def config(per_class: int, fit_in: str, while_fitting: str) -> tuple[dict, int]:
    markers = int(per_class * 2 * 1.3) + 250  # calibration, then ~25 s of predictions
    seconds = 1.0 + markers * ISI[1] + 1.0
    frames = int(seconds * RATE / FRAME)
    return {
        "name": "decode-latency",
        "nodes": [
            {"id": "data", "type": "WhiteNoiseGenerator",
             "config": {"sample_rate": RATE, "samples_per_frame": FRAME, "mode": "free",
                        "realtime": True, "max_frames": frames,
                        "channels": [f"c{i}" for i in range(16)]}},
            {"id": "stim", "type": "MarkerGenerator",
             "config": {"probabilities": {"left": 0.5, "right": 0.5}, "isi_s": list(ISI),
                        "mode": "free", "realtime": True, "count": markers, "seed": 3}},
            {"id": "raw", "type": "Passthrough"},
            {"id": "attach", "type": "Attach",
             "config": {"data": "data", "markers": "stim", "max_marker_delay_s": 0.2}},
            {"id": "epochs", "type": "Epoch",
             "config": {"tmin": 0.0, "tmax": 0.5, "baseline": None}},
            {"id": "decoder", "type": "Decoder",
             "config": {"pipeline": {"steps": [["Covariances", {"estimator": "oas"}],
                                               ["TangentSpace", {}],
                                               ["LogisticRegression", {}]]},
                        "classes": ["left", "right"], "per_class": per_class, "cv_folds": 5,
                        "fit_in": fit_in, "while_fitting": while_fitting}},
        ],
        "connections": [{"from": "data", "to": "raw"}, {"from": "data", "to": "attach"},
                        {"from": "stim", "to": "attach"}, {"from": "attach", "to": "epochs"},
                        {"from": "epochs", "to": "decoder"}],
    }, frames


class _Marks(logging.Handler):
    """Wall time (µs) of the decoder's "fitting" and "fitted" log records."""

    def __init__(self) -> None:
        super().__init__()
        self.start: int | None = None
        self.end: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        now = time.time_ns() // 1000
        if ": fitting on " in msg:
            self.start = now
        elif ": fitted in " in msg:
            self.end = now


async def measure(per_class: int, fit_in: str, while_fitting: str) -> dict:
    cfg, frames = config(per_class, fit_in, while_fitting)
    marks = _Marks()
    log = logging.getLogger("streamlab.node.decoder")
    log.addHandler(marks)
    log.setLevel(logging.INFO)
    try:
        pipe = AsyncPipeline(cfg, outputs="stream")
        await pipe.start()
        pipe.close_triggers()
        raw: list[tuple[int, int]] = []  # (arrival µs, latency µs)
        predictions = 0
        async for node, frame in pipe.outputs():
            now = pipe.clock.time_us()
            if node == "raw":
                raw.append((now, now - frame.timestamp))
            else:
                predictions += 1
        report = await pipe.join()
    finally:
        log.removeHandler(marks)
    lost = {f"{n}.{k}": v for n, s in report.nodes.items() for k, v in s.fates.items()
            if k != "delivered" and v}
    t0 = marks.start or 0
    t1 = marks.end or 0
    phases = {"before": [lat for t, lat in raw if t < t0],
              "during": [lat for t, lat in raw if t0 <= t <= t1],
              "after": [lat for t, lat in raw if t > t1]}
    return {"frames": frames, "received": len(raw), "lost": lost, "predictions": predictions,
            "fit_s": (t1 - t0) / 1e6 if t0 and t1 else None, "phases": phases}


def _q(xs: list[int]) -> str:
    if not xs:
        return "n/a"
    a = np.array(xs, dtype=float) / 1e3
    return (f"n={len(a)} p50 {np.median(a):.1f} p99 {np.percentile(a, 99):.1f} "
            f"max {a.max():.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--fit-in", nargs="+", default=["thread", "process"])
    parser.add_argument("--while-fitting", nargs="+", default=["hold"])
    args = parser.parse_args()
    for where in args.fit_in:
        for mode in args.while_fitting:
            r = asyncio.run(measure(args.per_class, where, mode))
            fit = f"{r['fit_s']:.2f} s" if r["fit_s"] is not None else "did not finish"
            print(f"fit in a {where}, while_fitting {mode}: raw frames {r['received']}/"
                  f"{r['frames']}, lost {r['lost']}, fit {fit}, predictions "
                  f"{r['predictions']}")
            for phase, xs in r["phases"].items():
                print(f"  {phase:>6}: {_q(xs)}")


if __name__ == "__main__":
    main()
