"""Speed-up of ``streamlab batch`` with 2 workers over 1 (#12 item 6), in-process and on Ray.

Writes ``--recordings`` .npy recordings of ``--channels`` x ``--seconds`` at 1 kHz to a
temporary folder, then runs the batch of a CPU-bound graph (FileSource -> IIRFilter bandpass
order 4 -> NotchFilter 50 Hz with 3 harmonics -> NpySink) over them with 1 and then 2
workers, ``--repeat`` times each (pairs back to back; the median ratio is the figure), through
the same :func:`streamlab.cli.batch.run_batch` the command uses:

* ``local``: in this process, one event loop (2 workers = 2 pipelines interleaved on it),
* ``ray``: a private 2-CPU Ray cluster on 127.0.0.1 with 2 actors, started and warmed up
  before timing (``ray.init`` takes seconds; not counted).

    .venv/bin/python benchmarks/batch.py                       # 8 x 64 ch x 60 s, both
    .venv/bin/python benchmarks/batch.py --backends ray --repeat 5

Prints one line per timed batch and the median speed-ups; the exit status is 0 whatever the
figures (nothing here asserts a timing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make "streamlab" importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from streamlab.cli.batch import BatchItem, plan_batch, run_batch  # noqa: E402
from streamlab.config import load_config  # noqa: E402

RATE = 1000.0


def config(channels: int) -> dict:
    return {"name": "batch-bench", "nodes": [
        {"id": "src", "type": "FileSource", "config": {
            "path": "placeholder.npy", "samples_per_frame": 250, "sample_rate": RATE}},
        {"id": "band", "type": "IIRFilter", "config": {
            "btype": "bandpass", "cutoff": [1.0, 40.0], "order": 4, "sample_rate": RATE}},
        {"id": "notch", "type": "NotchFilter", "config": {
            "frequency": 50.0, "harmonics": 3, "sample_rate": RATE}},
        {"id": "out", "type": "NpySink", "config": {"path": "filtered.npy"}}],
        "connections": [{"from": "src", "to": "band"}, {"from": "band", "to": "notch"},
                        {"from": "notch", "to": "out"}]}


async def timed(items: list[BatchItem], workers: int, backend: object) -> float:
    for item in items:
        item.state, item.error, item.report = "pending", None, None
    t0 = time.perf_counter()
    await run_batch(items, workers=workers, triggers=1, backend=backend)
    elapsed = time.perf_counter() - t0
    bad = [i for i in items if i.state != "ok"]
    if bad:
        raise SystemExit(f"error: {bad[0].stem}: {bad[0].error}")
    return elapsed


async def measure(name: str, items: list[BatchItem], backend: object, repeat: int,
                  audio_seconds: float) -> float:
    await timed(items[:2], 2, backend)  # warm-up (imports, actors' first run)
    ratios = []
    for r in range(repeat):
        one = await timed(items, 1, backend)
        two = await timed(items, 2, backend)
        ratios.append(one / two)
        print(f"{name:>5} pair {r}: 1 worker {one:6.2f} s ({audio_seconds / one:5.0f}x real "
              f"time), 2 workers {two:6.2f} s ({audio_seconds / two:5.0f}x), speed-up "
              f"{ratios[-1]:.2f}", flush=True)
    median = statistics.median(ratios)
    print(f"{name:>5}: speed-up of 2 workers over 1: median {median:.2f} (min {min(ratios):.2f},"
          f" max {max(ratios):.2f}, {repeat} pairs, load average {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs)", flush=True)
    return median


async def main_async(args: argparse.Namespace, folder: Path) -> None:
    inputs = []
    rng = np.random.default_rng(0)
    for i in range(args.recordings):
        path = folder / "data" / f"rec{i}.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, rng.standard_normal((int(args.seconds * RATE), args.channels)))
        inputs.append(path)
    spec = load_config(config(args.channels), base_dir=folder)
    audio = args.recordings * args.seconds
    print(f"{args.recordings} recordings x {args.channels} channels x {args.seconds:g} s at "
          f"1 kHz; graph: FileSource -> IIRFilter -> NotchFilter -> NpySink", flush=True)
    if "local" in args.backends:
        items = plan_batch(spec, inputs, folder / "out-local")
        await measure("local", items, None, args.repeat, audio)
    if "ray" in args.backends:
        from streamlab.distributed import RayBackend, init_local_ray

        init_local_ray(num_cpus=2)
        async with RayBackend(2) as backend:
            items = plan_batch(spec, inputs, folder / "out-ray")
            await measure("ray", items, backend, args.repeat, audio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3, help="1-vs-2 pairs per backend")
    parser.add_argument("--backends", default="local,ray", help="comma-separated: local, ray")
    args = parser.parse_args()
    args.backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="streamlab-batch-bench-") as tmp:
        try:
            asyncio.run(main_async(args, Path(tmp)))
        finally:
            if "ray" in args.backends and "ray" in sys.modules:
                import ray

                ray.shutdown()


if __name__ == "__main__":
    main()
