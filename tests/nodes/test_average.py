"""Average: running mean and standard error per label (equal to numpy over the epochs so far);
EvokedPlot: a PNG of the averages with the SE band and the event at t = 0."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlab import AsyncPipeline
from streamlab.errors import NodeError
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.nodes.epochs import Average, Epoch, EvokedPlot
from streamlab.testing import run_node
from tests.conftest import run
from tests.event_nodes import event_nodes  # noqa: F401 - fixture


def epoch(label: str, data: np.ndarray, seq: int = 0) -> DataFrame:
    meta = {"event_label": label, "sample_rate": "100.0", "tmin": "-0.1"}
    return DataFrame(seq * 1000, seq, {f"c{i}": row for i, row in enumerate(data)}, meta,
                     [Event(seq * 1000 + 100_000, label, sample=min(10, data.shape[1] - 1))])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 10_000)), min_size=1,
                max_size=20))
def test_running_mean_and_sem_equal_numpy(items):
    frames, seen = [], {}
    for k, (label, seed) in enumerate(items):
        data = np.random.default_rng(seed).normal(5.0, 2.0, (2, 21)) * 1e-6
        frames.append(epoch(label, data, k))
        seen.setdefault(label, []).append(data)
    outs = run_node(Average, {}, frames)
    assert len(outs) == len(frames)
    counts: dict[str, int] = {}
    for f, o in zip(frames, outs, strict=True):
        label = f.metadata["event_label"]
        counts[label] = counts.get(label, 0) + 1
        upto = np.stack(seen[label][:counts[label]])
        assert o.metadata["label"] == label and o.metadata["count"] == str(counts[label])
        assert o.channels == ("c0", "c1", "c0_sem", "c1_sem")
        np.testing.assert_allclose(o.block()[:2], upto.mean(axis=0), rtol=0, atol=1e-15)
        sem = o.block()[2:]
        if counts[label] == 1:
            assert np.isnan(sem).all()
        else:
            want = upto.std(axis=0, ddof=1) / np.sqrt(counts[label])
            np.testing.assert_allclose(sem, want, rtol=1e-9, atol=1e-18)
        assert o.events is f.events and o.timestamp == f.timestamp  # carried, same objects
        assert (o.metadata["sample_rate"], o.metadata["tmin"]) == ("100.0", "-0.1")


def test_means_only_and_bad_input():
    out = run_node(Average, {"sem_suffix": None}, [epoch("a", np.ones((2, 5)))])
    assert out[0].channels == ("c0", "c1")
    with pytest.raises(NodeError, match="not an epoch"):
        run_node(Average, {}, [DataFrame(0, 0, {"x": [1.0]})])
    with pytest.raises(NodeError, match=r"label 'a' has channels \['c0'\] x 5"):
        run_node(Average, {}, [epoch("a", np.ones((2, 5))), epoch("a", np.ones((1, 5)))])


def test_evoked_plot_draws_the_averages(tmp_path):
    """Epoch -> Average -> EvokedPlot on a synthetic evoked response: a PNG is written."""
    fs, n = 100.0, 3000
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1.0, (2, n))
    samples = np.arange(100, n - 100, 70)
    labels = ["target" if i % 3 == 0 else "standard" for i in range(len(samples))]
    t = np.arange(-10, 41) / fs
    for s, lab in zip(samples, labels, strict=True):  # a P300-like bump for targets
        amp = 4.0 if lab == "target" else 1.0
        x[:, s - 10:s + 41] += amp * np.exp(-((t - 0.3) / 0.06) ** 2) * np.array([[1.0], [0.5]])
    frames, start = [], 0
    while start < n:
        m = min(64, n - start)
        evs = [Event(round((s) * 1e4), lab, sample=int(s - start))
               for s, lab in zip(samples, labels, strict=True) if start <= s < start + m]
        frames.append(DataFrame(round(start * 1e4), len(frames),
                                {"Pz": x[0, start:start + m], "Cz": x[1, start:start + m]},
                                {"sample_rate": "100.0"}, evs))
        start += m
    eps = run_node(Epoch, {"tmin": -0.1, "tmax": 0.6, "baseline": [None, 0]}, frames)
    avgs = run_node(Average, {}, eps)
    path = tmp_path / "evoked.png"
    assert run_node(EvokedPlot, {"path": str(path), "units": "µV"}, avgs) == []
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    last = {o.metadata["label"]: o for o in avgs}
    assert last["target"].metadata["count"] == str(labels.count("target"))
    peak = np.argmax(last["target"].payload["Pz"])
    assert abs((peak - 10) / fs - 0.3) < 0.03  # the bump 0.3 s after the event


def test_evoked_plot_takes_the_events_without_a_warning_and_the_ledger_balances(
        tmp_path, caplog, event_nodes):  # noqa: F811
    """Average frames carry their event (t = 0): the plot settles it 'carried', and prints no
    FileSink "cannot store events" warning (every oddball run printed one)."""
    meta = {"event_label": "a", "sample_rate": "10", "tmin": "-0.1"}
    eps = [DataFrame(1000 * i, i, {"x": [0.0, float(i), 0.5]}, meta,
                     [Event(1000 * i + 100_000, "a", sample=1)]) for i in range(3)]
    avgs = run_node(Average, {}, eps)
    path = tmp_path / "evoked.png"
    with caplog.at_level(logging.DEBUG):
        assert run_node(EvokedPlot, {"path": str(path)}, avgs) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert path.read_bytes()[:4] == b"\x89PNG"
    # in a pipeline: debug mode checks events received == sum of fates, per node
    cfg = {"pipeline_config": {"debug": True},
           "nodes": [{"id": "sine", "type": "SineGenerator",
                      "config": {"frequency": 3.0, "sample_rate": 100.0,
                                 "samples_per_frame": 10}},
                     {"id": "mark", "type": "TestMark", "config": {"every": 3}},
                     {"id": "ep", "type": "Epoch", "config": {"tmin": -0.1, "tmax": 0.2}},
                     {"id": "avg", "type": "Average"},
                     {"id": "plot", "type": "EvokedPlot", "config": {"path": str(path)}}],
           "connections": [{"from": "sine", "to": "mark"}, {"from": "mark", "to": "ep"},
                           {"from": "ep", "to": "avg"}, {"from": "avg", "to": "plot"}]}
    pipe = AsyncPipeline(cfg)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        report = run(pipe.run(triggers=20))
    assert "cannot store events" not in caplog.text
    plot = report.nodes["plot"]
    assert plot.events_received == report.nodes["avg"].event_fates["carried"]
    assert plot.events_received >= 4
    assert plot.event_fates["carried"] == plot.events_received == sum(plot.event_fates.values())
