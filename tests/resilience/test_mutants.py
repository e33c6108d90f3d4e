"""Resilience behaviours that mutation testing showed the other tests let through.

The base delay and the jitter range. (Config specs and strategies are one definition now:
``tests/config/test_resilience_settings.py`` checks the node runs with the spec's object.)
(The breaker's and the backoff's own survivors are covered by test_breaker / test_backoff.)
"""

import random

from streamlab.resilience.policy import Exponential, RestartStrategy, backoff_delay


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
    exp = Exponential(base_s=1.0, max_s=10.0, jitter=0.5)
    assert exp.delay(1, random.Random(5)) == exp.delay(1, random.Random(5)) != \
        exp.delay(1, random.Random(6))
