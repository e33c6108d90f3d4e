"""Epoch: the same epochs as ``mne.Epochs`` (kept, rejected, dropped at the edges, samples),
fed in frames of any size; gaps, fates and reasons; bad configs name their JSON path."""

from __future__ import annotations

import doctest
import itertools
import logging
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamlab.nodes.epochs as epochs_module
from streamlab import AsyncPipeline, load_config
from streamlab.errors import ConfigError, NodeError
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import NodeContext
from streamlab.nodes.epochs import Epoch
from tests.conftest import run

mne = pytest.importorskip("mne")
logging.getLogger("mne").setLevel(logging.ERROR)

T0 = 1_000_000  # µs: timestamp of the stream's first sample
EVENT_ID = {"a": 1, "b": 2}  # label "c" (3) is asked for by neither side: IGNORED / unmatched
IDS = {"a": 1, "b": 2, "c": 3}


def test_doctests():
    assert doctest.testmod(epochs_module).failed == 0


# -- helpers -----------------------------------------------------------------------------------
def frames_of(data: np.ndarray, fs: float, samples: list[int], labels: list[str],
              sizes: list[int], names: tuple[str, ...] | None = None) -> list[DataFrame]:
    """The continuous ``data`` cut into frames of ``sizes`` (cycled), each event on its frame."""
    names = names or tuple(f"c{i}" for i in range(data.shape[0]))
    out, start, k = [], 0, 0
    sizes_it = itertools.cycle(sizes)
    order = sorted(range(len(samples)), key=lambda i: samples[i])
    while start < data.shape[1]:
        n = min(next(sizes_it), data.shape[1] - start)
        evs = []
        while k < len(order) and samples[order[k]] < start + n:
            s = samples[order[k]]
            evs.append(Event(T0 + round(s * 1e6 / fs), labels[order[k]], sample=s - start))
            k += 1
        out.append(DataFrame(T0 + round(start * 1e6 / fs), len(out),
                             {nm: data[i, start:start + n] for i, nm in enumerate(names)},
                             {"sample_rate": repr(fs)}, evs))
        start += n
    return out


class Run:
    """An Epoch node fed directly: its outputs, statistics and settled event fates."""

    def __init__(self, config: dict, frames: list[DataFrame]) -> None:
        self.fates: dict[str, int] = {}
        ctx = NodeContext(node_id="ep")
        node = Epoch.create(config, ctx)
        ctx.settle_events = self._settle  # type: ignore[method-assign]
        self.outs: list[DataFrame] = []
        for f in frames:
            self.outs += node.process(f)
        node.on_stop()
        self.stats = node.statistics()

    def _settle(self, fate: str, n: int = 1) -> None:
        self.fates[fate] = self.fates.get(fate, 0) + n

    @property
    def kept(self) -> list[int]:
        return [int(o.metadata["event_index"]) for o in self.outs]

    def dropped(self, reason: str) -> list[int]:
        return sorted(i for i, _, r, _ in self.stats.drop_log if r == reason)


def mne_epochs(data, fs, samples, labels, *, tmin, tmax, baseline=(None, 0), reject=None,
               flat=None, detrend=None, ch_types="eeg"):
    names = [f"c{i}" for i in range(data.shape[0])]
    raw = mne.io.RawArray(data, mne.create_info(names, fs, ch_types), verbose=False)
    order = np.argsort(samples, kind="stable")
    events = np.array([[samples[i], 0, IDS[labels[i]]] for i in order], dtype=int).reshape(-1, 3)
    present = {k: v for k, v in EVENT_ID.items() if v in events[:, 2]}
    with warnings.catch_warnings():  # MNE's own: detrending its TOO_SHORT epochs, all dropped
        warnings.simplefilter("ignore")
        return mne.Epochs(raw, events, present, tmin, tmax, baseline=baseline, reject=reject,
                          flat=flat, detrend=detrend, preload=True, reject_by_annotation=False,
                          proj=False, verbose=False)


def assert_same(ours: Run, ep, n_events: int) -> None:
    """Same kept epochs (indices, samples within 1e-9), same rejections, same edge drops."""
    assert ours.kept == list(ep.selection)
    got = np.stack([o.block() for o in ours.outs]) if ours.outs else np.empty((0,) + ep.get_data().shape[1:])
    np.testing.assert_allclose(got, ep.get_data(), rtol=0, atol=1e-9)
    log = ep.drop_log
    assert len(log) == n_events
    mne_rej = sorted(i for i, r in enumerate(log) if r and r[0] not in ("IGNORED", "NO_DATA",
                                                                      "TOO_SHORT"))
    ours_rej = sorted(ours.dropped("reject") + ours.dropped("flat"))
    assert ours_rej == mne_rej
    assert ours.dropped("start") == [i for i, r in enumerate(log) if r == ("NO_DATA",)]
    assert ours.dropped("end") == [i for i, r in enumerate(log) if r == ("TOO_SHORT",)]
    assert ours.stats.unmatched == sum(r == ("IGNORED",) for r in log)
    for o in ours.outs:  # the event sits on the zero sample, the timestamp on the first one
        assert o.events[0].time == int(o.metadata["event_time"])
        assert o.events[0].label == o.metadata["event_label"]
    fates = ours.fates
    assert sum(fates.values()) == n_events
    assert fates.get("epoched", 0) == len(ours.outs)
    assert fates.get("rejected", 0) == len(ours_rej)


def signal(n_ch: int, n: int, seed: int, scale: float = 1e-5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    drift = np.linspace(0, 3, n) * rng.uniform(-1, 1, (n_ch, 1))
    return scale * (rng.standard_normal((n_ch, n)) + np.sin(t / 7.0) + drift)


# -- equality with mne.Epochs ------------------------------------------------------------------
@pytest.mark.parametrize("fs", [100.0, 256.0, 1000.0 / 3])
@pytest.mark.parametrize("baseline,detrend", [((None, 0), None), (None, 1), ((-0.1, 0.05), 0),
                                              ((None, None), 1), ((0.0, 0.0), None)])
def test_equals_mne_epochs_with_edges_and_overlap(fs, baseline, detrend):
    data = signal(3, 600, seed=int(fs))
    # events at the very start and end (dropped), close together (overlapping epochs)
    samples = [0, 5, 20, 21, 60, 90, 300, 310, 320, 560, 590, 599]
    labels = ["a", "b", "a", "c", "b", "a", "a", "b", "c", "a", "b", "a"]
    tmin, tmax = -0.2, 0.5
    ours = Run({"tmin": tmin, "tmax": tmax, "baseline": baseline, "detrend": detrend,
                "labels": ["a", "b"]}, frames_of(data, fs, samples, labels, [17, 1, 64]))
    ep = mne_epochs(data, fs, samples, labels, tmin=tmin, tmax=tmax, baseline=baseline,
                    detrend=detrend)
    assert_same(ours, ep, len(samples))
    assert ours.dropped("start") and ours.dropped("end") and len(ours.outs) >= 3


def test_reject_and_flat_equal_mne():
    fs, n = 200.0, 2000
    data = signal(2, n, seed=3)
    samples = list(range(50, 1950, 60))
    labels = ["a" if i % 2 else "b" for i in range(len(samples))]
    data[0, 400:405] += 2e-4   # an artefact: epochs covering it are rejected on c0
    data[1, 1200:1400] = 3e-6  # flat stretch on c1
    cfg = dict(tmin=-0.1, tmax=0.3, baseline=(None, 0))
    ours = Run({**cfg, "reject": 1.2e-4, "flat": 1e-6, "labels": ["a", "b"]},
               frames_of(data, fs, samples, labels, [33]))
    ep = mne_epochs(data, fs, samples, labels, **cfg, reject={"eeg": 1.2e-4},
                    flat={"eeg": 1e-6})
    assert_same(ours, ep, len(samples))
    assert ours.stats.rejected["reject"] > 0 and ours.stats.rejected["flat"] > 0
    assert ours.stats.rejected_channels == {"c0": ours.stats.rejected["reject"],
                                            "c1": ours.stats.rejected["flat"]}
    # per-channel thresholds: MNE has them per channel type, so c0 is 'eeg' and c1 'eog'
    ours = Run({**cfg, "reject": {"c0": 1.2e-4}, "flat": {"c1": 1e-6}},
               frames_of(data, fs, samples, labels, [33]))
    ep = mne_epochs(data, fs, samples, labels, **cfg, reject={"eeg": 1.2e-4},
                    flat={"eog": 1e-6}, ch_types=["eeg", "eog"])
    assert_same(ours, ep, len(samples))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(40, 400),
    fs=st.sampled_from([50.0, 128.0, 250.0, 1000.0 / 7]),
    tmin=st.floats(-0.6, 0.1), span=st.floats(0.01, 0.8),
    events=st.lists(st.tuples(st.floats(0, 1), st.sampled_from("abc")), max_size=12),
    sizes=st.lists(st.integers(1, 90), min_size=1, max_size=5),
    detrend=st.sampled_from([None, 0, 1]), use_baseline=st.booleans(),
    reject=st.sampled_from([None, 3e-5, 6e-5]), seed=st.integers(0, 1000),
)
def test_random_layouts_equal_mne(n, fs, tmin, span, events, sizes, detrend, use_baseline,
                                  reject, seed):
    tmax = tmin + span
    samples = sorted({int(f * (n - 1)) for f, _ in events})
    if detrend == 1:  # mne 1.13 crashes detrending an epoch that starts after the data ends
        samples = [s for s in samples if s + round(tmin * fs) < n]
    label_of = {int(f * (n - 1)): lab for f, lab in events}
    labels = [label_of[s] for s in samples]
    baseline = (None, None) if use_baseline else None
    data = signal(2, n, seed)
    ours = Run({"tmin": tmin, "tmax": tmax, "baseline": baseline, "detrend": detrend,
                "reject": reject, "labels": ["a", "b"]}, frames_of(data, fs, samples, labels, sizes))
    if not samples or not {"a", "b"} & set(labels):
        assert ours.outs == [] and ours.stats.unmatched == len(samples)
        return
    ep = mne_epochs(data, fs, samples, labels, tmin=tmin, tmax=tmax, baseline=baseline,
                    detrend=detrend, reject=None if reject is None else {"eeg": reject})
    assert_same(ours, ep, len(samples))
    # the buffer holds no more than an epoch (or |tmin|) plus one frame
    i0, i1 = round(tmin * fs), round(tmax * fs)
    assert ours.stats.buffered_samples <= max(i1 - i0 + 1, -i0) + max(sizes)


# -- our own behaviour -------------------------------------------------------------------------
def test_epoch_timestamp_metadata_and_event_position():
    fs = 100.0
    data = signal(2, 300, 1)
    out = Run({"tmin": -0.1, "tmax": 0.2}, frames_of(data, fs, [150], ["x"], [7])).outs
    [o] = out
    assert o.timestamp == T0 + 1_400_000 and o.n_samples == 31 and o.channels == ("c0", "c1")
    assert dict(o.metadata) == {"event_label": "x", "event_time": str(T0 + 1_500_000),
                                "event_index": "0", "sample_rate": "100.0", "tmin": "-0.1"}
    assert o.events == (Event(T0 + 1_500_000, "x", sample=10),)


def test_picks_order_and_label_pattern():
    data = signal(3, 200, 2)
    frames = frames_of(data, 100.0, [50, 100, 150], ["stim/1", "resp", "stim/2"], [40])
    r = Run({"tmin": -0.1, "tmax": 0.1, "picks": ["c2", "c0"], "label_pattern": r"stim/\d",
             "baseline": None}, frames)
    assert r.kept == [0, 2] and r.stats.unmatched == 1 and r.fates["unmatched"] == 1
    np.testing.assert_array_equal(r.outs[0].block(), data[[2, 0], 40:61])


def test_gap_ends_the_epochs_it_cuts():
    fs = 100.0
    data = signal(1, 400, 5)
    frames = frames_of(data, fs, [100, 190, 205, 260, 350], ["a"] * 5, [50])
    # 1 s of missing data after sample 200: later frames are shifted
    frames = [f if i < 4 else f.replace(timestamp=f.timestamp + 1_000_000)
              for i, f in enumerate(frames)]
    r = Run({"tmin": -0.1, "tmax": 0.2, "baseline": None}, frames)
    # 100: complete before the gap; 190: cut by the gap; 205: its pre-stimulus data is
    # before the gap; 260 and 350: whole within the second segment
    assert r.kept == [0, 3, 4]
    assert r.dropped("gap") == [1, 2] and r.stats.out_of_range["gap"] == 2
    assert r.fates == {"epoched": 3, "out_of_range": 2}
    np.testing.assert_array_equal(r.outs[1].block()[0], data[0, 250:281])
    assert r.outs[1].timestamp == frames[5].timestamp  # sample 250 starts frame 5
    # small timestamp jitter (< half a sample) is not a gap
    jitter = [f.replace(timestamp=f.timestamp + (2_000 if i % 2 else -2_000))
              for i, f in enumerate(frames_of(data, fs, [100, 200], ["a"] * 2, [50]))]
    assert Run({"tmin": -0.1, "tmax": 0.2}, jitter).kept == [0, 1]


def test_events_on_frames_without_samples_are_out_of_range():
    marker = DataFrame(T0, 0, {}, {"stream": "markers"}, [Event(T0, "a")])
    data = frames_of(signal(1, 100, 0), 100.0, [50], ["a"], [100])
    r = Run({"tmin": -0.1, "tmax": 0.1}, [marker, *data])
    assert r.stats.out_of_range["no_samples"] == 1 and r.kept == [1]


def test_channel_change_mid_stream_is_an_error():
    fr = frames_of(signal(2, 100, 0), 100.0, [], [], [50])
    with pytest.raises(NodeError, match="channels"):
        Run({}, [fr[0], fr[1].without_channels("c1")])


# -- bad configs: JSON paths -------------------------------------------------------------------
def _config(cfg: dict) -> dict:
    return {"nodes": [{"id": "src", "type": "SineGenerator",
                       "config": {"frequency": 5.0, "sample_rate": 100.0,
                                  "samples_per_frame": 10}},
                      {"id": "ep", "type": "Epoch", "config": cfg}],
            "connections": [{"from": "src", "to": "ep"}]}


@pytest.mark.parametrize("cfg,path,text", [
    ({"tmin": 0.5, "tmax": 0.1}, "$.nodes[1].config.tmax", "greater than tmin"),
    ({"tmin": 0.2, "tmax": 0.2}, "$.nodes[1].config.tmax", "greater than tmin"),
    ({"tmin": -0.2, "tmax": 0.5, "baseline": [-0.5, 0]}, "$.nodes[1].config.baseline",
     "outside the epoch"),
    ({"tmin": -0.2, "tmax": 0.5, "baseline": [0.1, 0.6]}, "$.nodes[1].config.baseline",
     "outside the epoch"),
    ({"tmin": -0.2, "tmax": 0.5, "baseline": [0.1, 0.0]}, "$.nodes[1].config.baseline",
     "not be after"),
    ({"tmin": 0.1, "tmax": 0.5}, "$.nodes[1].config.baseline", "outside the epoch"),
    ({"labels": ["a"], "label_pattern": "b"}, "$.nodes[1].config.label_pattern", "either"),
    ({"label_pattern": "("}, "$.nodes[1].config.label_pattern", "regular expression"),
    ({"reject": -1}, "$.nodes[1].config.reject", ">= 0"),
    ({"detrend": 2}, "$.nodes[1].config.detrend", ""),
    ({"picks": ["a", "a"]}, "$.nodes[1].config.picks", "unique"),
])
def test_bad_config_names_its_json_path(cfg, path, text):
    with pytest.raises(ConfigError) as info:
        load_config(_config(cfg))
    lines = str(info.value).splitlines()
    assert any(path in line and text in line for line in lines), lines


def test_unknown_pick_or_reject_channel_names_its_config_path():
    fr = frames_of(signal(2, 100, 0), 100.0, [], [], [50])
    with pytest.raises(NodeError, match=r"config\.picks\[1\]: 'Cz' is not a channel.*c0"):
        Run({"picks": ["c0", "Cz"]}, fr)
    with pytest.raises(NodeError, match=r"config\.reject\.Cz: not a picked channel"):
        Run({"reject": {"Cz": 1.0}}, fr)
    with pytest.raises(NodeError, match="needs a sample rate"):
        Run({}, [fr[0].replace(metadata={})])


# -- through a pipeline: the event ledger balances ---------------------------------------------
@pytest.mark.parametrize("fusion", [True, False])
def test_pipeline_ledger_balances_in_debug_mode(frames_source, fusion):
    data = signal(2, 500, 9)
    samples = [2, 50, 120, 121, 300, 480, 495]
    frames_source.extend(frames_of(data, 100.0, samples, list("abcabab"), [23]))
    cfg = {"pipeline_config": {"debug": True, "fusion": fusion},
           "nodes": [{"id": "src", "type": "TestFrames"},
                     {"id": "ep", "type": "Epoch", "config": {"tmin": -0.1, "tmax": 0.3,
                                                              "labels": ["a", "b"],
                                                              "reject": 1.0}},
                     {"id": "avg", "type": "Average"}],
           "connections": [{"from": "src", "to": "ep"}, {"from": "ep", "to": "avg"}]}
    pipe = AsyncPipeline(cfg)
    report = run(pipe.run(triggers=len(frames_source) + 2))
    ep = report.nodes["ep"]
    assert ep.events_received == 7
    assert (ep.event_fates["epoched"], ep.event_fates["unmatched"],
            ep.event_fates["out_of_range"]) == (3, 1, 3)
    assert ep.events_emitted == 3
    avg = report.nodes["avg"]
    assert avg.events_received == 3 and avg.event_fates["carried"] == 3
    assert [o.metadata["count"] for o in pipe.results["avg"]] == ["1", "1", "2"]
