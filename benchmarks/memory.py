"""Memory workload: peak RSS under a slow sink, in a fresh subprocess per measurement.

Graph: source (a freshly allocated channels x samples float64 block per frame) -> gain -> a
sink that awaits ``delay`` seconds per frame. The source is far faster than the sink, so
every channel fills and backpressure must hold memory at what the capacities allow.

The child measures ``baseline`` (RSS after imports and setup, before the run) and ``peak``
(``ru_maxrss`` after the run), and reports the bound

    baseline + frame_bytes * (sum of edge capacities + one frame in hand per node) + slack

where ``slack`` is a constant for allocator and interpreter noise. ``live_frames`` is
``(peak - baseline) / frame_bytes``: how many frames were alive at the worst moment.

Run one child by hand: ``python -m benchmarks.memory --impl streamlab --frames 300``; it
prints one JSON object. :func:`measure_memory` runs a child and parses it; a child that fails
raises RuntimeError with its stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

__all__ = ["measure_memory", "SLACK_BYTES"]

SLACK_BYTES = 16 * 1024 * 1024


def _child(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from benchmarks import baselines as base
    from benchmarks.workloads import (
        SLOptions,
        Tree,
        _baseline_parts,
        measure_streamlab,
        new_probe,
        run_async,
    )

    tree = Tree(args.channels, args.samples, ((("gain", 2.0),),), capacity=args.capacity)
    frame_bytes = args.channels * args.samples * 8
    edges, nodes = 2, 3
    if args.impl == "streamlab":
        import streamlab.nodes  # noqa: F401  (import cost belongs in the baseline)

        baseline = psutil.Process().memory_info().rss
        t0 = time.perf_counter()
        m = measure_streamlab(tree, args.frames, SLOptions(fresh=True, sink_delay=args.delay),
                              uvloop=args.uvloop, latency=False)
        seconds, delivered = time.perf_counter() - t0, m.frames
    else:
        _, probe = new_probe(args.frames)
        source, branches = _baseline_parts(tree, probe, "dict", fresh=True)
        baseline = psutil.Process().memory_info().rss
        t0 = time.perf_counter()
        run_async(lambda: base.run_plain(source, branches, args.frames, capacity=args.capacity,
                                         sink_delay=args.delay), args.uvloop)
        seconds, delivered = time.perf_counter() - t0, probe.count
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    bound_frames = edges * args.capacity + nodes
    return {
        "impl": args.impl, "frames": delivered, "seconds": seconds,
        "frame_bytes": frame_bytes, "baseline_rss": baseline, "peak_rss": peak,
        "live_frames": (peak - baseline) / frame_bytes,
        "bound_frames": bound_frames,
        "bound_rss": baseline + bound_frames * frame_bytes + SLACK_BYTES,
        "within_bound": peak <= baseline + bound_frames * frame_bytes + SLACK_BYTES,
    }


def measure_memory(impl: str, frames: int, *, channels: int = 64, samples: int = 4096,
                   capacity: int = 16, delay: float = 0.001, uvloop: bool = False,
                   timeout: float = 120.0) -> dict[str, Any]:
    """Run one memory child (``impl``: "streamlab" or "plain") and return its report."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--impl", impl, "--frames", str(frames),
           "--channels", str(channels), "--samples", str(samples), "--capacity", str(capacity),
           "--delay", str(delay)] + (["--uvloop"] if uvloop else [])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=root, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {impl!r} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=["streamlab", "plain"], required=True)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--capacity", type=int, default=16)
    p.add_argument("--delay", type=float, default=0.001)
    p.add_argument("--uvloop", action="store_true")
    print(json.dumps(_child(p.parse_args(argv))))


if __name__ == "__main__":
    main()
