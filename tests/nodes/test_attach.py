"""Attach (streamlab.nodes.attach): markers joined to data samples by time.

The joining logic (MarkerJoin) is checked property-based against a batch computation
(``np.searchsorted`` over every sample time of the stream) for random frame sizes, marker
times, arrival orders and delays; the node is checked in running pipelines (debug mode: the
event ledger must balance).
"""

from __future__ import annotations

import asyncio
import doctest
import logging
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlab.errors import ConfigError, EndOfStream, PipelineError
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import SourceConfig, SourceNode
from streamlab.nodes import attach
from streamlab.nodes.attach import Attach, MarkerJoin, sample_times
from streamlab.registry import register_node, unregister_node
from streamlab.runtime import AsyncPipeline

T0 = 1_700_000_000_000_000


def data_frames(sizes: list[int], rate: float, t0: int = T0) -> list[DataFrame]:
    """Contiguous frames of ``sizes`` samples; sample j of the stream at t0 + round(j*1e6/rate)."""
    out, j = [], 0
    for k, n in enumerate(sizes):
        block = np.arange(j, j + n, dtype=np.float64)[None, :]
        # each frame's timestamp is the time of its first sample; later samples are timed
        # from it, so the stream's sample times are those of the frames (not one formula)
        out.append(DataFrame.from_block(["x"], block, timestamp=t0 + round(j * 1e6 / rate),
                                        sequence_id=k, metadata={"sample_rate": repr(rate)}))
        j += n
    return out


def stream_times(frames: list[DataFrame]) -> np.ndarray:
    return np.concatenate([sample_times(f) for f in frames])


def test_doctests():
    assert doctest.testmod(attach).failed == 0


def test_sample_times_follow_the_frame_formula():
    f = DataFrame.from_block(["x"], np.zeros((1, 4)), timestamp=7,
                             metadata={"sample_rate": "3.0"})
    assert sample_times(f).tolist() == [7 + round(i * 1e6 / 3.0) for i in range(4)]
    with pytest.raises(ValueError, match="no positive 'sample_rate'"):
        sample_times(DataFrame.from_block(["x"], np.zeros((1, 2))))
    assert sample_times(DataFrame.from_block(["x"], np.zeros((1, 1)), timestamp=5)).tolist() == [5]


def run_join(frames, markers, arrivals, delay_us):
    """Feed MarkerJoin: markers[i] arrives just before data frame arrivals[i] (len: at the end).

    Returns (frames out, fates per marker label, late list)."""
    fates: dict[str, int] = {"late": 0, "out_of_range": 0}
    late: list[Event] = []

    def settle(fate, n):
        fates[fate] += n

    j = MarkerJoin(delay_us, settle, late.append)
    out: list[DataFrame] = []
    by_slot: dict[int, list[Event]] = {}
    for e, a in zip(markers, arrivals):
        by_slot.setdefault(a, []).append(e)
    for k, f in enumerate(frames):
        out += j.markers(by_slot.get(k, []))
        out += j.data(f)
    out += j.markers(by_slot.get(len(frames), []))
    out += j.flush()
    assert j.held_events() == 0 and not j.held
    return out, fates, late


@st.composite
def scenario(draw):
    rate = draw(st.sampled_from([100.0, 250.0, 256.0, 1000.0, 3.0]))
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=12))
    frames = data_frames(sizes, rate)
    times = stream_times(frames)
    span = int(times[-1] - times[0])
    period = round(1e6 / rate)
    n = draw(st.integers(0, 25))
    lo, hi = int(times[0]) - 3 * period, int(times[-1]) + 3 * period
    # marker times: on samples, just before/after samples, anywhere (and outside the data)
    picks = []
    for _ in range(n):
        kind = draw(st.sampled_from(["on", "near", "any"]))
        if kind == "on":
            t = int(times[draw(st.integers(0, len(times) - 1))])
        elif kind == "near":
            t = int(times[draw(st.integers(0, len(times) - 1))]) + draw(st.integers(-2, 2))
        else:
            t = draw(st.integers(lo, hi))
        picks.append(t)
    delay = draw(st.sampled_from([0, period, span // 3, span + 1, 10 * span + 10**6]))
    return frames, picks, delay


def slots_for(frames, times_of_markers, lags):
    """Marker i arrives before the first frame whose last sample >= t_i + lag_i."""
    lasts = [int(sample_times(f)[-1]) for f in frames]
    return [next((k for k, last in enumerate(lasts) if last >= t + lag), len(frames))
            for t, lag in zip(times_of_markers, lags)]


def check_landing(frames, out, markers, fates):
    """Frames out = frames in, in order; every attached marker on the reference sample; each
    marker exactly one fate; out_of_range exactly the markers outside the data."""
    assert [f.sequence_id for f in out] == [f.sequence_id for f in frames]
    assert all(o.payload == f.payload for o, f in zip(out, frames))
    times = stream_times(frames)
    starts = np.cumsum([0] + [f.n_samples for f in frames])
    attached = [(e, starts[k] + e.sample) for k, f in enumerate(out) for e in f.events]
    for e, at in attached:
        assert at == np.searchsorted(times, e.time, side="left"), e
        assert times[0] <= e.time <= times[-1]
    assert len(attached) + fates["late"] + fates["out_of_range"] == len(markers)
    outside = sum(1 for e in markers if e.time < times[0] or e.time > times[-1])
    assert fates["out_of_range"] == outside
    return attached


@settings(max_examples=100, deadline=None)
@given(scenario(), st.data())
def test_markers_in_order_on_time_or_late_by_less_than_the_delay_all_land(sc, data):
    frames, picks, delay = sc
    picks = sorted(picks)
    markers = [Event(t, f"m{i}") for i, t in enumerate(picks)]
    lags = [data.draw(st.integers(0, max(0, delay - 1))) if delay else 0 for _ in markers]
    # markers arrive in time order: each no earlier than the one before it
    slots = list(np.maximum.accumulate(slots_for(frames, picks, lags))) if picks else []
    out, fates, late = run_join(frames, markers, slots, delay)
    check_landing(frames, out, markers, fates)
    if delay:
        assert fates["late"] == 0 and not late
    else:  # no hold: a marker arriving before the frame holding its sample still lands
        assert fates["late"] == 0  # lags are 0 here: every marker came before its frame


@settings(max_examples=100, deadline=None)
@given(scenario())
def test_markers_late_by_more_than_the_delay_are_counted_late(sc):
    frames, picks, delay = sc
    picks = sorted(picks)
    times = stream_times(frames)
    span_max = max(int(sample_times(f)[-1] - sample_times(f)[0]) for f in frames)
    period = max(1, int(np.diff(times).max())) if len(times) > 1 else 1
    lag = delay + 2 * span_max + 2 * period
    markers = [Event(t, f"m{i}") for i, t in enumerate(picks)]
    slots = slots_for(frames, picks, [lag] * len(picks))
    out, fates, late = run_join(frames, markers, slots, delay)
    check_landing(frames, out, markers, fates)
    must_be_late = [e for e, s in zip(markers, slots)
                    if s < len(frames) and times[0] <= e.time <= times[-1]]
    assert {e.label for e in must_be_late} <= {e.label for e in late}
    assert fates["late"] == len(late)


@settings(max_examples=100, deadline=None)
@given(scenario(), st.randoms(use_true_random=False))
def test_out_of_order_markers_are_sorted_and_still_land_right(sc, rnd):
    frames, picks, delay = sc
    markers = [Event(t, f"m{i}") for i, t in enumerate(picks)]
    slots = [rnd.randint(0, len(frames)) for _ in markers]
    order = list(range(len(markers)))
    rnd.shuffle(order)
    markers = [markers[i] for i in order]
    out, fates, late = run_join(frames, markers, [slots[i] for i in order], delay)
    check_landing(frames, out, markers, fates)
    # every frame's events come out sorted (by sample, then time)
    for f in out:
        assert list(f.events) == sorted(f.events, key=lambda e: (e.sample, e.time, e.label))


def test_all_markers_before_the_data_with_a_long_delay_land_exactly():
    frames = data_frames([10, 3, 7], 100.0)
    times = stream_times(frames)
    ts = [int(times[0]) - 1, int(times[0]), int(times[4]) + 1, int(times[12]), int(times[-1]),
          int(times[-1]) + 1]
    markers = [Event(t, f"m{i}") for i, t in enumerate(ts)]
    out, fates, late = run_join(frames, markers, [0] * len(ts), 10**9)
    got = {e.label: (k, e.sample) for k, f in enumerate(out) for e in f.events}
    assert got == {"m1": (0, 0), "m2": (0, 5), "m3": (1, 2), "m4": (2, 6)}
    assert fates == {"late": 0, "out_of_range": 2}


def test_frames_are_held_until_the_marker_stream_passes_them_or_the_delay():
    frames = data_frames([10, 10, 10, 10], 1000.0)  # 10 ms frames
    j = MarkerJoin(max_delay_us=25_000)
    assert j.data(frames[0]) == [] and j.data(frames[1]) == [] and j.data(frames[2]) == []
    # (b): frame 3's last sample is 30 ms past frame 0's -> frame 0 leaves on data time
    assert [f.sequence_id for f in j.data(frames[3])] == [0]
    # (a): a marker beyond frame 2's last sample releases frames 1 and 2 at once
    t = int(sample_times(frames[3])[0])
    assert [f.sequence_id for f in j.markers([Event(t, "x")])] == [1, 2]
    out = j.flush()
    assert [f.sequence_id for f in out] == [3] and out[0].events[0].sample == 0


# -- the node in a pipeline ------------------------------------------------------------------
FEEDS: dict[str, list[DataFrame]] = {}
GATES: dict[str, asyncio.Event] = {}


class _Feed(SourceNode):
    """Test source: emits FEEDS[key] in order (free-running); with ``after``, first waits
    until the feed ``after`` has sent everything."""

    class Config(SourceConfig):
        mode: str = "free"
        key: str
        after: str | None = None

    async def process(self, frame):
        cfg = self.config
        if cfg.after is not None:
            await asyncio.wait_for(GATES.setdefault(cfg.after, asyncio.Event()).wait(), 10)
        q = FEEDS[cfg.key]
        if not q:
            GATES.setdefault(cfg.key, asyncio.Event()).set()
            raise EndOfStream
        await asyncio.sleep(0)  # let the other source interleave
        return q.pop(0)


@pytest.fixture(autouse=True)
def _feed_node():
    register_node(_Feed, name="TestFeed")
    FEEDS.clear()
    GATES.clear()
    yield
    unregister_node("TestFeed")


def marker_frames(events):
    return [DataFrame(e.time, i, None, {"stream": "markers"}, [e]) for i, e in enumerate(events)]


def pipeline(delay: float, marker_after: str | None = None, **extra) -> dict:
    return {"name": "attach", "pipeline_config": {"debug": True},
            "nodes": [{"id": "eeg", "type": "TestFeed", "config": {"key": "eeg"}},
                      {"id": "stim", "type": "TestFeed",
                       "config": {"key": "stim", "after": marker_after}},
                      {"id": "att", "type": "Attach",
                       "config": {"data": "eeg", "markers": "stim",
                                  "max_marker_delay_s": delay, **extra}},
                      {"id": "out", "type": "Passthrough", "config": {}}],
            "connections": [{"from": "eeg", "to": "att"}, {"from": "stim", "to": "att"},
                            {"from": "att", "to": "out"}]}


def run_pipe(config):
    async def go():
        pipe = AsyncPipeline(config)
        report = await asyncio.wait_for(pipe.run(), 30)
        return pipe.results["out"], report

    return asyncio.run(go())


@pytest.mark.parametrize("seed", range(4))
def test_pipeline_attaches_markers_and_the_ledger_balances(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(1, 30) for _ in range(20)]
    frames = data_frames(sizes, 250.0)
    times = stream_times(frames)
    # frame 2 already carries an event of its own: it must be carried along
    frames[2] = frames[2].with_events([Event(int(times[sizes[0] + sizes[1]]), "own")])
    picks = sorted(rng.randint(int(times[0]) - 5000, int(times[-1]) + 5000) for _ in range(30))
    FEEDS["eeg"], FEEDS["stim"] = list(frames), marker_frames(
        [Event(t, f"m{i}", value=float(i)) for i, t in enumerate(picks)])
    out, report = run_pipe(pipeline(100.0))  # long hold: nothing can be late
    m = report.nodes["att"]
    outside = sum(1 for t in picks if t < times[0] or t > times[-1])
    assert m.event_fates["out_of_range"] == outside and m.event_fates["late"] == 0
    assert m.events_received == 31 and m.event_fates["carried"] == 31 - outside
    assert sum(m.event_fates.values()) == m.events_received  # (debug mode checked it too)
    assert [f.sequence_id for f in out] == list(range(20))
    starts = np.cumsum([0] + sizes)
    got = sorted((e.label, int(starts[k] + e.sample)) for k, f in enumerate(out) for e in f.events)
    want = sorted([("own", sizes[0] + sizes[1])] + [
        (f"m{i}", int(np.searchsorted(times, t, side="left")))
        for i, t in enumerate(picks) if times[0] <= t <= times[-1]])
    assert got == want
    assert report.nodes["out"].events_received == 31 - outside


def test_markers_after_the_data_left_are_counted_late_and_logged(caplog):
    frames = data_frames([10] * 5, 100.0)
    times = stream_times(frames)
    FEEDS["eeg"] = list(frames)
    FEEDS["stim"] = marker_frames([Event(int(times[k]), f"m{k}") for k in (3, 17, 30, 49)]
                                  + [Event(int(times[-1]) + 10_000, "after")])
    with caplog.at_level(logging.WARNING):
        # the markers are sent only once all the data has been: with no hold, all are late
        out, report = run_pipe(pipeline(0.0, marker_after="eeg", late_log_every=2))
    m = report.nodes["att"]
    assert m.event_fates["late"] == 4 and m.event_fates["out_of_range"] == 1
    assert not any(f.events for f in out) and len(out) == 5
    logged = [r for r in caplog.records if "arrived after its data left" in r.getMessage()]
    assert len(logged) == 2  # the first, then every 2nd


def test_the_same_late_markers_land_with_a_long_enough_hold():
    frames = data_frames([10] * 5, 100.0)
    times = stream_times(frames)
    FEEDS["eeg"] = list(frames)
    FEEDS["stim"] = marker_frames([Event(int(times[k]), f"m{k}") for k in (3, 17, 30, 49)])
    out, report = run_pipe(pipeline(1.0, marker_after="eeg"))  # 1 s > the 0.5 s of data
    assert report.nodes["att"].event_fates["carried"] == 4
    assert [(f.sequence_id, e.sample) for f in out for e in f.events] == [
        (0, 3), (1, 7), (3, 0), (4, 9)]


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="data and markers must be different"):
        AsyncPipeline({"name": "t", "nodes": [
            {"id": "a", "type": "Attach", "config": {"data": "x", "markers": "x"}}]})
    with pytest.raises(ConfigError, match="max_marker_delay_s"):
        AsyncPipeline({"name": "t", "nodes": [
            {"id": "a", "type": "Attach",
             "config": {"data": "x", "markers": "y", "max_marker_delay_s": -1}}]})
    assert Attach.description().startswith("Attach markers to the data sample")


def test_an_input_not_named_in_the_config_is_a_clear_error():
    FEEDS["eeg"], FEEDS["stim"] = data_frames([4], 100.0), []
    cfg = pipeline(1.0)
    cfg["nodes"][2]["config"]["markers"] = "other"
    with pytest.raises(PipelineError) as info:
        run_pipe(cfg)
    text = str(info.value) + str(info.value.__cause__)
    assert "config.markers is 'other'" in text


def test_data_without_sample_rate_fails_naming_the_frame_and_settles_events():
    FEEDS["eeg"] = [DataFrame.from_block(["x"], np.zeros((1, 3)), timestamp=T0)
                    .with_events([Event(T0, "own")])]
    FEEDS["stim"] = []
    with pytest.raises(PipelineError) as info:
        run_pipe(pipeline(1.0))
    assert "no positive 'sample_rate'" in str(info.value) + str(info.value.__cause__)


def test_out_of_order_markers_land_with_markers_in_order_false():
    """A later marker releases the data at once (rule a) unless markers_in_order is false:
    then only the delay does, and an earlier marker arriving after it still lands."""
    frames = data_frames([10, 10, 10], 1000.0)  # 10 ms frames
    times = stream_times(frames)
    early, later = Event(int(times[3]), "early"), Event(int(times[25]), "later")
    for in_order, fates in ((True, {"late": 1, "out_of_range": 0}),
                            (False, {"late": 0, "out_of_range": 0})):
        got: dict[str, int] = {"late": 0, "out_of_range": 0}
        j = MarkerJoin(50_000, lambda f, n, got=got: got.__setitem__(f, got[f] + n),
                       in_order=in_order)
        out = j.data(frames[0]) + j.data(frames[1]) + j.markers([later])
        out += j.markers([early]) + j.data(frames[2]) + j.flush()
        assert got == fates
        landed = {e.label for f in out for e in f.events}
        assert landed == ({"later"} if in_order else {"early", "later"})


def test_a_late_out_of_order_marker_is_logged_with_the_setting_to_change(caplog):
    frames = data_frames([10] * 3, 1000.0)
    times = stream_times(frames)
    FEEDS["eeg"] = list(frames)
    FEEDS["stim"] = marker_frames([Event(int(times[25]), "later"), Event(int(times[3]), "early")])
    with caplog.at_level(logging.WARNING):
        # all the data first, held (1 s): "later" releases frames 0 and 1, "early" is late
        out, report = run_pipe(pipeline(1.0, marker_after="eeg"))
    fates = report.nodes["att"].event_fates
    assert (fates["carried"], fates["late"]) == (1, 1)
    [line] = [r.getMessage() for r in caplog.records if "arrived after" in r.getMessage()]
    assert "'early'" in line and "came after a later marker" in line
    assert "set markers_in_order false" in line
    FEEDS["eeg"] = list(frames)
    FEEDS["stim"] = marker_frames([Event(int(times[25]), "later"), Event(int(times[3]), "early")])
    out, report = run_pipe(pipeline(1.0, marker_after="eeg", markers_in_order=False))
    assert report.nodes["att"].event_fates["carried"] == 2
    assert [(f.sequence_id, e.label, e.sample) for f in out for e in f.events] == [
        (0, "early", 3), (2, "later", 5)]
