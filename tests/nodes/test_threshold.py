"""ThresholdCrossing emits Events at the crossing samples (issue 11, detectors).

Positions are checked against a batch reference (one loop over the whole signal) whatever the
frame sizes; the event ledger runs in debug mode.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streamlab import AsyncPipeline
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.nodes.features import ThresholdCrossing
from streamlab.testing import run_node

FS = 200.0
META = {"sample_rate": repr(FS)}
T0 = 1_700_000_000_000_000
X = np.sin(2 * np.pi * 3 * np.arange(2000) / FS) + 0.3 * np.random.default_rng(3).standard_normal(2000)


def reference(x, thr, direction="rising", hysteresis=0.0, refractory=0):
    """Batch: crossings of each direction with hysteresis re-arming, then the refractory
    period over all of them (in samples)."""
    found = []
    for sign, name in ((1.0, "rising"), (-1.0, "falling")):
        if direction not in (name, "both"):
            continue
        y, t, armed = sign * x, sign * thr, True
        for n in range(len(y)):
            if n and y[n - 1] < t <= y[n] and armed:
                found.append(n)
                armed = hysteresis == 0
            if y[n] < t - hysteresis:
                armed = True
    kept, last = [], -(10 ** 9)
    for n in sorted(found):
        if n - last >= refractory:
            kept.append(n)
            last = n
    return kept


def chunked(x, sizes):
    frames, g0, i = [], 0, 0
    while g0 < x.shape[-1]:
        n = sizes[i % len(sizes)]
        frames.append(DataFrame(T0 + round(g0 * 1e6 / FS), i, {"a": x[g0:g0 + n]}, META))
        g0 += n
        i += 1
    return frames


def positions(outs):
    res, g0 = [], 0
    for f in outs:
        res += [g0 + e.sample for e in f.events]
        g0 += f.n_samples
    return res


CASES = st.sampled_from([
    {"threshold": 0.5},
    {"threshold": 0.5, "direction": "falling"},
    {"threshold": 0.0, "direction": "both"},
    {"threshold": 0.5, "hysteresis": 0.4},
    {"threshold": 0.2, "direction": "both", "hysteresis": 0.3, "refractory": 0.05},
    {"threshold": 0.5, "refractory": 0.2},
])


@settings(max_examples=40, deadline=None)
@given(case=CASES, sizes=st.lists(st.integers(1, 300), min_size=1, max_size=6))
def test_data_output_puts_an_event_on_each_crossing_sample(case, sizes):
    frames = chunked(X, sizes)
    out = run_node(ThresholdCrossing, {**case, "output": "data", "label": "up"}, frames)
    want = reference(X, case["threshold"], case.get("direction", "rising"),
                     case.get("hysteresis", 0.0), round(case.get("refractory", 0.0) * FS))
    assert want  # the signal does cross
    assert positions(out) == want
    assert [f.payload["a"] is g.payload["a"] for f, g in zip(out, frames)] == [True] * len(frames)
    evs = [e for f in out for e in f.events]
    assert {e.label for e in evs} == {"up"}
    assert [e.value for e in evs] == [float(X[k]) for k in want]
    assert [e.time for e in evs] == [T0 + round(k * 1e6 / FS) for k in want]
    mask = run_node(ThresholdCrossing, {**case, "output": "mask"}, frames)
    assert positions(mask) == want
    assert np.flatnonzero(np.concatenate([f.payload["a"] for f in mask])).tolist() == want


def test_event_frames_hold_each_crossing_at_its_index_among_the_times():
    out = run_node(ThresholdCrossing, {"threshold": 0.5}, chunked(X, [250]))
    want = reference(X, 0.5)
    times = [e.time for f in out for e in f.events]
    assert times == [T0 + round(k * 1e6 / FS) for k in want]
    for f in out:
        assert [e.sample for e in f.events] == list(range(len(f.events)))
        assert [round(f.payload["a"][e.sample]) for e in f.events] == [e.time for e in f.events]


def test_input_events_are_kept_and_frames_without_crossings_are_untouched():
    x = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    marker = Event(T0, "stim", sample=1)
    f1 = DataFrame(T0, 0, {"a": x[:3]}, META, [marker])
    f2 = DataFrame(T0 + 15_000, 1, {"a": x[3:]}, META)
    out = run_node(ThresholdCrossing, {"threshold": 0.5, "output": "data"}, [f1, f2])
    assert [(e.label, e.sample) for e in out[0].events] == [("stim", 1), ("crossing", 2)]
    assert out[0].events[0] is marker
    assert out[1] is f2  # nothing crossed, nothing changed


def test_each_channel_reports_its_own_crossings():
    a = np.array([0.0, 1.0, 1.0, 0.0, 0.0])
    b = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    f = DataFrame(T0, 0, {"a": a, "b": b}, META)
    out = run_node(ThresholdCrossing, {"threshold": 0.5, "output": "data"}, [f])
    assert [(e.sample, e.value) for e in out[0].events] == [(1, 1.0), (3, 1.0)]


def test_label_must_not_be_empty():
    with pytest.raises(ValidationError, match="label"):
        ThresholdCrossing.Config(threshold=1.0, label="")


@pytest.mark.parametrize("output", ["data", "mask", "events"])
def test_ledger_balances_in_debug_mode(output):
    sine = {"frequency": 2.0, "sample_rate": 100.0, "samples_per_frame": 23, "channels": ["a"]}
    nodes = [{"id": "src", "type": "SineGenerator", "config": sine},
             {"id": "det", "type": "ThresholdCrossing",
              "config": {"threshold": 0.5, "output": output, "label": "hi"}},
             {"id": "sink", "type": "Passthrough"}]
    pipe = AsyncPipeline({"pipeline_config": {"debug": True}, "nodes": nodes,
                          "connections": [{"from": "src", "to": "det"},
                                          {"from": "det", "to": "sink"}]})
    report = asyncio.run(pipe.run(triggers=30))  # 6.9 s of 2 Hz: 14 rising crossings of 0.5
    det, sink = report.nodes["det"], report.nodes["sink"]
    assert det.events_emitted == 14 and det.events_received == 0
    assert sink.events_received == 14 and sink.event_fates["carried"] == 14
    evs = [e for f in pipe.results["sink"] for e in f.events]
    assert [e.label for e in evs] == ["hi"] * 14
