"""Bench-only node types and the probes they stamp: sources that time frame creation, sinks
that time arrival, and the W4 DSP stages.

A :class:`Probe` is the side channel between a benchmark driver and the nodes of a pipeline
built from JSON: the driver makes one with :func:`new_probe`, puts its key in the nodes'
``probe`` config field, and reads creation and arrival times (``time.perf_counter_ns``, indexed
by ``sequence_id``) once the run ends. The plain baselines stamp the same probe the same way,
so the cost of measuring is equal for every implementation.

The node types are registered only by :func:`register_bench_nodes` (names start with
``Bench``) and removed by :func:`unregister_bench_nodes`, so importing this module changes
nothing in the registry, and tests can leave it as they found it. A probe key that is not
registered makes ``on_create`` fail with a KeyError naming the key.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
from pydantic import Field

from streamlab import DataFrame, NodeConfig, Payload, ProcessingNode, SourceConfig, SourceNode
from streamlab.registry import register_node, unregister_node

__all__ = [
    "Probe",
    "new_probe",
    "get_probe",
    "drop_probe",
    "make_blocks",
    "register_bench_nodes",
    "unregister_bench_nodes",
    "BENCH_NODE_TYPES",
]

_perf_ns = time.perf_counter_ns


class Probe:
    """Creation and arrival times per sequence id, arrival counts, and optionally the outputs.

    ``created[seq]`` and ``arrived[seq]`` are perf_counter_ns stamps (0: never stamped); with
    fan-out the last sink to see a frame wins. ``outputs`` maps a sink id to the 2-D arrays it
    received, in order, when ``keep`` is true (for correctness checks; off when timing).
    ``sources`` holds the blocks a bench source cycles through.
    """

    __slots__ = ("n", "created", "arrived", "count", "keep", "outputs", "sources")

    def __init__(self, n: int, keep: bool = False) -> None:
        self.n = n
        self.created = [0] * n
        self.arrived = [0] * n
        self.count = 0
        self.keep = keep
        self.outputs: dict[str, list[np.ndarray]] = {}
        #: The source's pre-made blocks (for the no-copy check of fan-out).
        self.sources: list[np.ndarray] = []

    def record(self, sink: str, block: np.ndarray) -> None:
        """Keep one output array, not copied (only when ``keep``; arrays are never mutated)."""
        self.outputs.setdefault(sink, []).append(block)

    def latencies_us(self) -> np.ndarray:
        """Source-to-sink latency in µs of every frame that was stamped at both ends."""
        created = np.asarray(self.created, dtype=np.int64)
        arrived = np.asarray(self.arrived, dtype=np.int64)
        ok = (created > 0) & (arrived > 0)
        return (arrived[ok] - created[ok]) / 1000.0

    def __repr__(self) -> str:
        return f"<Probe n={self.n} count={self.count} keep={self.keep}>"


_probes: dict[str, Probe] = {}
_ids = itertools.count()


def new_probe(n: int, keep: bool = False) -> tuple[str, Probe]:
    """A fresh probe for ``n`` sequence ids and its key (for the ``probe`` config field)."""
    key = f"probe{next(_ids)}"
    probe = Probe(n, keep)
    _probes[key] = probe
    return key, probe


def get_probe(key: str) -> Probe:
    """The probe registered as ``key``; KeyError naming the key otherwise."""
    try:
        return _probes[key]
    except KeyError:
        raise KeyError(f"no benchmark probe {key!r} (make one with new_probe)") from None


def drop_probe(key: str) -> None:
    """Forget a probe (its arrays can then be freed)."""
    _probes.pop(key, None)


def make_blocks(channels: int, samples: int, variants: int, seed: int = 0) -> list[np.ndarray]:
    """``variants`` distinct read-only channels x samples blocks of Gaussian noise."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(max(1, variants)):
        b = rng.standard_normal((channels, samples))
        b.flags.writeable = False
        blocks.append(b)
    return blocks


def channel_names(channels: int) -> tuple[str, ...]:
    return tuple(f"ch{i}" for i in range(channels))


class BenchSource(SourceNode):
    """Benchmark source: cycles through pre-made noise blocks and stamps creation times.

    Each frame's payload is one of ``variants`` pre-made blocks (no per-frame allocation),
    or a freshly allocated block with ``fresh`` (for the memory workload). ``layout="dict"``
    makes payloads of separate per-channel arrays instead of rows of one block.
    """

    class Config(SourceConfig):
        probe: str = Field(..., description="Key of the benchmark probe to stamp.")
        channels: int = Field(8, ge=1)
        samples: int = Field(256, ge=1)
        variants: int = Field(4, ge=1, description="Distinct pre-made blocks to cycle through.")
        seed: int = 0
        fresh: bool = Field(False, description="Allocate a new block per frame.")
        layout: str = Field("block", pattern="^(block|dict)$")
        rate: float = Field(1000.0, gt=0, description="Frames per second when realtime.")

    def on_create(self, config: Config) -> None:  # type: ignore[override]
        self.config = config
        self.probe = get_probe(config.probe)
        self.names = channel_names(config.channels)
        blocks = make_blocks(config.channels, config.samples, config.variants, config.seed)
        self.probe.sources = blocks
        if config.layout == "block":
            self.payloads = [Payload.from_block(self.names, b) for b in blocks]
        else:
            self.payloads = [Payload(dict(zip(self.names, b, strict=True))) for b in blocks]
        self.seq = 0

    def frame_period(self) -> float | None:
        return 1.0 / self.config.rate

    def process(self, frame: DataFrame | None) -> DataFrame:  # type: ignore[override]
        seq = self.seq
        self.seq = seq + 1
        if self.config.fresh:
            block = np.full((self.config.channels, self.config.samples), float(seq))
            payload = Payload.from_block(self.names, block)
        else:
            payload = self.payloads[seq % len(self.payloads)]
        out = DataFrame(time.time_ns() // 1000, seq, payload)
        self.probe.created[seq % self.probe.n] = _perf_ns()
        return out


class BenchSink(ProcessingNode):
    """Benchmark sink: stamps arrival times, counts frames and drops them (keeps copies if asked)."""

    class Config(NodeConfig):
        probe: str = Field(..., description="Key of the benchmark probe to stamp.")

    def on_create(self, config: Config) -> None:  # type: ignore[override]
        self.config = config
        self.probe = get_probe(config.probe)

    def process(self, frame: DataFrame) -> None:
        probe = self.probe
        probe.arrived[frame.sequence_id % probe.n] = _perf_ns()
        probe.count += 1
        if probe.keep:  # a block as it is; per-channel arrays as they are (no stacking copy)
            p = frame.payload
            probe.record(self.context.node_id, p.block() if p.is_block else list(p.values()))
        return None


class BenchSlowSink(BenchSink):
    """Benchmark sink that awaits ``delay`` seconds per frame (a slow consumer)."""

    class Config(NodeConfig):
        probe: str = Field(..., description="Key of the benchmark probe to stamp.")
        delay: float = Field(0.001, ge=0, description="Seconds awaited per frame.")

    async def process(self, frame: DataFrame) -> None:  # type: ignore[override]
        await asyncio.sleep(self.config.delay)
        return BenchSink.process(self, frame)


class BenchIIR(ProcessingNode):
    """Benchmark IIR: one Butterworth ``sosfilt`` over the whole block per frame, state carried
    (one call per channel, state per channel, if the payload is per-channel)."""

    class Config(NodeConfig):
        order: int = Field(8, ge=1)
        cutoff: float = Field(40.0, gt=0, description="Low-pass cutoff in Hz.")
        sample_rate: float = Field(1000.0, gt=0)

    def on_create(self, config: Config) -> None:  # type: ignore[override]
        from scipy.signal import butter, sosfilt

        self.config = config
        self.sos = butter(config.order, config.cutoff, fs=config.sample_rate, output="sos")
        self.sosfilt = sosfilt
        self.zi: np.ndarray | None = None

        self.zis: dict[str, np.ndarray] = {}

    def process(self, frame: DataFrame) -> DataFrame:
        p = frame.payload
        if not p.is_block:  # per-channel payload: one sosfilt per channel, state per channel
            out = {}
            zis, sos, sosfilt = self.zis, self.sos, self.sosfilt
            for k, a in p.items():
                zi = zis.get(k)
                if zi is None:
                    zi = np.zeros((sos.shape[0], 2))
                out[k], zis[k] = sosfilt(sos, a, zi=zi)
            return frame.with_channels(out)
        block = p.block()
        if self.zi is None:
            self.zi = np.zeros((self.sos.shape[0], block.shape[0], 2))
        y, self.zi = self.sosfilt(self.sos, block, axis=-1, zi=self.zi)
        return frame.with_block(y)


class BenchFFT(ProcessingNode):
    """Benchmark spectrum: one ``|rfft|`` over the whole block per frame (per channel if the
    payload is per-channel)."""

    def process(self, frame: DataFrame) -> DataFrame:
        p = frame.payload
        if not p.is_block:
            rfft, absolute = np.fft.rfft, np.abs
            return frame.with_channels({k: absolute(rfft(a)) for k, a in p.items()})
        return frame.with_block(np.abs(np.fft.rfft(frame.block(), axis=-1)))


class BenchChannelGain(ProcessingNode):
    """A gain written the natural per-channel way: one numpy call per channel, ``with_channels``.

    What a user writes against the spec's data model (channel name -> array), whatever the
    payload's layout; the library's ``Gain`` does the same for per-channel payloads but one
    call per frame for blocks.
    """

    class Config(NodeConfig):
        gain: float = Field(..., description="Factor applied to every sample.")

    def on_create(self, config: Config) -> None:  # type: ignore[override]
        self.gain = config.gain

    def process(self, frame: DataFrame) -> DataFrame:
        g = self.gain
        return frame.with_channels(**{k: v * g for k, v in frame.payload.items()})


BENCH_NODE_TYPES: dict[str, type[ProcessingNode]] = {
    "BenchSource": BenchSource,
    "BenchSink": BenchSink,
    "BenchSlowSink": BenchSlowSink,
    "BenchIIR": BenchIIR,
    "BenchFFT": BenchFFT,
    "BenchChannelGain": BenchChannelGain,
}


def register_bench_nodes() -> None:
    """Register the Bench* node types (idempotent)."""
    for name, cls in BENCH_NODE_TYPES.items():
        register_node(cls, name=name)


def unregister_bench_nodes() -> None:
    """Remove the Bench* node types from the registry."""
    for name in BENCH_NODE_TYPES:
        unregister_node(name)


def node_types_available(*names: str) -> bool:
    """True if every named node type is registered (e.g. the real IIRFilter and FFT)."""
    from streamlab import node_types

    types = node_types()
    return all(n in types for n in names)
