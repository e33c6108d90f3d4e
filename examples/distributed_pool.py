"""Many instances of examples/sine_gain.json across a local Ray cluster, one result per instance.

Starts a private Ray cluster on 127.0.0.1 (2 CPUs, capped object store, no dashboard), puts
``--actors`` PipelineWorker actors on it, runs ``--instances`` instances of the pipeline with
``--triggers`` triggers each through a DistributedPool (at most ``--max-concurrent`` at once),
and prints each instance's worker, state, frame counts and the first output sample. With
``--compare`` it then runs the same instances in this process with PipelinePool and prints both
throughputs and their ratio, ``--repeat`` times (pairs measured back to back; the median ratio
is the figure to quote, as the machine's load moves single runs).

    .venv/bin/pip install 'streamlab[ray]'           # Ray is an optional extra
    .venv/bin/python examples/distributed_pool.py
    .venv/bin/python examples/distributed_pool.py --instances 8 --triggers 5000 --compare \
        --repeat 5 --outputs discard

Ray's start-up (3-5 s) and the actors' first run are not counted in the throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from streamlab import PipelinePool
from streamlab.distributed import DistributedPool, RayBackend, init_local_ray

CONFIG = json.loads(Path(__file__).with_name("sine_gain.json").read_text())


async def ray_pass(backend: RayBackend, args: argparse.Namespace, show: bool) -> float:
    """One pass on Ray (printing one line per instance if ``show``); returns frames per second."""
    pool = DistributedPool(CONFIG, backend, args.max_concurrent, outputs=args.outputs)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(pool.execute(triggers=args.triggers)
                                     for _ in range(args.instances)))
    elapsed = time.perf_counter() - t0
    await pool.aclose()
    if show:
        print(f"{backend!r}  {pool!r}")
        for r in results:
            out = r.report["outputs"]["gain"]
            first = r.results["gain"][0].payload["left"][:3].round(4).tolist() if r.results else "-"
            print(f"  {r.instance:<14} {r.worker:<26} {r.report['state']:<9} "
                  f"frames out={out:<6} first left samples={first}")
    return args.instances * args.triggers / elapsed


async def local_pass(args: argparse.Namespace) -> float:
    """The same instances with the in-process PipelinePool; returns frames per second."""
    async with PipelinePool(CONFIG, args.max_concurrent, outputs=args.outputs) as pool:
        t0 = time.perf_counter()
        await asyncio.gather(*(pool.execute(triggers=args.triggers) for _ in range(args.instances)))
        return args.instances * args.triggers / (time.perf_counter() - t0)


async def run(args: argparse.Namespace) -> None:
    async with RayBackend(args.actors) as backend:
        async with DistributedPool(CONFIG, backend, args.max_concurrent) as warm:
            await asyncio.gather(*(warm.execute(triggers=1) for _ in range(args.actors)))
        ray_fps = await ray_pass(backend, args, show=True)
        print(f"ray ({args.actors} actors): {ray_fps:,.0f} frames/s")
        if not args.compare:
            return
        await local_pass(args)  # warm-up
        ratios = []
        for i in range(args.repeat):
            ray_fps = ray_fps if i == 0 else await ray_pass(backend, args, show=False)
            local_fps = await local_pass(args)
            ratios.append(ray_fps / local_fps)
            print(f"pair {i}: ray {ray_fps:,.0f} frames/s, in-process PipelinePool "
                  f"{local_fps:,.0f} frames/s, ratio {ratios[-1]:.2f}")
        print(f"ratio ray / in-process: median {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} pairs, "
              f"load average {os.getloadavg()[0]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=6)
    parser.add_argument("--triggers", type=int, default=200, help="triggers per instance")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--max-concurrent", type=int, default=4)
    parser.add_argument("--outputs", choices=["collect", "discard"], default="collect")
    parser.add_argument("--compare", action="store_true",
                        help="also run in-process with PipelinePool and print the ratio")
    parser.add_argument("--repeat", type=int, default=1, help="pairs to measure with --compare")
    args = parser.parse_args()

    init_local_ray(num_cpus=2)
    try:
        asyncio.run(run(args))
    finally:
        import ray

        ray.shutdown()


if __name__ == "__main__":
    main()
