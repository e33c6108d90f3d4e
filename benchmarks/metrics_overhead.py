"""Throughput with metrics on vs off, in the same run, as ratios (issue 4, item 8).

Two pipelines of 8 x 256 float64 frames, each run to completion with ``outputs="discard"``:

* **linear**: ``SineGenerator -> Gain -> Passthrough`` (triggered);
* **fan-out**: ``SineGenerator -> 3 x (Gain -> Passthrough)``.

The runtime always keeps its per-node counters (they are the frame fates, which correctness
checks rely on), so "metrics off" is measured two ways:

* **observers**: the whole observability layer attached vs not: a MetricsCollector registered,
  a PipelineMonitor updated and a Prometheus exporter scraped over HTTP by a background
  thread, both every ``--every`` seconds (default 50 ms: far more often than in real use,
  an upper bound);
* **bookkeeping**: the runtime's own timing and latency histogram per ``process()`` call
  (``perf_counter_ns`` twice + ``Histogram.record``) replaced by no-ops, by monkeypatching in
  this process only. The difference is the per-frame cost of the in-runtime NodeMetrics work.

Modes are interleaved round by round (the order rotates). Each ratio is ``metrics on`` divided by ``metrics off``
(1.0: no cost; 0.95: 5% fewer frames per second), per wall-clock second and per CPU second
of this process (less disturbed by other processes on a shared machine), each given best-of
(fastest run of each mode) and as the median of the per-round ratios.
Also reported: the per-frame cost of ``NodeMetrics.observe_batch`` (stream health), which the
runtime does not call yet. Usage::

    python -m benchmarks.metrics_overhead [--frames 3000] [--rounds 40] [--every 0.05]

Many short rounds, with the order of the modes rotated, keep each comparison close in time;
on a shared machine, read the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from streamlab import AsyncPipeline, DataFrame
from streamlab.metrics import MetricsCollector, NodeMetrics, PipelineMonitor
from streamlab.metrics import node_metrics as nm

#: Seconds between scrapes and between monitor updates (``--every``). The default, 50 ms, is
#: far more often than Prometheus (1-15 s) or the monitor (0.25 s): an upper bound.
EVERY = [0.05]

STATS = {"observed_runs": 0, "scrapes": 0, "monitor_updates": 0}

SINE = {"id": "sine", "type": "SineGenerator",
        "config": {"frequency": 10.0, "sample_rate": 25600.0, "samples_per_frame": 256,
                   "channels": [f"c{i}" for i in range(8)]}}


def linear() -> dict[str, Any]:
    return {"name": "linear",
            "nodes": [SINE, {"id": "gain", "type": "Gain", "config": {"gain": 0.5}},
                      {"id": "sink", "type": "Passthrough"}],
            "connections": [{"from": "sine", "to": "gain"}, {"from": "gain", "to": "sink"}]}


def fanout(branches: int = 3) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [SINE]
    conns = []
    for b in range(branches):
        nodes += [{"id": f"gain{b}", "type": "Gain", "config": {"gain": 0.5}},
                  {"id": f"sink{b}", "type": "Passthrough"}]
        conns += [{"from": "sine", "to": f"gain{b}"}, {"from": f"gain{b}", "to": f"sink{b}"}]
    return {"name": "fanout", "nodes": nodes, "connections": conns}


@contextmanager
def observed(pipe: AsyncPipeline) -> Iterator[Callable[[], Any]]:
    """Collector + exporter scraped over HTTP from a thread; yields the monitor's coroutine."""
    from streamlab.metrics.prometheus import MetricsExporter

    collector = MetricsCollector()
    collector.register(pipe)
    monitor = PipelineMonitor(collector)
    stop = threading.Event()
    STATS["observed_runs"] += 1

    with MetricsExporter(collector) as exporter:
        def scrape() -> None:
            while not stop.wait(EVERY[0]):
                with urllib.request.urlopen(exporter.url, timeout=5) as r:
                    r.read()
                STATS["scrapes"] += 1

        t = threading.Thread(target=scrape, daemon=True)
        t.start()

        async def tick() -> None:
            while True:
                await asyncio.sleep(EVERY[0])
                monitor.update()
                STATS["monitor_updates"] += 1

        try:
            yield tick
        finally:
            stop.set()
            t.join()


@contextmanager
def no_bookkeeping() -> Iterator[None]:
    """Replace the runtime's per-call timing and histogram record by no-ops (this process only)."""
    import streamlab.resilience.resilient as resilient

    saved = (resilient._perf_ns, nm.Histogram.record, nm.BudgetHistogram.record)
    resilient._perf_ns = lambda: 0  # type: ignore[assignment]
    nm.Histogram.record = lambda self, ns: None  # type: ignore[method-assign]
    nm.BudgetHistogram.record = lambda self, ns: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        resilient._perf_ns, nm.Histogram.record, nm.BudgetHistogram.record = saved


def run_once(cfg: dict[str, Any], frames: int, mode: str) -> tuple[float, float]:
    """Frames per wall-clock second and per CPU second of one run in ``mode``.

    ``mode``: base, observed or nobook. CPU time is the whole process's (the exporter's
    scrape thread included), and is far less disturbed by other processes than wall time.
    """

    async def go() -> tuple[float, float]:
        pipe = AsyncPipeline(cfg, outputs="discard")
        ticker = None
        ctx = observed(pipe) if mode == "observed" else no_bookkeeping() if mode == "nobook" \
            else _null()
        with ctx as tick:
            if tick is not None:
                ticker = asyncio.create_task(tick())
            c0, t0 = time.process_time(), time.perf_counter()
            await pipe.run(triggers=frames)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            if ticker is not None:
                ticker.cancel()
                try:
                    await ticker
                except asyncio.CancelledError:
                    pass
        return frames / dt, frames / cpu

    return asyncio.run(go())


@contextmanager
def _null() -> Iterator[None]:
    yield None


def observe_batch_cost(n: int = 200_000) -> float:
    """Seconds per frame of NodeMetrics.observe_batch on batches of 16."""
    frames = [DataFrame(i * 10_000, i) for i in range(16)]
    m = NodeMetrics("bench")
    batches = n // 16
    t0 = time.perf_counter()
    for _ in range(batches):
        m.observe_batch(frames, "a")
    return (time.perf_counter() - t0) / (batches * 16)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3_000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--every", type=float, default=0.05, metavar="SECONDS",
                    help="time between scrapes and between monitor updates (default 0.05)")
    args = ap.parse_args(argv)
    EVERY[0] = args.every
    out: dict[str, Any] = {}
    for name, cfg, per_frame_calls in (("linear", linear(), 3), ("fan-out", fanout(), 7)):
        runs: dict[str, list[tuple[float, float]]] = {"base": [], "observed": [], "nobook": []}
        run_once(cfg, args.frames // 4, "base")  # warm-up
        modes = list(runs)
        for k in range(args.rounds):  # rotate the order: no mode always runs first or last
            for mode in modes[k % 3:] + modes[:k % 3]:
                runs[mode].append(run_once(cfg, args.frames, mode))
        res: dict[str, Any] = {}
        for k, clock in ((0, "wall"), (1, "cpu")):
            rates = {m: [r[k] for r in v] for m, v in runs.items()}
            # best-of: other processes only ever slow a run down; median: of per-round ratios
            base, observed, nobook = (max(rates[m]) for m in ("base", "observed", "nobook"))
            res[clock] = {
                "base_fps": base,
                "observers_best": observed / base,
                "observers_median": statistics.median(
                    o / b for o, b in zip(rates["observed"], rates["base"])),
                "bookkeeping_best": base / nobook,
                "bookkeeping_median": statistics.median(
                    b / n for b, n in zip(rates["base"], rates["nobook"])),
                "bookkeeping_ns_per_call": (1 / base - 1 / nobook) / per_frame_calls * 1e9,
            }
            r = res[clock]
            print(f"{name:8s} {clock:4s} best {base:8.0f} frames/s | observers attached vs not: "
                  f"x{r['observers_best']:.3f} best-of, x{r['observers_median']:.3f} median | "
                  f"runtime timing+histogram on vs off: x{r['bookkeeping_best']:.3f} best-of, "
                  f"x{r['bookkeeping_median']:.3f} median "
                  f"({r['bookkeeping_ns_per_call']:.0f} ns per process() call)")
        out[name] = res
    runs = max(1, STATS["observed_runs"])
    print(f"observed runs saw {STATS['scrapes'] / runs:.1f} scrapes and "
          f"{STATS['monitor_updates'] / runs:.1f} monitor updates each on average")
    cost = observe_batch_cost()
    out["observe_batch_ns_per_frame"] = cost * 1e9
    print(f"observe_batch (stream health, not yet called by the runtime): {cost * 1e9:.0f} ns "
          "per frame")
    return out


if __name__ == "__main__":
    main()
