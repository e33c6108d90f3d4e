"""Clocks: the time source and sleep used by the runtime, backoff, breakers and paced sources.

Everything in StreamLab that waits or reads the time takes a :class:`Clock`, so tests can pass
:class:`streamlab.testing.VirtualClock` and run timing logic instantly and exactly.
``monotonic()`` is for intervals (seconds, float); ``time_us()`` is wall time for frame
timestamps (int µs since the epoch).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "SYSTEM_CLOCK"]


@runtime_checkable
class Clock(Protocol):
    """A time source and a sleep."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale, for intervals."""
        ...

    def time_us(self) -> int:
        """Wall time in µs since the epoch, for timestamps."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (returns at once for <= 0). Cancellable."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time_ns`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_us(self) -> int:
        return time.time_ns() // 1000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "<SystemClock>"


SYSTEM_CLOCK = SystemClock()
