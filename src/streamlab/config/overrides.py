"""``--set KEY=VALUE``: change one value of a config document before it is validated.

``KEY`` is a dotted path into the JSON document. In ``nodes`` a node is addressed by its id
(ids may contain dots: the longest matching id wins) or by its index; other lists by index::

    nodes.r_peaks.config.height=0.5        pipeline_config.channel_capacity=64
    connections.0.overflow=drop_oldest     name=sweep-3

``VALUE`` is parsed as JSON (``0.5``, ``true``, ``[1, 2]``, ``null``, ``"0.5"``) and taken as a
plain string when it is not valid JSON (``drop_oldest``). A key may be one already in the
document or a field the model knows at that place (a node type's config fields, the node,
connection and ``pipeline_config`` fields), so a default can be overridden; anything else is an
error naming the JSON path, with the closest existing keys. The resulting document is then
validated exactly like a file.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from streamlab.config.model import (
    ConnectionSpec,
    NodeSpec,
    PipelineSettings,
)
from streamlab.config.resilience import (
    RENAMED,
    CircuitBreakerSettings,
    Exponential,
    Immediate,
    Never,
    Propagate,
    SkipFrame,
    UseDefault,
)
from streamlab.errors import ConfigError, ConfigProblem

__all__ = ["apply_overrides", "parse_value"]

_TOP = {"name", "pipeline_config", "nodes", "connections"}
# keys whose value is an object that --set may create when it is absent
_OBJECTS = {"pipeline_config", "config", "error_policy", "restart", "breaker"}


class _Bad(Exception):
    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        self.loc, self.message = loc, message


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """JSON if ``text`` is valid JSON (NaN/Infinity excepted), else the string itself."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def apply_overrides(data: Any, overrides: Sequence[str], *, source: str = "") -> Any:
    """A copy of ``data`` with every ``KEY=VALUE`` of ``overrides`` applied, in order.

    Raises ConfigError listing every override that does not fit (each problem starts with the
    JSON path it names). ``data`` itself is not modified.
    """
    from streamlab.config.loader import json_path

    if not isinstance(data, dict):
        return data  # the loader reports the top level
    doc = copy.deepcopy(data)
    problems = []
    for text in overrides:
        key, eq, raw = text.partition("=")
        if not eq or not key.strip():
            problems.append(ConfigProblem("$", f"--set {text!r}: expected KEY=VALUE, e.g. "
                                               "nodes.gain.config.gain=0.5"))
            continue
        try:
            _set(doc, key.strip(), parse_value(raw))
        except _Bad as bad:
            problems.append(ConfigProblem(json_path(bad.loc), f"--set {text}: {bad.message}"))
    if problems:
        raise ConfigError(problems, source=source)
    return doc


def _fields(*models: type[BaseModel]) -> set[str]:
    out: set[str] = set()
    for m in models:
        out.update(f.alias or name for name, f in m.model_fields.items())
        out.update(RENAMED.get(m.__name__, {}))  # deprecated names still load (with a warning)
    return out


def _known(kind: str, node_type: Any) -> set[str]:
    """Keys the model accepts at a place of the document."""
    if kind == "top":
        return set(_TOP)
    if kind == "settings":
        return _fields(PipelineSettings)
    if kind == "node":
        return _fields(NodeSpec)
    if kind == "connection":
        return _fields(ConnectionSpec)
    if kind == "policy":
        return _fields(Propagate, SkipFrame, UseDefault)
    if kind == "restart":
        return _fields(Never, Immediate, Exponential)
    if kind == "breaker":
        return _fields(CircuitBreakerSettings)
    if kind == "config" and isinstance(node_type, str):
        from streamlab.registry import node_types

        cls = node_types().get(node_type)
        if cls is not None:
            return _fields(cls.Config)
    return set()


_CHILD = {
    ("top", "pipeline_config"): "settings", ("top", "nodes"): "nodes",
    ("top", "connections"): "connections", ("node", "config"): "config",
    ("node", "error_policy"): "policy", ("settings", "error_policy"): "policy",
    ("node", "restart"): "restart", ("settings", "restart"): "restart",
    ("node", "breaker"): "breaker", ("settings", "breaker"): "breaker",
}


def _hint(word: str, candidates: set[str] | list[str]) -> str:
    names = sorted(set(candidates))
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    if close:
        return " (did you mean " + ", ".join(repr(c) for c in close) + "?)"
    if names:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        return f" (here: {shown})"
    return ""


def _set(doc: dict[str, Any], key: str, value: Any) -> None:
    segs = key.split(".")
    cur: Any = doc
    loc: tuple[Any, ...] = ()
    kind, node_type = "top", None
    i = 0
    while True:
        seg = segs[i]
        if isinstance(cur, list):
            idx, used = _index(cur, segs, i, kind, loc)
            if i + used == len(segs):
                cur[idx] = value
                return
            loc += (idx,)
            if kind == "nodes":
                kind = "node"
                node_type = cur[idx].get("type") if isinstance(cur[idx], dict) else None
            else:
                kind = "connection" if kind == "connections" else "any"
            cur = cur[idx]
            i += used
            continue
        if not isinstance(cur, dict):
            raise _Bad(loc, f"{type(cur).__name__} value here, not an object or a list: "
                            f"cannot set {'.'.join(segs[i:])!r} inside it")
        known = _known(kind, node_type)
        if seg not in cur and seg not in known:
            raise _Bad(loc + (seg,), "no such key" + _hint(seg, set(cur) | known))
        if i == len(segs) - 1:
            cur[seg] = value
            return
        if cur.get(seg) is None:
            if seg not in _OBJECTS:
                raise _Bad(loc + (seg,), f"no value here to set {'.'.join(segs[i + 1:])!r} in")
            cur[seg] = {}
        kind = _CHILD.get((kind, seg), "any")
        cur = cur[seg]
        loc += (seg,)
        i += 1


def _index(items: list[Any], segs: list[str], i: int, kind: str,
           loc: tuple[Any, ...]) -> tuple[int, int]:
    """(list index, path segments used) for ``segs[i:]`` in ``items``."""
    if kind == "nodes":
        ids = {n["id"]: k for k, n in enumerate(items)
               if isinstance(n, dict) and isinstance(n.get("id"), str)}
        for j in range(len(segs), i, -1):  # ids may contain dots: longest match first
            cand = ".".join(segs[i:j])
            if cand in ids:
                return ids[cand], j - i
    seg = segs[i]
    if seg.isdigit() and int(seg) < len(items):
        return int(seg), 1
    if kind == "nodes":
        raise _Bad(loc, f"no node with id {seg!r}" + _hint(seg, [k for k in _ids(items)]))
    raise _Bad(loc, f"no element {seg!r}: expected an index from 0 to {len(items) - 1}"
               if items else f"no element {seg!r}: the list is empty")


def _ids(items: list[Any]) -> list[str]:
    return [n["id"] for n in items if isinstance(n, dict) and isinstance(n.get("id"), str)]
