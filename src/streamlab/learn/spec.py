"""A pipeline of estimators declared in JSON: ``{"steps": [[name, {params}], ...]}``.

:class:`EstimatorPipeline` validates every step when the config is loaded: the name must be
registered (:mod:`streamlab.learn.registry`; close matches are suggested), the params must fit
the estimator's config model, and scikit-learn's own parameter check must accept them. Every
problem is reported with its JSON path (``...pipeline.steps[2][1].C``). :meth:`build` returns
an unfitted ``sklearn.pipeline.Pipeline`` whose step names are ``"<index>-<name>"``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from streamlab.errors import StreamLabError
from streamlab.learn.registry import get_estimator

__all__ = ["EstimatorPipeline", "build_estimator"]


def _problem(loc: tuple[Any, ...], message: str, got: Any) -> InitErrorDetails:
    # the message goes through format(): braces in it must not be read as fields
    return InitErrorDetails(type=PydanticCustomError("estimator", "{m}", {"m": message}),
                            loc=loc, input=got)


def build_estimator(name: str, params: dict[str, Any]) -> Any:
    """The estimator ``name`` built with validated ``params`` (only those given)."""
    entry = get_estimator(name)
    cfg = entry.config.model_validate(params)
    return entry.factory(**cfg.model_dump(by_alias=True, exclude_unset=True))


def _check_step(i: int, step: Any) -> list[InitErrorDetails]:
    """Problems of one ``[name, params]`` step (empty: fine)."""
    if (not isinstance(step, (list, tuple)) or len(step) != 2 or not isinstance(step[0], str)
            or not isinstance(step[1], dict)):
        return [_problem((i,), "a step is [\"EstimatorName\", {params}]", step)]
    name, params = step
    try:
        entry = get_estimator(name)
    except StreamLabError as exc:  # unknown (with close matches), or its package is missing
        return [_problem((i, 0), str(exc), name)]
    try:
        cfg = entry.config.model_validate(params)
    except ValidationError as exc:
        out = []
        for d in exc.errors(include_url=False):
            msg = d["msg"]
            if d["type"] == "extra_forbidden":
                known = ", ".join(f.alias or k for k, f in entry.config.model_fields.items())
                msg = f"unknown parameter of {name} (its parameters: {known})"
            out.append(_problem((i, 1) + tuple(d["loc"]), msg, d.get("input")))
        return out
    return _estimator_verdict(i, name, entry.factory, cfg.model_dump(by_alias=True,
                                                                     exclude_unset=True))


def _estimator_verdict(i: int, name: str, factory: Any, given: dict[str, Any]
                       ) -> list[InitErrorDetails]:
    """The estimator's own check of ``given`` (scikit-learn's declared constraints), with the
    JSON path of the parameter its message names."""
    try:
        est = factory(**given)
        check = getattr(est, "_validate_params", None)
        if callable(check) and hasattr(est, "_parameter_constraints"):
            check()
    except Exception as exc:  # the estimator's verdict on its params: reported, not swallowed
        bad = [k for k in given if f"'{k}'" in str(exc) or f"{k!r}" in str(exc)]
        loc = (i, 1, bad[0]) if bad else (i, 1)
        return [_problem(loc, f"{name} rejects this config: {exc}",
                         given.get(bad[0]) if bad else given)]
    return []


class EstimatorPipeline(BaseModel):
    """Steps ``[[name, {params}], ...]``: transformers, then a final estimator (classifier)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[Any] = Field(..., min_length=1, description="[[\"EstimatorName\", {params}], "
                             "...]: registered estimator names only (see "
                             "streamlab.learn.estimator_names()).")

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[Any]) -> list[Any]:
        problems = [p for i, s in enumerate(steps) for p in _check_step(i, s)]
        if problems:
            raise ValidationError.from_exception_data("steps", problems)
        # canonical, hashable form: [name, params] with plain JSON values
        return [[s[0], json.loads(json.dumps(s[1], sort_keys=True))] for s in steps]

    def names(self) -> list[str]:
        return [s[0] for s in self.steps]

    def build(self) -> Any:
        """An unfitted ``sklearn.pipeline.Pipeline`` of the steps."""
        from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]

        return Pipeline([(f"{i}-{name}", build_estimator(name, params))
                         for i, (name, params) in enumerate(self.steps)])

    def canonical(self) -> str:
        """The steps as canonical JSON (sorted keys): what a model file records."""
        return json.dumps({"steps": self.steps}, sort_keys=True, separators=(",", ":"))
