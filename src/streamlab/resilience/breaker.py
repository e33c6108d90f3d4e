"""The circuit breaker as a pure state machine (consecutive failures, one probe per period).

Every transition of ``shared/RELIABILITY.md``'s table is a branch of :meth:`CircuitBreaker.admit`
or :meth:`CircuitBreaker.record`; nothing here reads a clock or sleeps: callers pass ``now``
(seconds). A frame asks :meth:`admit`; if admitted it gets a :class:`Ticket` that its result is
recorded with, so a late result of a frame admitted in an earlier state is counted only and
never re-opens the breaker or extends its timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["BreakerState", "CircuitBreaker", "Ticket", "BreakerStatistics"]


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Ticket:
    """Proof of admission: ``probe`` is the probe number, or 0 for a frame admitted while CLOSED."""

    probe: int
    epoch: int


@dataclass(frozen=True)
class BreakerStatistics:
    state: BreakerState
    failures: int
    opened: int
    rejected: int
    probes: int
    late_results: int


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failures; probes after ``reset_timeout``."""

    def __init__(self, failure_threshold: int, reset_timeout: float) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not reset_timeout > 0:
            raise ValueError(f"reset_timeout must be > 0 seconds, got {reset_timeout}")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probe_started = 0.0
        self._probe = 0          # id of the probe in flight (HALF_OPEN)
        self._epoch = 0          # bumped each time the breaker closes
        self.opened = 0
        self.rejected = 0
        self.probes = 0
        self.late_results = 0

    def admit(self, now: float) -> Ticket | None:
        """Ask to pass one frame; a Ticket if admitted, None if rejected (counted)."""
        if self.state is BreakerState.CLOSED:
            return Ticket(0, self._epoch)
        if self.state is BreakerState.OPEN:
            if now - self.opened_at < self.reset_timeout:
                self.rejected += 1
                return None
            self.state = BreakerState.HALF_OPEN
            return self._new_probe(now)
        # HALF_OPEN: a probe is in flight.
        if now - self.probe_started < self.reset_timeout:
            self.rejected += 1
            return None
        return self._new_probe(now)  # the old probe is stuck: do not freeze the breaker

    def _new_probe(self, now: float) -> Ticket:
        self.probes += 1
        self._probe = self.probes
        self.probe_started = now
        return Ticket(self._probe, self._epoch)

    def record(self, ticket: Ticket, success: bool, now: float) -> None:
        """The result of an admitted frame."""
        if ticket.probe:
            if self.state is BreakerState.HALF_OPEN and ticket.probe == self._probe:
                if success:
                    self.state = BreakerState.CLOSED
                    self.failures = 0
                    self._epoch += 1
                else:
                    self._open(now)
                return
            self.late_results += 1
            return
        if self.state is not BreakerState.CLOSED or ticket.epoch != self._epoch:
            self.late_results += 1
            return
        if success:
            self.failures = 0
        elif self.failures + 1 >= self.failure_threshold:
            self.failures += 1
            self._open(now)
        else:
            self.failures += 1

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self.opened += 1

    def statistics(self) -> BreakerStatistics:
        return BreakerStatistics(self.state, self.failures, self.opened, self.rejected,
                                 self.probes, self.late_results)

    def __repr__(self) -> str:
        return (f"<CircuitBreaker {self.state.value} failures={self.failures}/"
                f"{self.failure_threshold} opened={self.opened} rejected={self.rejected}>")
