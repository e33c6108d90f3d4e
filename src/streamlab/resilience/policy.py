"""ErrorPolicy (what becomes of a failing frame) and RestartStrategy (what becomes of the node).

Error policies, per node:

* :class:`Propagate` (default): the pipeline stops; ``run()`` raises a PipelineError whose
  cause is the node's exception.
* :class:`SkipFrame`: the failing frame is dropped and counted as ``skipped``.
* :class:`UseDefault`: a substitute frame (same timestamp, sequence id and channel shapes,
  filled with ``fill_value``, or the last good output re-stamped) takes its place, counted as
  ``defaulted``.

An ``on`` list restricts a policy to exception type names (matched against the exception's
class and its bases); ``propagate_on`` names types that always propagate.

Restart strategies: :class:`Never`, :class:`Immediate`, :class:`Exponential` and
:class:`CircuitBreakerStrategy`. Every restarting strategy has an intensity limit (more than
``max_restarts`` within ``within_s`` escalates) and forgets past attempts after
``healthy_after_s`` without a failure. The delay before attempt k of Exponential is
``min(max_ms, base_ms * 2**(k-1) * j)`` with ``j`` drawn uniformly from
``[1 - jitter, 1 + jitter]``: jitter is applied before the cap, so no delay exceeds ``max_ms``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, ClassVar

from streamlab.config.model import (
    CircuitBreakerSpec,
    ExponentialSpec,
    ImmediateSpec,
    NeverSpec,
    PropagateSpec,
    SkipFrameSpec,
    UseDefaultSpec,
)

__all__ = [
    "ErrorPolicy",
    "Propagate",
    "SkipFrame",
    "UseDefault",
    "RestartStrategy",
    "Never",
    "Immediate",
    "Exponential",
    "CircuitBreakerStrategy",
    "backoff_delay",
    "policy_from_spec",
    "strategy_from_spec",
]


@dataclass(frozen=True)
class ErrorPolicy:
    """Base of error policies. ``on``: exception type names handled (None: all)."""

    on: tuple[str, ...] | None = None
    propagate_on: tuple[str, ...] = ()
    name: ClassVar[str] = "ErrorPolicy"

    def handles(self, exc: BaseException) -> bool:
        """True if this policy recovers from ``exc`` (False: it propagates)."""
        names = {c.__name__ for c in type(exc).__mro__}
        if names.intersection(self.propagate_on):
            return False
        return self.on is None or bool(names.intersection(self.on))


@dataclass(frozen=True)
class Propagate(ErrorPolicy):
    """Stop the pipeline on the first error."""

    name: ClassVar[str] = "Propagate"

    def handles(self, exc: BaseException) -> bool:
        return False


@dataclass(frozen=True)
class SkipFrame(ErrorPolicy):
    """Drop the failing frame, count it, go on."""

    name: ClassVar[str] = "SkipFrame"


@dataclass(frozen=True)
class UseDefault(ErrorPolicy):
    """Emit a substitute frame for the failing one."""

    fill_value: float | None = 0.0
    last_good: bool = False
    name: ClassVar[str] = "UseDefault"


def backoff_delay(attempt: int, base: float, cap: float, jitter: float = 0.0,
                  rng: random.Random | None = None) -> float:
    """Delay before restart ``attempt`` (1-based): ``min(cap, base * 2**(attempt-1) * j)``."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    delay = base * 2.0 ** min(attempt - 1, 1000)  # 2.0 ** 1024 would raise OverflowError
    if jitter:
        delay *= (rng or random).uniform(1.0 - jitter, 1.0 + jitter)
    if not math.isfinite(delay):
        return cap
    return min(cap, delay)


@dataclass(frozen=True)
class RestartStrategy:
    """Base of restart strategies (with the intensity limit and the healthy reset)."""

    max_restarts: int = 10
    within_s: float = 60.0
    healthy_after_s: float = 30.0
    name: ClassVar[str] = "RestartStrategy"
    restarts: ClassVar[bool] = True

    def delay(self, attempt: int, rng: random.Random) -> float | None:
        """Seconds to wait before restart ``attempt``; None: give up (escalate)."""
        return 0.0


@dataclass(frozen=True)
class Never(RestartStrategy):
    """Keep the same instance (and its state) whatever happens."""

    name: ClassVar[str] = "Never"
    restarts: ClassVar[bool] = False

    def delay(self, attempt: int, rng: random.Random) -> float | None:
        return None


@dataclass(frozen=True)
class Immediate(RestartStrategy):
    """A fresh instance at once after each failure."""

    name: ClassVar[str] = "Immediate"


@dataclass(frozen=True)
class Exponential(RestartStrategy):
    """A fresh instance after an exponentially growing delay; escalate after max_attempts."""

    base_ms: float = 10.0
    max_ms: float = 1000.0
    max_attempts: int = 5
    jitter: float = 0.0
    seed: int | None = None
    name: ClassVar[str] = "Exponential"

    def delay(self, attempt: int, rng: random.Random) -> float | None:
        if attempt > self.max_attempts:
            return None
        return backoff_delay(attempt, self.base_ms / 1000, self.max_ms / 1000, self.jitter, rng)

    def schedule(self) -> list[float]:
        """The delays (seconds) of every allowed attempt, without jitter."""
        return [backoff_delay(k, self.base_ms / 1000, self.max_ms / 1000)
                for k in range(1, self.max_attempts + 1)]


@dataclass(frozen=True)
class CircuitBreakerStrategy(RestartStrategy):
    """Guard the node with a circuit breaker; the instance is kept (no restart)."""

    failure_threshold: int = 5
    reset_timeout_ms: float = 1000.0
    name: ClassVar[str] = "CircuitBreaker"
    restarts: ClassVar[bool] = False

    def delay(self, attempt: int, rng: random.Random) -> float | None:
        return None


_POLICIES: dict[type, type[ErrorPolicy]] = {
    PropagateSpec: Propagate, SkipFrameSpec: SkipFrame, UseDefaultSpec: UseDefault,
}


def policy_from_spec(spec: Any) -> ErrorPolicy:
    """The ErrorPolicy of a config spec (None: Propagate)."""
    if spec is None:
        return Propagate()
    kw: dict[str, Any] = {"on": tuple(spec.on) if spec.on is not None else None,
                          "propagate_on": tuple(spec.propagate_on)}
    if isinstance(spec, UseDefaultSpec):
        kw.update(fill_value=spec.fill_value, last_good=spec.last_good)
    return _POLICIES[type(spec)](**kw)


def strategy_from_spec(spec: Any) -> RestartStrategy:
    """The RestartStrategy of a config spec (None: Never)."""
    if spec is None or isinstance(spec, NeverSpec):
        return Never()
    common = dict(max_restarts=spec.max_restarts, within_s=spec.within_s,
                  healthy_after_s=spec.healthy_after_s)
    if isinstance(spec, ImmediateSpec):
        return Immediate(**common)
    if isinstance(spec, ExponentialSpec):
        return Exponential(**common, base_ms=spec.base_ms, max_ms=spec.max_ms,
                           max_attempts=spec.max_attempts, jitter=spec.jitter, seed=spec.seed)
    if isinstance(spec, CircuitBreakerSpec):
        return CircuitBreakerStrategy(**common, failure_threshold=spec.failure_threshold,
                                      reset_timeout_ms=spec.reset_timeout_ms)
    raise TypeError(f"unknown restart spec {spec!r}")

