"""Backoff jitter shortens as well as lengthens delays (a mutant drawing j from [1, 1 + jitter]
survived the bounds-only tests, #9 item 21)."""

from __future__ import annotations

import random
import statistics

from streamlab.resilience.policy import Exponential, backoff_delay


def test_jitter_is_symmetric_around_the_unjittered_delay():
    rng = random.Random(11)
    base, jitter = 0.010, 0.5
    delays = [backoff_delay(1, base, 10.0, jitter, rng) for _ in range(2000)]
    below = sum(d < base for d in delays)
    above = sum(d > base for d in delays)
    # j ~ U[0.5, 1.5]: about half below the base, half above, never outside the set
    assert 800 <= below <= 1200 and 800 <= above <= 1200
    assert min(delays) >= base * 0.5 and max(delays) <= base * 1.5
    assert min(delays) < base * 0.6 and max(delays) > base * 1.4  # the whole set is reached
    assert abs(statistics.fmean(delays) - base) < base * 0.03


def test_jittered_delays_match_the_seeded_formula():
    strat = Exponential(base_s=0.01, max_s=1.0, max_attempts=6, jitter=0.25, seed=5)
    got = [strat.delay(k, random.Random(5 + k)) for k in range(1, 7)]
    want = []
    for k in range(1, 7):
        j = random.Random(5 + k).uniform(0.75, 1.25)
        want.append(min(1.0, 0.010 * 2 ** (k - 1) * j))
    assert got == want
    assert strat.delay(7, random.Random(0)) is None  # beyond max_attempts
