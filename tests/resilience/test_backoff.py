"""Backoff schedules: exact delays, and jitter that stays in its documented set."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlab.resilience import Exponential, backoff_delay


def test_exact_schedule_doubles_then_caps():
    s = Exponential(base_s=0.01, max_s=0.08, max_attempts=5)
    assert s.schedule() == [0.01, 0.02, 0.04, 0.08, 0.08]
    rng = random.Random(0)
    assert [s.delay(k, rng) for k in range(1, 7)] == [0.01, 0.02, 0.04, 0.08, 0.08, None]


def test_schedule_without_cap_reached():
    assert Exponential(base_s=0.001, max_s=1.0, max_attempts=4).schedule() == [
        0.001, 0.002, 0.004, 0.008]


def test_attempt_must_be_positive():
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        backoff_delay(0, 0.01, 1.0)


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(1, 40),
    base=st.floats(1e-4, 10.0),
    ratio=st.floats(1.0, 1e4),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_jitter_within_documented_set_and_never_above_max(attempt, base, ratio, jitter, seed):
    cap = base * ratio
    d = backoff_delay(attempt, base, cap, jitter, random.Random(seed))
    raw = base * 2.0 ** (attempt - 1)
    lo = min(cap, raw * (1 - jitter))
    hi = min(cap, raw * (1 + jitter))
    assert d <= cap
    assert lo * (1 - 1e-12) <= d <= hi * (1 + 1e-12)
    assert d >= 0


def test_jitter_is_seeded_and_reproducible():
    a = [backoff_delay(k, 0.01, 1.0, 0.5, random.Random(7)) for k in range(1, 6)]
    b = [backoff_delay(k, 0.01, 1.0, 0.5, random.Random(7)) for k in range(1, 6)]
    assert a == b
    assert len(set(a)) == 5
