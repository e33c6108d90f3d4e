"""Learning: estimators declared in JSON (a registry of names), pipelines of them, model files.

Needs the optional extra ``learn`` (scikit-learn, pyriemann, skops; CSP and Vectorizer come
from mne). See docs/decoding.md.
"""

from streamlab.learn.persist import (
    DecoderModel,
    ModelFileError,
    load_model,
    save_model,
    upstream_digest,
)
from streamlab.learn.registry import (
    ENTRY_POINT_GROUP,
    EstimatorEntry,
    UnknownEstimatorError,
    estimator_names,
    estimator_plugin_errors,
    get_estimator,
    register_estimator,
    trusted_types,
    unregister_estimator,
)
from streamlab.learn.spec import EstimatorPipeline, build_estimator

__all__ = ["DecoderModel", "ModelFileError", "load_model", "save_model", "upstream_digest",
           "ENTRY_POINT_GROUP", "EstimatorEntry", "UnknownEstimatorError", "estimator_names",
           "estimator_plugin_errors", "get_estimator", "register_estimator", "trusted_types",
           "unregister_estimator", "EstimatorPipeline", "build_estimator"]
