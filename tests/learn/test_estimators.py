"""The estimator registry and pipeline specs: names, validated configs with JSON paths, the
estimators' own verdicts, entry-point plugins, and what a spec builds."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
from pydantic import ValidationError

import streamlab.learn.registry as reg
from streamlab.errors import StreamLabError
from streamlab.learn import (
    EstimatorPipeline,
    UnknownEstimatorError,
    estimator_names,
    get_estimator,
    register_estimator,
    unregister_estimator,
)

pytest.importorskip("sklearn")
pytest.importorskip("pyriemann")


def problems(steps) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as info:
        EstimatorPipeline(steps=steps)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


def test_the_field_s_estimators_are_registered():
    names = set(estimator_names())
    assert {"StandardScaler", "Vectorizer", "CSP", "Covariances", "TangentSpace", "MDM",
            "LogisticRegression", "LinearDiscriminantAnalysis", "LDA", "SVC",
            "PCA"} <= names
    assert get_estimator("LDA").factory is get_estimator("LinearDiscriminantAnalysis").factory


def test_spec_builds_the_pipeline_it_names():
    spec = EstimatorPipeline(steps=[["Covariances", {"estimator": "oas"}], ["TangentSpace", {}],
                                    ["LogisticRegression", {"C": 0.5}]])
    pipe = spec.build()
    assert [n for n, _ in pipe.steps] == ["0-Covariances", "1-TangentSpace",
                                          "2-LogisticRegression"]
    assert pipe.steps[0][1].estimator == "oas" and pipe.steps[2][1].C == 0.5
    assert spec.canonical() == ('{"steps":[["Covariances",{"estimator":"oas"}],'
                                '["TangentSpace",{}],["LogisticRegression",{"C":0.5}]]}')
    X = np.random.default_rng(0).standard_normal((20, 3, 50))
    y = np.array(["a", "b"] * 10)
    assert pipe.fit(X, y).predict(X).shape == (20,)


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownEstimatorError, match=r"did you mean 'LogisticRegression'"):
        get_estimator("LogisticRegresion")
    [(loc, msg)] = problems([["TangentSpace", {}], ["Logistic_Regression", {}]])
    assert loc == ("steps", 1, 0) and "'LogisticRegression'" in msg
    [(loc, msg)] = problems([["os.system", {}]])  # configs never name code
    assert loc == ("steps", 0, 0) and "unknown estimator 'os.system'" in msg


def test_rejected_configs_name_the_parameter():
    got = problems([["LogisticRegression", {"C": 0}], ["PCA", {"n_components": "many"}],
                    ["SVC", {"kernal": "rbf"}], ["CSP", {"n_components": 0}], ["MDM", {}]])
    locs = {loc: msg for loc, msg in got}
    assert "must be a float in the range (0.0, inf]" in locs[("steps", 0, 1, "C")]
    assert "PCA rejects this config" in locs[("steps", 1, 1, "n_components")]
    assert "unknown parameter of SVC" in locs[("steps", 2, 1, "kernal")]
    assert "greater than or equal to 1" in locs[("steps", 3, 1, "n_components")]
    assert len(got) == 4


def test_parameters_named_like_pydantic_attributes_work():
    pipe = EstimatorPipeline(steps=[["StandardScaler", {"copy": False}],
                                    ["LDA", {}]]).build()
    assert pipe.steps[0][1].copy is False


def test_a_step_must_be_a_name_and_an_object():
    [(loc, msg)] = problems([["LDA"]])
    assert loc == ("steps", 0) and "[\"EstimatorName\", {params}]" in msg


class _Plugin:
    """A plugin estimator (scikit-learn style)."""

    def __init__(self, k: int = 1) -> None:
        self.k = k


def test_entry_point_plugins_register_and_broken_ones_are_reported(monkeypatch):
    good = importlib.metadata.EntryPoint("MyEst", f"{__name__}:_Plugin", reg.ENTRY_POINT_GROUP)
    bad = importlib.metadata.EntryPoint("Broken", "no_such_module:X", reg.ENTRY_POINT_GROUP)
    monkeypatch.setattr(reg.importlib.metadata, "entry_points",
                        lambda group: [good, bad] if group == reg.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(reg, "_loaded", False)
    monkeypatch.setattr(reg, "_plugin_errors", {})
    try:
        assert "MyEst" in estimator_names()
        entry = get_estimator("MyEst")
        assert entry.factory is _Plugin and entry.trusted == (f"{__name__}._Plugin",)
        assert EstimatorPipeline(steps=[["MyEst", {"k": 3}]]).build().steps[0][1].k == 3
        assert "ModuleNotFoundError" in reg.estimator_plugin_errors()["Broken"]
        with pytest.raises(StreamLabError, match="plugin 'Broken' failed to load"):
            get_estimator("Broken")
    finally:
        unregister_estimator("MyEst")


def test_register_refuses_a_taken_name():
    register_estimator(_Plugin, name="TakenPlugin")
    try:
        register_estimator(_Plugin, name="TakenPlugin")  # the same: no-op

        class Other(_Plugin):
            pass

        with pytest.raises(StreamLabError, match="already registered"):
            register_estimator(Other, name="TakenPlugin")
    finally:
        unregister_estimator("TakenPlugin")
