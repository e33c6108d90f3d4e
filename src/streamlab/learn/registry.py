"""The estimator registry: a name a config may use -> how to build it and how to check its config.

A pipeline config names estimators (``"Covariances"``, ``"LogisticRegression"``), never import
paths: only registered names can be built. Built-ins wrap scikit-learn, pyriemann and
``mne.decoding`` classes (optional extra ``learn``; each module is imported the first time one of
its names is used). Third-party packages register more through the ``streamlab.estimators``
entry-point group, mirroring ``streamlab.nodes``::

    [project.entry-points."streamlab.estimators"]
    MyClassifier = "my_package.learn:MyClassifier"        # a scikit-learn estimator class
    MyOther = "my_package.learn:MY_ENTRY"                 # or an EstimatorEntry

An entry's config model is a frozen pydantic model (unknown keys rejected) built from the
estimator's ``__init__`` signature, with stricter types for the parameters listed in
:data:`_OVERRIDES`. Values must be JSON values (numbers, strings, booleans, null, lists, objects):
nothing a config says can name code. After pydantic, scikit-learn's own parameter check
(``_validate_params``) runs, so a value the estimator rejects is reported with its message.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from streamlab.errors import StreamLabError

__all__ = ["EstimatorEntry", "ENTRY_POINT_GROUP", "register_estimator", "get_estimator",
           "estimator_names", "unregister_estimator", "estimator_plugin_errors",
           "UnknownEstimatorError", "trusted_types", "type_name"]

ENTRY_POINT_GROUP = "streamlab.estimators"

JsonValue = float | int | str | bool | None | list[Any] | dict[str, Any]


class UnknownEstimatorError(StreamLabError, ValueError):
    """A config names an estimator that is not registered (close matches in the message)."""

    def __init__(self, name: str, close: list[str]) -> None:
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown estimator {name!r}{hint} (see `streamlab.learn."
                         f"estimator_names()`)")
        self.name = name
        self.close = close


def type_name(cls: type) -> str:
    """``module.QualName`` of a class, as skops names it in its trusted-type lists."""
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class EstimatorEntry:
    """A registered estimator: ``factory(**params)`` builds it; ``config`` validates params.

    ``trusted`` lists the types (``module.QualName``) a saved model of this estimator may
    contain beyond what skops trusts by default (numpy, scikit-learn): see
    :mod:`streamlab.learn.persist`.
    """

    name: str
    factory: Callable[..., Any]
    config: type[BaseModel]
    trusted: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class _Lazy:
    module: str
    cls: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


# Stricter types than "any JSON value" where the estimator only checks at fit time.
_COV = Literal["corr", "cov", "hub", "lwf", "mcd", "oas", "sch", "scm", "stu", "tyl"]
_METRIC = Literal["riemann", "logeuclid", "euclid", "logdet", "wasserstein", "kullback",
                  "kullback_sym", "harmonic", "ale", "identity", "logchol", "thompson",
                  "poweuclid", "chol"]
_OVERRIDES_COV = {"estimator": (_COV, Field("scm", description="Covariance estimator."))}
_BUILTINS: dict[str, _Lazy] = {
    # scikit-learn
    "StandardScaler": _Lazy("sklearn.preprocessing", "StandardScaler"),
    "MinMaxScaler": _Lazy("sklearn.preprocessing", "MinMaxScaler"),
    "RobustScaler": _Lazy("sklearn.preprocessing", "RobustScaler"),
    "PCA": _Lazy("sklearn.decomposition", "PCA"),
    "LogisticRegression": _Lazy("sklearn.linear_model", "LogisticRegression"),
    "LinearDiscriminantAnalysis": _Lazy("sklearn.discriminant_analysis",
                                        "LinearDiscriminantAnalysis"),
    "LDA": _Lazy("sklearn.discriminant_analysis", "LinearDiscriminantAnalysis"),
    "SVC": _Lazy("sklearn.svm", "SVC"),
    "LinearSVC": _Lazy("sklearn.svm", "LinearSVC"),
    "RidgeClassifier": _Lazy("sklearn.linear_model", "RidgeClassifier"),
    "SGDClassifier": _Lazy("sklearn.linear_model", "SGDClassifier"),
    "KNeighborsClassifier": _Lazy("sklearn.neighbors", "KNeighborsClassifier"),
    "RandomForestClassifier": _Lazy("sklearn.ensemble", "RandomForestClassifier"),
    # pyriemann
    "Covariances": _Lazy("pyriemann.estimation", "Covariances", _OVERRIDES_COV),
    "Shrinkage": _Lazy("pyriemann.estimation", "Shrinkage"),
    "TangentSpace": _Lazy("pyriemann.tangentspace", "TangentSpace",
                          {"metric": (_METRIC | dict[str, _METRIC],
                                      Field("riemann", description="Metric of the mean."))}),
    "MDM": _Lazy("pyriemann.classification", "MDM",
                 {"metric": (_METRIC | dict[str, _METRIC],
                             Field("riemann", description="Metric of the means and distances."))}),
    "FgMDM": _Lazy("pyriemann.classification", "FgMDM"),
    # mne.decoding
    "CSP": _Lazy("mne.decoding", "CSP", {
        "n_components": (int, Field(4, ge=1, description="Number of CSP components.")),
        "cov_est": (Literal["concat", "epoch"], Field("concat", description="How the class "
                                                      "covariances are estimated.")),
        "transform_into": (Literal["average_power", "csp_space"],
                           Field("average_power", description="Log-variance features or the "
                                 "projected signals.")),
        "norm_trace": (bool, Field(False, description="Normalise class covariances by their "
                                   "trace.")),
        "log": (bool | None, Field(None, description="Log of the average power (default: "
                                   "true with average_power).")),
    }),
    "Vectorizer": _Lazy("mne.decoding", "Vectorizer"),
}

_registry: dict[str, EstimatorEntry] = {}
_lock = threading.Lock()
_loaded = False
_plugin_errors: dict[str, str] = {}


def _json_default(v: Any) -> Any:
    """A signature default usable as a JSON default (else None: the estimator's own applies)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return None


def config_model_for(name: str, cls: type, overrides: Mapping[str, Any] | None = None
                     ) -> type[BaseModel]:
    """A frozen pydantic model of ``cls.__init__``'s keyword parameters (JSON values only)."""
    fields: dict[str, Any] = {}
    for p in inspect.signature(cls.__init__).parameters.values():  # type: ignore[misc]
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        # a parameter named like a BaseModel attribute ("copy") gets a field name with "_"
        # and the parameter's name as alias (configs and errors use the alias)
        key = p.name + "_" if hasattr(BaseModel, p.name) else p.name
        if overrides and p.name in overrides:
            typ, info = overrides[p.name]
        else:
            default = p.default if p.default is not inspect.Parameter.empty else None
            typ, info = JsonValue, Field(_json_default(default), description=f"{cls.__name__}"
                                         f"({p.name}=...); default {default!r}.")
        if key != p.name:  # (no override names such a parameter: plain JSON values)
            info = Field(info.default, alias=p.name, description=info.description)
        fields[key] = (typ, info)
    return create_model(
        f"{name}Config", __config__=ConfigDict(extra="forbid", frozen=True), **fields)


def entry_for_class(name: str, cls: type, overrides: Mapping[str, Any] | None = None
                    ) -> EstimatorEntry:
    """An entry that builds ``cls(**params)``; ``cls`` itself is a trusted type."""
    doc = (inspect.getdoc(cls) or "").strip().splitlines()
    return EstimatorEntry(name, cls, config_model_for(name, cls, overrides), (type_name(cls),),
                          doc[0] if doc else "")


def register_estimator(entry: EstimatorEntry | type, *, name: str | None = None) -> None:
    """Register an entry (or a scikit-learn-style class) under ``name``.

    A different entry under a taken name is an error; re-registering the same is a no-op.
    """
    if isinstance(entry, type):
        entry = entry_for_class(name or entry.__name__, entry)
    if not isinstance(entry, EstimatorEntry):
        raise TypeError(f"register_estimator: {entry!r} is neither an EstimatorEntry nor a class")
    key = name or entry.name
    with _lock:
        old = _registry.get(key)
        if old is not None and old.factory is not entry.factory:
            raise StreamLabError(f"estimator {key!r} is already registered")
        if old is None:
            _registry[key] = entry


def unregister_estimator(name: str) -> None:
    """Remove a name (for tests and plugin reloads)."""
    with _lock:
        _registry.pop(name, None)


def _load_plugins() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _registry or ep.name in _BUILTINS:
            continue
        try:
            register_estimator(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not hide the others; it is reported
            _plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"


def estimator_plugin_errors() -> dict[str, str]:
    """Entry points of the ``streamlab.estimators`` group that failed to load, with why."""
    _load_plugins()
    return dict(_plugin_errors)


def estimator_names() -> list[str]:
    """Every name a pipeline step may use (built-ins and plugins), sorted."""
    _load_plugins()
    return sorted(set(_BUILTINS) | set(_registry))


def get_estimator(name: str) -> EstimatorEntry:
    """The entry registered as ``name`` (a built-in's module is imported now).

    UnknownEstimatorError (with close matches) for an unknown name; StreamLabError when the
    module of a built-in is not installed (``pip install streamlab[learn]``).
    """
    _load_plugins()
    entry = _registry.get(name)
    if entry is not None:
        return entry
    lazy = _BUILTINS.get(name) if isinstance(name, str) else None
    if lazy is None:
        if isinstance(name, str) and name in _plugin_errors:
            raise StreamLabError(f"estimator plugin {name!r} failed to load: "
                                 f"{_plugin_errors[name]}")
        text = name if isinstance(name, str) else repr(name)
        names = estimator_names()
        lower = {k.lower(): k for k in names}
        close = difflib.get_close_matches(text.lower(), list(lower), n=3, cutoff=0.6)
        raise UnknownEstimatorError(text, [lower[c] for c in close])
    try:
        module = importlib.import_module(lazy.module)
    except ImportError as exc:
        raise StreamLabError(f"estimator {name!r} needs {lazy.module.split('.')[0]!r}, which is "
                             f"not installed (pip install 'streamlab[learn]'): {exc}") from None
    entry = entry_for_class(name, getattr(module, lazy.cls), lazy.overrides)
    with _lock:
        return _registry.setdefault(name, entry)


def trusted_types(names: list[str] | None = None) -> list[str]:
    """The types a saved model may contain beyond skops' defaults: those of ``names``' entries
    (default: every registered name)."""
    out: set[str] = set()
    for n in names if names is not None else estimator_names():
        out.update(get_estimator(n).trusted)
    return sorted(out)
