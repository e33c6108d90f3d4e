"""The suite: which workloads run, at what sizes, in which StreamLab variants, against what targets.

:func:`run_suite` runs every case ``repeat`` times, interleaving StreamLab variants and the
baselines inside each repetition (so drift in the machine's load hits all of them alike),
and returns plain data: per case, per implementation, the list of measurements and their
medians. A StreamLab variant that fails (e.g. a node type that does not exist yet) is
recorded with its error instead of ending the suite; a baseline that fails raises.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from benchmarks.memory import measure_memory
from benchmarks.nodes import node_types_available
from benchmarks.workloads import (
    Measurement,
    SLOptions,
    Tree,
    measure_loop,
    measure_plain,
    measure_pool,
    measure_streamlab,
)

__all__ = ["Case", "CASES", "FULL", "QUICK", "LAYOUTS", "PER_CHANNEL", "run_suite",
           "check_fanout_copies", "median_of", "per_channel_variants"]

#: Payload layouts a case runs in: channels as rows of one 2-D block, or one array per channel
#: (the spec's data model: channel name -> array; SLOptions.layout "dict").
BLOCK, PER_CHANNEL = "block", "per-channel"
LAYOUTS = (BLOCK, PER_CHANNEL)
#: The floor for each layout: the single loop over blocks, or over per-channel dicts.
LOOP_OF = {BLOCK: "loop", PER_CHANNEL: "loop per-channel"}

GAIN = (("gain", 2.0),)
DEEP_HOPS = 10


@dataclass(frozen=True)
class Case:
    """One workload: its graph, StreamLab variants (the first is the main one) and target."""

    key: str
    title: str
    tree: Tree
    variants: dict[str, SLOptions]
    latency: bool = True
    target: str = ""
    extras: dict[str, SLOptions] = field(default_factory=dict)
    #: Per-channel variants (layout "dict" is set on them); None: the main variant only.
    per_channel: dict[str, SLOptions] | None = None


def per_channel_variants(case: Case) -> dict[str, SLOptions]:
    """The case's variants in the per-channel layout (labels as in the block layout)."""
    chosen = case.per_channel
    if chosen is None:
        label, opts = next(iter(case.variants.items()))
        chosen = {label: opts}
    return {label: replace(opts, layout="dict") for label, opts in chosen.items()}


def _key(label: str, layout: str) -> str:
    """Key of a variant in the results: block variants keep their label."""
    return label if layout == BLOCK else f"{label} [{layout}]"


def _cases() -> list[Case]:
    w4_variants = {
        "inline": SLOptions(),
        "iir executor=thread": SLOptions(executors={"iir": "thread"}),
        "iir executor=process": SLOptions(executors={"iir": "process"}),
    }
    return [
        Case("W1", "linear: source -> gain(x2) -> sink, 8 x 256",
             Tree(8, 256, (GAIN,)),
             {"free source": SLOptions(), "triggered source": SLOptions(mode="triggered")},
             target="fps >= 1.5 x plain",
             extras={"fusion off": SLOptions(fusion=False)},
             per_channel={"free source": SLOptions(),
                          "triggered source": SLOptions(mode="triggered"),
                          "node written per channel (with_channels)":
                              SLOptions(gain_node="BenchChannelGain")}),
        Case("W1p", "paced at 1 kHz: W1 with the source paced",
             Tree(8, 256, (GAIN,), period=0.001),
             {"free source, realtime": SLOptions()},
             target="p50 latency <= 1.5 x loop"),
        Case("W2", f"deep: source -> {DEEP_HOPS} pass-through -> sink, 8 x 256",
             Tree(8, 256, ((("pass",),) * DEEP_HOPS,)),
             {"free source": SLOptions()}, latency=False,
             target="fps >= 4 x plain; < 0.5 us/hop",
             extras={"fusion off": SLOptions(fusion=False)}),
        Case("W2base", "deep, 0 hops: source -> sink (reference for us/hop)",
             Tree(8, 256, ((),)), {"free source": SLOptions()}, latency=False),
        Case("W3", "fan-out: source -> 4 gain branches -> 4 sinks, 8 x 256",
             Tree(8, 256, tuple(((("gain", float(g)),)) for g in (1, 2, 3, 4))),
             {"free source": SLOptions()}, latency=False,
             target="fps >= 1.5 x plain; 0 payload copies"),
        Case("W4", "heavy DSP: source -> Butterworth-8 IIR (zi) -> |rFFT| -> sink, 8 x 4096",
             Tree(8, 4096, ((("iir",), ("fft",)),)), w4_variants, latency=False,
             target="fps >= 1.4 x loop; 2 cores", per_channel=w4_variants),
        Case("W5", "tiny frames: source -> gain -> sink, 1 x 1",
             Tree(1, 1, (GAIN,)), {"free source": SLOptions()}, latency=False,
             target="fps >= 1.5 x plain"),
    ]


CASES = _cases()

#: Frames per case (Pool: frames per instance; Memory: frames per child).
FULL = {"W1": 100_000, "W1p": 2_000, "W2": 50_000, "W2base": 50_000, "W3": 50_000,
        "W4": 800, "W5": 100_000, "Pool": 12_000, "Memory": 300, "copies": 500}
QUICK = {"W1": 5_000, "W1p": 200, "W2": 5_000, "W2base": 5_000, "W3": 3_000,
         "W4": 40, "W5": 5_000, "Pool": 500, "Memory": 60, "copies": 100}


def median_of(ms: list[Measurement], attr: str) -> float | None:
    vals = [getattr(m, attr) for m in ms if getattr(m, attr) is not None]
    return float(statistics.median(vals)) if vals else None


def best_of(ms: list[Measurement], attr: str) -> float | None:
    """The best run's value: highest frames/s or CPU use, lowest latency."""
    vals = [getattr(m, attr) for m in ms if getattr(m, attr) is not None]
    if not vals:
        return None
    return float(min(vals) if attr.endswith("_us") else max(vals))


def _summary(ms: list[Measurement]) -> dict[str, Any]:
    attrs = ("fps", "p50_us", "p99_us", "cpu_cores")
    return {
        **{a: median_of(ms, a) for a in attrs},
        "best": {a: best_of(ms, a) for a in attrs},
        "per_core": ms[len(ms) // 2].per_core if ms else [],
        "runs": [m.to_dict() for m in ms],
    }


def _run_case(case: Case, n: int, repeat: int, uvloop: bool, extras: bool,
              log: Callable[[str], None], layouts: tuple[str, ...] = LAYOUTS) -> dict[str, Any]:
    block: dict[str, SLOptions] = {}
    if BLOCK in layouts:
        block = dict(case.variants)
        if extras:
            block.update(case.extras)
        if case.key == "W4" and node_types_available("IIRFilter", "FFT"):
            block["library IIRFilter+FFT"] = SLOptions(real_dsp=True)
            block["library, iir executor=process"] = SLOptions(real_dsp=True,
                                                               executors={"iir": "process"})
    variants = {_key(k, BLOCK): v for k, v in block.items()}
    layout_of = dict.fromkeys(variants, BLOCK)
    if PER_CHANNEL in layouts:
        for label, opts in per_channel_variants(case).items():
            variants[_key(label, PER_CHANNEL)] = opts
            layout_of[_key(label, PER_CHANNEL)] = PER_CHANNEL
    loops = [LOOP_OF[lay] for lay in layouts]
    runs: dict[str, list[Measurement]] = {k: [] for k in (*variants, "plain", *loops)}
    errors: dict[str, str] = {}
    for rep in range(repeat):
        for label, opts in variants.items():
            if label in errors:
                continue
            try:
                runs[label].append(measure_streamlab(case.tree, n, opts, uvloop=uvloop,
                                                     latency=case.latency))
            except Exception as exc:  # recorded in the report: a variant may not exist yet
                errors[label] = f"{type(exc).__name__}: {exc}"[:300]
        runs["plain"].append(measure_plain(case.tree, n, uvloop=uvloop, latency=case.latency))
        for lay in layouts:
            runs[LOOP_OF[lay]].append(measure_loop(case.tree, n, latency=case.latency,
                                                   layout="dict" if lay == PER_CHANNEL
                                                   else "block"))
        log(f"  {case.key} rep {rep + 1}/{repeat}: " + ", ".join(
            f"{k} {v[-1].fps:,.0f}/s" for k, v in runs.items() if v))
    return {
        "key": case.key, "title": case.title, "frames": n, "target": case.target,
        "variants": list(variants), "errors": errors, "layouts": layout_of,
        "loop_of": {k: LOOP_OF[lay] for k, lay in layout_of.items()},
        "impls": {k: _summary(v) for k, v in runs.items() if v},
        "paired": {k: paired_ratios(runs[k], runs["plain"], runs[LOOP_OF[layout_of[k]]])
                   for k in variants if runs[k]},
    }


def paired_ratios(sl: list[Measurement], plain: list[Measurement],
                  loop: list[Measurement]) -> dict[str, dict[str, float | None]]:
    """Median over repetitions of StreamLab / baseline, each pair from the same repetition.

    Runs of one repetition are close in time, so a change in the machine's load between
    repetitions cancels out of these ratios (it does not cancel out of ratios of medians).
    """
    out: dict[str, dict[str, float | None]] = {}
    for name, ref in (("plain", plain), ("loop", loop)):
        out[name] = {}
        for attr in ("fps", "p50_us", "p99_us"):
            ratios = [getattr(a, attr) / getattr(b, attr) for a, b in zip(sl, ref, strict=False)
                      if getattr(a, attr) is not None and getattr(b, attr)]
            out[name][attr] = float(statistics.median(ratios)) if ratios else None
    return out


def _run_pool(n_each: int, repeat: int, uvloop: bool, log: Callable[[str], None],
              layouts: tuple[str, ...] = LAYOUTS) -> dict[str, Any]:
    tree = Tree(8, 256, (GAIN,))
    sl = {_key("PipelinePool", lay): lay for lay in layouts}
    loops = {LOOP_OF[lay]: lay for lay in layouts}
    runs: dict[str, list[Measurement]] = {k: [] for k in (*sl, "plain", *loops)}
    for rep in range(repeat):
        for label, lay in sl.items():
            runs[label].append(measure_pool("streamlab", tree, n_each, uvloop=uvloop,
                                            layout="dict" if lay == PER_CHANNEL else "block"))
        runs["plain"].append(measure_pool("plain", tree, n_each, uvloop=uvloop))
        for label, lay in loops.items():
            runs[label].append(measure_pool("loop", tree, n_each, uvloop=uvloop,
                                            layout="dict" if lay == PER_CHANNEL else "block"))
        log(f"  Pool rep {rep + 1}/{repeat}: " + ", ".join(
            f"{k} {v[-1].fps:,.0f}/s" for k, v in runs.items()))
    return {"key": "Pool", "title": "8 instances of W1 (8 x 256), 4 at a time", "frames": n_each,
            "target": "", "variants": list(sl), "errors": {}, "layouts": sl,
            "loop_of": {k: LOOP_OF[lay] for k, lay in sl.items()},
            "impls": {k: _summary(v) for k, v in runs.items()},
            "paired": {k: paired_ratios(runs[k], runs["plain"], runs[LOOP_OF[lay]])
                       for k, lay in sl.items()}}


def check_fanout_copies(n: int, uvloop: bool = False, layout: str = BLOCK) -> dict[str, Any]:
    """Fan-out to 4 pass-through branches: does every sink get the source's own arrays?

    Returns the number of frames checked and how many did not share memory with the block
    the source sent (a copy somewhere between source and sink). In the per-channel layout
    every channel array a sink got must be one of the source's (rows of its block).
    """
    tree = Tree(8, 256, ((("pass",),),) * 4)
    opts = SLOptions(layout="dict" if layout == PER_CHANNEL else "block")
    m = measure_streamlab(tree, n, opts, keep=True, uvloop=uvloop, latency=False)
    assert m.outputs is not None and m.sources
    sources = m.sources
    checked = copies = 0
    for outs in m.outputs.values():
        for seq, out in enumerate(outs):
            checked += 1
            src = sources[seq % len(sources)]
            arrays = out if isinstance(out, list) else [out]
            if not all(np.shares_memory(a, src) for a in arrays):
                copies += 1
    return {"checked": checked, "copies": copies, "sinks": len(m.outputs), "layout": layout}


def run_suite(sizes: dict[str, int], *, repeat: int = 3, uvloop: bool = False,
              extras: bool = False, only: set[str] | None = None,
              log: Callable[[str], None] = print,
              layouts: tuple[str, ...] = LAYOUTS) -> dict[str, Any]:
    """Run the cases (``only``: keys to run) in ``layouts``; the results as plain data."""
    out: dict[str, Any] = {"cases": {}, "layouts": list(layouts)}

    def wanted(key: str) -> bool:
        return only is None or key in only or (key == "W2base" and "W2" in only)

    for case in CASES:
        if wanted(case.key):
            log(f"{case.key}: {case.title} ({sizes[case.key]:,} frames x {repeat})")
            out["cases"][case.key] = _run_case(case, sizes[case.key], repeat, uvloop, extras, log,
                                               layouts)
    if wanted("W3"):
        if BLOCK in layouts:
            out["copies"] = check_fanout_copies(sizes["copies"], uvloop)
        if PER_CHANNEL in layouts:
            out["copies_per_channel"] = check_fanout_copies(sizes["copies"], uvloop, PER_CHANNEL)
    if wanted("Pool"):
        log(f"Pool: 8 x {sizes['Pool']:,} frames, max_concurrent=4 (x {repeat})")
        out["cases"]["Pool"] = _run_pool(sizes["Pool"], repeat, uvloop, log, layouts)
    if wanted("Memory"):
        log(f"Memory: {sizes['Memory']} frames of 64 x 4096 float64, sink 1 ms/frame")
        out["memory"] = {impl: measure_memory(impl, sizes["Memory"], uvloop=uvloop)
                         for impl in ("streamlab", "plain")}
    return out
