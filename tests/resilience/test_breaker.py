"""CircuitBreaker: one test per row of RELIABILITY.md's table, and a model-based check."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streamlab import AsyncPipeline
from streamlab.errors import ConfigError
from streamlab.resilience import BreakerState, CircuitBreaker
from tests.reliability.harness import chain_config, run_guarded, value_frames

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def opened(threshold: int = 3, timeout: float = 1.0, at: float = 0.0) -> CircuitBreaker:
    b = CircuitBreaker(threshold, timeout)
    for _ in range(threshold):
        b.record(b.admit(at), False, at)
    assert b.state is OPEN and b.opened_at == at
    return b


def test_closed_success_resets_failures():
    b = CircuitBreaker(3, 1.0)
    b.record(b.admit(0.0), False, 0.0)
    b.record(b.admit(0.0), False, 0.0)
    assert b.failures == 2
    b.record(b.admit(0.0), True, 0.0)
    assert b.state is CLOSED and b.failures == 0


def test_closed_failure_below_threshold_stays_closed():
    b = CircuitBreaker(3, 1.0)
    for k in (1, 2):  # threshold-1 failures
        b.record(b.admit(0.0), False, 0.0)
        assert b.state is CLOSED and b.failures == k


def test_closed_failure_at_threshold_opens():
    b = CircuitBreaker(3, 1.0)
    for _ in range(2):
        b.record(b.admit(0.0), False, 0.0)
    b.record(b.admit(5.0), False, 5.0)  # the threshold-th
    assert b.state is OPEN and b.opened_at == 5.0 and b.opened == 1


def test_threshold_one_opens_on_first_failure():
    b = CircuitBreaker(1, 1.0)
    b.record(b.admit(0.0), False, 0.0)
    assert b.state is OPEN


def test_open_rejects_before_reset_timeout():
    b = opened(timeout=1.0)
    assert b.admit(0.999) is None  # reset_timeout - 1 ms
    assert b.state is OPEN and b.rejected == 1


def test_open_admits_a_probe_at_reset_timeout():
    b = opened(timeout=1.0)
    t = b.admit(1.0)
    assert t is not None and t.probe == 1
    assert b.state is HALF and b.probes == 1


def test_half_open_rejects_while_probe_is_young():
    b = opened(timeout=1.0)
    b.admit(1.0)
    assert b.admit(1.999) is None
    assert b.state is HALF and b.rejected == 1


def test_half_open_allows_a_new_probe_when_the_old_one_is_stuck():
    b = opened(timeout=1.0)
    first = b.admit(1.0)
    second = b.admit(2.0)
    assert second is not None and second.probe == 2 and b.probes == 2
    b.record(first, True, 2.1)  # the stuck probe's late result changes nothing
    assert b.state is HALF and b.late_results == 1
    b.record(second, True, 2.2)
    assert b.state is CLOSED


def test_probe_success_closes():
    b = opened()
    b.record(b.admit(1.0), True, 1.5)
    assert b.state is CLOSED and b.failures == 0


def test_probe_failure_reopens_with_new_timer():
    b = opened()
    b.record(b.admit(1.0), False, 1.5)
    assert b.state is OPEN and b.opened_at == 1.5 and b.opened == 2
    assert b.admit(2.499) is None
    assert b.admit(2.5) is not None


def test_late_result_while_open_is_counted_only():
    b = CircuitBreaker(2, 1.0)
    early = b.admit(0.0)  # admitted while CLOSED, result comes late
    b.record(b.admit(0.0), False, 0.0)
    b.record(b.admit(0.1), False, 0.1)
    assert b.state is OPEN and b.opened_at == 0.1
    b.record(early, False, 0.5)
    assert b.state is OPEN and b.opened_at == 0.1 and b.opened == 1 and b.late_results == 1


def test_late_result_after_close_does_not_count_against_new_epoch():
    b = CircuitBreaker(1, 1.0)
    early = b.admit(0.0)
    b.record(b.admit(0.0), False, 0.0)
    b.record(b.admit(1.0), True, 1.0)  # probe closes: new epoch
    b.record(early, False, 1.1)
    assert b.state is CLOSED and b.failures == 0 and b.late_results == 1


@pytest.mark.parametrize("threshold,timeout", [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -0.5)])
def test_invalid_parameters(threshold, timeout):
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, timeout)


@pytest.mark.parametrize("field,value,path", [
    ("failure_threshold", 0, "$.nodes[1].breaker.failure_threshold"),
    ("reset_timeout_s", 0, "$.nodes[1].breaker.reset_timeout_s"),
    ("reset_timeout_s", -0.005, "$.nodes[1].breaker.reset_timeout_s"),
])
def test_config_errors_name_the_json_path(field, value, path):
    cfg = chain_config({"type": "RelFailOn3", "error_policy": {"policy": "SkipFrame"},
                        "breaker": {field: value}})
    with pytest.raises(ConfigError) as info:
        AsyncPipeline(cfg)
    assert [p.path for p in info.value.problems] == [path]


def test_breaker_in_a_pipeline_rejects_then_probes():
    from streamlab.testing import VirtualClock

    # fails on every frame: threshold 2 opens; the rest are rejected (virtual time stands still)
    node = {"type": "FaultInjector", "config": {"every": 1}, "error_policy": {"policy": "SkipFrame"},
            "breaker": {"failure_threshold": 2,
                        "reset_timeout_s": 0.1}}
    pipe = AsyncPipeline(chain_config(node), clock=VirtualClock(), debug=True)
    report = run_guarded(lambda: pipe.run(frames=value_frames(range(10))))
    f = report.fates()["n"]
    assert f["skipped"] == 2 and f["rejected"] == 8 and f["received"] == 10
    assert report.nodes["n"].errors == 2
    assert pipe.built.nodes["n"].breaker.state is OPEN


def test_breaker_rejections_get_a_substitute_under_usedefault():
    from streamlab.testing import VirtualClock

    node = {"type": "FaultInjector", "config": {"every": 1},
            "error_policy": {"policy": "UseDefault", "fill_value": 7.0},
            "breaker": {"failure_threshold": 1,
                        "reset_timeout_s": 0.1}}
    pipe = AsyncPipeline(chain_config(node), clock=VirtualClock())
    report = run_guarded(lambda: pipe.run(frames=value_frames(range(4))))
    assert [float(f.payload["x"][0]) for f in pipe.results["sink"]] == [7.0] * 4
    assert report.fates()["n"]["defaulted"] == 1 and report.fates()["n"]["rejected"] == 3


# -- model-based ------------------------------------------------------------------------------
class Model:
    """The table, written as plainly as possible."""

    def __init__(self, threshold: int, timeout: float) -> None:
        self.threshold, self.timeout = threshold, timeout
        self.state, self.failures, self.opened_at, self.probe_at = "closed", 0, 0.0, 0.0
        self.probe = 0
        self.epoch = 0

    def admit(self, now: float):
        if self.state == "closed":
            return ("c", self.epoch)
        if self.state == "open":
            if now - self.opened_at < self.timeout:
                return None
            self.state = "half"
        elif now - self.probe_at < self.timeout:
            return None
        self.probe += 1
        self.probe_at = now
        return ("p", self.probe)

    def record(self, ticket, ok: bool, now: float) -> None:
        kind, n = ticket
        if kind == "p":
            if self.state == "half" and n == self.probe:
                if ok:
                    self.state, self.failures = "closed", 0
                    self.epoch += 1
                else:
                    self.state, self.opened_at = "open", now
            return
        if self.state != "closed" or n != self.epoch:
            return
        if ok:
            self.failures = 0
        else:
            self.failures += 1
            if self.failures >= self.threshold:
                self.state, self.opened_at = "open", now


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.pairs: list[tuple[object, object]] = []
        self.b: CircuitBreaker | None = None
        self.m: Model | None = None

    @precondition(lambda self: self.b is None)
    @rule(threshold=st.integers(1, 4), timeout_ms=st.integers(1, 50))
    def make(self, threshold, timeout_ms):
        self.b = CircuitBreaker(threshold, timeout_ms / 1000)
        self.m = Model(threshold, timeout_ms / 1000)

    @precondition(lambda self: self.b is not None)
    @rule(ms=st.integers(0, 60))
    def tick(self, ms):
        self.now = round(self.now + ms / 1000, 6)

    @precondition(lambda self: self.b is not None)
    @rule()
    def admit(self):
        t, u = self.b.admit(self.now), self.m.admit(self.now)
        assert (t is None) == (u is None)
        if t is not None:
            self.pairs.append((t, u))

    @precondition(lambda self: self.b is not None and self.pairs)
    @rule(which=st.integers(0, 100), ok=st.booleans())
    def record(self, which, ok):
        t, u = self.pairs.pop(which % len(self.pairs))  # results may arrive late, in any order
        self.b.record(t, ok, self.now)
        self.m.record(u, ok, self.now)

    @invariant()
    def same_state(self):
        if self.b is not None:
            names = {"closed": CLOSED, "open": OPEN, "half": HALF}
            assert self.b.state is names[self.m.state]
            assert self.b.failures == self.m.failures
            if self.b.state is OPEN:
                assert self.b.opened_at == self.m.opened_at


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40,
                                            deadline=None)
TestBreakerModel = BreakerMachine.TestCase
