"""The JSON Schema of the pipeline format, including every registered node type's config.

Each node's ``config`` is tied to its ``type`` with an ``if``/``then`` rule per type, so an
editor with JSON Schema support completes and checks node settings too.
"""

from __future__ import annotations

from typing import Any

from streamlab.config.model import PipelineSpec

__all__ = ["pipeline_json_schema"]

SCHEMA_ID = "https://streamlab.dev/schema/pipeline.json"


def pipeline_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a pipeline config."""
    from streamlab.registry import node_types

    schema = PipelineSpec.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    rules = []
    types = node_types()
    for name, cls in types.items():
        sub = cls.Config.model_json_schema(ref_template="#/$defs/{model}")
        for key, value in sub.pop("$defs", {}).items():
            defs.setdefault(key, value)
        def_name = f"config.{name}"
        sub.setdefault("description", cls.description())
        defs[def_name] = sub
        rules.append({
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {"properties": {"config": {"$ref": f"#/$defs/{def_name}"}}},
        })
    node_def = defs.get("NodeSpec", {})
    node_def.setdefault("properties", {}).setdefault("type", {})["enum"] = sorted(types)
    node_def["allOf"] = rules
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "StreamLab pipeline"
    return schema
