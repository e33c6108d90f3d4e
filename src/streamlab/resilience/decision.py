"""What becomes of a failing frame and of its node: a pure step, decided as a value.

:func:`decide` takes the node's error policy and restart strategy, its restart history
(:class:`RestartHistory`), the exception and the time, and returns a :class:`Decision` plus the
new history. It reads no clock, sleeps on nothing and raises nothing: the
:class:`~streamlab.resilience.ResilientNode` performs the decision (counts the fate, builds the
substitute, schedules the restart) and the node driver awaits the restart before the next
frame. Like the circuit breaker, every branch is table-tested (``tests/resilience``).

The rules (``shared/RELIABILITY.md``, decision 4):

* a policy that does not handle the exception propagates: the pipeline fails;
* otherwise the frame is skipped (SkipFrame) or substituted (UseDefault);
* a restarting strategy schedules a fresh instance after ``strategy.delay(attempt)``;
  a failure while a restart is already pending uses no extra attempt;
* the attempt counter starts again after ``healthy_after_s`` without a failure;
* giving up (no delay for this attempt) or more than ``max_restarts`` restarts within
  ``within_s`` escalates: the decision carries the reason, and the pipeline fails.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from streamlab.resilience.policy import ErrorPolicy, RestartStrategy, UseDefault

__all__ = ["Decision", "RestartHistory", "decide"]

Outcome = Literal["propagate", "skip", "substitute"]


@dataclass(frozen=True)
class RestartHistory:
    """A node's restart bookkeeping: attempts since healthy, last failure, recent restarts."""

    attempts: int = 0
    last_failure: float | None = None
    recent: tuple[float, ...] = ()   # times (s) of restarts inside the intensity window
    pending: bool = False            # a restart is scheduled and not yet performed


@dataclass(frozen=True)
class Decision:
    """The fate of the failing frame, and whether its node restarts or gives up."""

    outcome: Outcome
    restart_in: float | None = None  # seconds until a fresh instance; None: keep the instance
    escalation: str | None = None    # why the node gives up (the pipeline fails), or None

    @property
    def fate(self) -> str:
        """The frame's fate: ``aborted``, ``skipped`` or ``defaulted``."""
        if self.outcome == "propagate" or self.escalation is not None:
            return "aborted"
        return "defaulted" if self.outcome == "substitute" else "skipped"


def decide(policy: ErrorPolicy, strategy: RestartStrategy, history: RestartHistory,
           error: BaseException, now: float, rng: random.Random) -> tuple[Decision, RestartHistory]:
    """The decision for a frame that failed with ``error`` at ``now`` (seconds)."""
    if not policy.handles(error):
        return Decision("propagate"), history
    outcome: Outcome = "substitute" if isinstance(policy, UseDefault) else "skip"
    if not strategy.restarts or history.pending:
        return Decision(outcome), history
    attempts = history.attempts
    if history.last_failure is not None and now - history.last_failure >= strategy.healthy_after_s:
        attempts = 0
    attempts += 1
    failed = RestartHistory(attempts, now, history.recent, False)
    delay = strategy.delay(attempts, rng)
    if delay is None:
        return Decision(outcome, escalation=f"gave up after {attempts - 1} restarts "
                                            f"({strategy.name})"), failed
    recent = tuple(t for t in history.recent if now - t <= strategy.within_s)
    if len(recent) >= strategy.max_restarts:
        return Decision(outcome, escalation=(
            f"restart intensity exceeded: more than {strategy.max_restarts} restarts within "
            f"{strategy.within_s:g} s")), RestartHistory(attempts, now, recent, False)
    return Decision(outcome, restart_in=delay), RestartHistory(attempts, now, recent + (now,), True)
