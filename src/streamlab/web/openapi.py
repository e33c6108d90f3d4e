"""The OpenAPI 3.1 document of the control API (served at ``/api/openapi.json``).

Every operation needs the token (``Authorization: Bearer TOKEN`` or the session cookie set by
the one-time login URL). Every documented status is one the server can answer; the tests fuzz
the server against this document with schemathesis.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _obj(props: dict[str, Any], required: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "object", "properties": props, **kw}
    if required:
        d["required"] = required
    return d


_NUM = {"type": ["number", "null"]}
_STR_NULL = {"type": ["string", "null"]}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"description": desc}
    if schema is not None:
        r.update(_json(schema))
    return r


_COMMON_ERRORS = {
    "401": _resp("missing or wrong token", _ERROR),
    "403": _resp("Host or Origin not allowed (DNS rebinding, cross-site request)", _ERROR),
}
_NODE_PARAM = {"name": "node", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "node id"}


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, op_id: str) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "operationId": op_id,
                          "responses": {**responses, **_COMMON_ERRORS}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    return op


def openapi_document(version: str = "0", cookie: str = "streamlab_session") -> dict[str, Any]:
    change = {"$ref": "#/components/schemas/ChangeRecord"}
    not_running = _resp("the pipeline is not running", _ERROR)
    bad = _resp("the body is not what the operation expects", _ERROR)
    invalid = _resp("the change failed validation: nothing was changed", _ERROR)
    unknown = _resp("no such node", _ERROR)
    schemas = {
        "Error": _obj({"error": {"type": "string"},
                       "problems": {"type": "array", "items": _obj(
                           {"path": {"type": "string"}, "message": {"type": "string"}},
                           ["path", "message"])}}, ["error"]),
        "ChangeRecord": _obj({"version": {"type": "integer"}, "node_id": {"type": "string"},
                              "kind": {"type": "string"}, "changes": {"type": "object"},
                              "ok": {"type": "boolean"}, "error": _STR_NULL,
                              "applied_at_ns": {"type": "integer"}, "apply_s": {"type": "number"}},
                             ["node_id", "kind", "ok"]),
        "Graph": _obj({
            "nodes": {"type": "array", "items": _obj(
                {"id": {"type": "string"}, "type": {"type": "string"},
                 "config": {"type": "object"}, "version": {"type": "integer"}},
                ["id", "type"])},
            "edges": {"type": "array", "items": _obj(
                {"from": {"type": "string"}, "to": {"type": "string"},
                 "depth": {"type": "integer"}, "capacity": {"type": "integer"},
                 "dropped": {"type": "integer"}}, ["from", "to"])}},
            ["nodes", "edges"]),
        "NodeConfig": _obj({"node": {"type": "string"}, "type": {"type": "string"},
                            "version": {"type": "integer"}, "config": {"type": "object"}},
                           ["node", "type", "version", "config"]),
        "Stats": _obj({
            "pipeline": {"type": "string"}, "state": {"type": "string"},
            "duration_s": {"type": "number"},
            "nodes": {"type": "array", "items": _obj(
                {"node": {"type": "string"}, "node_type": {"type": "string"},
                 "rate_hz": {"type": "number"}, "received": {"type": "integer"},
                 "frames_out": {"type": "integer"}, "p50_s": _NUM, "p99_s": _NUM,
                 "max_s": _NUM, "queue_depth": {"type": "integer"},
                 "dropped": {"type": "integer"}, "fates": {"type": "object"},
                 "version": {"type": "integer"}}, ["node", "received", "fates"])},
            "edges": {"type": "array", "items": {"type": "object"}},
            "web": _obj({"clients": {"type": "integer"}, "sent": {"type": "integer"},
                         "dropped": {"type": "integer"}, "pump_s": {"type": "number"}},
                        ["clients", "sent", "dropped", "pump_s"])},
            ["pipeline", "state", "nodes", "edges", "web"]),
        "NodeSpec": _obj({"type": {"type": "string", "minLength": 1},
                          "config": {"type": "object"}}, ["type"]),
        "AddNode": _obj({"id": {"type": "string", "minLength": 1},
                         "spec": {"$ref": "#/components/schemas/NodeSpec"},
                         "after": {"type": "string", "minLength": 1},
                         "before": {"type": ["string", "null"]}}, ["id", "spec", "after"]),
    }
    paths = {
        "/api": {"get": _op("the pipeline: name, state, and the API's endpoints", {
            "200": _resp("ok", _obj({"pipeline": {"type": "string"}, "state": {"type": "string"}},
                                    ["pipeline", "state"]))}, op_id="index")},
        "/api/graph": {"get": _op("nodes (config, version) and edges (queue depth, drops)", {
            "200": _resp("ok", {"$ref": "#/components/schemas/Graph"})}, op_id="graph")},
        "/api/stats": {"get": _op("live statistics per node and edge", {
            "200": _resp("ok", {"$ref": "#/components/schemas/Stats"})}, op_id="stats")},
        "/api/changes": {"get": _op("every live change tried, applied or refused", {
            "200": _resp("ok", {"type": "array", "items": change})}, op_id="changes")},
        "/api/nodes": {
            "get": _op("node ids, types and config versions", {
                "200": _resp("ok", {"type": "array", "items": _obj(
                    {"id": {"type": "string"}, "type": {"type": "string"},
                     "version": {"type": "integer"}}, ["id", "type", "version"])})},
                op_id="nodes"),
            "post": _op("add a node after `after` (and before `before`)", {
                "201": _resp("added", change), "400": bad, "404": unknown, "409": not_running,
                "422": invalid},
                body={"$ref": "#/components/schemas/AddNode"}, op_id="add_node")},
        "/api/nodes/{node}": {
            "put": _op("replace a node by another (frames queued on its edges are kept)", {
                "200": _resp("replaced", change), "400": bad, "404": unknown,
                "409": not_running, "422": invalid},
                body={"$ref": "#/components/schemas/NodeSpec"}, params=[_NODE_PARAM],
                op_id="replace_node"),
            "delete": _op("remove a node; its inputs are spliced to its outputs", {
                "200": _resp("removed", change), "404": unknown, "409": not_running,
                "422": invalid}, params=[_NODE_PARAM], op_id="remove_node")},
        "/api/nodes/{node}/config": {
            "get": _op("the node's current configuration and its version", {
                "200": _resp("ok", {"$ref": "#/components/schemas/NodeConfig"}),
                "404": unknown}, params=[_NODE_PARAM], op_id="node_config"),
            "patch": _op("change some settings of a node (validated; applied between frames)", {
                "200": _resp("applied", change), "400": bad, "404": unknown,
                "409": not_running, "422": invalid},
                body={"type": "object"}, params=[_NODE_PARAM], op_id="update_node")},
        "/api/nodes/{node}/schema": {"get": _op("the JSON Schema of the node's config", {
            "200": _resp("ok", {"type": "object"}), "404": unknown}, params=[_NODE_PARAM],
            op_id="node_schema")},
        "/api/stop": {"post": _op("stop the pipeline gracefully (what is in flight drains)", {
            "202": _resp("stop requested", _obj({"state": {"type": "string"}}, ["state"]))},
            op_id="stop")},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "StreamLab control API", "version": version,
                 "description": "Served by a running pipeline on 127.0.0.1. Every request needs "
                                "the token. GET never changes anything."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "cookie": {"type": "apiKey", "in": "cookie",
                                           "name": cookie}},
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }
