"""Pipeline configs: JSON -> validated :class:`PipelineSpec`, with JSON paths in every error."""

from streamlab.config.loader import json_path, load_config, parse_json
from streamlab.config.model import (
    LIMITS,
    ConnectionSpec,
    NodeSpec,
    PipelineSettings,
    PipelineSpec,
)
from streamlab.config.schema import pipeline_json_schema

__all__ = [
    "LIMITS",
    "ConnectionSpec",
    "NodeSpec",
    "PipelineSettings",
    "PipelineSpec",
    "json_path",
    "load_config",
    "parse_json",
    "pipeline_json_schema",
]
