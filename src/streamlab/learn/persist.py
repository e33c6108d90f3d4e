"""Model files that are safe to load: skops.io with an explicit trusted-type list, checked.

A model file (``.skops``, a zip of JSON + ``.npy`` arrays, never a pickle) holds a dict::

    format          "streamlab-decoder/1"
    spec            the estimator pipeline as canonical JSON (EstimatorPipeline.canonical())
    upstream        canonical JSON of the graph before the decoder (types, configs, edges)
    upstream_hash   sha256 of ``upstream``
    classes, channels, n_times, sample_rate, cv_scores
    pipeline        the fitted sklearn Pipeline

:func:`load_model` refuses, before anything is built, a file whose types are not all in the
trusted list (skops' defaults: numpy and scikit-learn; plus the types of the registered
estimators, :func:`streamlab.learn.registry.trusted_types`): skops then builds only trusted
types from data (no code named by the file runs). After loading, it checks that the file is
consistent: the spec validates, and every fitted step is exactly the registered estimator the
spec names, with the spec's parameters; otherwise the file is refused as tampered.
Failures raise :class:`ModelFileError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streamlab.errors import StreamLabError
from streamlab.learn.registry import estimator_names, trusted_types, type_name
from streamlab.learn.spec import EstimatorPipeline, build_estimator

__all__ = ["FORMAT", "ModelFileError", "DecoderModel", "save_model", "load_model",
           "upstream_digest"]

FORMAT = "streamlab-decoder/1"
_KEYS = {"format", "spec", "upstream", "upstream_hash", "classes", "channels", "n_times",
         "sample_rate", "cv_scores", "pipeline"}


class ModelFileError(StreamLabError, ValueError):
    """A model file cannot be used: unreadable, untrusted types, tampered, or another graph."""


def upstream_digest(upstream: str) -> str:
    """sha256 (hex) of the canonical upstream description."""
    return hashlib.sha256(upstream.encode()).hexdigest()


@dataclass(frozen=True)
class DecoderModel:
    """A fitted decoder and what it was fitted on."""

    spec: EstimatorPipeline
    pipeline: Any
    classes: tuple[str, ...]
    channels: tuple[str, ...]
    n_times: int
    sample_rate: str
    upstream: str
    cv_scores: tuple[float, ...] = ()

    @property
    def upstream_hash(self) -> str:
        return upstream_digest(self.upstream)


def save_model(path: str | os.PathLike[str], model: DecoderModel) -> None:
    """Write ``model`` to ``path`` with skops.io (atomically: a temporary file, then rename)."""
    import skops.io as sio  # type: ignore[import-untyped]

    obj = {"format": FORMAT, "spec": model.spec.canonical(), "upstream": model.upstream,
           "upstream_hash": model.upstream_hash, "classes": list(model.classes),
           "channels": list(model.channels), "n_times": int(model.n_times),
           "sample_rate": model.sample_rate, "cv_scores": [float(s) for s in model.cv_scores],
           "pipeline": model.pipeline}
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    sio.dump(obj, tmp)
    os.replace(tmp, p)


def _allowed() -> list[str]:
    """Trusted types of every registered estimator whose package is installed."""
    out: set[str] = set()
    for n in estimator_names():
        try:
            out.update(trusted_types([n]))
        except StreamLabError:  # not installed: its types cannot be in a usable model anyway
            continue
    return sorted(out)


def load_model(path: str | os.PathLike[str]) -> DecoderModel:
    """Read a model file written by :func:`save_model`; ModelFileError if it is not usable."""
    import skops.io as sio

    p = Path(path)
    where = f"model file {str(p)!r}"
    if not p.is_file():
        raise ModelFileError(f"{where}: no such file")
    try:
        found = sio.get_untrusted_types(file=p)
    except Exception as exc:  # not a skops zip, a broken schema: refused, never executed
        raise ModelFileError(f"{where}: not a readable skops model file "
                             f"({type(exc).__name__}: {exc})") from None
    allowed = set(_allowed())
    bad = sorted(set(found) - allowed)
    if bad:
        raise ModelFileError(f"{where}: refused, it contains types that are not trusted: "
                             f"{bad} (trusted beyond numpy/scikit-learn: the registered "
                             f"estimators' types)")
    try:
        obj = sio.load(p, trusted=sorted(found))
    except Exception as exc:
        raise ModelFileError(f"{where}: refused, skops could not load it safely "
                             f"({type(exc).__name__}: {exc})") from None
    return _checked(obj, where)


def _checked(obj: Any, where: str) -> DecoderModel:
    """The model in ``obj`` after the consistency checks (ModelFileError: tampered)."""
    def tampered(why: str) -> ModelFileError:
        return ModelFileError(f"{where}: refused as tampered or not a StreamLab model: {why}")

    if not isinstance(obj, dict) or set(obj) != _KEYS:
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise tampered(f"expected the keys {sorted(_KEYS)}, got {got}")
    if obj["format"] != FORMAT:
        raise tampered(f"format {obj['format']!r} (expected {FORMAT!r})")
    try:
        spec = EstimatorPipeline.model_validate(json.loads(obj["spec"]))
    except (ValueError, ValidationError) as exc:
        raise tampered(f"its estimator spec is not valid: {exc}") from None
    if spec.canonical() != obj["spec"]:
        raise tampered("its estimator spec is not in canonical form")
    if not isinstance(obj["upstream"], str) or upstream_digest(obj["upstream"]) != \
            obj["upstream_hash"]:
        raise tampered("the upstream graph does not match its hash")
    pipe = obj["pipeline"]
    problem = _steps_problem(pipe, spec)
    if problem:
        raise tampered(problem)
    classes = obj["classes"]
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)
            and [str(c) for c in getattr(pipe, "classes_", [])] == classes):
        raise tampered("its classes do not match the fitted classifier's")
    channels, n_times, rate, cv = (obj[k] for k in ("channels", "n_times", "sample_rate",
                                                      "cv_scores"))
    if not (isinstance(channels, list) and all(isinstance(c, str) for c in channels)
            and type(n_times) is int and n_times > 0 and isinstance(rate, str)
            and isinstance(cv, list) and all(isinstance(s, float) for s in cv)):
        raise tampered(f"channels, n_times, sample_rate or cv_scores have the wrong type "
                       f"(got {channels!r}, {n_times!r}, {rate!r}, {cv!r})")
    return DecoderModel(spec, pipe, tuple(classes), tuple(channels), n_times, rate,
                        obj["upstream"], tuple(cv))


def _steps_problem(pipe: Any, spec: EstimatorPipeline) -> str:
    """Why the fitted ``pipe`` is not exactly what ``spec`` builds ("" if it is): the same
    registered estimator type per step, with the spec's parameters."""
    from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]

    if type(pipe) is not Pipeline or len(pipe.steps) != len(spec.steps):
        return "its fitted pipeline does not have the spec's steps"
    for i, ((step_name, est), (name, params)) in enumerate(zip(pipe.steps, spec.steps)):
        expected = build_estimator(name, params)
        if step_name != f"{i}-{name}" or type(est) is not type(expected):
            return f"step {i} is {type_name(type(est))}, the spec says {name!r}"
        mine, theirs = expected.get_params(deep=False), est.get_params(deep=False)
        diff = [k for k in mine if repr(mine[k]) != repr(theirs.get(k))]
        if diff:
            return f"step {i} ({name}) has parameters {diff} that differ from the spec"
    return ""
