"""Decoder: a streamed calibrate-then-decode session equals scikit-learn offline on mne.Epochs;
a simulated motor-imagery session decodes above the accuracy its effect size predicts, a session
without an effect at chance; fates and the event ledger balance; bad input is reported."""

from __future__ import annotations

import doctest
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from examples.decode_mi import CHANNELS, RATE, TMAX, TMIN, simulate, write_session

import streamlab.nodes.decode as decode_module
from streamlab import AsyncPipeline, load_config
from streamlab.errors import ConfigError, PipelineError
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.nodes.decode import Decoder
from tests.conftest import run

pytest.importorskip("sklearn")
pytest.importorskip("pyriemann")
pytest.importorskip("skops")
mne = pytest.importorskip("mne")
logging.getLogger("mne").setLevel(logging.ERROR)
mne.set_log_level("ERROR")

TS_STEPS = [["Covariances", {"estimator": "oas"}], ["TangentSpace", {}],
            ["LogisticRegression", {"C": 1.0}]]
CSP_STEPS = [["CSP", {"n_components": 2}], ["LDA", {}]]


def test_doctests():
    assert doctest.testmod(decode_module).failed == 0


# -- helpers -----------------------------------------------------------------------------------
def session_config(folder: Path, steps, decoder: dict | None = None, *, debug: bool = True,
                   extra_nodes=(), chain: str = "epochs") -> dict:
    """FileSource + EventsFileSource -> Attach -> Epoch -> Decoder, timestamps from 0."""
    nodes = [
        {"id": "eeg", "type": "FileSource",
         "config": {"path": str(folder / "eeg.npy"), "samples_per_frame": 10,
                    "sample_rate": RATE, "channels": CHANNELS, "start_timestamp": 0}},
        {"id": "cues", "type": "EventsFileSource",
         "config": {"path": str(folder / "events.tsv"), "start_us": 0}},
        {"id": "attach", "type": "Attach",
         "config": {"data": "eeg", "markers": "cues", "max_marker_delay_s": 30.0}},
        {"id": "epochs", "type": "Epoch",
         "config": {"tmin": TMIN, "tmax": TMAX, "baseline": None,
                    "labels": ["left", "right", "calibration_end"]}},
        *extra_nodes,
        {"id": "dec", "type": "Decoder",
         "config": {"pipeline": {"steps": steps}, "classes": ["left", "right"],
                    "while_fitting": "wait", **(decoder or {})}},
    ]
    conns = [{"from": "eeg", "to": "attach"}, {"from": "cues", "to": "attach"},
             {"from": "attach", "to": "epochs"}]
    prev = "epochs"
    for n in extra_nodes:
        conns.append({"from": prev, "to": n["id"]})
        prev = n["id"]
    conns.append({"from": prev, "to": "dec"})
    return {"pipeline_config": {"debug": debug}, "nodes": nodes, "connections": conns}


def stream(cfg: dict):
    pipe = AsyncPipeline(load_config(cfg))
    report = run(pipe.run())
    assert report.state == "completed", report.error
    return pipe.results["dec"], report


def offline(x: np.ndarray, cues, steps):
    """mne.Epochs of the same continuous data, the same pipeline fitted on the calibration
    epochs with scikit-learn: (labels, probabilities, fitted pipeline, test labels)."""
    from streamlab.learn import EstimatorPipeline

    raw = mne.io.RawArray(x.T, mne.create_info(CHANNELS, RATE, "eeg"), verbose=False)
    end = next(s for s, lab in cues if lab == "calibration_end")
    trials = [(s, lab) for s, lab in cues if lab in ("left", "right")]
    events = np.array([[s, 0, 1 if lab == "left" else 2] for s, lab in trials])
    ep = mne.Epochs(raw, events, {"left": 1, "right": 2}, TMIN, TMAX, baseline=None,
                    preload=True, verbose=False)
    assert len(ep) == len(trials)
    X = ep.get_data(copy=True)
    y = np.array([lab for _, lab in trials])
    cal = np.array([s < end for s, _ in trials])
    pipe = EstimatorPipeline(steps=steps).build().fit(X[cal], y[cal])
    return pipe.predict(X[~cal]), pipe.predict_proba(X[~cal]), pipe, y[~cal], X[cal], y[cal]


# -- equal to offline --------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [TS_STEPS, CSP_STEPS], ids=["tangent-space", "csp"])
def test_stream_equals_offline_sklearn_on_mne_epochs(tmp_path, steps):
    x, cues = simulate(20, 15, erd=0.3, seed=3)
    write_session(tmp_path, x, cues)
    outs, report = stream(session_config(tmp_path, steps, {"cv_folds": 3}))
    labels, proba, pipe, truth, _, _ = offline(x, cues, steps)
    assert [f.metadata["predicted_label"] for f in outs] == labels.tolist()
    assert [f.metadata["true_label"] for f in outs] == truth.tolist()
    ours = np.array([[f.payload["p_left"][0], f.payload["p_right"][0]] for f in outs])
    np.testing.assert_allclose(ours, proba, rtol=0, atol=1e-9)
    # the prediction event carries the label, at the epoch's last sample
    for f in outs:
        [pred] = [e for e in f.events if e.label in ("left", "right") and e.value is not None
                  and e.time == f.timestamp and e.value <= 1.0 and e.label ==
                  f.metadata["predicted_label"]][-1:]
        assert pred.sample == 0
    dec = report.nodes["dec"]
    assert dec.events_received == 71 and dec.events_emitted == 60  # 30 carried + 30 new
    assert dec.event_fates["epoched"] == 41 and dec.event_fates["carried"] == 30


def test_csp_filters_equal_mne_csp_up_to_sign(tmp_path):
    from mne.decoding import CSP

    x, cues = simulate(20, 5, erd=0.3, seed=5)
    write_session(tmp_path, x, cues)
    model_path = tmp_path / "m.skops"
    stream(session_config(tmp_path, CSP_STEPS, {"cv_folds": 0, "save_path": str(model_path)}))
    from streamlab.learn import load_model

    ours = load_model(model_path).pipeline.steps[0][1].filters_
    *_, X, y = offline(x, cues, CSP_STEPS)
    ref = CSP(n_components=2).fit(X, y).filters_
    signs = np.sign(np.sum(ours * ref, axis=1, keepdims=True))
    np.testing.assert_allclose(ours * signs, ref, rtol=0, atol=1e-8)


def test_tangent_space_features_equal_pyriemann(tmp_path):
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace

    x, cues = simulate(15, 5, erd=0.3, seed=6)
    write_session(tmp_path, x, cues)
    model_path = tmp_path / "m.skops"
    stream(session_config(tmp_path, TS_STEPS, {"cv_folds": 0, "save_path": str(model_path)}))
    from streamlab.learn import load_model

    pipe = load_model(model_path).pipeline
    *_, X, y = offline(x, cues, TS_STEPS)
    ref = TangentSpace().fit_transform(Covariances("oas").fit_transform(X))
    ours = pipe[:-1].transform(X)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


# -- accuracy from the effect size -------------------------------------------------------------
def expected_accuracy(erd: float, n_times: int) -> float:
    """Accuracy of the optimal rule on log(var C3) - log(var C4): the classes differ by
    2 * log(1.5 / (1 + 0.5 (1 - erd)^2)) and each log-variance has sd sqrt(2 / n)."""
    sep = 2 * math.log(1.5 / (1 + 0.5 * (1 - erd) ** 2))
    sd = math.sqrt(2 * 2 / n_times)
    return 0.5 * (1 + math.erf(sep / sd / 2 / math.sqrt(2)))


def binomial_interval(n: int, p: float, alpha: float) -> tuple[float, float]:
    from scipy.stats import binom

    return binom.ppf(alpha / 2, n, p) / n, binom.isf(alpha / 2, n, p) / n


def test_motor_imagery_decodes_above_the_accuracy_its_effect_size_predicts(tmp_path):
    x, cues = simulate(40, 50, erd=0.25, seed=11)
    write_session(tmp_path, x, cues)
    outs, _ = stream(session_config(tmp_path, CSP_STEPS))
    acc = np.mean([f.metadata["predicted_label"] == f.metadata["true_label"] for f in outs])
    p = expected_accuracy(0.25, round((TMAX - TMIN) * RATE) + 1)
    assert 0.85 < p < 0.9  # about 0.87 (see examples/decode_mi.py)
    # 100 test trials: the lower end of the 99.9 % binomial interval around p, less 0.05 for
    # a rule learnt from 80 trials instead of the optimal one
    lo, _ = binomial_interval(len(outs), p, 0.001)
    assert len(outs) == 100 and acc >= lo - 0.05, (acc, p, lo)
    assert float(outs[0].metadata["cv_accuracy"]) > 0.7


def test_no_class_difference_decodes_at_chance(tmp_path):
    x, cues = simulate(40, 100, erd=0.0, seed=12)
    write_session(tmp_path, x, cues)
    outs, _ = stream(session_config(tmp_path, CSP_STEPS))
    acc = np.mean([f.metadata["predicted_label"] == f.metadata["true_label"] for f in outs])
    lo, hi = binomial_interval(len(outs), 0.5, 0.01)  # 200 trials: about [0.41, 0.59]
    assert len(outs) == 200 and lo <= acc <= hi, (acc, lo, hi)


# -- phases and fates --------------------------------------------------------------------------
def epoch(i: int, label: str | None, scale: float, rng) -> DataFrame:
    x = rng.standard_normal((2, 40)) * [[scale], [1.0]]
    meta = {"sample_rate": "100"} | ({"event_label": label} if label else {})
    evs = [Event(i * 1_000_000 + 200_000, label, sample=20)] if label else []
    return DataFrame(i * 1_000_000, i, {"a": x[0], "b": x[1]}, meta, evs)


async def fit_done(node: Decoder, timeout: float = 300.0) -> None:
    """Until the node's background fit (if any) has ended: a condition, not a sleep."""
    import asyncio

    if node._future is not None:
        await asyncio.wait({asyncio.wrap_future(node._future)}, timeout=timeout)
    assert node._future is None or node._future.done(), "the fit did not end in time"


STEPS_SMALL = {"steps": [["Covariances", {}], ["TangentSpace", {}], ["LogisticRegression", {}]]}


def test_per_class_ends_calibration_and_fit_runs_in_the_background():
    rng = np.random.default_rng(1)
    frames = [epoch(0, None, 1.0, rng)]  # before any model: no_model, not a crash
    frames += [epoch(1 + i, "hi" if i % 2 else "lo", 3.0 if i % 2 else 1.0, rng)
               for i in range(6)]
    frames += [epoch(7, "other", 1.0, rng)]  # not a class: ignored during calibration
    frames += [epoch(8 + i, "hi" if i % 2 else "lo", 3.0 if i % 2 else 1.0, rng)
               for i in range(6)]
    frames += [epoch(14, "other", 1.0, rng)] + [epoch(14 + i, None, 3.0, rng) for i in range(5)]
    node = Decoder.create({"pipeline": STEPS_SMALL, "classes": ["hi", "lo"], "per_class": 6,
                           "cv_folds": 3, "while_fitting": "hold"})

    async def go():
        outs = []
        for f in frames:
            outs += await node.process(f)
        # the fit runs in a thread: the frames above returned at once; await it (bounded)
        await fit_done(node)
        outs += await node.process(epoch(30, None, 3.0, rng))
        await node.on_stop()
        return outs

    outs = run(go())
    st = node.statistics()
    assert st.phase == "predict" and st.per_class == {"hi": 6, "lo": 6}
    # after calibration ended every epoch is predicted, whatever its label ("other" too)
    assert st.fates == {"calibrated": 12, "ignored": 1, "predicted": 7, "no_model": 1}
    assert len(outs) == 7 and len(st.cv_scores) == 3
    assert outs[0].metadata["true_label"] == "other"


def test_held_epochs_are_counted_at_stop():
    rng = np.random.default_rng(2)
    frames = [epoch(i, "hi" if i % 2 else "lo", 3.0 if i % 2 else 1.0, rng) for i in range(10)]
    frames += [DataFrame(10_000_000, 10, {}, {}, [Event(10_000_000, "calibration_end")])]
    frames += [epoch(11 + i, None, 1.0, rng) for i in range(3)]
    # hold_max 1: of the three test epochs, those arriving while the fit runs beyond the first
    # are no_model; at the stop the fit is awaited and the held one is lost too (no output
    # is possible any more). Whatever the timing, every epoch has exactly one fate.
    node = Decoder.create({"pipeline": STEPS_SMALL, "cv_folds": 0, "hold_max": 1})

    async def go():
        outs = []
        for f in frames:
            outs += await node.process(f)
        await node.on_stop()
        return outs

    outs = run(go())
    st = node.statistics()
    assert st.phase == "predict" and st.held == 0
    assert st.fates["calibrated"] == 10 and st.fates["predicted"] == len(outs)
    assert st.fates["predicted"] + st.fates["no_model"] == 3


@pytest.mark.parametrize("fit_in", ["thread", "process"])
def test_pipeline_ledger_balances_with_the_fit_in_a_thread_or_process(tmp_path, fit_in):
    x, cues = simulate(10, 5, erd=0.5, seed=4)
    write_session(tmp_path, x, cues)
    cfg = session_config(tmp_path, TS_STEPS, {"cv_folds": 2, "fit_in": fit_in})
    outs, report = stream(cfg)  # debug mode checks received == sum of fates, events included
    assert len(outs) == 10
    assert all(int(f.metadata["latency_us"]) != 0 for f in outs)


# -- persistence -------------------------------------------------------------------------------
def test_saved_model_skips_calibration_and_refuses_another_graph(tmp_path):
    x, cues = simulate(15, 10, erd=0.4, seed=8)
    write_session(tmp_path, x, cues)
    model = tmp_path / "m.skops"
    first, _ = stream(session_config(tmp_path, TS_STEPS, {"cv_folds": 3,
                                                           "save_path": str(model)}))
    # the same graph with the model: no calibration, the same predictions for the test trials
    again, report = stream(session_config(tmp_path, TS_STEPS, {"model_path": str(model)}))
    assert [f.metadata["predicted_label"] for f in again][-20:] == \
        [f.metadata["predicted_label"] for f in first]
    assert report.nodes["dec"].event_fates["carried"] == 50
    # another preprocessing before the decoder: refused with a clear message
    gain = [{"id": "gain", "type": "Gain", "config": {"gain": 2.0}}]
    cfg = session_config(tmp_path, TS_STEPS, {"model_path": str(model)}, extra_nodes=gain)
    with pytest.raises(PipelineError, match=r"fitted behind another graph .*Epoch -> Gain"):
        run(AsyncPipeline(load_config(cfg)).run())
    # another epoch window: refused too
    cfg = session_config(tmp_path, TS_STEPS, {"model_path": str(model)})
    cfg["nodes"][3]["config"]["tmax"] = 2.4
    with pytest.raises(PipelineError, match=r"configs of \['Epoch'\] differ"):
        run(AsyncPipeline(load_config(cfg)).run())
    # other estimator steps than the model's: refused, naming both
    cfg = session_config(tmp_path, CSP_STEPS, {"model_path": str(model)})
    with pytest.raises(PipelineError, match=r"was fitted with the steps .*Covariances.*"
                                            r"config.pipeline is .*CSP"):
        run(AsyncPipeline(load_config(cfg)).run())


# -- bad input through the CLI -----------------------------------------------------------------
def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "streamlab", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("steps, path, words", [
    ([["Covariance", {}], ["LDA", {}]], "$.nodes[4].config.pipeline.steps[0][0]",
     ["unknown estimator 'Covariance'", "did you mean 'Covariances'"]),
    ([["Covariances", {}], ["TangentSpace", {}], ["LogisticRegression", {"C": -1}]],
     "$.nodes[4].config.pipeline.steps[2][1].C",
     ["LogisticRegression rejects this config", "must be a float in the range (0.0, inf]"]),
    ([["Covariances", {"estimator": "nope"}], ["MDM", {}]],
     "$.nodes[4].config.pipeline.steps[0][1].estimator", ["'oas'"]),
    ([["SVC", {"kernal": "rbf"}]], "$.nodes[4].config.pipeline.steps[0][1].kernal",
     ["unknown parameter of SVC", "kernel"]),
])
def test_cli_bad_estimator_config_exits_2_naming_the_json_path(tmp_path, steps, path, words):
    x, cues = simulate(2, 1, erd=0.0)
    write_session(tmp_path, x, cues)
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps(session_config(tmp_path, steps)))
    r = cli("validate", cfg)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    line = next(x for x in r.stderr.splitlines() if path in x)
    assert all(w in line for w in words), line


def test_config_errors_in_process():
    with pytest.raises(ConfigError, match=r"per_class needs 'classes'"):
        load_config({"nodes": [{"id": "d", "type": "Decoder",
                                "config": {"pipeline": STEPS_SMALL, "per_class": 5}}]})


def test_the_example_prints_accuracy_and_latency(tmp_path):
    r = subprocess.run([sys.executable, str(Path(__file__).parents[2] / "examples" /
                                            "decode_mi.py"),
                        "--fast", "--calib", "15", "--test", "10", "--erd", "0.6", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("test trials: 20, accuracy ")
    assert float(lines[0].split("accuracy ")[1].split()[0]) >= 0.8
    assert lines[1].startswith("latency from epoch end to prediction")


def test_a_tick_after_the_fit_releases_the_held_epochs():
    from streamlab.node import NodeContext

    rng = np.random.default_rng(3)
    node = Decoder.create({"pipeline": STEPS_SMALL, "cv_folds": 0, "ticks_from": "data"},
                          NodeContext(node_id="dec", inputs=("ep", "data")))
    node.on_start()
    ctx = node.context
    tick = DataFrame(0, 0, {"a": np.zeros(4), "b": np.zeros(4)}, {"sample_rate": "100"},
                     [Event(0, "left")])

    async def go():
        ctx.current_input = "ep"
        for i in range(10):
            assert await node.process(epoch(i, "hi" if i % 2 else "lo",
                                            3.0 if i % 2 else 1.0, rng)) == []
        ctx.current_input = "data"
        end = DataFrame(10_000_000, 1, {"a": np.zeros(4), "b": np.zeros(4)},
                        {"sample_rate": "100"}, [Event(10_000_000, "calibration_end")])
        assert await node.process(end) == []  # the end marker on the data: the fit starts
        ctx.current_input = "ep"
        outs = list(await node.process(epoch(11, None, 3.0, rng)))  # held, or predicted
        ctx.current_input = "data"
        if not outs:  # held: the first tick after the fit releases it
            await fit_done(node)
            outs += await node.process(tick)  # a tick: not an epoch, its event unmatched
        await node.on_stop()
        return outs

    outs = run(go())
    assert len(outs) == 1 and outs[0].metadata["predicted_label"] == "hi"
    st = node.statistics()
    assert st.fates == {"calibrated": 10, "ignored": 0, "predicted": 1, "no_model": 0}


def test_ticks_from_must_be_an_input():
    from streamlab.errors import NodeError
    from streamlab.node import NodeContext

    node = Decoder.create({"pipeline": STEPS_SMALL, "ticks_from": "nope"},
                          NodeContext(node_id="dec", inputs=("ep",)))
    with pytest.raises(NodeError, match=r"config.ticks_from: 'nope' is not an input"):
        node.on_start()


# -- a fit that fails or hangs -----------------------------------------------------------------
GATE = __import__("threading").Event()


def _failing_classifier():
    from sklearn.base import BaseEstimator, ClassifierMixin

    class FitFails(ClassifierMixin, BaseEstimator):
        """Its fit waits for ``GATE`` (set by the test: no race with the frames), then fails."""

        def fit(self, X, y):
            GATE.wait(120)
            raise ValueError("boom")

    return FitFails


@pytest.mark.parametrize("hang", [False, True], ids=["fails", "times-out"])
def test_a_fit_that_fails_or_hangs_at_the_stop(hang, caplog):
    from streamlab.errors import NodeError
    from streamlab.learn import register_estimator, unregister_estimator

    register_estimator(_failing_classifier(), name="FitFails")
    GATE.clear()
    rng = np.random.default_rng(5)
    frames = [epoch(i, "hi" if i % 2 else "lo", 1.0, rng) for i in range(6)]
    frames += [DataFrame(6_000_000, 6, {}, {}, [Event(6_000_000, "calibration_end")])]
    frames += [epoch(7, None, 1.0, rng)]
    try:
        node = Decoder.create({"pipeline": {"steps": [["Vectorizer", {}],
                                                      ["FitFails", {}]]},
                               "cv_folds": 0, "fit_timeout_s": 0.05 if hang else 120})

        async def go():
            for f in frames:
                assert await node.process(f) == []
            if not hang:  # the fit fails now, while the test epoch is held
                GATE.set()
            await node.on_stop()

        if hang:  # the fit waits for GATE: the stop gives up, logged, without a model
            with caplog.at_level(logging.ERROR):
                run(go())
            assert "did not finish" in caplog.text and node.model is None
        else:
            with pytest.raises(NodeError, match=r"the fit failed: ValueError: boom"):
                run(go())
        # the held test epoch is counted either way
        assert node.statistics().fates["no_model"] == 1 and node.statistics().held == 0
    finally:
        GATE.set()
        unregister_estimator("FitFails")


@pytest.mark.parametrize("hang", [False, True], ids=["fails", "times-out"])
def test_while_fitting_wait_reports_a_failed_or_slow_fit_naming_the_node(hang):
    from streamlab.errors import NodeError
    from streamlab.learn import register_estimator, unregister_estimator

    register_estimator(_failing_classifier(), name="FitFails")
    GATE.clear()
    rng = np.random.default_rng(6)
    frames = [epoch(i, "hi" if i % 2 else "lo", 1.0, rng) for i in range(6)]
    frames += [DataFrame(6_000_000, 6, {}, {}, [Event(6_000_000, "calibration_end")])]
    try:
        node = Decoder.create({"pipeline": {"steps": [["Vectorizer", {}],
                                                      ["FitFails", {}]]},
                               "cv_folds": 0, "while_fitting": "wait",
                               "fit_timeout_s": 0.05 if hang else 120})
        if not hang:
            GATE.set()

        async def go():
            for f in frames:
                await node.process(f)
            await node.process(epoch(7, None, 1.0, rng))  # awaits the fit

        words = ("did not finish within fit_timeout_s=0.05 s" if hang
                 else "the fit failed: ValueError: boom")
        with pytest.raises(NodeError, match=rf"node '?{node.node_id}'?.*{words}"):
            run(go())
    finally:
        GATE.set()
        unregister_estimator("FitFails")
