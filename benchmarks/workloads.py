"""The workloads: one graph description, three implementations (StreamLab, plain asyncio, loop).

A workload's graph is a :class:`Tree`: a source, then branches of operations (``gain``,
``pass``, ``iir``, ``fft``), each branch ending in a sink. From it come

* the StreamLab JSON config (:func:`streamlab_config`), run through the public API
  (:class:`~streamlab.AsyncPipeline` with ``outputs="discard"``, or
  :class:`~streamlab.PipelinePool`), with the bench-only source and sink nodes of
  :mod:`benchmarks.nodes` stamping a probe;
* the plain asyncio program and the single loop of :mod:`benchmarks.baselines`.

Each ``measure_*`` function performs one timed run and returns a :class:`Measurement`; the
time covers the run only (building the pipeline or the tasks is outside it). A run that
does not deliver every frame raises RuntimeError: a benchmark of a broken run is worthless.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import psutil

from benchmarks import baselines as base
from benchmarks.nodes import drop_probe, make_blocks, new_probe, register_bench_nodes
from streamlab import AsyncPipeline, PipelinePool

__all__ = [
    "Tree",
    "SLOptions",
    "Measurement",
    "streamlab_config",
    "measure_streamlab",
    "measure_plain",
    "measure_loop",
    "measure_pool",
    "run_async",
    "IIR_SETTINGS",
]

Op = tuple[Any, ...]
IIR_SETTINGS = {"order": 8, "cutoff": 40.0, "sample_rate": 1000.0}


@dataclass(frozen=True)
class Tree:
    """Source -> branches of operations -> one sink per branch."""

    channels: int
    samples: int
    branches: tuple[tuple[Op, ...], ...]
    period: float | None = None          # seconds between source frames (None: as fast as possible)
    capacity: int = 16
    variants: int = 4                    # distinct source blocks cycled through


@dataclass(frozen=True)
class SLOptions:
    """How StreamLab runs a tree."""

    mode: str = "free"                   # "free": the source produces itself; "triggered"
    fusion: bool = True
    layout: str = "block"                # source payload: "block" or "dict" (per-channel)
    gain_node: str = "Gain"              # node type for "gain": Gain or BenchChannelGain
    executors: dict[str, str] = field(default_factory=dict)   # op name -> executor
    real_dsp: bool = False               # IIRFilter/FFT from streamlab.nodes instead of Bench*
    fresh: bool = False                  # the source allocates a new block per frame
    sink_delay: float = 0.0              # > 0: sinks await this many seconds per frame


@dataclass
class Measurement:
    """One timed run of one implementation."""

    impl: str
    frames: int                          # frames that reached the sinks (all branches)
    seconds: float                       # wall time of the whole run (start to end)
    steady_fps: float | None = None      # frames/s after the warm-up (see _steady_fps)
    p50_us: float | None = None
    p99_us: float | None = None
    cpu_cores: float = 0.0               # process CPU seconds / wall seconds
    per_core: list[float] = field(default_factory=list)   # busy fraction of each core
    outputs: dict[str, list[np.ndarray]] | None = None   # kept outputs per sink (keep=True)
    sources: list[np.ndarray] | None = None               # the source's blocks (keep=True)

    @property
    def wall_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def fps(self) -> float:
        """Steady-state frames/s if measured, else frames / wall time."""
        return self.steady_fps if self.steady_fps else self.wall_fps

    def to_dict(self) -> dict[str, Any]:
        return {"impl": self.impl, "frames": self.frames, "seconds": self.seconds,
                "fps": self.fps, "wall_fps": self.wall_fps,
                "p50_us": self.p50_us, "p99_us": self.p99_us,
                "cpu_cores": self.cpu_cores, "per_core": self.per_core}


def run_async(make: Callable[[], Any], use_uvloop: bool = False) -> Any:
    """Run a coroutine factory on a fresh event loop (uvloop's if asked)."""
    factory = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(make())


# -- StreamLab --------------------------------------------------------------------------
def _sl_node(op: Op, node_id: str, opts: SLOptions) -> dict[str, Any]:
    kind = op[0]
    if kind == "gain":
        node: dict[str, Any] = {"id": node_id, "type": opts.gain_node,
                                "config": {"gain": op[1]}}
    elif kind == "pass":
        node = {"id": node_id, "type": "Passthrough"}
    elif kind == "iir":
        if opts.real_dsp:
            node = {"id": node_id, "type": "IIRFilter", "config": real_iir_config()}
        else:
            node = {"id": node_id, "type": "BenchIIR", "config": dict(IIR_SETTINGS)}
    elif kind == "fft":
        node = ({"id": node_id, "type": "FFT", "config": real_fft_config()} if opts.real_dsp
                else {"id": node_id, "type": "BenchFFT"})
    else:
        raise ValueError(f"unknown operation {op!r}")
    if kind in opts.executors:
        node["executor"] = opts.executors[kind]
    return node


def real_iir_config() -> dict[str, Any]:
    """Config of the library's IIRFilter equivalent to BenchIIR (order-8 Butterworth low-pass)."""
    return {"design": "butter", "order": IIR_SETTINGS["order"], "btype": "lowpass",
            "cutoff": IIR_SETTINGS["cutoff"], "sample_rate": IIR_SETTINGS["sample_rate"]}


def real_fft_config() -> dict[str, Any]:
    """Config of the library's FFT equivalent to BenchFFT (magnitude of the rfft)."""
    return {"window": "boxcar", "output": "magnitude",
            "sample_rate": IIR_SETTINGS["sample_rate"]}


def streamlab_config(tree: Tree, n: int, probe: str, opts: SLOptions) -> dict[str, Any]:
    """The JSON pipeline document of ``tree`` for ``n`` frames, stamping probe ``probe``."""
    src_cfg: dict[str, Any] = {"probe": probe, "channels": tree.channels,
                               "samples": tree.samples, "variants": tree.variants,
                               "layout": opts.layout, "mode": opts.mode, "fresh": opts.fresh}
    if opts.mode == "free":
        src_cfg["max_frames"] = n
    if tree.period:
        src_cfg["realtime"] = True
        src_cfg["rate"] = 1.0 / tree.period
    nodes: list[dict[str, Any]] = [{"id": "source", "type": "BenchSource", "config": src_cfg}]
    conns: list[dict[str, str]] = []
    for b, ops in enumerate(tree.branches):
        prev = "source"
        for j, op in enumerate(ops):
            nid = f"{op[0]}{b}_{j}" if len(tree.branches) > 1 else f"{op[0]}{j}"
            nodes.append(_sl_node(op, nid, opts))
            conns.append({"from": prev, "to": nid})
            prev = nid
        sink = f"sink{b}"
        if opts.sink_delay > 0:
            nodes.append({"id": sink, "type": "BenchSlowSink",
                          "config": {"probe": probe, "delay": opts.sink_delay}})
        else:
            nodes.append({"id": sink, "type": "BenchSink", "config": {"probe": probe}})
        conns.append({"from": prev, "to": sink})
    return {"name": "bench", "nodes": nodes, "connections": conns,
            "pipeline_config": {"channel_capacity": tree.capacity, "fusion": opts.fusion}}


def _cpu_seconds() -> float:
    """CPU seconds of this process, of its ended children and of its live children's.

    Worker processes of the process executor are children of multiprocessing's forkserver,
    which outlives a run: their CPU time appears in the forkserver's ``children_*`` times once
    they have ended, so live children count with their own and their ended children's time.
    """
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in psutil.Process().children():
        try:
            c = child.cpu_times()
        except psutil.Error:  # ended meanwhile: counted in children_* once reaped
            continue
        total += c.user + c.system + c.children_user + c.children_system
    return total


def _cpu_start() -> tuple[Any, Any, float]:
    return _cpu_seconds(), psutil.cpu_times(percpu=True), time.perf_counter()


WARMUP = 0.1


def _steady_fps(probe: Any, branches: int) -> float | None:
    """Frames/s between the arrival of the first ``WARMUP`` fraction of frames and the last.

    Leaves out one-off costs at both ends (building tasks, starting worker processes, the
    first calls into scipy), for every implementation alike.
    """
    t = np.sort(np.asarray(probe.arrived, dtype=np.int64))
    t = t[t > 0]
    if len(t) < 10:
        return None
    k = int(len(t) * WARMUP)
    span = (t[-1] - t[k]) / 1e9
    return branches * (len(t) - 1 - k) / span if span > 0 else None


def _finish(impl: str, probe_key: str, probe: Any, expected: int, seconds: float,
            cpu0: tuple[Any, Any, float], latency: bool, branches: int = 1,
            steady: bool = True) -> Measurement:
    p0, c0, w0 = cpu0
    p1, c1 = _cpu_seconds(), psutil.cpu_times(percpu=True)
    wall = max(time.perf_counter() - w0, 1e-9)
    cores = (p1 - p0) / wall
    per_core = []
    for a, b in zip(c0, c1, strict=True):
        total = sum(b) - sum(a)
        idle = (b.idle - a.idle) + (getattr(b, "iowait", 0.0) - getattr(a, "iowait", 0.0))
        per_core.append(round(1.0 - idle / total, 3) if total > 0 else 0.0)
    drop_probe(probe_key)
    if probe.count != expected:
        raise RuntimeError(f"{impl}: {probe.count} frames reached the sinks, expected {expected}")
    m = Measurement(impl, probe.count, seconds, cpu_cores=round(cores, 3), per_core=per_core,
                    steady_fps=_steady_fps(probe, branches) if steady else None)
    if latency:
        lat = probe.latencies_us()
        if len(lat):
            m.p50_us, m.p99_us = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    if probe.keep:
        m.outputs, m.sources = probe.outputs, probe.sources
    return m


def measure_streamlab(tree: Tree, n: int, opts: SLOptions | None = None, *, keep: bool = False,
                      uvloop: bool = False, latency: bool = True) -> Measurement:
    """One StreamLab run of ``tree`` over ``n`` frames (metrics and accounting always on)."""
    opts = opts or SLOptions()
    register_bench_nodes()
    key, probe = new_probe(n, keep)
    cfg = streamlab_config(tree, n, key, opts)

    async def go() -> float:
        pipe = AsyncPipeline(cfg, outputs="discard")
        t0 = time.perf_counter()
        if opts.mode == "triggered":
            await pipe.run(triggers=n)
        else:
            await pipe.start()
            await pipe.join()
        return time.perf_counter() - t0

    gc.collect()
    cpu0 = _cpu_start()
    seconds = run_async(go, uvloop)
    return _finish("streamlab", key, probe, n * len(tree.branches), seconds, cpu0, latency,
                   len(tree.branches), steady=tree.period is None)


def _baseline_parts(tree: Tree, probe: Any, layout: str,
                    fresh: bool = False) -> tuple[Any, list[base.Branch]]:
    blocks = make_blocks(tree.channels, tree.samples, tree.variants)
    source = base.plain_source(blocks, probe, layout, fresh)
    branches: list[base.Branch] = []
    for b, ops in enumerate(tree.branches):
        stages = [_baseline_stage(op, layout) for op in ops]
        branches.append((stages, base.plain_sink(probe, f"sink{b}")))
    return source, branches


def _baseline_stage(op: Op, layout: str) -> base.Stage:
    kind = op[0]
    if kind == "gain":
        return base.dict_gain(op[1]) if layout == "dict" else base.block_gain(op[1])
    if kind == "pass":
        return base.passthrough
    if kind == "iir":
        cls = base.DictIIR if layout == "dict" else base.BlockIIR
        return cls(IIR_SETTINGS["order"], IIR_SETTINGS["cutoff"], IIR_SETTINGS["sample_rate"])
    if kind == "fft":
        return base.dict_fft if layout == "dict" else base.block_fft
    raise ValueError(f"unknown operation {op!r}")


def measure_plain(tree: Tree, n: int, *, keep: bool = False, uvloop: bool = False,
                  latency: bool = True) -> Measurement:
    """One run of the plain asyncio program (dict payloads, Queue(maxsize=capacity))."""
    key, probe = new_probe(n, keep)
    source, branches = _baseline_parts(tree, probe, "dict")

    async def go() -> float:
        t0 = time.perf_counter()
        await base.run_plain(source, branches, n, capacity=tree.capacity, period=tree.period)
        return time.perf_counter() - t0

    gc.collect()
    cpu0 = _cpu_start()
    seconds = run_async(go, uvloop)
    return _finish("plain", key, probe, n * len(tree.branches), seconds, cpu0, latency,
                   len(tree.branches), steady=tree.period is None)


def measure_loop(tree: Tree, n: int, *, keep: bool = False, latency: bool = True,
                 uvloop: bool = False, layout: str = "block") -> Measurement:
    """One run of the single plain loop (``uvloop`` is ignored).

    ``layout="block"``: channels as one 2-D block, one numpy call per frame (the floor for
    block work); ``"dict"``: one array per channel, one call per channel (the floor for
    per-channel work).
    """
    key, probe = new_probe(n, keep)
    source, branches = _baseline_parts(tree, probe, layout)
    gc.collect()
    cpu0 = _cpu_start()
    t0 = time.perf_counter()
    base.run_loop(source, branches, n, period=tree.period)
    seconds = time.perf_counter() - t0
    return _finish("loop", key, probe, n * len(tree.branches), seconds, cpu0, latency,
                   len(tree.branches), steady=tree.period is None)


def measure_pool(impl: str, tree: Tree, n_each: int, instances: int = 8,
                 max_concurrent: int = 4, *, uvloop: bool = False,
                 layout: str = "block") -> Measurement:
    """``instances`` runs of ``tree`` (``n_each`` frames each), at most ``max_concurrent`` at once.

    StreamLab goes through PipelinePool (triggered sources: the pool sends the triggers);
    the plain programs through a semaphore; the loop runs the instances one after another.
    ``layout`` is StreamLab's and the loop's payload layout (the plain programs are per-channel).
    """
    key, probe = new_probe(n_each)
    total = n_each * instances * len(tree.branches)
    if impl == "streamlab":
        register_bench_nodes()
        cfg = streamlab_config(tree, n_each, key, SLOptions(mode="triggered", layout=layout))

        async def go() -> float:
            pool = PipelinePool(cfg, max_concurrent=max_concurrent, outputs="discard")
            t0 = time.perf_counter()
            tasks = [pool.execute(triggers=n_each) for _ in range(instances)]
            await asyncio.gather(*tasks)
            return time.perf_counter() - t0
    elif impl == "plain":
        parts = [_baseline_parts(tree, probe, "dict") for _ in range(instances)]

        async def go() -> float:
            t0 = time.perf_counter()
            await base.run_plain_pool(
                [lambda s=s, b=b: base.run_plain(s, b, n_each, capacity=tree.capacity)
                 for s, b in parts], max_concurrent)
            return time.perf_counter() - t0
    else:
        parts = [_baseline_parts(tree, probe, layout) for _ in range(instances)]

        async def go() -> float:
            t0 = time.perf_counter()
            for s, b in parts:
                base.run_loop(s, b, n_each)
            return time.perf_counter() - t0

    gc.collect()
    cpu0 = _cpu_start()
    seconds = run_async(go, uvloop)
    return _finish(impl, key, probe, total, seconds, cpu0, latency=False, steady=False)


def with_frames(tree: Tree, **changes: Any) -> Tree:
    """A copy of ``tree`` with fields changed."""
    return replace(tree, **changes)
