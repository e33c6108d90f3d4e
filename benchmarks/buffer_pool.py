"""BufferPool vs plain allocation for a node's output block, in one run.

    python -m benchmarks.buffer_pool

For each shape, the same node-like step (multiply a block into a new output array, then drop
it as a consumer would) runs with ``np.multiply(x, 2.0)`` (fresh array) and with an array
from :class:`streamlab.buffers.BufferPool` (``out=``). Prints microseconds per frame and the
ratio (>1: the pool is faster). The built-in nodes do not use the pool because of these
figures: it only pays off, if at all, for blocks of several MiB.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from streamlab.buffers import BufferPool

SHAPES = [(8, 256), (8, 4096), (64, 4096), (64, 16384)]


def measure(shape: tuple[int, int], frames: int, rounds: int) -> tuple[float, float]:
    pool = BufferPool(min_bytes=0)
    src = np.random.default_rng(0).random(shape)
    plain, pooled = [], []
    for _ in range(rounds):  # interleaved rounds: load changes hit both alike
        t = time.perf_counter()
        for _ in range(frames):
            out = np.multiply(src, 2.0)
            del out
        plain.append((time.perf_counter() - t) / frames)
        t = time.perf_counter()
        for _ in range(frames):
            out = pool.acquire(shape)
            np.multiply(src, 2.0, out=out)
            del out
        pooled.append((time.perf_counter() - t) / frames)
    return float(np.median(plain)), float(np.median(pooled))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"{'shape':>12} {'KiB':>7} {'new µs':>9} {'pooled µs':>10} {'pool speed-up':>14}")
    for shape in SHAPES:
        nbytes = shape[0] * shape[1] * 8
        frames = max(200, int(2e8 // max(nbytes, 1) // 50))
        a, b = measure(shape, min(frames, 20000), args.rounds)
        print(f"{str(shape):>12} {nbytes // 1024:>7} {a * 1e6:>9.1f} {b * 1e6:>10.1f} {a / b:>13.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
