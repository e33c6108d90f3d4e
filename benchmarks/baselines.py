"""The two baselines every workload is compared with.

(a) **Plain asyncio** (:func:`run_plain`): the program one would write by hand without a
framework. One task per node, one ``asyncio.Queue(maxsize=16)`` per edge, ``None`` as the
end-of-stream marker, and frames as the spec describes them: a small slotted object with
``timestamp`` (µs), ``sequence_id``, ``payload`` (a dict of one numpy array per channel) and
``metadata``. Nodes work channel by channel, as that payload invites.

(b) **Single loop** (:func:`run_loop`): the same work in one plain Python loop, no tasks, no
queues, no framework: the floor. Its frames hold the channels as one 2-D block, so its maths
is done the fastest plain way (one numpy call per frame: one ``sosfilt`` and one ``rfft`` over
all channels in W4).

Both take the same graph description, a *tree*: a source function ``seq -> frame`` and
branches, each a list of stage functions ``frame -> frame`` ending in a sink function. Both
stamp a :class:`~benchmarks.nodes.Probe` exactly as the StreamLab bench nodes do.
A stage that raises ends the program with that exception (tasks are cancelled first).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.nodes import Probe, channel_names

__all__ = [
    "PlainFrame",
    "Branch",
    "plain_source",
    "plain_sink",
    "dict_gain",
    "block_gain",
    "passthrough",
    "DictIIR",
    "BlockIIR",
    "dict_fft",
    "block_fft",
    "run_plain",
    "run_loop",
    "run_plain_pool",
]

_perf_ns = time.perf_counter_ns
Stage = Callable[["PlainFrame"], "PlainFrame"]
Branch = tuple[Sequence[Stage], Callable[["PlainFrame"], None]]


class PlainFrame:
    """A frame as the spec describes it: timestamp (µs), sequence id, payload, metadata."""

    __slots__ = ("timestamp", "sequence_id", "payload", "metadata")

    def __init__(self, timestamp: int, sequence_id: int, payload: Any,
                 metadata: dict[str, str]) -> None:
        self.timestamp = timestamp
        self.sequence_id = sequence_id
        self.payload = payload
        self.metadata = metadata


def plain_source(blocks: list[np.ndarray], probe: Probe, layout: str = "dict",
                 fresh: bool = False) -> Callable[[int], PlainFrame]:
    """``seq -> frame`` cycling through ``blocks`` (``layout`` "dict": one array per channel)."""
    names = channel_names(blocks[0].shape[0])
    if layout == "dict":
        payloads: list[Any] = [dict(zip(names, b, strict=True)) for b in blocks]
    else:
        payloads = list(blocks)
    k = len(payloads)
    created, n = probe.created, probe.n
    shape = blocks[0].shape
    meta: dict[str, str] = {}

    def source(seq: int) -> PlainFrame:
        if fresh:
            b = np.full(shape, float(seq))
            payload: Any = dict(zip(names, b, strict=True)) if layout == "dict" else b
        else:
            payload = payloads[seq % k]
        f = PlainFrame(time.time_ns() // 1000, seq, payload, meta)
        created[seq % n] = _perf_ns()
        return f

    return source


def plain_sink(probe: Probe, sink_id: str = "sink") -> Callable[[PlainFrame], None]:
    """A sink that stamps arrival, counts, and keeps a copy of the output if the probe asks."""
    arrived, n = probe.arrived, probe.n

    def sink(f: PlainFrame) -> None:
        arrived[f.sequence_id % n] = _perf_ns()
        probe.count += 1
        if probe.keep:
            p = f.payload
            probe.record(sink_id, np.stack(list(p.values())) if isinstance(p, dict) else p)

    return sink


def dict_gain(gain: float) -> Stage:
    """Multiply every channel by ``gain``, one numpy call per channel."""

    def stage(f: PlainFrame) -> PlainFrame:
        return PlainFrame(f.timestamp, f.sequence_id,
                          {k: a * gain for k, a in f.payload.items()}, f.metadata)

    return stage


def block_gain(gain: float) -> Stage:
    """Multiply the block by ``gain``: one numpy call per frame."""

    def stage(f: PlainFrame) -> PlainFrame:
        return PlainFrame(f.timestamp, f.sequence_id, f.payload * gain, f.metadata)

    return stage


def passthrough(f: PlainFrame) -> PlainFrame:
    """Return the frame unchanged."""
    return f


def _butter(order: int, cutoff: float, sample_rate: float) -> np.ndarray:
    from scipy.signal import butter

    return butter(order, cutoff, fs=sample_rate, output="sos")


class DictIIR:
    """Butterworth low-pass with carried state, one ``sosfilt`` call per channel."""

    def __init__(self, order: int, cutoff: float, sample_rate: float) -> None:
        from scipy.signal import sosfilt

        self.sos = _butter(order, cutoff, sample_rate)
        self.sosfilt = sosfilt
        self.zi: dict[str, np.ndarray] = {}

    def __call__(self, f: PlainFrame) -> PlainFrame:
        out = {}
        for k, a in f.payload.items():
            zi = self.zi.get(k)
            if zi is None:
                zi = np.zeros((self.sos.shape[0], 2))
            out[k], self.zi[k] = self.sosfilt(self.sos, a, zi=zi)
        return PlainFrame(f.timestamp, f.sequence_id, out, f.metadata)


class BlockIIR:
    """Butterworth low-pass with carried state, one ``sosfilt`` call over all channels."""

    def __init__(self, order: int, cutoff: float, sample_rate: float) -> None:
        from scipy.signal import sosfilt

        self.sos = _butter(order, cutoff, sample_rate)
        self.sosfilt = sosfilt
        self.zi: np.ndarray | None = None

    def __call__(self, f: PlainFrame) -> PlainFrame:
        block = f.payload
        if self.zi is None:
            self.zi = np.zeros((self.sos.shape[0], block.shape[0], 2))
        y, self.zi = self.sosfilt(self.sos, block, axis=-1, zi=self.zi)
        return PlainFrame(f.timestamp, f.sequence_id, y, f.metadata)


def dict_fft(f: PlainFrame) -> PlainFrame:
    """``|rfft|`` of every channel, one call per channel."""
    return PlainFrame(f.timestamp, f.sequence_id,
                      {k: np.abs(np.fft.rfft(a)) for k, a in f.payload.items()}, f.metadata)


def block_fft(f: PlainFrame) -> PlainFrame:
    """``|rfft|`` of all channels in one call."""
    return PlainFrame(f.timestamp, f.sequence_id, np.abs(np.fft.rfft(f.payload, axis=-1)),
                      f.metadata)


# -- (a) plain asyncio ----------------------------------------------------------------------
async def _source_task(source: Callable[[int], PlainFrame], n: int, outs: list[asyncio.Queue],
                       period: float | None) -> None:
    start = time.monotonic()
    for seq in range(n):
        if period:
            wait = start + seq * period - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        f = source(seq)
        for q in outs:
            await q.put(f)
    for q in outs:
        await q.put(None)


async def _stage_task(fn: Stage, inq: asyncio.Queue, outq: asyncio.Queue) -> None:
    while True:
        f = await inq.get()
        if f is None:
            await outq.put(None)
            return
        await outq.put(fn(f))


async def _sink_task(fn: Callable[[PlainFrame], None], inq: asyncio.Queue,
                     delay: float = 0.0) -> None:
    while True:
        f = await inq.get()
        if f is None:
            return
        if delay:
            await asyncio.sleep(delay)
        fn(f)


async def run_plain(source: Callable[[int], PlainFrame], branches: Sequence[Branch], n: int,
                    *, capacity: int = 16, period: float | None = None,
                    sink_delay: float = 0.0) -> None:
    """The plain asyncio program: a task per node, a bounded queue per edge.

    ``period`` paces the source (seconds between frames); with ``sink_delay`` every sink awaits
    that many seconds per frame (a slow consumer). Ends when the sinks have seen the
    end-of-stream marker; if a task fails, the others are cancelled and the error raised.
    """
    heads: list[asyncio.Queue] = []
    coros = []
    for stages, sink in branches:
        q: asyncio.Queue = asyncio.Queue(maxsize=capacity)
        heads.append(q)
        for fn in stages:
            nxt: asyncio.Queue = asyncio.Queue(maxsize=capacity)
            coros.append(_stage_task(fn, q, nxt))
            q = nxt
        coros.append(_sink_task(sink, q, sink_delay))
    tasks = [asyncio.create_task(_source_task(source, n, heads, period))]
    tasks += [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()


async def run_plain_pool(programs: Sequence[Callable[[], Any]], max_concurrent: int) -> None:
    """Run plain programs (coroutine factories), at most ``max_concurrent`` at a time."""
    sem = asyncio.Semaphore(max_concurrent)

    async def one(make: Callable[[], Any]) -> None:
        async with sem:
            await make()

    await asyncio.gather(*(one(p) for p in programs))


# -- (b) single loop ------------------------------------------------------------------------
def run_loop(source: Callable[[int], PlainFrame], branches: Sequence[Branch], n: int,
             *, period: float | None = None) -> None:
    """The floor: every frame through every branch in one plain loop (``time.sleep`` pacing)."""
    start = time.monotonic()
    for seq in range(n):
        if period:
            wait = start + seq * period - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        f = source(seq)
        for stages, sink in branches:
            g = f
            for fn in stages:
                g = fn(g)
            sink(g)
