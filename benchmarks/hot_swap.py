"""Hot swap: replace the filter stage of a running 64-channel 1 kHz stream, again and again.

    python -m benchmarks.hot_swap [--replacements 1000] [--channels 64] [--mode paced fast]

The pipeline: SineGenerator (free, 1 kHz, frames of 32 samples = one frame period of 32 ms,
64 channels) -> IIRFilter ``filter`` -> Passthrough ``sink`` -> the output stream, read by a
task that keeps every sequence id. Another task calls ``replace_node("filter", ...)`` with a
new IIR filter (Butterworth lowpass, order 2-4, cutoff 20-26 Hz: alternating structures, so
every change builds a fresh instance) ``--replacements`` times:

* ``paced``: the source runs in real time (``realtime``); one replacement per frame period,
  at a random phase within it (a user turning a knob while recording).
* ``fast``: the source runs as fast as the reader takes frames; one replacement after another
  (the worst case for the wait at the batch boundary: a batch of 16 frames is always in
  flight through the fused task).

Prints per mode: replacements applied, apply time p50 / p99 / max in ms (from the call to its
return: validation, building and starting the new filter, waiting for the batch boundary,
stopping the old one; ``ChangeRecord.apply_s``) against the frame period, frames read,
sequence gaps and duplicates at the sink, and whether ``received == sum of fates`` held for
every node (``debug`` mode checks it at every change and at the end). Targets: 0 gaps, 0
duplicates, apply p99 below one frame period (32 ms). Not asserted anywhere (wall-clock
figures on a shared machine); tests/runtime/test_live.py asserts the 0 gaps / 0 duplicates
with 200 replacements.
"""

from __future__ import annotations

import argparse
import asyncio
import random

import numpy as np

from streamlab.runtime import AsyncPipeline

RATE, FRAME = 1000.0, 32
PERIOD_S = FRAME / RATE


def config(channels: int, realtime: bool) -> dict:
    return {
        "name": "hot-swap",
        "pipeline_config": {"debug": True},
        "nodes": [
            {"id": "src", "type": "SineGenerator",
             "config": {"frequency": 7.0, "sample_rate": RATE, "samples_per_frame": FRAME,
                        "mode": "free", "realtime": realtime,
                        "channels": [f"c{i}" for i in range(channels)]}},
            {"id": "filter", "type": "IIRFilter",
             "config": {"btype": "lowpass", "cutoff": 40.0, "order": 4, "sample_rate": RATE}},
            {"id": "sink", "type": "Passthrough"},
        ],
        "connections": [{"from": "src", "to": "filter"}, {"from": "filter", "to": "sink"}],
    }


def spec(i: int) -> dict:
    return {"type": "IIRFilter", "config": {"btype": "lowpass", "cutoff": 20.0 + i % 7,
                                            "order": 2 + i % 3, "sample_rate": RATE}}


async def run(mode: str, replacements: int, channels: int, seed: int = 1) -> dict:
    rng = random.Random(seed)
    pipe = AsyncPipeline(config(channels, mode == "paced"), outputs="stream", output_capacity=64)
    seqs: list[int] = []

    async def reader() -> None:
        async for _, f in pipe.outputs():
            seqs.append(f.sequence_id)

    await pipe.start()
    task = asyncio.create_task(reader())
    times = []
    for i in range(replacements):
        if mode == "paced":
            await asyncio.sleep(PERIOD_S * rng.uniform(0.5, 1.5))
        else:
            await asyncio.sleep(0)
        rec = await pipe.replace_node("filter", spec(i))
        times.append(rec.apply_s)
    report = await pipe.stop()
    await task
    diffs = np.diff(np.asarray(seqs))
    ms = np.asarray(times) * 1e3
    return {
        "mode": mode, "replacements": len(times), "version": pipe.config_version("filter"),
        "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()), "frames": len(seqs),
        "gaps": int(np.sum(diffs > 1)), "dups": len(seqs) - len(set(seqs)),
        "starts_at_0": bool(seqs) and seqs[0] == 0,
        "accounting": all(sum(s.fates.values()) == s.received for s in report.nodes.values()),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replacements", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--mode", nargs="+", default=["paced", "fast"], choices=["paced", "fast"])
    args = ap.parse_args(argv)
    print(f"{args.channels} channels, {RATE:g} Hz, frames of {FRAME} samples: frame period "
          f"{PERIOD_S * 1e3:g} ms")
    print(f"{'mode':6} {'replaced':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'frames':>7} "
          f"{'gaps':>5} {'dups':>5} accounting")
    for mode in args.mode:
        r = asyncio.run(run(mode, args.replacements, args.channels))
        print(f"{r['mode']:6} {r['replacements']:8d} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['max_ms']:8.2f} {r['frames']:7d} {r['gaps']:5d} {r['dups']:5d} "
              f"{'ok' if r['accounting'] and r['starts_at_0'] else 'BROKEN'}")


if __name__ == "__main__":
    main()
