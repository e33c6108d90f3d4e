"""Run one node without a pipeline: the quickest way to test a node's logic."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from streamlab.clock import Clock
from streamlab.errors import EndOfStream
from streamlab.frame import DataFrame
from streamlab.node import NodeContext, ProcessingNode

__all__ = ["run_node", "make_frame", "collect_samples"]


def make_frame(sequence_id: int = 0, timestamp: int = 0, metadata: Mapping[str, str] | None = None,
               **channels: Any) -> DataFrame:
    """A frame from keyword channels: ``make_frame(x=[1.0, 2.0], sequence_id=3)``."""
    return DataFrame(timestamp, sequence_id, channels, metadata)


def run_node(
    node_type: type[ProcessingNode],
    config: Mapping[str, Any] | None = None,
    frames: Iterable[DataFrame] = (),
    *,
    triggers: int = 0,
    clock: Clock | None = None,
    node_id: str = "node",
) -> list[DataFrame]:
    """Create the node, feed it ``frames`` (or ``triggers`` empty trigger frames), return outputs.

    Calls ``on_create``, ``on_start``, ``process`` per frame (async ones too), ``on_stop``.
    A source raising EndOfStream ends the run early.
    """
    ctx = NodeContext(node_id=node_id)
    if clock is not None:
        ctx.clock = clock
    node = node_type.create(dict(config or {}), ctx)
    inputs = list(frames) + [DataFrame(i * 1000, i) for i in range(triggers)]

    async def go() -> list[DataFrame]:
        outs: list[DataFrame] = []
        r = node.on_start()
        if inspect.isawaitable(r):
            await r
        try:
            for f in inputs:
                try:
                    out = node.process(f)
                    if inspect.isawaitable(out):
                        out = await out
                except EndOfStream:
                    break
                if out is None:
                    continue
                outs.extend([out] if isinstance(out, DataFrame) else out)
        finally:
            r = node.on_stop()
            if inspect.isawaitable(r):
                await r
        return outs

    return asyncio.run(go())


def collect_samples(frames: Iterable[DataFrame], channel: str) -> np.ndarray:
    """Concatenate one channel over frames."""
    parts = [f.payload[channel] for f in frames]
    return np.concatenate(parts) if parts else np.empty(0)
