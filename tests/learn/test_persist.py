"""Model files: saved with skops, loaded only if every type is trusted and the file is
consistent; a tampered file is refused before anything it names runs."""

from __future__ import annotations

import ast
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from streamlab.learn import (
    DecoderModel,
    EstimatorPipeline,
    ModelFileError,
    load_model,
    save_model,
    upstream_digest,
)

pytest.importorskip("sklearn")
pytest.importorskip("pyriemann")
skops_io = pytest.importorskip("skops.io")

STEPS = [["Covariances", {"estimator": "oas"}], ["TangentSpace", {}],
         ["LogisticRegression", {"C": 1.0}]]
UPSTREAM = '{"edges":[[0,1]],"nodes":[{"source":true},{"config":{},"type":"Epoch"}]}'
RAN: list[str] = []


class Evil:
    """Records that its code ran (a stand-in for a payload)."""

    def __init__(self) -> None:
        RAN.append("init")

    def __setstate__(self, state) -> None:
        RAN.append("setstate")


def fitted(steps=STEPS) -> DecoderModel:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3, 60))
    X[::2, 0] *= 2
    y = np.array(["a", "b"] * 15)
    spec = EstimatorPipeline(steps=steps)
    return DecoderModel(spec, spec.build().fit(X, y), ("a", "b"), ("c0", "c1", "c2"), 60,
                        "100.0", UPSTREAM, (0.9, 0.8))


def rewrite_schema(src: Path, dst: Path, edit) -> None:
    """Copy a skops zip with its schema.json passed through ``edit(text) -> text``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "schema.json":
                data = edit(data.decode()).encode()
            zout.writestr(item, data)


def test_round_trip_predicts_the_same(tmp_path):
    m = fitted()
    p = tmp_path / "m.skops"
    save_model(p, m)
    back = load_model(p)
    X = np.random.default_rng(1).standard_normal((5, 3, 60))
    np.testing.assert_array_equal(back.pipeline.predict_proba(X), m.pipeline.predict_proba(X))
    assert (back.classes, back.channels, back.n_times, back.sample_rate, back.cv_scores) == \
        (("a", "b"), ("c0", "c1", "c2"), 60, "100.0", (0.9, 0.8))
    assert back.upstream_hash == upstream_digest(UPSTREAM)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("steps", [[["CSP", {"n_components": 2}], ["LDA", {}]],
                                   [["Vectorizer", {}], ["StandardScaler", {}], ["SVC", {}]],
                                   [["Covariances", {}], ["MDM", {}]]])
def test_every_kind_of_pipeline_loads(tmp_path, steps):
    pytest.importorskip("mne")
    save_model(tmp_path / "m.skops", fitted(steps))
    assert load_model(tmp_path / "m.skops").spec.steps == steps


def test_a_file_with_an_untrusted_type_is_refused_and_nothing_runs(tmp_path):
    obj = {"format": "streamlab-decoder/1", "pipeline": Evil()}
    RAN.clear()
    p = tmp_path / "evil.skops"
    skops_io.dump(obj, p)
    RAN.clear()
    with pytest.raises(ModelFileError, match=r"not trusted: \['tests.learn.test_persist.Evil'\]"):
        load_model(p)
    assert RAN == []


def test_a_type_swapped_in_the_schema_is_refused(tmp_path):
    save_model(tmp_path / "m.skops", fitted())
    bad = tmp_path / "bad.skops"
    rewrite_schema(tmp_path / "m.skops", bad, lambda t: re.sub(
        r'"__class__": "LogisticRegression",(\s*)"__module__": "sklearn.linear_model._logistic"',
        r'"__class__": "system",\1"__module__": "os"', t))
    with pytest.raises(ModelFileError, match=r"not trusted: \['os.system'\]"):
        load_model(bad)


def test_a_modified_spec_is_refused(tmp_path):
    save_model(tmp_path / "m.skops", fitted())
    bad = tmp_path / "bad.skops"
    rewrite_schema(tmp_path / "m.skops", bad,
                   lambda t: t.replace('\\\\\\"C\\\\\\":1.0', '\\\\\\"C\\\\\\":2.0'))
    assert (tmp_path / "m.skops").read_bytes() != bad.read_bytes()
    with pytest.raises(ModelFileError, match=r"step 2 \(LogisticRegression\) has parameters "
                                             r"\['C'\] that differ from the spec"):
        load_model(bad)
    rewrite_schema(tmp_path / "m.skops", bad,
                   lambda t: t.replace("TangentSpace\\\\\\", "Covariances\\\\\\"))
    with pytest.raises(ModelFileError, match="step 1 is pyriemann.tangentspace.TangentSpace"):
        load_model(bad)


def test_a_modified_upstream_is_refused(tmp_path):
    save_model(tmp_path / "m.skops", fitted())
    bad = tmp_path / "bad.skops"
    rewrite_schema(tmp_path / "m.skops", bad, lambda t: t.replace("Epoch", "Gain"))
    with pytest.raises(ModelFileError, match="upstream graph does not match its hash"):
        load_model(bad)


def test_not_a_model_file(tmp_path):
    p = tmp_path / "m.skops"
    p.write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(ModelFileError, match="not a readable skops model file"):
        load_model(p)
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "none.skops")
    skops_io.dump({"pipeline": 1}, p)
    with pytest.raises(ModelFileError, match="not a StreamLab model: expected the keys"):
        load_model(p)


def dump_with(path: Path, **changes) -> None:
    """A model file as save_model writes it, with some entries replaced."""
    m = fitted()
    obj = {"format": "streamlab-decoder/1", "spec": m.spec.canonical(), "upstream": UPSTREAM,
           "upstream_hash": upstream_digest(UPSTREAM), "classes": ["a", "b"],
           "channels": ["c0", "c1", "c2"], "n_times": 60, "sample_rate": "100.0",
           "cv_scores": [0.9], "pipeline": m.pipeline}
    skops_io.dump(obj | changes, path)


def test_the_helper_writes_a_loadable_file(tmp_path):
    dump_with(tmp_path / "m.skops")
    assert load_model(tmp_path / "m.skops").n_times == 60


@pytest.mark.parametrize("changes, words", [
    ({"n_times": "60"}, "wrong type"), ({"channels": [1, 2, 3]}, "wrong type"),
    ({"cv_scores": ["x"]}, "wrong type"), ({"classes": ["b", "a"]}, "classes do not match"),
])
def test_entries_of_the_wrong_type_are_refused_as_tampered(tmp_path, changes, words):
    dump_with(tmp_path / "m.skops", **changes)
    with pytest.raises(ModelFileError, match=f"refused as tampered.*{words}"):
        load_model(tmp_path / "m.skops")


@pytest.mark.parametrize("payload", [os.system, eval])
def test_a_file_naming_a_function_is_refused(tmp_path, payload):
    dump_with(tmp_path / "m.skops", pipeline=payload)
    with pytest.raises(ModelFileError, match=rf"not trusted: .*{payload.__name__}'"):
        load_model(tmp_path / "m.skops")


def test_learn_and_decoder_never_unpickle():
    """No pickle, joblib, dill, np.load(allow_pickle=True) or skops trusted=True in the code
    that reads model files (a process-pool fit pickles between our own processes only)."""
    import streamlab.learn
    import streamlab.nodes.decode

    files = [*Path(streamlab.learn.__file__).parent.glob("*.py"),
             Path(streamlab.nodes.decode.__file__)]
    found = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                found += [f"{f.name}: import {m}" for m in mods
                          if m.split(".")[0] in {"pickle", "joblib", "dill", "cloudpickle",
                                                 "shelve", "marshal"}]
            if isinstance(node, ast.keyword) and node.arg in {"allow_pickle", "trusted"} and \
                    isinstance(node.value, ast.Constant) and node.value.value is True:
                found.append(f"{f.name}:{node.value.lineno}: {node.arg}=True")
    assert len(files) >= 5 and found == []
