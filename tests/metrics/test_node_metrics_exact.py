"""NodeMetrics and Histogram, value for value: merges, budgets, stream health, snapshots."""

from __future__ import annotations

import pytest

from streamlab.metrics.node_metrics import (
    FATES,
    AccountingError,
    BudgetHistogram,
    Histogram,
    NodeMetrics,
)
from streamlab.testing import make_frame


def test_summary_quantiles_are_each_their_own():
    h = Histogram()
    for v in range(1, 101):
        h.record(v * 1000)
    s = h.summary()
    assert list(s) == ["count", "mean_s", "p50_s", "p90_s", "p99_s", "max_s"]
    assert s["count"] == 100
    assert s["p50_s"] == h.quantile(0.50)
    assert s["p90_s"] == h.quantile(0.90)
    assert s["p99_s"] == h.quantile(0.99)
    assert s["p50_s"] < s["p90_s"] < s["p99_s"] <= s["max_s"] == 1e-4


def test_merge_adds_into_filled_buckets():
    a, b = Histogram(), Histogram()
    a.record(5)
    a.record(5)
    b.record(5)
    a.merge(b)
    assert a.counts[5] == 3 and a.count == 3


def test_budget_copy_is_independent_and_complete():
    h = BudgetHistogram(100)
    h.record(50)
    h.record(500)
    c = h.copy()
    assert (c.budget_ns, c.over_budget, c.count, c.total_ns, c.max_ns) == (100, 1, 2, 550, 500)
    c.record(1000)
    assert h.count == 2 and c.count == 3 and c.over_budget == 2 and h.over_budget == 1


def test_end_to_end_budget_in_ns():
    m = NodeMetrics()
    m.set_end_to_end_budget(2.0)
    assert m.end_to_end.budget_ns == 2_000_000_000


def test_accounted_sums_every_fate_and_check_names_them():
    m = NodeMetrics("n")
    for i, fate in enumerate(FATES):
        m.settle(fate, 2 ** i, received=0)
    assert m.accounted() == 2 ** len(FATES) - 1
    m.received = 2 ** len(FATES) - 1
    m.check_accounting()
    m.received += 1
    with pytest.raises(AccountingError) as ei:
        m.check_accounting()
    assert str(ei.value) == (f"node 'n': received {2 ** len(FATES)} frames but fates sum to "
                             f"{2 ** len(FATES) - 1} {m.fates()}")


def test_observe_stream_counts_every_gap_and_regression_not_repeats():
    m = NodeMetrics()
    for seq, ts in [(0, 10), (2, 20), (2, 20), (5, 15), (6, 15), (4, 5)]:
        m.observe_stream(seq, ts)
    # gaps: 0->2, 2->5; a repeated or earlier sequence id is no gap
    assert m.sequence_gaps == 2
    # regressions: 20->15 and 15->5; an equal timestamp is none
    assert m.timestamp_regressions == 2


def test_observe_batch_counts_several_in_one_batch():
    m = NodeMetrics()
    frames = [make_frame(x=[0.0], sequence_id=s, timestamp=t)
              for s, t in [(5, 100), (7, 90), (9, 80), (10, 80)]]
    m.observe_batch(frames, "up")
    assert (m.sequence_gaps, m.timestamp_regressions) == (2, 2)
    m.observe_batch([make_frame(x=[0.0], sequence_id=13, timestamp=70)], "up")
    assert (m.sequence_gaps, m.timestamp_regressions) == (3, 3)


def test_merge_all_fields():
    a, b = NodeMetrics("a"), NodeMetrics("b")
    a.blocked_seconds, b.blocked_seconds = 1.5, 2.0
    a.error_types, b.error_types = {"ValueError": 2}, {"ValueError": 3, "KeyError": 1}
    b.set_end_to_end_budget(2.0)
    b.end_to_end.record(3_000_000_000)
    a.merge(b)
    assert a.blocked_seconds == 3.5
    assert a.error_types == {"ValueError": 5, "KeyError": 1}
    assert isinstance(a.end_to_end, BudgetHistogram)
    assert a.end_to_end.budget_ns == 2_000_000_000
    assert a.end_to_end_deadline_misses == 1


def test_merge_keeps_its_own_budget_and_adds_misses():
    a, b = NodeMetrics(), NodeMetrics()
    a.set_end_to_end_budget(1.0)
    b.set_end_to_end_budget(5.0)
    a.end_to_end.record(2_000_000_000)   # over a's budget
    b.end_to_end.record(6_000_000_000)   # over b's budget
    b.end_to_end.record(7_000_000_000)
    a.merge(b)
    assert a.end_to_end.budget_ns == 1_000_000_000
    assert a.end_to_end_deadline_misses == 3
    assert a.end_to_end.count == 3


def test_snapshot_copies_every_counter():
    m = NodeMetrics("n")
    m.blocked_seconds, m.deadline_misses = 0.25, 3
    m.sequence_gaps, m.timestamp_regressions = 4, 5
    s = m.snapshot()
    assert (s.blocked_seconds, s.deadline_misses, s.sequence_gaps,
            s.timestamp_regressions) == (0.25, 3, 4, 5)


def test_fresh_metrics_are_zero_with_default_names():
    m = NodeMetrics()
    assert (m.node, m.pipeline, m.node_type) == ("node", "pipeline", "")
    s = m.snapshot()
    assert (s.received, s.frames_out, s.errors, s.restarts, s.blocked_seconds,
            s.deadline_misses, s.sequence_gaps, s.timestamp_regressions) == (0,) * 8
    assert s.fates == dict.fromkeys(FATES, 0)


def test_small_buckets_bounds_in_cumulative():
    h = Histogram()
    for v in range(8):
        h.record(v)
    assert h.cumulative([3e-9, 7e-9, 1.0]) == [4, 8, 8]
    assert h.cumulative([-1.0]) == [0]  # nothing is at or below a negative bound
    assert Histogram().quantiles((0.5, 0.9)) == [0.0, 0.0]


def test_budget_record_counts_repeats_and_sums():
    h = BudgetHistogram(10)
    for v in (3, 3, 20, 20):
        h.record(v)
    assert h.counts[3] == 2 and h.count == 4
    assert (h.total_ns, h.max_ns, h.over_budget) == (46, 20, 2)
    assert h.counts == _reference([3, 3, 20, 20]).counts


def _reference(values):
    h = Histogram()
    for v in values:
        h.record(v)
    return h
