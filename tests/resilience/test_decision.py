"""The pure policy step: one case per rule of shared/RELIABILITY.md decision 4."""

from __future__ import annotations

import random

import pytest

from streamlab.resilience.decision import Decision, RestartHistory, decide
from streamlab.resilience.policy import (
    Exponential,
    Immediate,
    Never,
    Propagate,
    SkipFrame,
    UseDefault,
)

RNG = random.Random(0)
ERR = ValueError("boom")


def step(policy, strategy, history=None, now=0.0, error=ERR):
    history = RestartHistory() if history is None else history
    return decide(policy, strategy, history, error, now, RNG)


@pytest.mark.parametrize(
    ("policy", "strategy", "expected"),
    [
        (Propagate(), Never(), Decision("propagate")),
        (SkipFrame(), Never(), Decision("skip")),
        (UseDefault(), Never(), Decision("substitute")),
        (SkipFrame(), Immediate(), Decision("skip", restart_in=0.0)),
        (UseDefault(), Exponential(base_s=0.01), Decision("substitute", restart_in=0.01)),
        (SkipFrame(on=("KeyError",)), Immediate(), Decision("propagate")),
        (SkipFrame(propagate_on=("ValueError",)), Immediate(), Decision("propagate")),
    ],
)
def test_first_failure(policy, strategy, expected):
    decision, history = step(policy, strategy)
    assert decision == expected
    assert history.pending == (expected.restart_in is not None)


@pytest.mark.parametrize(
    ("decision", "fate"),
    [(Decision("propagate"), "aborted"), (Decision("skip"), "skipped"),
     (Decision("substitute"), "defaulted"), (Decision("skip", escalation="x"), "aborted")],
)
def test_fate_of_each_decision(decision, fate):
    assert decision.fate == fate


def test_failure_while_a_restart_is_pending_uses_no_attempt():
    pending = RestartHistory(attempts=1, last_failure=0.0, recent=(0.0,), pending=True)
    decision, history = step(SkipFrame(), Immediate(), pending, now=0.001)
    assert decision == Decision("skip") and history is pending


def test_exponential_delays_then_escalation_after_max_attempts():
    strategy = Exponential(base_s=0.01, max_s=0.08, max_attempts=5)
    history, delays = RestartHistory(), []
    for k in range(5):
        decision, history = step(SkipFrame(), strategy, history, now=k * 0.001)
        delays.append(decision.restart_in)
        history = RestartHistory(history.attempts, history.last_failure, history.recent, False)
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08])
    decision, _ = step(SkipFrame(), strategy, history, now=0.006)
    assert decision.escalation == "gave up after 5 restarts (Exponential)"
    assert decision.fate == "aborted"


def test_attempts_reset_after_a_healthy_period():
    strategy = Exponential(base_s=0.01, max_s=1.0, max_attempts=3, healthy_after_s=30)
    history = RestartHistory(attempts=3, last_failure=0.0, recent=(0.0,), pending=False)
    decision, _ = step(SkipFrame(), strategy, history, now=29.999)
    assert decision.escalation is not None  # 29.999 s: still the same episode
    decision, history = step(SkipFrame(), strategy, history, now=30.0)
    assert decision.restart_in == pytest.approx(0.01) and history.attempts == 1


def test_intensity_limit_counts_restarts_inside_the_window():
    strategy = Immediate(max_restarts=2, within_s=1.0, healthy_after_s=1000)
    history = RestartHistory(attempts=2, last_failure=0.5, recent=(0.0, 0.5), pending=False)
    decision, _ = step(SkipFrame(), strategy, history, now=1.0)
    assert decision.escalation == "restart intensity exceeded: more than 2 restarts within 1 s"
    # at 1.0001 s the restart at 0.0 has left the window: one more restart is allowed
    decision, history = step(SkipFrame(), strategy, history, now=1.0001)
    assert decision.restart_in == 0.0 and history.recent == (0.5, 1.0001)


def test_decide_is_pure():
    history = RestartHistory()
    a = decide(SkipFrame(), Immediate(), history, ERR, 1.0, random.Random(1))
    b = decide(SkipFrame(), Immediate(), history, ERR, 1.0, random.Random(1))
    assert a == b and history == RestartHistory()
