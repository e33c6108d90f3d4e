"""FaultInjector: deterministic failures for chaos tests of your own pipelines.

Put a ``FaultInjector`` anywhere in a graph: it passes frames through unchanged and fails
on the frames its config selects, so the error policies, restart strategies, dead letters
and frame accounting of the pipeline around it can be watched at work.

Which frames fail (exactly one of):

* ``"every": k``: the k-th, 2k-th, ... frame this instance receives (counting from 1);
* ``"at": [sequence ids]``: frames whose ``sequence_id`` is listed;
* ``"probability": p`` with ``"seed"``: each frame fails with probability ``p``. The draw is
  a hash of the seed and the frame's ``sequence_id`` only (not its timestamp, which a
  triggered or realtime source takes from the wall clock, nor the node id), so with the same
  seed and config the same sequence ids fail in every run and after restarts (a restarted
  instance does not replay its failures). Two injectors with the same seed fail the same
  sequence ids: give them different seeds for independent draws.

What a failure is (``"mode"``):

* ``"raise"`` (default): raise :class:`FaultInjected` (a ``RuntimeError``) naming the node
  and the frame. ``process`` is a plain ``def`` in this mode: no coroutine per frame.
* ``"delay"``: wait ``delay_ms`` on the pipeline clock, then pass the frame on.
* ``"hang"``: wait until cancelled (a forced stop or a failure elsewhere).

Counters live on the instance: ``received`` and ``injected``. A restart strategy builds a
fresh instance, so the counters and the ``every`` count start again.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field, model_validator

from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.registry import register_node

__all__ = ["FaultInjector", "FaultInjected"]


_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class FaultInjected(RuntimeError):
    """The failure a FaultInjector raises in ``"raise"`` mode."""


@register_node
class FaultInjector(ProcessingNode):
    """Pass frames through unchanged, failing deterministically (raise, delay or hang) for chaos tests.

    Fails on the k-th, 2k-th, ... frame (``every``), on listed sequence ids (``at``), or at
    random with a seed (``probability``, ``seed``). In ``"raise"`` mode the failure is a
    :class:`FaultInjected` error whose message names the node and the frame; what becomes of
    the frame is the node's error policy. ``"delay"`` waits ``delay_ms`` on the pipeline
    clock and ``"hang"`` waits until cancelled; both then use an ``async`` process.

    >>> from streamlab.testing import run_node, make_frame
    >>> frames = [make_frame(x=[float(i)], sequence_id=i) for i in range(4)]
    >>> [f.sequence_id for f in run_node(FaultInjector, {"at": [9]}, frames)]
    [0, 1, 2, 3]
    >>> run_node(FaultInjector, {"every": 2}, frames)
    Traceback (most recent call last):
    ...
    streamlab.nodes.fault.FaultInjected: FaultInjector 'node': injected fault on frame sequence_id=1 (frame #2 received)
    """

    class Config(NodeConfig):
        every: int | None = Field(
            None, ge=1, description="Fail the k-th, 2k-th, ... frame received (counting from 1).")
        at: list[int] | None = Field(
            None, max_length=100_000, description="Fail frames with these sequence ids.")
        probability: float | None = Field(
            None, ge=0.0, le=1.0, description="Fail each frame with this probability.")
        seed: int = Field(0, ge=0, le=2**63, description="Seed of the random draws (probability mode).")
        mode: Literal["raise", "delay", "hang"] = Field(
            "raise", description="'raise' a FaultInjected error, 'delay' the frame by delay_ms, "
            "or 'hang' until cancelled.")
        delay_ms: float = Field(
            0.0, ge=0.0, le=3_600_000.0, description="Delay of a faulted frame in 'delay' mode (ms).")

        @model_validator(mode="after")
        def _one_selector(self) -> FaultInjector.Config:
            chosen = [k for k in ("every", "at", "probability") if getattr(self, k) is not None]
            if len(chosen) != 1:
                raise ValueError("set exactly one of 'every', 'at' or 'probability' "
                                 f"(got {', '.join(chosen) if chosen else 'none'})")
            if self.mode == "delay" and self.delay_ms <= 0:
                raise ValueError("mode 'delay' needs delay_ms > 0")
            return self

    def on_create(self, config: Config) -> None:
        self.config = config
        self.received = 0
        self.injected = 0
        self._every = config.every or 0
        self._at = frozenset(config.at) if config.at is not None else None
        # probability p as a threshold on a 53-bit hash (p=1 always fails, p=0 never)
        self._threshold = int(config.probability * 2**53) if config.probability is not None else 0
        self._seed = (config.seed * 0x9E3779B97F4A7C15) & _MASK
        if config.mode != "raise":
            # An instance attribute shadows the sync method: the runtime sees an async process.
            self.process = self._process_async  # type: ignore[method-assign, assignment]

    def _selects(self, frame: DataFrame) -> bool:
        """Count the frame; True if it is one to fail."""
        self.received += 1
        if self._every:
            hit = self.received % self._every == 0
        elif self._at is not None:
            hit = frame.sequence_id in self._at
        else:
            # Keyed on seed and sequence_id only: a timestamp may come from the wall clock and
            # would make the selection differ between runs (issue #9, item 7).
            hit = _mix(self._seed ^ _mix(frame.sequence_id & _MASK)) >> 11 < self._threshold
        if hit:
            self.injected += 1
        return hit

    def _error(self, frame: DataFrame) -> FaultInjected:
        return FaultInjected(
            f"FaultInjector {self.context.node_id!r}: injected fault on frame "
            f"sequence_id={frame.sequence_id} (frame #{self.received} received)")

    def process(self, frame: DataFrame) -> DataFrame:
        """Pass ``frame`` on, or raise FaultInjected if it is selected."""
        if self._selects(frame):
            raise self._error(frame)
        return frame

    async def _process_async(self, frame: DataFrame) -> DataFrame:
        """Delay or hang on selected frames; cancellation propagates."""
        if self._selects(frame):
            if self.config.mode == "delay":
                await self.context.clock.sleep(self.config.delay_ms / 1000.0)
            else:
                await asyncio.get_running_loop().create_future()  # until cancelled
        return frame

    def __repr__(self) -> str:
        return (f"<FaultInjector id={self.context.node_id!r} mode={self.config.mode} "
                f"received={self.received} injected={self.injected}>")
