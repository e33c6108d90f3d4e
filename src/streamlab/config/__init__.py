"""Pipeline configs: JSON -> validated :class:`PipelineSpec`, with JSON paths in every error."""

from streamlab.config.loader import json_path, load_config, parse_json
from streamlab.config.model import (
    LIMITS,
    ConnectionSpec,
    NodeSpec,
    PipelineSettings,
    PipelineSpec,
)
from streamlab.config.overrides import apply_overrides
from streamlab.config.paths import InputPath, OutputPath, path_fields
from streamlab.config.schema import pipeline_json_schema

__all__ = [
    "LIMITS",
    "ConnectionSpec",
    "InputPath",
    "OutputPath",
    "NodeSpec",
    "PipelineSettings",
    "PipelineSpec",
    "apply_overrides",
    "json_path",
    "load_config",
    "parse_json",
    "path_fields",
    "pipeline_json_schema",
]
