"""Events through every built-in node, sample-exact (issue 11 item 4).

Each node is fed through :func:`feed`, which runs the real event ledger of a stage call
(``runtime.driver.count_events``) around every ``process`` and checks
``events_received == sum of event fates`` after ``on_stop``; a few pipelines run the same in
debug mode. Expected positions come from a batch computation over the whole signal.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamlab import AsyncPipeline
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.metrics import NodeMetrics
from streamlab.node import NodeConfig, NodeContext, ProcessingNode
from streamlab.nodes.basic import Gain, Passthrough
from streamlab.nodes.channels import (
    ChannelMath,
    DropChannels,
    Merge,
    RenameChannels,
    ReorderChannels,
    SelectChannels,
)
from streamlab.nodes.features import RMS, Envelope, PeakDetector, ZScore
from streamlab.nodes.filters import (
    DCRemoval,
    Detrend,
    FIRFilter,
    IIRFilter,
    MovingAverage,
    NotchFilter,
)
from streamlab.nodes.resample import Decimate, Resample
from streamlab.nodes.spectral import FFT, BandPower, Spectrogram, WelchPSD, Window
from streamlab.registry import register_node, unregister_node
from streamlab.runtime.driver import count_events

FS = 1000.0
META = {"sample_rate": repr(FS)}


def t_of(g: int, fs: float = FS) -> int:
    return round(g * 1e6 / fs)


def feed(node_type, config, frames, *, inputs=None, sources=None):
    """Run a node over ``frames`` with the runtime's per-call event ledger; return (outs, m).

    ``sources[i]`` is the input frame i comes from (fan-in nodes). The ledger is checked after
    ``on_stop`` (as debug mode does)."""
    ctx = NodeContext(node_id="n", inputs=tuple(inputs or ()))
    m = NodeMetrics("n")
    ctx.metrics = m
    node = node_type.create(dict(config), ctx)
    st_ = SimpleNamespace(metrics=m, node=node)
    node.on_start()
    outs: list[DataFrame] = []
    for i, f in enumerate(frames):
        if sources is not None:
            node.context.current_input = sources[i]
        r = node.process(f)
        r = [] if r is None else [r] if isinstance(r, DataFrame) else list(r)
        count_events(st_, [f], r)
        outs += r
    node.on_stop()
    m.check_accounting()
    return outs, m


def tagged(sizes, every, *, channels=("a",), offset=0, label="t", rng_seed=0):
    """Frames of ``sizes`` samples (random data) with an event on every ``every``-th global
    sample (starting at ``offset``), each at its own sample with its sample's time."""
    rng = np.random.default_rng(rng_seed)
    frames, g0 = [], 0
    for i, n in enumerate(sizes):
        evs = [Event(t_of(g), label, float(g), sample=g - g0)
               for g in range(g0, g0 + n) if g >= offset and (g - offset) % every == 0]
        frames.append(DataFrame(t_of(g0), i, {c: rng.standard_normal(n) for c in channels},
                                META, evs))
        g0 += n
    return frames


def cut(total: int, data, most: int = 60) -> list[int]:
    """Frame sizes covering ``total`` samples: hypothesis draws up to ``most`` cut points
    (and a run of tiny frames somewhere, the hardest case for held events)."""
    points = data.draw(st.lists(st.integers(1, total - 1), max_size=most), label="cuts")
    start = data.draw(st.integers(0, total - 1), label="tiny_run_at")
    tiny = data.draw(st.integers(0, 30), label="tiny_run")
    points = sorted({*points, *range(start, min(total, start + tiny)), total} - {0})
    return np.diff([0, *points]).tolist()


def global_positions(outs):
    """(global output sample, event) for every event on ``outs`` (contiguous outputs)."""
    res, k0 = [], 0
    for f in outs:
        res += [(k0 + e.sample, e) for e in f.events]
        k0 += f.n_samples
    return res


# -- rate changers: the GNU Radio #7328 check ---------------------------------------------------
RATE_CHANGERS = [
    (Decimate, {"q": 3}, 1, 3),
    (Decimate, {"q": 3, "ftype": "fir"}, 1, 3),
    (Resample, {"up": 2, "down": 3}, 2, 3),
    (Resample, {"up": 5, "down": 7}, 5, 7),
    (Resample, {"up": 7, "down": 5}, 7, 5),
]


def predicted(tags: list[int], n_in: int, up: int, down: int) -> tuple[list[int], int]:
    """Batch computation: output sample k sits at input position k*down/up; an event on input
    sample g lands on the first output at or after it. Returns (positions, outputs)."""
    n_out = -(-n_in * up // down)
    out_pos = np.arange(n_out) * down  # in units of 1/up input samples
    return np.searchsorted(out_pos, np.asarray(tags) * up, side="left").tolist(), n_out


@pytest.mark.parametrize("node_type,cfg,up,down", RATE_CHANGERS,
                         ids=["decimate3-iir", "decimate3-fir", "resample2/3", "resample5/7",
                              "resample7/5"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_rate_changer_puts_every_tag_on_the_batch_predicted_sample(node_type, cfg, up, down,
                                                                   data):
    n = 8000
    sizes = cut(n, data)
    outs, m = feed(node_type, {**cfg, "sample_rate": FS}, tagged(sizes, 25))
    tags = list(range(0, n, 25))
    want, n_out = predicted(tags, n, up, down)
    got = global_positions(outs)
    assert sum(f.n_samples for f in outs) == n_out
    assert [k for k, _ in got] == want  # exactly the predicted samples, in order
    assert [e.time for _, e in got] == [t_of(g) for g in tags]  # times unchanged
    assert m.event_fates["carried"] == len(tags) == m.events_received
    # and the output sample's own time is the first at or after the event's (1 µs rounding)
    fs_out = FS * up / down
    for f in outs:
        for e in f.events:
            t_sample = f.timestamp + round(e.sample * 1e6 / fs_out)
            assert e.time - 1 <= t_sample < e.time + 1e6 / fs_out + 1


@pytest.mark.parametrize("node_type,cfg,up,down", RATE_CHANGERS[::2])
def test_rate_changer_holds_an_event_until_its_sample_and_settles_the_rest_out_of_range(
        node_type, cfg, up, down):
    n = 20
    tags = list(range(n))  # an event on every input sample, frames of one sample
    outs, m = feed(node_type, {**cfg, "sample_rate": FS}, tagged([1] * n, 1))
    want, n_out = predicted(tags, n, up, down)
    inside = [k for k in want if k < n_out]
    assert [k for k, _ in global_positions(outs)] == inside
    assert m.event_fates["carried"] == len(inside)
    assert m.event_fates["out_of_range"] == n - len(inside)
    if up == 1:  # decimate by 3 over 20 samples: 19 -> output 7 does not exist
        assert n - len(inside) == 1


def test_rate_changer_frames_without_events_are_unchanged():
    x = np.random.default_rng(1).standard_normal(300)
    plain = [DataFrame(t_of(i * 50), i, {"a": x[i * 50:(i + 1) * 50]}, META) for i in range(6)]
    with_ev = [f.with_events([Event(f.timestamp, "s")]) if f.sequence_id == 2 else f
               for f in plain]
    a, _ = feed(Resample, {"up": 2, "down": 3}, plain)
    b, _ = feed(Resample, {"up": 2, "down": 3}, with_ev)
    assert all(not f.events for f in a)
    assert [f.payload["a"].tolist() for f in a] == [f.payload["a"].tolist() for f in b]
    assert [len(f.events) for f in b].count(1) == 1


# -- windows and spectra ------------------------------------------------------------------------
def window_prediction(tags, n, size, hop):
    """Batch: window m spans [m*hop, m*hop + size) for every complete window."""
    starts = range(0, n - size + 1, hop)
    return [[g - s for g in tags if s <= g < s + size] for s in starts]


@pytest.mark.parametrize("size,hop", [(8, 4), (10, 3), (5, 5), (4, 7)])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_window_puts_events_on_every_window_that_contains_them(size, hop, data):
    n = 203
    sizes = cut(n, data)
    tags = list(range(1, n, 6))
    outs, m = feed(Window, {"size": size, "hop": hop}, tagged(sizes, 6, offset=1))
    want = window_prediction(tags, n, size, hop)
    assert [[e.sample for e in f.events] for f in outs] == want
    in_some = {g for s, w in zip(range(0, n, hop), want) for g in (s + i for i in w)}
    assert m.event_fates["carried"] == len(in_some)  # copies settled once
    assert m.event_fates["out_of_range"] == len(tags) - len(in_some)
    for f in outs:  # each copy is at the sample whose time is the event's
        for e in f.events:
            assert f.timestamp + round(e.sample * 1e6 / FS) == e.time


def test_spectrogram_puts_events_on_sample_0_of_each_segment_containing_them():
    n, nperseg, noverlap = 300, 32, 16
    tags = list(range(0, n, 7))
    outs, m = feed(Spectrogram, {"nperseg": nperseg, "noverlap": noverlap},
                   tagged([13] * 23 + [1], 7))
    want = window_prediction(tags, n, nperseg, nperseg - noverlap)
    assert [len(f.events) for f in outs] == [len(w) for w in want]
    assert all(e.sample == 0 for f in outs for e in f.events)
    assert m.events_received == len(tags) and m.event_fates["carried"] + \
        m.event_fates["out_of_range"] == len(tags)
    assert m.event_fates["out_of_range"] == sum(1 for g in tags if g >= (len(want) - 1) * 16 + 32)


@pytest.mark.parametrize("node_type,cfg", [(WelchPSD, {"nperseg": 64}), (FFT, {}),
                                           (BandPower, {"nperseg": 200, "bands": {"low": [10, 100]}}),
                                           (RMS, {})])
def test_one_output_per_frame_spectra_put_events_on_sample_0(node_type, cfg):
    frames = tagged([250, 250, 250], 40)
    outs, m = feed(node_type, cfg, frames)
    assert [[(e.time, e.sample) for e in f.events] for f in outs] == \
        [[(e.time, 0) for e in f.events] for f in frames]
    assert m.event_fates["carried"] == m.events_received == sum(len(f.events) for f in frames)
    plain, _ = feed(node_type, cfg, [f.with_events(()) for f in frames])
    assert all(not f.events for f in plain)


# -- filters and channel nodes keep positions ---------------------------------------------------
SAME_SAMPLES = [
    (IIRFilter, {"btype": "lowpass", "cutoff": 50.0, "order": 2}),
    (NotchFilter, {"frequency": 50.0}),
    (FIRFilter, {"numtaps": 9, "cutoff": 100.0}),
    (MovingAverage, {"window": 4}),
    (DCRemoval, {"method": "ema", "cutoff": 1.0}),
    (Detrend, {"type": "linear"}),
    (Gain, {"gain": 2.0}),
    (Passthrough, {}),
    (SelectChannels, {"channels": ["b"]}),
    (DropChannels, {"channels": ["a"]}),
    (ReorderChannels, {"order": ["b", "a"]}),
    (RenameChannels, {"mapping": {"a": "Fz"}}),
    (ChannelMath, {"operation": "common_average"}),
    (RMS, {"window": 5}),
    (Envelope, {"method": "rectify"}),
    (Envelope, {"method": "hilbert"}),
    (ZScore, {"alpha": 0.1}),
]


@pytest.mark.parametrize("node_type,cfg", SAME_SAMPLES,
                         ids=[f"{t.__name__}-{i}" for i, (t, _) in enumerate(SAME_SAMPLES)])
def test_filters_and_channel_nodes_keep_events_on_the_same_samples(node_type, cfg):
    frames = tagged([37, 50, 13], 9, channels=("a", "b"), offset=4)
    outs, m = feed(node_type, cfg, frames)
    assert len(outs) == len(frames)
    for f, o in zip(frames, outs):
        assert o.events == f.events and o.n_samples == f.n_samples
        assert all(a is b for a, b in zip(o.events, f.events))  # the same events, carried
    assert m.event_fates["carried"] == m.events_received == 11


# -- Merge --------------------------------------------------------------------------------------
def test_merge_joins_the_events_of_the_frames_it_merges_and_drops_the_unmatched():
    a = [DataFrame(i * 10_000, i, {"x": np.zeros(10)}, META,
                   [Event(i * 10_000 + 2000, "a", sample=2)]) for i in range(4)]
    b = [DataFrame(i * 10_000, i, {"y": np.zeros(10)}, META,
                   [Event(i * 10_000 + 7000, "b", sample=7)] * (i % 2)) for i in (0, 1, 3)]
    frames = [a[0], b[0], a[1], b[1], a[2], a[3], b[2]]
    outs, m = feed(Merge, {}, frames, inputs=("A", "B"), sources=list("ABABAAB"))
    assert [f.sequence_id for f in outs] == [0, 1, 3]
    assert [[(e.label, e.sample) for e in f.events] for f in outs] == \
        [[("a", 2)], [("a", 2), ("b", 7)], [("a", 2), ("b", 7)]]
    assert m.event_fates["carried"] == 5 and m.event_fates["dropped"] == 1  # a[2] unmatched


def test_merge_of_unequal_lengths_settles_events_past_the_merged_frame_out_of_range():
    f1 = DataFrame(0, 0, {"x": np.zeros(4)}, META, [Event(0, "p", sample=3)])
    f2 = DataFrame(0, 0, {"y": np.zeros(8)}, META, [Event(0, "q", sample=6)])
    outs, m = feed(Merge, {}, [f1, f2], inputs=("A", "B"), sources=["A", "B"])
    assert [e.label for e in outs[0].events] == ["p"]
    assert m.event_fates["out_of_range"] == 1


def test_merge_still_queued_at_stop_drops_events():
    f1 = DataFrame(0, 0, {"x": np.zeros(4)}, META, [Event(0, "p", sample=3)])
    outs, m = feed(Merge, {}, [f1], inputs=("A", "B"), sources=["A"])
    assert outs == [] and m.event_fates["dropped"] == 1


# -- PeakDetector -------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_peak_detector_emits_each_peak_as_an_event_too(data):
    fs = 100.0
    x = np.zeros(1000)
    peaks = list(range(37, 1000, 83))
    x[peaks] = 1.0 + np.arange(len(peaks)) / 10
    sizes = cut(1000, data)
    frames, g0 = [], 0
    for i, n in enumerate(sizes):
        frames.append(DataFrame(t_of(g0, fs), i, {"ecg": x[g0:g0 + n]}, {"sample_rate": "100.0"}))
        g0 += n
    outs, m = feed(PeakDetector, {"height": 0.5, "refractory": 0.2, "label": "R"}, frames)
    evs = [e for f in outs for e in f.events]
    assert len(evs) == len(peaks)  # the last is reported once 0.2 s passed: 950 + 20 < 1000
    assert [e.time for e in evs] == [t_of(p, fs) for p in peaks]
    assert [e.value for e in evs] == [float(x[p]) for p in peaks]
    assert {e.label for e in evs} == {"R"}
    for f in outs:  # each event is positioned on its own time in the event frame
        assert [f.payload["ecg"][e.sample] for e in f.events] == [float(e.time) for e in f.events]
    assert m.events_emitted == len(peaks) and m.events_received == 0


# -- the ledger in debug mode, through a pipeline -----------------------------------------------
class _Tag(ProcessingNode):
    """Test node: an event on every ``every``-th global sample, at its sample and time."""

    class Config(NodeConfig):
        every: int = 25

    def on_create(self, config):
        self.config, self._g = config, 0

    def process(self, frame):
        n, g0 = frame.n_samples, self._g
        self._g += n
        fs = float(frame.metadata["sample_rate"])
        first = -(-g0 // self.config.every) * self.config.every
        return frame.with_events([Event(frame.timestamp + round((g - g0) * 1e6 / fs), "t",
                                        sample=g - g0)
                                  for g in range(first, g0 + n, self.config.every)])


@pytest.fixture
def tag_node():
    register_node(_Tag, name="TestTagEvery")
    yield
    unregister_node("TestTagEvery")


@pytest.mark.parametrize("middle", [
    [{"type": "Decimate", "config": {"q": 3}}],
    [{"type": "Resample", "config": {"up": 5, "down": 7}}],
    [{"type": "Window", "config": {"size": 50, "hop": 20}}],
    [{"type": "Spectrogram", "config": {"nperseg": 64, "noverlap": 32}}],
    [{"type": "Resample", "config": {"up": 2, "down": 3}}, {"type": "IIRFilter", "config": {
        "btype": "lowpass", "cutoff": 20.0, "order": 2}}, {"type": "WelchPSD",
                                                           "config": {"nperseg": 32}}],
], ids=["decimate", "resample", "window", "spectrogram", "chain"])
@pytest.mark.parametrize("fusion", [True, False])
def test_event_ledger_balances_in_debug_mode(tag_node, middle, fusion):
    sine = {"frequency": 5.0, "sample_rate": 250.0, "samples_per_frame": 37, "channels": ["a"]}
    nodes = [{"id": "src", "type": "SineGenerator", "config": sine},
             {"id": "tag", "type": "TestTagEvery", "config": {"every": 25}},
             *[{"id": f"m{i}", **n} for i, n in enumerate(middle)],
             {"id": "sink", "type": "Passthrough"}]
    ids = [n["id"] for n in nodes]
    pipe = AsyncPipeline({"pipeline_config": {"debug": True, "fusion": fusion}, "nodes": nodes,
                          "connections": [{"from": a, "to": b} for a, b in zip(ids, ids[1:])]})
    report = asyncio.run(pipe.run(triggers=40))  # debug: raises on any ledger imbalance
    tagged_n = report.nodes["tag"].events_emitted
    assert tagged_n == len(range(0, 40 * 37, 25))
    first = report.nodes["m0"]
    assert first.events_received == tagged_n
    assert sum(first.event_fates.values()) == tagged_n
    assert first.event_fates["dropped"] == 0
    if middle[0]["type"] in ("Decimate", "Resample"):
        pos = [k for k, _ in global_positions(pipe.results["sink"])] if len(middle) == 1 else None
        if pos is not None:
            up, down = (1, 3) if middle[0]["type"] == "Decimate" else (5, 7)
            want, n_out = predicted(list(range(0, 40 * 37, 25)), 40 * 37, up, down)
            assert pos == [k for k in want if k < n_out]
