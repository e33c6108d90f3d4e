"""The node registry: node type name -> ProcessingNode subclass.

Built-in nodes register under their class names when ``streamlab.nodes`` is imported.
Third-party packages register by declaring an entry point in the ``streamlab.nodes`` group::

    [project.entry-points."streamlab.nodes"]
    MyFilter = "my_package.nodes:MyFilter"

Entry points are loaded once, the first time a type is looked up; a broken plugin is reported
with its name instead of crashing the lookup of other types. A config only ever names a
registered type: nothing a config names is imported.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import threading
from collections.abc import Callable
from typing import TypeVar

from streamlab.errors import StreamLabError, UnknownNodeTypeError
from streamlab.node import ProcessingNode

__all__ = [
    "register_node",
    "get_node_type",
    "node_types",
    "unregister_node",
    "ENTRY_POINT_GROUP",
    "plugin_errors",
]

ENTRY_POINT_GROUP = "streamlab.nodes"
N = TypeVar("N", bound=type[ProcessingNode])

_registry: dict[str, type[ProcessingNode]] = {}
_lock = threading.Lock()
_loaded = False
_plugin_errors: dict[str, str] = {}


def register_node(cls: N | None = None, *, name: str | None = None) -> N | Callable[[N], N]:
    """Register a node class under ``name`` (default: its class name). Usable as a decorator.

    Registering a different class under a taken name is an error; re-registering the same
    class is a no-op.
    """

    def add(c: N) -> N:
        if not (isinstance(c, type) and issubclass(c, ProcessingNode)):
            raise TypeError(f"register_node: {c!r} is not a ProcessingNode subclass")
        key = name or c.__name__
        with _lock:
            old = _registry.get(key)
            if old is not None and old is not c:
                raise StreamLabError(
                    f"node type {key!r} is already registered to {old.__module__}.{old.__qualname__}"
                )
            _registry[key] = c
        return c

    return add(cls) if cls is not None else add


def unregister_node(name: str) -> None:
    """Remove a type (for tests and plugin reloads)."""
    with _lock:
        _registry.pop(name, None)


def _load_builtins_and_plugins() -> None:
    global _loaded
    if _loaded:
        return
    import streamlab.nodes  # noqa: F401  (registers the built-ins)

    with _lock:
        if _loaded:
            return
        _loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _registry:
            continue
        try:
            cls = ep.load()
            register_node(cls, name=ep.name)
        except Exception as exc:  # a broken plugin must not hide the others; it is reported
            _plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"


def plugin_errors() -> dict[str, str]:
    """Entry points of the ``streamlab.nodes`` group that failed to load, with the reason."""
    _load_builtins_and_plugins()
    return dict(_plugin_errors)


def node_types() -> dict[str, type[ProcessingNode]]:
    """Every registered node type, built-ins and plugins, sorted by name."""
    _load_builtins_and_plugins()
    return dict(sorted(_registry.items()))


def get_node_type(name: str, *, path: str = "$") -> type[ProcessingNode]:
    """The class registered as ``name``; UnknownNodeTypeError listing close matches otherwise."""
    _load_builtins_and_plugins()
    try:
        return _registry[name]
    except (KeyError, TypeError):
        pass
    if name in _plugin_errors:
        raise UnknownNodeTypeError(name, [], path=path) from StreamLabError(
            f"plugin {name!r} failed to load: {_plugin_errors[name]}"
        )
    text = name if isinstance(name, str) else repr(name)
    lower = {k.lower(): k for k in _registry}
    close = difflib.get_close_matches(text.lower(), list(lower), n=3, cutoff=0.6)
    raise UnknownNodeTypeError(text, [lower[c] for c in close], path=path)
