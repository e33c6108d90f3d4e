"""Resilience behaviours that mutation testing showed the other tests let through.

Config specs become strategies field for field; the base delay and the jitter range.
(The breaker's and the backoff's own survivors are covered by test_breaker / test_backoff.)
"""

import random
from types import SimpleNamespace

import pytest

from streamlab.config.model import CircuitBreakerSpec, ExponentialSpec, ImmediateSpec
from streamlab.resilience.policy import (
    CircuitBreakerStrategy,
    Exponential,
    Immediate,
    RestartStrategy,
    backoff_delay,
    strategy_from_spec,
)

COMMON = {"max_restarts": 3, "within_s": 7.0, "healthy_after_s": 11.0}


def test_every_spec_field_reaches_the_strategy():
    assert strategy_from_spec(ImmediateSpec(strategy="Immediate", **COMMON)) == Immediate(**COMMON)
    exp = {"base_ms": 2.0, "max_ms": 50.0, "max_attempts": 4, "jitter": 0.25, "seed": 9}
    assert strategy_from_spec(ExponentialSpec(strategy="Exponential", **COMMON, **exp)) == \
        Exponential(**COMMON, **exp)
    cb = {"failure_threshold": 2, "reset_timeout_ms": 300.0}
    assert strategy_from_spec(CircuitBreakerSpec(strategy="CircuitBreaker", **COMMON, **cb)) == \
        CircuitBreakerStrategy(**COMMON, **cb)


def test_an_unknown_spec_is_named():
    spec = SimpleNamespace(strategy="Sometimes", **COMMON)
    with pytest.raises(TypeError, match=r"^unknown restart spec namespace\(strategy='Sometimes'"):
        strategy_from_spec(spec)


def test_the_base_strategy_restarts_at_once():
    assert RestartStrategy().delay(1, random.Random(0)) == 0.0


def test_jitter_spans_both_sides_and_uses_the_given_rng():
    lows = highs = 0
    rng = random.Random(1)
    for _ in range(200):
        d = backoff_delay(1, 1.0, 10.0, 0.5, rng)
        assert 0.5 <= d <= 1.5
        lows += d < 1.0
        highs += d > 1.0
    assert lows > 20 and highs > 20
    exp = Exponential(base_ms=1000.0, max_ms=10_000.0, jitter=0.5)
    assert exp.delay(1, random.Random(5)) == exp.delay(1, random.Random(5)) != \
        exp.delay(1, random.Random(6))
