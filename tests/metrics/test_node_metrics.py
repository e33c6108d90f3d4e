"""NodeMetrics and Histogram: quantiles against known values, budgets, stream health, merge."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlab import DataFrame
from streamlab.metrics import BudgetHistogram, Histogram, NodeMetrics
from streamlab.metrics.node_metrics import _bounds, _bucket

values_ns = st.lists(st.integers(min_value=0, max_value=10**11), min_size=1, max_size=300)


def exact_quantile(vals: list[int], q: float) -> int:
    """The rank the Histogram uses: ceil(q * n), at least 1."""
    s = sorted(vals)
    rank = max(1, int(q * len(s) + 0.999999))
    return s[rank - 1]


def test_small_values_are_exact_and_summary_is_plain_data():
    h = Histogram()
    for v in [1, 2, 3, 4, 5, 6, 7]:
        h.record(v)
    assert h.quantile(0.5) == 4e-9
    assert h.quantile(1.0) == 7e-9
    assert h.count == 7 and h.total_ns == 28 and h.max_ns == 7
    s = h.summary()
    assert s["count"] == 7 and s["max_s"] == 7e-9 and s["mean_s"] == pytest.approx(4e-9)


def test_known_latencies_p50_p90_p99_max():
    # 900 frames at 1 ms, 90 at 10 ms, 10 at 100 ms: p50 ~1 ms, p90 ~1 ms, p99 ~10 ms, max 100 ms
    h = Histogram()
    for v, n in ((1_000_000, 900), (10_000_000, 90), (100_000_000, 10)):
        for _ in range(n):
            h.record(v)
    for q, want in ((0.5, 1e-3), (0.9, 1e-3), (0.99, 1e-2), (0.999, 1e-1)):
        lo, hi = _bounds(_bucket(int(want * 1e9)))
        assert h.quantile(q) == pytest.approx((lo + hi - 1) / 2 / 1e9)
        assert abs(h.quantile(q) - want) <= want / 16
    assert h.summary()["max_s"] == 0.1
    assert h.mean == pytest.approx((900e-3 + 90e-2 + 10e-1) / 1000)


@settings(max_examples=200, deadline=None)
@given(values_ns, st.sampled_from([0.5, 0.9, 0.99, 1.0]))
def test_quantile_within_bucket_resolution_of_exact(vals, q):
    h = Histogram()
    for v in vals:
        h.record(v)
    got_ns = h.quantile(q) * 1e9
    want = exact_quantile(vals, q)
    assert abs(got_ns - want) <= want / 16 + 1
    assert got_ns <= max(vals) + 1e-3


@settings(max_examples=100, deadline=None)
@given(values_ns)
def test_cumulative_never_overstates_and_loses_at_most_one_bucket(vals):
    h = Histogram()
    for v in vals:
        h.record(v)
    bounds = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    cum = h.cumulative(bounds)
    assert cum == sorted(cum)
    for b, c in zip(bounds, cum):
        limit = round(b * 1e9)
        assert sum(v <= limit * 8 / 9 for v in vals) <= c <= sum(v <= limit for v in vals)


def test_count_above_is_a_lower_bound():
    h = Histogram()
    for v in range(0, 20_000_000, 10_000):  # 0 .. 20 ms
        h.record(v)
    above = h.count_above(5_000_000)
    exact = sum(1 for v in range(0, 20_000_000, 10_000) if v > 5_000_000)
    assert exact * 0.9 <= above <= exact


def test_merge_and_copy():
    a, b = Histogram(), Histogram()
    for v in (10, 2000, 3_000_000):
        a.record(v)
    for v in (50, 9_000_000):
        b.record(v)
    c = a.copy()
    c.merge(b)
    assert c.count == 5 and c.max_ns == 9_000_000 and c.total_ns == a.total_ns + b.total_ns
    assert a.count == 3  # the copy is independent


def test_budget_histogram_counts_exactly():
    h = BudgetHistogram(5_000_000)
    for v in (4_999_999, 5_000_000, 5_000_001, 7_000_000):
        h.record(v)
    assert h.over_budget == 2 and h.count == 4
    assert h.copy().over_budget == 2


def test_end_to_end_budget_keeps_counts_and_is_reported():
    m = NodeMetrics("sink", "p", "Passthrough")
    m.end_to_end.record(1_000)
    assert m.end_to_end_deadline_misses == 0
    m.set_end_to_end_budget(0.002)
    assert m.end_to_end.count == 1
    m.end_to_end.record(3_000_000)
    m.end_to_end.record(1_000_000)
    assert m.end_to_end_deadline_misses == 1
    assert m.snapshot().end_to_end_deadline_misses == 1


def frames(*pairs: tuple[int, int]) -> list[DataFrame]:
    return [DataFrame(ts, seq) for seq, ts in pairs]


def test_observe_batch_counts_gaps_and_regressions_per_input():
    m = NodeMetrics("n")
    m.observe_batch(frames((0, 0), (1, 10), (3, 30)), "a")       # one gap
    m.observe_batch(frames((4, 40), (5, 35)), "a")                # one regression
    m.observe_batch(frames((100, 5), (101, 6)), "b")              # other input: no gap
    m.observe_batch(frames((7, 50)), "a")                         # gap across batches
    m.observe_batch([], "c")
    assert (m.sequence_gaps, m.timestamp_regressions) == (2, 1)
    m.observe_batch(frames((1, 1)), "a")                           # a restart: regression only
    assert (m.sequence_gaps, m.timestamp_regressions) == (2, 2)


def test_observe_stream_single_input():
    m = NodeMetrics("n")
    for seq, ts in ((0, 0), (1, 5), (5, 10), (6, 3)):
        m.observe_stream(seq, ts)
    assert (m.sequence_gaps, m.timestamp_regressions) == (1, 1)


def test_merge_adds_everything():
    a, b = NodeMetrics("n", "p#0", "T"), NodeMetrics("n", "p#1", "T")
    for m, k in ((a, 1), (b, 2)):
        m.received, m.delivered, m.skipped, m.frames_out = 10 * k, 9 * k, k, 9 * k
        m.restarts, m.deadline_misses = k, k
        for _ in range(k):
            m.record_error(ValueError())
        m.latency.record(1000 * k)
    b.set_end_to_end_budget(0.001)
    b.end_to_end.record(2_000_000)
    a.merge(b)
    assert (a.received, a.delivered, a.skipped, a.frames_out) == (30, 27, 3, 27)
    assert (a.errors, a.restarts, a.deadline_misses) == (3, 3, 3)
    assert a.latency.count == 2 and a.error_types == {"ValueError": 3}
    assert a.end_to_end_deadline_misses == 1
    a.check_accounting()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(min_value=0, max_value=2**64 - 1),
                 st.integers(min_value=0, max_value=64).map(lambda k: 2**k - 1),
                 st.integers(min_value=0, max_value=63).map(lambda k: 2**k)))
def test_fast_record_uses_the_reference_bucket(ns):
    for h in (Histogram(), BudgetHistogram(10)):
        h.record(ns)
        (idx,) = [i for i, c in enumerate(h.counts) if c]
        assert idx == _bucket(ns)
        lo, hi = _bounds(idx)
        assert lo <= ns < hi
        assert h.count == 1 and h.total_ns == ns and h.max_ns == ns
