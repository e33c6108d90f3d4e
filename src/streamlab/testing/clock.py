"""VirtualClock: time that moves only when something sleeps or a test advances it."""

from __future__ import annotations

import asyncio

__all__ = ["VirtualClock"]


class VirtualClock:
    """A Clock for tests: ``sleep(d)`` advances virtual time by ``d`` at once (and yields).

    Every sleep is recorded in ``sleeps`` (seconds, in call order), so backoff schedules and
    pacing can be asserted exactly. ``time_us()`` is ``start_us`` plus virtual time.
    """

    def __init__(self, start: float = 0.0, start_us: int = 1_700_000_000_000_000) -> None:
        self._now = start
        self.start_us = start_us
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def time_us(self) -> int:
        return self.start_us + round(self._now * 1e6)

    def advance(self, seconds: float) -> None:
        """Move virtual time forward."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds > 0:
            self._now += seconds
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"<VirtualClock t={self._now:.6f}s sleeps={len(self.sleeps)}>"
