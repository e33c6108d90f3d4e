"""Read-only views of a running :class:`~streamlab.runtime.AsyncPipeline` for the control API.

The live runtime (``pipeline.graph()``, ``node_config()``, ``node_schema()``,
``config_version()``, ``tap()``) may or may not be present on the pipeline: each function here
uses the pipeline's own method when it has one, and otherwise reads the pipeline's existing
internals (the spec, the built nodes, the channels), so the dashboard works either way.

**Taps** (:class:`Tap`, used when the pipeline has no ``tap()``): a tap on node ``X`` sees the
frames ``X`` emits. It wraps the node's process call (``ResilientNode._process``) with a
function that keeps a reference to each output in a bounded deque: nothing is copied, nothing
waits, and a pipeline with no tap open runs the original call (zero cost). Closing the last tap
of a node restores the original call. A node restarted by its strategy gets a fresh process
call: the tap re-installs itself on the next :meth:`Tap.frames_since`. Nodes that own their loop
(``run`` overridden) are not tappable here (:class:`TapError`).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from streamlab.errors import StreamLabError
from streamlab.frame import DataFrame

if TYPE_CHECKING:
    from streamlab.runtime.async_pipeline import AsyncPipeline

__all__ = ["graph", "node_config", "node_schema", "config_version", "node_ids", "open_tap",
           "Tap", "TapError", "UnknownNode", "validate_changes"]

_HISTORY = 512  # frames a tap keeps (references only)


class UnknownNode(StreamLabError, KeyError):
    """No node of that id in the pipeline."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown node"


class TapError(StreamLabError):
    """The node cannot be tapped."""


def node_ids(pipe: AsyncPipeline) -> list[str]:
    g = _live_graph(pipe)
    if g is not None:
        return [n["id"] for n in g["nodes"]]
    return [n.id for n in pipe.spec.nodes]


def _check(pipe: AsyncPipeline, node_id: str) -> None:
    if node_id not in node_ids(pipe):
        raise UnknownNode(f"no node {node_id!r} in pipeline {pipe.name!r}")


def _live_graph(pipe: Any) -> dict[str, Any] | None:
    fn = getattr(pipe, "graph", None)
    return fn() if callable(fn) else None


def config_version(pipe: AsyncPipeline, node_id: str) -> int:
    fn = getattr(pipe, "config_version", None)
    if callable(fn):
        return int(fn(node_id))
    _check(pipe, node_id)
    return 0


def node_config(pipe: AsyncPipeline, node_id: str) -> dict[str, Any]:
    """The node's current configuration as JSON-able data."""
    fn = getattr(pipe, "node_config", None)
    if callable(fn):
        return dict(fn(node_id))
    _check(pipe, node_id)
    cfg = pipe.spec.node_config(node_id)
    return dict(cfg.model_dump(mode="json"))


def node_schema(pipe: AsyncPipeline, node_id: str) -> dict[str, Any]:
    """The JSON Schema of the node's config model (with ``$defs`` inlined where used)."""
    fn = getattr(pipe, "node_schema", None)
    if callable(fn):
        return dict(fn(node_id))
    _check(pipe, node_id)
    cls = pipe.spec.node_type(node_id)
    schema: dict[str, Any] = cls.Config.model_json_schema()
    schema.setdefault("title", cls.__name__)
    schema.setdefault("description", cls.description())
    return schema


def validate_changes(pipe: AsyncPipeline, node_id: str,
                     changes: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems ``(json_path, message)`` of applying ``changes`` to the node's config; [] if
    valid. Checked against the node's config model (the runtime checks again when it applies)."""
    from pydantic import ValidationError

    _check(pipe, node_id)
    cls = pipe.spec.node_type(node_id)
    fields = cls.Config.model_fields
    problems = [(f"$.{k}", f"unknown setting of {cls.__name__} (settings: "
                 f"{', '.join(sorted(fields))})") for k in changes if k not in fields]
    if problems:
        return problems
    merged = {**node_config(pipe, node_id), **changes}
    try:
        cls.Config.model_validate(merged)
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
            got = e.get("input")
            detail = f" (got {got!r})" if isinstance(got, (int, float, str, bool)) or got is None else ""
            problems.append((path, e["msg"] + detail))
    return problems


def graph(pipe: AsyncPipeline) -> dict[str, Any]:
    """``{"nodes": [{"id","type","config","version"}], "edges": [{"from","to","depth",
    "capacity","dropped","fused"}]}``: every edge of the graph; an edge inside a fused chain
    has no queue (depth 0, capacity 0, ``fused: true``)."""
    live = _live_graph(pipe)
    if live is not None:
        return live
    nodes = [{"id": n.id, "type": n.type, "config": node_config(pipe, n.id),
              "version": config_version(pipe, n.id)} for n in pipe.spec.nodes]
    edges = []
    for a, b in pipe.built.graph.edges:
        ch = pipe.channels.get((a, b))
        if ch is None:
            edges.append({"from": a, "to": b, "depth": 0, "capacity": 0, "dropped": 0,
                          "fused": True})
        else:
            s = ch.statistics()
            edges.append({"from": a, "to": b, "depth": s.depth, "capacity": s.capacity,
                          "dropped": s.dropped, "fused": False})
    return {"nodes": nodes, "edges": edges}


# -- taps ---------------------------------------------------------------------------------
class _TapPoint:
    """The wrapper installed on one node while at least one tap is open."""

    def __init__(self, stage: Any) -> None:
        self.stage = stage
        self.original: Callable[[Any], Any] = stage._process
        self.history: deque[tuple[int, DataFrame]] = deque(maxlen=_HISTORY)
        self.seen = 0
        self.users = 0
        self.wrapper = self._make_wrapper(self.original)
        stage._process = self.wrapper

    def _keep(self, out: Any) -> None:
        if out is None:
            return
        if type(out) is DataFrame:
            self.seen += 1
            self.history.append((self.seen, out))
        else:
            for f in out:
                if isinstance(f, DataFrame):
                    self.seen += 1
                    self.history.append((self.seen, f))

    def _make_wrapper(self, original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        keep = self._keep
        if inspect.iscoroutinefunction(original):
            async def tapped_async(frame: Any) -> Any:
                out = await original(frame)
                keep(out)
                return out
            return tapped_async

        def tapped(frame: Any) -> Any:
            out = original(frame)
            keep(out)
            return out
        return tapped

    def refresh(self) -> None:
        """Re-install after a restart replaced the node's process call."""
        st = self.stage
        if st._process is not self.wrapper:
            self.original = st._process
            self.wrapper = self._make_wrapper(self.original)
            st._process = self.wrapper

    def remove(self) -> None:
        if self.stage._process is self.wrapper:
            self.stage._process = self.original


_POINTS: dict[int, _TapPoint] = {}  # id(ResilientNode) -> its tap point


class Tap:
    """A latest-value view of a node's outputs (see the module docstring).

    ``latest()`` is the newest frame (None before the first), ``seen`` counts frames seen
    since the tap point was installed, ``frames_since(n)`` returns the kept frames after the
    ``n``-th (at most the last 512; older ones are gone: a reader that falls behind skips).
    ``close()`` is idempotent.
    """

    def __init__(self, point: _TapPoint) -> None:
        self._point: _TapPoint | None = point
        point.users += 1

    @property
    def seen(self) -> int:
        return self._point.seen if self._point is not None else 0

    def latest(self) -> DataFrame | None:
        p = self._point
        if p is None or not p.history:
            return None
        return p.history[-1][1]

    def frames_since(self, n: int) -> tuple[list[DataFrame], int]:
        """Frames after the ``n``-th and the new count (pass it back next time)."""
        p = self._point
        if p is None:
            return [], n
        p.refresh()
        seen = p.seen
        if seen <= n:
            return [], seen
        return [f for i, f in list(p.history) if i > n], seen

    def close(self) -> None:
        p, self._point = self._point, None
        if p is None:
            return
        p.users -= 1
        if p.users <= 0:
            p.remove()
            _POINTS.pop(id(p.stage), None)


def open_tap(pipe: AsyncPipeline, node_id: str) -> Any:
    """A tap on ``node_id``'s outputs: the pipeline's own ``tap()`` when it has one, else
    :class:`Tap`. Raises :class:`UnknownNode` or :class:`TapError`."""
    fn = getattr(pipe, "tap", None)
    if callable(fn):
        return fn(node_id)
    _check(pipe, node_id)
    from streamlab.node import overrides_run

    stage = pipe.built.nodes[node_id]
    if overrides_run(stage.node):
        raise TapError(f"node {node_id!r} runs its own loop: it cannot be tapped")
    point = _POINTS.get(id(stage))
    if point is None:
        point = _POINTS[id(stage)] = _TapPoint(stage)
    return Tap(point)
