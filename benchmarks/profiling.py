"""Profile StreamLab on one workload with cProfile: where does the per-frame time go?

Usage::

    python -m benchmarks.profiling W1            # top functions by own time
    python -m benchmarks.profiling W5 --frames 50000 --top 30 --sort cumulative
    python -m benchmarks.profiling W1 --per-channel   # one array per channel (layout "dict")

Only the StreamLab implementation is profiled (built outside the profile; the run inside).
cProfile adds a fixed cost per call, so small functions look heavier than they are: read
the shares as a ranking, and confirm a gain with ``python -m benchmarks.run``.
For a sampling profile without that bias, run py-spy on this command:
``py-spy record -o w1.svg -- python -m benchmarks.profiling W1 --no-profile``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys

from benchmarks.suite import CASES, FULL
from benchmarks.workloads import SLOptions, measure_streamlab

__all__ = ["profile_case", "main"]


def profile_case(key: str, frames: int, *, sort: str = "tottime", top: int = 25,
                 opts: SLOptions | None = None, enabled: bool = True) -> str:
    """Run ``key``'s StreamLab variant under cProfile and return the report text."""
    case = next((c for c in CASES if c.key == key), None)
    if case is None:
        raise SystemExit(f"unknown workload {key!r}; one of {[c.key for c in CASES]}")
    opts = opts or next(iter(case.variants.values()))
    measure_streamlab(case.tree, min(frames, 2000), opts, latency=False)  # warm up imports
    if not enabled:
        m = measure_streamlab(case.tree, frames, opts, latency=False)
        return f"{key}: {m.fps:,.0f} frames/s (not profiled)"
    prof = cProfile.Profile()
    prof.enable()
    m = measure_streamlab(case.tree, frames, opts, latency=False)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    buf.write(f"{key}: {frames:,} frames, {m.fps:,.0f} frames/s under the profiler; "
              f"total own time {total:.2f} s = {total / frames * 1e6:.2f} us/frame\n")
    stats.print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profiling",
                                description=__doc__.splitlines()[0])
    p.add_argument("workload", help="W1, W2, W3, W4, W5, ...")
    p.add_argument("--frames", type=int, default=0, help="default: the suite's full size")
    p.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--triggered", action="store_true", help="triggered source instead of free")
    p.add_argument("--no-fusion", action="store_true")
    p.add_argument("--per-channel", action="store_true",
                   help="per-channel payloads (one array per channel) instead of blocks")
    p.add_argument("--no-profile", action="store_true", help="just run (for py-spy)")
    args = p.parse_args(argv)
    frames = args.frames or FULL.get(args.workload, 50_000)
    opts = SLOptions(mode="triggered" if args.triggered else "free", fusion=not args.no_fusion,
                     layout="dict" if args.per_channel else "block")
    print(profile_case(args.workload, frames, sort=args.sort, top=args.top, opts=opts,
                       enabled=not args.no_profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
