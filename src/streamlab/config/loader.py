"""Load and validate a pipeline config, reporting every problem with its JSON path.

:func:`load_config` accepts a path, a JSON string, a dict or a :class:`PipelineSpec`. It never
imports anything a config names: node types come from the registry. Problems are collected in
one pass and raised together as a :class:`~streamlab.errors.ConfigError`; each starts with its
JSON path, e.g. ``$.nodes[2].config.gain: Input should be a valid number (got 'x')``.

Hostile input is rejected cleanly: files over 16 MiB, nesting deeper than 64, NaN/Infinity
literals, numbers with thousands of digits, invalid UTF-8, directories and missing files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from streamlab.config.model import (
    LIMITS,
    ConnectionSpec,
    NodeSpec,
    PipelineSettings,
    PipelineSpec,
    resilience_problems,
)
from streamlab.config.paths import check_path, iter_paths, path_fields, resolve_path
from streamlab.config.resilience import migrate_node
from streamlab.errors import ConfigError, ConfigProblem, UnknownNodeTypeError
from streamlab.graph import find_cycle

__all__ = ["load_config", "parse_json", "json_path"]


def json_path(loc: tuple[Any, ...] | list[Any], root: str = "$") -> str:
    """``('nodes', 2, 'config', 'gain')`` -> ``$.nodes[2].config.gain``."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pydantic_problems(exc: ValidationError, prefix: tuple[Any, ...]) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not _is_tag(p))
        msg = err["msg"]
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            got = err["input"]
            if not isinstance(got, (dict, list)):
                msg += f" (got {_short(got)})"
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here)"
        problems.append(ConfigProblem(json_path(prefix + loc), msg))
    return problems


# pydantic puts the discriminated union's tag (and validator wrappers) in the location; drop
# them from paths.
_UNION_TAGS = {"Propagate", "SkipFrame", "UseDefault", "Never", "Immediate", "Exponential"}


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or part.startswith("function-"))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON (use null or a finite number)")


def _depth(obj: Any) -> int:
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > LIMITS.max_depth:
                return deepest
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def _has_nonfinite(obj: Any, path: tuple[Any, ...], out: list[ConfigProblem]) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        out.append(ConfigProblem(json_path(path), f"number out of range (got {obj!r})"))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _has_nonfinite(v, path + (k,), out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _has_nonfinite(v, path + (i,), out)


def parse_json(text: str | bytes, *, source: str = "") -> Any:
    """Parse JSON text with StreamLab's limits; ConfigError on anything unacceptable."""
    if isinstance(text, bytes):
        if len(text) > LIMITS.max_file_bytes:
            raise ConfigError(f"config is {len(text)} bytes; the limit is {LIMITS.max_file_bytes}",
                              source=source)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                              source=source) from None
    if len(text) > LIMITS.max_file_bytes:
        raise ConfigError(f"config is {len(text)} characters; the limit is {LIMITS.max_file_bytes}",
                          source=source)
    # Reject deep nesting before the parser recurses into it.
    depth = level = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            level += 1
            if level > depth:
                depth = level
                if depth > LIMITS.max_depth:
                    raise ConfigError(
                        f"JSON nested deeper than {LIMITS.max_depth} levels", source=source)
        elif ch in "]}":
            level -= 1
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", source=source
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"invalid JSON: {exc}", source=source) from None
    return data


def _read(source: str | os.PathLike[str]) -> tuple[Any, str]:
    path = Path(source)
    name = str(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {name}", source=name)
    if path.is_dir():
        raise ConfigError(f"expected a JSON file, got a directory: {name}", source=name)
    try:
        size = path.stat().st_size
        if size > LIMITS.max_file_bytes:
            raise ConfigError(f"config file is {size} bytes; the limit is {LIMITS.max_file_bytes}",
                              source=name)
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", source=name) from None
    return parse_json(raw, source=name), name


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | PipelineSpec,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    check_files: bool = False,
    overrides: Sequence[str] = (),
) -> PipelineSpec:
    """Validate a pipeline config; returns a PipelineSpec with every node's config resolved.

    ``source`` may be a path to a JSON file, a JSON string (starting with ``{``), a dict, or an
    already loaded spec. Raises ConfigError listing every problem.

    Relative file paths in node configs (fields marked :data:`~streamlab.config.InputPath` /
    :data:`~streamlab.config.OutputPath`) are resolved against ``base_dir``, which defaults to
    the folder of the config file; a JSON string or dict without ``base_dir`` keeps them
    relative to the working directory. The returned spec holds the resolved paths.

    ``check_files`` also checks what can be checked without running: input files exist and are
    readable regular files, output files can be created (see :mod:`streamlab.config.paths`).

    ``overrides`` are ``"dotted.path=value"`` settings applied to the document before it is
    validated (``streamlab run --set``; see :func:`streamlab.config.overrides.apply_overrides`).
    """
    if isinstance(source, PipelineSpec):
        if source._node_types and base_dir is None and not check_files and not overrides:
            return source
        source = source.to_json_dict()
    name = ""
    base = Path(base_dir).absolute() if base_dir is not None else None
    if isinstance(source, (str, os.PathLike)):
        if isinstance(source, str) and source.lstrip().startswith("{"):
            data = parse_json(source)
        else:
            data, name = _read(source)
            if base is None:
                base = Path(name).absolute().parent
    else:
        data = source
        if _depth(data) > LIMITS.max_depth:
            raise ConfigError(f"config nested deeper than {LIMITS.max_depth} levels")
    if overrides:
        from streamlab.config.overrides import apply_overrides

        data = apply_overrides(data, overrides, source=name)
    return _validate(data, name, _Files(base, check_files, from_file=bool(name) and base_dir is None))


@dataclass(frozen=True)
class _Files:
    """How node config paths are resolved and whether they are checked."""

    base: Path | None
    check: bool
    from_file: bool

    def note(self) -> str:
        """Where a relative path was resolved, for "no such file" messages."""
        if self.base is None:
            return f" (relative paths are relative to the working directory {str(Path.cwd())!r})"
        where = "the config file's folder" if self.from_file else "base_dir"
        return f" (relative paths are relative to {where} {str(self.base)!r})"


def _validate(data: Any, source: str, files: _Files) -> PipelineSpec:
    problems: list[ConfigProblem] = []
    if not isinstance(data, dict):
        raise ConfigError(f"expected a JSON object at the top level, got {type(data).__name__}",
                          source=source)
    _has_nonfinite(data, (), problems)

    for key in data:
        if key not in ("name", "pipeline_config", "nodes", "connections"):
            problems.append(ConfigProblem(json_path((key,)), "unknown key (expected name, "
                                          "pipeline_config, nodes, connections)"))
    if "name" in data and not isinstance(data["name"], str):
        problems.append(ConfigProblem("$.name", f"expected a string (got {_short(data['name'])})"))

    # deprecated names -> new ones (a DeprecationWarning per key, naming its JSON path)
    moved: list[tuple[str, str]] = []
    raw_settings = migrate_node(data.get("pipeline_config", {}), "$.pipeline_config",
                                "PipelineSettings", moved)
    settings = _one(PipelineSettings, raw_settings, ("pipeline_config",), problems)

    raw_nodes = data.get("nodes")
    nodes: list[tuple[int, NodeSpec]] = []
    if raw_nodes is None:
        problems.append(ConfigProblem("$.nodes", "missing: a pipeline needs at least one node"))
    elif not isinstance(raw_nodes, list):
        problems.append(ConfigProblem("$.nodes", f"expected a list of nodes (got {type(raw_nodes).__name__})"))
    elif not raw_nodes:
        problems.append(ConfigProblem("$.nodes", "empty: a pipeline needs at least one node"))
    elif len(raw_nodes) > LIMITS.max_nodes:
        problems.append(ConfigProblem("$.nodes", f"{len(raw_nodes)} nodes; the limit is {LIMITS.max_nodes}"))
    else:
        for i, raw in enumerate(raw_nodes):
            raw = migrate_node(raw, f"$.nodes[{i}]", "NodeSpec", moved)
            spec = _one(NodeSpec, raw, ("nodes", i), problems)
            if spec is not None:
                nodes.append((i, spec))

    raw_conns = data.get("connections", [])
    conns: list[tuple[int, ConnectionSpec]] = []
    invalid_conn_ends: list[tuple[int, dict[str, Any]]] = []
    if not isinstance(raw_conns, list):
        problems.append(ConfigProblem("$.connections", f"expected a list (got {type(raw_conns).__name__})"))
    elif len(raw_conns) > LIMITS.max_connections:
        problems.append(ConfigProblem("$.connections",
                                      f"{len(raw_conns)} connections; the limit is {LIMITS.max_connections}"))
    else:
        for i, raw in enumerate(raw_conns):
            spec = _one(ConnectionSpec, raw, ("connections", i), problems)
            if spec is not None:
                conns.append((i, spec))
            elif isinstance(raw, dict):
                invalid_conn_ends.append((i, raw))

    problems.extend(ConfigProblem(path, msg) for path, msg in moved)
    node_types, node_configs = _check_nodes(nodes, problems, files)
    if settings is not None:  # restart and breaker need a recovering error policy
        problems.extend(ConfigProblem(path, msg) for path, msg in resilience_problems(settings, nodes))
    ids = _check_graph(nodes, conns, raw_nodes if isinstance(raw_nodes, list) else [], problems)
    for i, raw in invalid_conn_ends:  # still report dangling ends of otherwise invalid edges
        for key in ("from", "to"):
            end = raw.get(key)
            if isinstance(end, str) and end not in ids:
                problems.append(ConfigProblem(f"$.connections[{i}].{key}", f"no node with id {end!r}"))
    problems.sort(key=lambda p: _path_key(p.path))

    if problems:
        raise ConfigError(problems, source=source)
    spec = PipelineSpec(
        name=data.get("name", "pipeline"),
        pipeline_config=settings or PipelineSettings(),
        nodes=[n for _, n in nodes],
        connections=[c for _, c in conns],
    )
    spec._node_types = node_types
    spec._node_configs = node_configs
    return spec


def _one(model: type[BaseModel], raw: Any, loc: tuple[Any, ...], problems: list[ConfigProblem]) -> Any:
    if not isinstance(raw, dict):
        problems.append(ConfigProblem(json_path(loc), f"expected an object (got {_short(raw)})"))
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, loc))
        return None


def _check_nodes(
    nodes: list[tuple[int, NodeSpec]], problems: list[ConfigProblem], files: _Files
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ids, types and node configs; resolves (and with ``files.check``, checks) file paths.

    Entries of ``nodes`` whose paths were resolved are replaced by specs holding the resolved
    paths, so that ``to_json_dict()`` round-trips to the same files.
    """
    from streamlab.registry import get_node_type

    written: dict[str, str] = {}  # resolved output file -> JSON path of its first writer

    seen: dict[str, int] = {}
    types: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    for k, (i, node) in enumerate(nodes):
        duplicate = node.id in seen
        if duplicate:
            problems.append(ConfigProblem(f"$.nodes[{i}].id",
                                          f"duplicate node id {node.id!r} (first at $.nodes[{seen[node.id]}])"))
        else:
            seen[node.id] = i
        try:
            cls = get_node_type(node.type, path=f"$.nodes[{i}].type")
        except UnknownNodeTypeError as exc:
            problems.extend(exc.problems)
            continue
        try:
            cfg = cls.Config.model_validate(node.config)
        except ValidationError as exc:
            for p in _pydantic_problems(exc, ("nodes", i, "config")):
                problems.append(ConfigProblem(p.path, f"{p.message} [node {node.id!r}, type {node.type!r}]"))
            continue
        fields = path_fields(cls.Config)
        if fields:
            given = node.config
            node, cfg = _resolve_paths(node, cls, cfg, fields, files)
            nodes[k] = (i, node)
            if files.check:
                _check_files(i, node, given, cfg, fields, files, written, problems)
        if not duplicate:
            types[node.id] = cls
            configs[node.id] = cfg
        if node.dead_letter is not None and node.dead_letter == node.id:
            problems.append(ConfigProblem(f"$.nodes[{i}].dead_letter", "a node cannot be its own dead letter"))
    ids = set(seen)
    for i, node in nodes:
        if node.dead_letter is not None and node.dead_letter not in ids:
            problems.append(ConfigProblem(f"$.nodes[{i}].dead_letter",
                                          f"no node with id {node.dead_letter!r}"))
    return types, configs


def _resolve_paths(
    node: NodeSpec, cls: Any, cfg: Any, fields: dict[str, str], files: _Files
) -> tuple[NodeSpec, Any]:
    """The node spec and config with relative paths joined to ``files.base``."""
    changed = {}
    for name, _kind, value in iter_paths(cfg, fields):
        resolved = resolve_path(value, files.base)
        if resolved != value:
            changed[name] = resolved
    if not changed:
        return node, cfg
    raw = {**node.config, **changed}
    # re-validated (not copied) so that validators see the path the node will open
    return node.model_copy(update={"config": raw}), cls.Config.model_validate(raw)


def _check_files(
    i: int, node: NodeSpec, given: dict[str, Any], cfg: Any, fields: dict[str, str],
    files: _Files, written: dict[str, str], problems: list[ConfigProblem],
) -> None:
    """Problems with the node's files as they are now (``given``: the paths as written)."""
    for name, kind, value in iter_paths(cfg, fields):
        where = f"$.nodes[{i}].config.{name}"
        tag = f" [node {node.id!r}, type {node.type!r}]"
        relative = not Path(str(given.get(name, value))).expanduser().is_absolute()
        note = files.note() if relative else ""
        msg = check_path(value, kind, note)
        if msg is None and kind == "input" and hasattr(cfg, "check_input_file"):
            msg = cfg.check_input_file(name, value)  # the node's check of the contents
        if msg is not None:
            problems.append(ConfigProblem(where, msg + tag))
        if kind == "output":
            key = os.path.normpath(Path(value).expanduser().absolute())
            if key in written:
                problems.append(ConfigProblem(
                    where, f"{value!r} is also written by {written[key]}; two nodes cannot "
                    f"write the same file{tag}"))
            else:
                written[key] = where


def _check_graph(
    nodes: list[tuple[int, NodeSpec]],
    conns: list[tuple[int, ConnectionSpec]],
    raw_nodes: list[Any],
    problems: list[ConfigProblem],
) -> set[str]:
    ids = {n.id for _, n in nodes}
    # Ids of nodes that failed validation still count, so their edges are not also "dangling".
    for raw in raw_nodes:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            ids.add(raw["id"])
    edges: list[tuple[str, str]] = []
    seen: dict[tuple[str, str], int] = {}
    fanout: dict[str, int] = {}
    for i, c in conns:
        ok = True
        for end, key in ((c.from_, "from"), (c.to, "to")):
            if end not in ids:
                problems.append(ConfigProblem(f"$.connections[{i}].{key}",
                                              f"no node with id {end!r}"))
                ok = False
        if c.from_ == c.to:
            problems.append(ConfigProblem(f"$.connections[{i}]", f"self-loop on {c.from_!r}"))
            ok = False
        if (c.from_, c.to) in seen:
            problems.append(ConfigProblem(
                f"$.connections[{i}]",
                f"duplicate connection {c.from_!r} -> {c.to!r} (first at $.connections[{seen[(c.from_, c.to)]}])"))
            ok = False
        if ok:
            seen[(c.from_, c.to)] = i
            edges.append((c.from_, c.to))
            fanout[c.from_] = fanout.get(c.from_, 0) + 1
    for node_id, n in fanout.items():
        if n > LIMITS.max_fanout:
            problems.append(ConfigProblem("$.connections",
                                          f"node {node_id!r} has {n} outputs; the limit is {LIMITS.max_fanout}"))
    # dead-letter edges carry frames too: a cycle through them never ends either
    dead = {(n.id, n.dead_letter): i for i, n in nodes
            if n.dead_letter is not None and n.dead_letter in ids and n.dead_letter != n.id}
    cycle = find_cycle([n.id for _, n in nodes], edges + [e for e in dead if e not in seen])
    if cycle:
        first = (cycle[0], cycle[1])
        where = (f"$.connections[{seen[first]}]" if first in seen
                 else f"$.nodes[{dead[first]}].dead_letter")
        problems.append(ConfigProblem(where, "cycle: " + " -> ".join(cycle)))
    return ids


def _path_key(path: str) -> list[Any]:
    """Sort JSON paths in document order ($.nodes[2] before $.nodes[10])."""
    import re

    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"[\[\].]+", path) if t]
