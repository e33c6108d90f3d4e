"""Live changes of a running :class:`~streamlab.runtime.AsyncPipeline`: parameters, topology,
taps. What each change does to state, frames in flight, metrics and the accounting is in
docs/live.md; in short:

* **Every change is validated first** (the node's config model, the node type, the place in
  the graph) and refused with :class:`~streamlab.errors.ConfigError` (JSON paths such as
  ``$.nodes[2].config.cutoff``) before anything is touched: the running graph goes on as it
  was. An unknown node id raises :class:`NodeNotFound`; a pipeline that is not running,
  :class:`~streamlab.errors.PipelineStopped`.
* **Applied between two batches** of the task that runs the node
  (:meth:`~streamlab.runtime.driver.NodeDriver.at_boundary`): whatever is slow (building a
  fresh instance, its ``on_start``; the old one's ``on_stop``) happens outside; what the task
  sees is one synchronous swap. No frame meets a half-applied configuration.
* **State kept where it means something**: a node whose type overrides ``on_update`` may take
  the change in place (the IIR filters carry their section states); otherwise, or for fields
  in ``rebuild_on``, a fresh instance is built from the new config. Channels belong to edges,
  so queued frames stay queued either way.
* **Numbered, logged, counted**: a config version per node (0 as started, +1 per applied
  change; in the run report and, with ``stamp_config_version``, in each output frame's
  metadata ``config_version.<node>``); a :class:`ChangeRecord` per change tried; the counter
  ``streamlab_config_changes_total{node,kind,result}``.
* **Topology**: ``replace_node`` swaps the node of a stage (same edges, queues kept);
  ``add_node`` inserts a stage into the task next to its neighbour (before ``before``, or after
  ``after``); ``remove_node`` turns the node's stage into a pass-through (its frames flow on
  to its outputs: nothing queued is lost) and splices the graph view. No task is started or
  stopped, so the accounting identity holds for every node throughout.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from streamlab.channel import Channel
from streamlab.config.loader import _pydantic_problems
from streamlab.config.model import NodeSpec
from streamlab.errors import (
    ConfigError,
    ConfigProblem,
    NodeError,
    PipelineError,
    PipelineStopped,
    StreamLabError,
)
from streamlab.frame import DataFrame
from streamlab.metrics.node_metrics import NodeMetrics
from streamlab.node import (
    NodeContext,
    ProcessingNode,
    SourceNode,
    is_async_process,
    rebuild_fields,
    updates_in_place,
)
from streamlab.resilience.resilient import ResilientNode, _maybe_await
from streamlab.runtime.driver import Driver, InletFeed, NodeDriver, SourceFeed, stage_runner

if TYPE_CHECKING:
    from streamlab.runtime.async_pipeline import AsyncPipeline

__all__ = ["ChangeRecord", "LiveControl", "NodeNotFound", "Tap"]

log = logging.getLogger("streamlab.live")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_SPEC_KEYS = ("type", "config")


class NodeNotFound(StreamLabError, KeyError):
    """A live change or query named a node the running graph does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown node"


@dataclass(frozen=True)
class ChangeRecord:
    """One live change tried: applied (``ok``) or refused (``error`` says why).

    ``version`` is the node's config version after the change (unchanged when refused);
    ``applied_at_ns`` the wall-clock time (``time.time_ns()``) it was applied or refused;
    ``apply_s`` how long the call took (validation, building, waiting for the batch boundary).
    """

    version: int
    node_id: str
    kind: str
    changes: dict[str, Any]
    ok: bool
    error: str | None
    applied_at_ns: int
    apply_s: float
    mode: str = ""  # applied "in_place", "rebuilt", "inserted" or "bypassed"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Tap:
    """A latest-value view of a node's outputs: :meth:`latest` is the last frame it emitted
    (None before the first), ``seen`` how many it emitted since the tap opened. It keeps
    references only: it never blocks, copies or slows the node. :meth:`close` detaches it.

    With ``history=N`` (``pipe.tap(node, history=N)``) it also keeps the last ``N`` frames
    (a bounded deque of references) for :meth:`frames_since`, so a reader polling it sees
    every frame unless it falls more than ``N`` behind (then it skips the oldest)."""

    __slots__ = ("node_id", "_hub", "_latest", "_history", "seen", "closed")

    def __init__(self, node_id: str, hub: _TapHub, history: int = 0) -> None:
        if history < 0:
            raise ValueError(f"tap history must be >= 0 frames (got {history})")
        self.node_id = node_id
        self._hub = hub
        self._latest: DataFrame | None = None
        self._history: deque[DataFrame] | None = deque(maxlen=history) if history else None
        self.seen = 0
        self.closed = False

    def latest(self) -> DataFrame | None:
        return self._latest

    def frames_since(self, n: int) -> tuple[list[DataFrame], int]:
        """The kept frames after the ``n``-th one this tap saw, and the new count (pass it
        back next time). Frames older than the history are gone: fewer than ``seen - n``
        frames come back when the reader fell behind. Without history: the latest frame."""
        seen = self.seen
        if seen <= n:
            return [], seen
        if self._history is None:
            return ([] if self._latest is None else [self._latest]), seen
        want = min(seen - n, len(self._history))
        return list(self._history)[-want:], seen

    def close(self) -> None:
        """Detach (idempotent); the node pays nothing once its last tap is closed."""
        if not self.closed:
            self.closed = True
            self._hub.remove(self)
            self._history = None

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Tap {self.node_id!r} seen={self.seen}{' closed' if self.closed else ''}>"


class _TapHub:
    """The taps of one stage (``ResilientNode.tap`` while at least one is open)."""

    __slots__ = ("taps", "stage")

    def __init__(self, stage: ResilientNode) -> None:
        self.taps: list[Tap] = []
        self.stage = stage

    def offer(self, outs: list[DataFrame]) -> None:
        last, n = outs[-1], len(outs)
        for t in self.taps:
            t._latest = last
            t.seen += n
            if t._history is not None:
                t._history.extend(outs)

    def remove(self, tap: Tap) -> None:
        if tap in self.taps:
            self.taps.remove(tap)
        if not self.taps and self.stage.tap is self:
            self.stage.tap = None


class _Bypass(ProcessingNode):
    """What a removed node's stage runs: every frame passes on unchanged."""

    def process(self, frame: DataFrame) -> DataFrame:
        return frame


def _stamper(key: str, version: Callable[[], int]) -> Callable[[Callable[[Any], Any], bool],
                                                                Callable[[Any], Any]]:
    """Wraps a node's ``process`` so that its outputs carry ``metadata[key] = version()``."""

    def one(o: DataFrame, v: str) -> DataFrame:
        f = o.with_metadata({key: v})
        f.ingress_ns = o.ingress_ns
        return f

    def stamp(out: Any) -> Any:
        if out is None:
            return None
        v = str(version())
        if type(out) is DataFrame:
            return one(out, v)
        return [one(o, v) for o in out]

    def wrap(proc: Callable[[Any], Any], is_async: bool) -> Callable[[Any], Any]:
        if is_async:
            async def aproc(frame: Any) -> Any:
                return stamp(await proc(frame))
            return aproc

        def sproc(frame: Any) -> Any:
            return stamp(proc(frame))
        return sproc

    return wrap


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _changed(old: Any, new: Any) -> set[str]:
    a, b = old.model_dump(), new.model_dump()
    return {k for k in b if a.get(k) != b[k]}


class LiveControl:
    """The live side of one AsyncPipeline (``pipeline.live``); the pipeline's methods
    ``update``, ``replace_node``, ``add_node``, ``remove_node``, ``tap``, ``graph``... call it.
    Changes run one at a time (a lock), each from the pipeline's event loop.

    ``boundary_timeout_s``: how long a change waits for the node's task to reach a batch
    boundary (its current batch blocked downstream); then it is withdrawn and refused.
    """

    def __init__(self, pipe: AsyncPipeline, *, stamp: bool = False,
                 boundary_timeout_s: float = 30.0) -> None:
        self.pipe = pipe
        spec = pipe.spec
        self.order: list[str] = [n.id for n in spec.nodes]
        self.type_names: dict[str, str] = {n.id: n.type for n in spec.nodes}
        self.types: dict[str, type[ProcessingNode]] = {n.id: spec.node_type(n.id) for n in spec.nodes}
        self.configs: dict[str, Any] = {n.id: spec.node_config(n.id) for n in spec.nodes}
        self.raw: dict[str, dict[str, Any]] = {n.id: dict(n.config) for n in spec.nodes}
        self.executors: dict[str, str] = {n.id: n.executor for n in spec.nodes}
        self.versions: dict[str, int] = dict.fromkeys(self.order, 0)
        self.dead: set[tuple[str, str]] = set(pipe.built.dead_letter_edges.items())
        self.edges: list[tuple[str, str]] = list(pipe.built.graph.edges)
        # logical edge -> the channels frames cross on it, in order ([] inside a fused task)
        self.routes: dict[tuple[str, str], list[Channel]] = {
            e: ([pipe.channels[e]] if e in pipe.channels else []) for e in self.edges}
        self.removed: set[str] = set()
        self.records: list[ChangeRecord] = []
        self.stamp = stamp
        self.timeout = boundary_timeout_s
        self._lock = asyncio.Lock()
        if stamp:
            for node_id, st in pipe.built.nodes.items():
                self._install_stamp(node_id, st)

    # -- queries ------------------------------------------------------------------------------
    def _live_ids(self) -> list[str]:
        return [n for n in self.order if n not in self.removed]

    def index(self, node_id: str) -> int:
        """The node's position in the running graph (``$.nodes[i]``); NodeNotFound if none."""
        ids = self._live_ids()
        try:
            return ids.index(node_id)
        except ValueError:
            gone = " (removed)" if node_id in self.removed else ""
            raise NodeNotFound(f"pipeline {self.pipe.name!r} has no node {node_id!r}{gone}; "
                               f"nodes: {', '.join(ids)}") from None

    def node_config(self, node_id: str) -> dict[str, Any]:
        self.index(node_id)
        return dict(self.configs[node_id].model_dump(mode="json", by_alias=True))

    def node_schema(self, node_id: str) -> dict[str, Any]:
        self.index(node_id)
        return dict(self.types[node_id].Config.model_json_schema())

    def config_version(self, node_id: str) -> int:
        self.index(node_id)
        return self.versions[node_id]

    def inputs(self, node_id: str) -> list[str]:
        return [a for a, b in self.edges if b == node_id and (a, b) not in self.dead]

    def outputs(self, node_id: str) -> list[str]:
        return [b for a, b in self.edges if a == node_id and (a, b) not in self.dead]

    def graph(self) -> dict[str, Any]:
        nodes = [{"id": n, "type": self.type_names[n], "config": self.node_config(n),
                  "version": self.versions[n]} for n in self._live_ids()]
        edges = []
        for a, b in self.edges:
            route = self.routes.get((a, b), [])
            edges.append({"from": a, "to": b,
                          "depth": sum(ch.depth for ch in route),
                          "capacity": route[-1].capacity if route else 0,
                          "dropped": sum(ch.dropped for ch in route),
                          "fused": not route, "dead_letter": (a, b) in self.dead})
        return {"nodes": nodes, "edges": edges}

    def tap(self, node_id: str, history: int = 0) -> Tap:
        self.index(node_id)
        st = self.pipe.built.nodes[node_id]
        hub = st.tap if isinstance(st.tap, _TapHub) else _TapHub(st)
        t = Tap(node_id, hub, history)
        hub.taps.append(t)
        st.tap = hub
        return t

    # -- plumbing -----------------------------------------------------------------------------
    def _driver_of(self, node_id: str) -> Driver:
        st = self.pipe.built.nodes[node_id]
        for r, task in zip(self.pipe._runners, self.pipe._tasks):
            if any(s is st for s in r.stages):
                if task.done():
                    raise PipelineStopped(f"node {node_id!r}: its task has ended")
                return r
        raise PipelineStopped(f"node {node_id!r} is not running")

    def _check_running(self) -> None:
        state = self.pipe.state
        if state != "running":
            raise PipelineStopped(f"pipeline {self.pipe.name!r} is {state}: live changes need a "
                                  "running pipeline")

    def _install_stamp(self, node_id: str, st: ResilientNode) -> None:
        st.stamp = _stamper(f"config_version.{node_id}", lambda: self.versions[node_id])
        st.swap(st.node, st._factory)  # re-wrap its process

    def _factory(self, cls: type[ProcessingNode], cfg: Any, ctx: NodeContext,
                 node_id: str) -> Callable[[], ProcessingNode]:
        def factory() -> ProcessingNode:
            try:
                return cls.create(cfg, ctx)
            except Exception as exc:
                raise NodeError(node_id, f"on_create failed: {type(exc).__name__}: {exc}") from exc
        return factory

    def _validate(self, cls: type[ProcessingNode], raw: Any, where: str,
                  node_id: str) -> Any:
        if not isinstance(raw, Mapping):
            raise ConfigError(ConfigProblem(f"{where}.config",
                                            f"expected an object (got {_short(raw)})"))
        try:
            return cls.Config.model_validate(dict(raw))
        except ValidationError as exc:
            prefix = tuple(_path_parts(where)) + ("config",)
            raise ConfigError([ConfigProblem(p.path, f"{p.message} [node {node_id!r}]")
                               for p in _pydantic_problems(exc, prefix)]) from None

    def _spec(self, spec: Any, where: str, node_id: str) -> tuple[str, type[ProcessingNode], Any]:
        """(type name, class, validated config) of a node object ``{"type", "config"}``."""
        from streamlab.registry import get_node_type

        if not isinstance(spec, Mapping):
            raise ConfigError(ConfigProblem(where, f"expected a node object with 'type' and "
                                                   f"'config' (got {_short(spec)})"))
        problems = [ConfigProblem(f"{where}.{k}", "unknown key (a live change takes 'type' "
                                  "and 'config'; edges and settings stay those of the graph)")
                    for k in spec if k not in _SPEC_KEYS]
        tname = spec.get("type")
        if not isinstance(tname, str) or not tname:
            problems.append(ConfigProblem(f"{where}.type", "a node type name is required"))
        if problems:
            raise ConfigError(problems)
        cls = get_node_type(str(tname), path=f"{where}.type")
        cfg = self._validate(cls, spec.get("config", {}), where, node_id)
        if issubclass(cls, SourceNode) or cls.is_source:
            raise ConfigError(ConfigProblem(f"{where}.type", f"{tname!r} is a source: sources "
                                            "cannot be added or swapped in while running"))
        if cls.run is not ProcessingNode.run:
            raise ConfigError(ConfigProblem(f"{where}.type", f"{tname!r} owns its loop (run()): "
                                            "it cannot join a running task"))
        return str(tname), cls, cfg

    def _check_stage(self, node_id: str, where: str, *, rebuild: bool) -> Driver:
        if self.executors.get(node_id) == "process":
            raise ConfigError(ConfigProblem(f"{where}.executor", "live changes are not supported "
                                            "for executor 'process' nodes (restart the run)"))
        driver = self._driver_of(node_id)
        if rebuild and not isinstance(driver, NodeDriver):
            raise ConfigError(ConfigProblem(where, f"node {node_id!r} owns its loop (run()): "
                                            "only in-place changes (on_update) apply to it"))
        return driver

    async def _wait(self, driver: Driver, fut: asyncio.Future[Any]) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except TimeoutError:
            if driver.cancel_commit(fut):
                raise PipelineError(f"no batch boundary of task {driver.name!r} within "
                                    f"{self.timeout} s (blocked downstream?): change withdrawn") from None
            return await fut

    async def _prepare(self, factory: Callable[[], ProcessingNode], where: str) -> ProcessingNode:
        """A fresh instance, created and started (outside the batch boundary)."""
        try:
            node = factory()
        except NodeError as exc:
            raise ConfigError(ConfigProblem(f"{where}.config", str(exc))) from exc
        await _start_or_refuse(node, where)
        return node

    def _run_for(self, node_id: str, node: ProcessingNode) -> Any:
        """The stage runner a swapped-in node needs (thread executors keep theirs)."""
        if self.executors.get(node_id) == "thread":
            return "keep"
        return stage_runner("async") if is_async_process(node) else None

    def _debug_check(self, driver: Driver) -> None:
        if self.pipe.debug:
            for st in driver.stages:
                st.metrics.check_accounting()

    def _record(self, node_id: str, kind: str, changes: dict[str, Any], t0: float,
                error: BaseException | None = None, mode: str = "") -> ChangeRecord:
        ok = error is None
        rec = ChangeRecord(version=self.versions.get(node_id, 0), node_id=node_id, kind=kind,
                           changes=changes, ok=ok, error=None if ok else str(error),
                           applied_at_ns=time.time_ns(), apply_s=time.perf_counter() - t0,
                           mode=mode)
        self.records.append(rec)
        m = self.pipe.metrics.get(node_id)
        if m is None and kind == "add":
            m = self.pipe.metrics.get(str(changes.get("after")))  # a refused add: its anchor
        if m is not None:
            m.count_change(kind, "applied" if ok else "refused")
            if ok and node_id in self.versions:
                m.config_version = self.versions[node_id]
        if ok:
            log.info("pipeline %r: %s %r applied (%s, version %d) in %.3f ms: %s",
                     self.pipe.name, kind, node_id, mode, rec.version, rec.apply_s * 1e3,
                     _short(changes, 200))
        else:
            log.warning("pipeline %r: %s %r refused: %s", self.pipe.name, kind, node_id, error)
        return rec

    async def _run(self, node_id: str, kind: str, changes: dict[str, Any],
                   body: Callable[[], Any]) -> ChangeRecord:
        t0 = time.perf_counter()
        async with self._lock:
            try:
                self._check_running()
                mode = await body()
            except (StreamLabError, TimeoutError) as exc:
                self._record(node_id, kind, changes, t0, exc)
                raise
            return self._record(node_id, kind, changes, t0, mode=mode)

    # -- swapping a stage's node ----------------------------------------------------------------
    async def _rebuild(self, node_id: str, where: str, cls: type[ProcessingNode], cfg: Any,
                       driver: Driver, on_commit: Callable[[], None]) -> None:
        st = self.pipe.built.nodes[node_id]
        factory = self._factory(cls, cfg, st.node.context, node_id)
        node = await self._prepare(factory, where)

        def commit() -> ProcessingNode:
            assert isinstance(driver, NodeDriver)
            k = next(i for i, s in enumerate(driver.stages) if s is st)
            run = self._run_for(node_id, node)
            if run != "keep":
                driver.set_run(k, run)
            old = st.swap(node, factory)
            st.metrics.node_type = cls.__name__
            if k == 0 and isinstance(driver.feed, SourceFeed):
                driver.feed.reconfigure()
            on_commit()
            self._debug_check(driver)
            return old

        try:
            old = await self._wait(driver, driver.at_boundary(commit))
        except BaseException:
            await _stop_quietly(node)
            raise
        await _maybe_await(old.on_stop())

    # -- the changes --------------------------------------------------------------------------
    async def update(self, node_id: str, changes: Mapping[str, Any]) -> ChangeRecord:
        """Change some config fields of a node (see the module docstring)."""
        given = dict(changes) if isinstance(changes, Mapping) else {"": changes}

        async def body() -> str:
            i = self.index(node_id)
            where = f"$.nodes[{i}]"
            if not isinstance(changes, Mapping):
                raise ConfigError(ConfigProblem(f"{where}.config", "expected an object of config "
                                                f"fields (got {_short(changes)})"))
            cls, old = self.types[node_id], self.configs[node_id]
            raw = {**self.raw[node_id], **changes}
            new = self._validate(cls, raw, where, node_id)
            st = self.pipe.built.nodes[node_id]
            if isinstance(st.node, SourceNode) and getattr(old, "mode", None) != getattr(new, "mode", None):
                raise ConfigError(ConfigProblem(f"{where}.config.mode", "a source's mode cannot "
                                                "change while running"))
            rebuild = not updates_in_place(st.node) or bool(_changed(old, new) & rebuild_fields(cls))
            driver = self._check_stage(node_id, where, rebuild=rebuild)

            def adopt() -> None:
                self.configs[node_id], self.raw[node_id] = new, raw
                self.versions[node_id] += 1

            if not rebuild:
                def commit() -> bool:
                    try:
                        ok = bool(st.node.on_update(old, new))
                    except Exception as exc:
                        raise ConfigError(ConfigProblem(f"{where}.config", f"{type(exc).__name__}: "
                                                        f"{exc} [node {node_id!r}]")) from exc
                    if ok:
                        st.node.config = new
                        st._factory = self._factory(cls, new, st.node.context, node_id)
                        adopt()
                        self._debug_check(driver)
                    return ok

                if await self._wait(driver, driver.at_boundary(commit)):
                    return "in_place"
                self._check_stage(node_id, where, rebuild=True)
            if isinstance(st.node, SourceNode):
                raise ConfigError(ConfigProblem(f"{where}.config", f"source {node_id!r} cannot "
                                                "take this change while running: a fresh "
                                                "instance would restart its data (sequence ids, "
                                                f"position); changed: {sorted(_changed(old, new))}"))
            await self._rebuild(node_id, where, cls, new, driver, adopt)
            return "rebuilt"

        return await self._run(node_id, "update", given, body)

    async def replace_node(self, node_id: str, spec: Mapping[str, Any]) -> ChangeRecord:
        """Run a node of another type (or a fresh one) in ``node_id``'s place: same edges,
        queued frames kept; the replacement takes the next frame."""
        given = dict(spec) if isinstance(spec, Mapping) else {"": spec}

        async def body() -> str:
            i = self.index(node_id)
            where = f"$.nodes[{i}]"
            tname, cls, cfg = self._spec(spec, where, node_id)
            if isinstance(self.pipe.built.nodes[node_id].node, SourceNode):
                raise ConfigError(ConfigProblem(where, "a source cannot be replaced while running"))
            driver = self._check_stage(node_id, where, rebuild=True)

            def adopt() -> None:
                self.types[node_id], self.type_names[node_id] = cls, tname
                self.configs[node_id] = cfg
                self.raw[node_id] = dict(spec.get("config", {}))
                self.versions[node_id] += 1

            await self._rebuild(node_id, where, cls, cfg, driver, adopt)
            return "rebuilt"

        return await self._run(node_id, "replace", given, body)

    async def add_node(self, node_id: str, spec: Mapping[str, Any], *, after: str,
                       before: str | None = None) -> ChangeRecord:
        """Insert a new node on the edge ``after -> before`` (``before=None``: between
        ``after`` and all its outputs). See docs/live.md for where the frames queued then go."""
        given = {**(dict(spec) if isinstance(spec, Mapping) else {"": spec}),
                 "after": after, "before": before}

        async def body() -> str:
            where = f"$.nodes[{len(self._live_ids())}]"
            if not isinstance(node_id, str) or not _ID.match(node_id) or len(node_id) > 128:
                raise ConfigError(ConfigProblem(f"{where}.id", f"invalid node id {node_id!r}"))
            if node_id in self.order:
                raise ConfigError(ConfigProblem(f"{where}.id", f"node id {node_id!r} is taken"))
            self.index(after)
            outs = self.outputs(after)
            if before is not None:
                self.index(before)
                if before not in outs:
                    raise ConfigError(ConfigProblem("$.connections", f"no connection {after!r} "
                                                    f"-> {before!r} to insert {node_id!r} on"))
            if not outs:
                raise ConfigError(ConfigProblem("$.connections", f"{after!r} is a terminal node: "
                                                "its frames are the pipeline's outputs; add "
                                                "before it instead"))
            tname, cls, cfg = self._spec(spec, where, node_id)
            # where the new stage goes: before `before` in its task, else after `after` in its
            if before is not None and self.inputs(before) == [after]:
                anchor, offset, takes = before, 0, [before]
            elif before is None or outs == [before]:
                anchor, offset, takes = after, 1, outs
            else:
                raise ConfigError(ConfigProblem("$.connections", f"cannot insert on {after!r} -> "
                                                f"{before!r} while running: {after!r} has several "
                                                f"outputs and {before!r} several inputs"))
            for n in (after, *takes):
                if self.executors.get(n) == "process":
                    raise ConfigError(ConfigProblem(f"$.nodes[{self.index(n)}].executor",
                                                    "live changes are not supported next to "
                                                    "executor 'process' nodes"))
            driver = self._check_stage(anchor, f"$.nodes[{self.index(anchor)}]", rebuild=True)
            st, ctx = self._new_stage(node_id, tname, cls, cfg, after, takes, where)
            node = st.node
            await _start_or_refuse(node, where)

            def commit() -> None:
                assert isinstance(driver, NodeDriver)
                anchor_st = self.pipe.built.nodes[anchor]
                k = next(i for i, s in enumerate(driver.stages) if s is anchor_st) + offset
                driver.insert_stage(k, st, stage_runner("async") if st.is_async else None)
                self._splice_in(node_id, tname, cls, cfg, after, takes, st, ctx, driver, k)
                self._debug_check(driver)

            try:
                await self._wait(driver, driver.at_boundary(commit))
            except BaseException:
                await _stop_quietly(node)
                raise
            return "inserted"

        return await self._run(node_id, "add", given, body)

    def _new_stage(self, node_id: str, tname: str, cls: type[ProcessingNode], cfg: Any,
                   after: str, takes: list[str], where: str) -> tuple[ResilientNode, NodeContext]:
        pipe = self.pipe
        some = next(iter(pipe.built.contexts.values()))
        ctx = NodeContext(node_id=node_id, pipeline=pipe.name, clock=pipe.clock,
                          logger=logging.getLogger(f"streamlab.node.{node_id}"),
                          stop_requested=pipe._stop_requested, inputs=(after,),
                          outputs=tuple(takes), buffers=some.buffers, current_input=after)
        metrics = NodeMetrics(node_id, pipe.name, cls.__name__)
        r = pipe.spec.resilience(NodeSpec(id=node_id, type=tname))
        try:
            st = ResilientNode(self._factory(cls, cfg, ctx, node_id), policy=r.policy,
                               strategy=r.strategy, breaker=r.breaker, metrics=metrics,
                               clock=pipe.clock)
        except NodeError as exc:
            raise ConfigError(ConfigProblem(f"{where}.config", str(exc))) from exc
        st.cancel_fate = pipe._cancel_fate
        if self.stamp:
            self._install_stamp(node_id, st)
        return st, ctx

    def _splice_in(self, node_id: str, tname: str, cls: type[ProcessingNode], cfg: Any,
                   after: str, takes: list[str], st: ResilientNode, ctx: NodeContext,
                   driver: NodeDriver, k: int) -> None:
        """The bookkeeping of an inserted stage (at the batch boundary, with the insert)."""
        pipe, b = self.pipe, self.pipe.built
        b.nodes[node_id], b.contexts[node_id] = st, ctx
        pipe.metrics[node_id] = st.metrics
        self.order.append(node_id)
        self.type_names[node_id], self.types[node_id] = tname, cls
        self.configs[node_id], self.raw[node_id] = cfg, cfg.model_dump(by_alias=True)
        self.executors[node_id] = "inline"
        self.versions[node_id] = 1
        actx = b.contexts[after]
        actx.outputs = tuple(o for o in actx.outputs if o not in takes) + (node_id,)
        new_edges = [e for e in self.edges if not (e[0] == after and e[1] in takes)]
        head_rx = k == 0 and isinstance(driver.feed, InletFeed)
        for t in takes:
            route = self.routes.pop((after, t), [])
            if head_rx:  # the queue before `t` now feeds the new node
                self.routes[(after, node_id)], self.routes[(node_id, t)] = route, []
                inlet = driver.feed.inlet  # type: ignore[union-attr]
                inlet.sources = [after] * len(inlet.sources)
                inlet.last_source = after
            else:
                self.routes.setdefault((after, node_id), [])
                self.routes[(node_id, t)] = route
                self._rename_source(route, after, node_id)
            tctx = b.contexts[t]
            tctx.inputs = tuple(node_id if x == after else x for x in tctx.inputs)
            if tctx.current_input == after:
                tctx.current_input = node_id
            new_edges.append((node_id, t))
        new_edges.append((after, node_id))
        self.edges = new_edges

    def _rename_source(self, route: list[Channel], old: str, new: str) -> None:
        """The inlet that receives from the last channel of ``route`` names ``new`` as its
        upstream (what ``context.current_input`` reports) instead of ``old``."""
        if not route:
            return
        ch = route[-1]
        for r in self.pipe._runners:
            feed = getattr(r, "feed", None)
            inlet = feed.inlet if isinstance(feed, InletFeed) else getattr(r, "inlet", None)
            if inlet is None:
                continue
            for i, c in enumerate(inlet.channels):
                if c is ch and inlet.sources[i] == old:
                    inlet.sources[i] = new
                    if inlet.last_source == old:
                        inlet.last_source = new

    async def remove_node(self, node_id: str) -> ChangeRecord:
        """Take a node with one input out of the graph: its stage passes frames on unchanged
        from the next batch (frames queued before or after it flow on to its outputs), and the
        graph view connects its input to its outputs."""

        async def body() -> str:
            i = self.index(node_id)
            where = f"$.nodes[{i}]"
            ins, outs = self.inputs(node_id), self.outputs(node_id)
            if any(node_id in e for e in self.dead):
                raise ConfigError(ConfigProblem(f"{where}.dead_letter", "a node on a dead-letter "
                                                "edge cannot be removed while running"))
            if len(ins) != 1 or not outs:
                raise ConfigError(ConfigProblem(where, f"only a node with one input and at least "
                                                f"one output can be removed while running "
                                                f"({node_id!r} has {len(ins)} inputs, "
                                                f"{len(outs)} outputs)"))
            (a,) = ins
            driver = self._check_stage(node_id, where, rebuild=True)
            st = self.pipe.built.nodes[node_id]
            factory: Callable[[], ProcessingNode] = lambda: _Bypass.create({}, st.node.context)  # noqa: E731
            bypass = factory()

            def commit() -> ProcessingNode:
                assert isinstance(driver, NodeDriver)
                k = next(j for j, s in enumerate(driver.stages) if s is st)
                if self.executors.get(node_id) != "thread":
                    driver.set_run(k, None)
                old = st.swap(bypass, factory)
                self.versions[node_id] += 1
                b = self.pipe.built
                actx = b.contexts[a]
                actx.outputs = tuple(o for o in actx.outputs if o != node_id) + tuple(
                    o for o in outs if o not in actx.outputs)
                edges = [e for e in self.edges if node_id not in e]
                first = self.routes.pop((a, node_id), [])
                for o in outs:
                    rest = self.routes.pop((node_id, o), [])
                    self.routes[(a, o)] = first + rest
                    self._rename_source(rest, node_id, a)
                    octx = b.contexts[o]
                    octx.inputs = tuple(a if x == node_id else x for x in octx.inputs)
                    if octx.current_input == node_id:
                        octx.current_input = a
                    if (a, o) not in edges:
                        edges.append((a, o))
                self.edges = edges
                self.removed.add(node_id)
                self._debug_check(driver)
                return old

            old = await self._wait(driver, driver.at_boundary(commit))
            await _maybe_await(old.on_stop())
            return "bypassed"

        return await self._run(node_id, "remove", {}, body)


def _path_parts(where: str) -> list[Any]:
    """``$.nodes[3]`` -> ``["nodes", 3]``."""
    parts: list[Any] = []
    for name, idx in re.findall(r"\.(\w+)|\[(\d+)\]", where):
        parts.append(name if name else int(idx))
    return parts


async def _start_or_refuse(node: ProcessingNode, where: str) -> None:
    """Start a node made for a live change; if its on_start fails, stop it and refuse the change."""
    try:
        await _maybe_await(node.on_start())
    except Exception as exc:
        await _stop_quietly(node)
        raise ConfigError(ConfigProblem(f"{where}.config", f"on_start failed: "
                                        f"{type(exc).__name__}: {exc}")) from exc


async def _stop_quietly(node: ProcessingNode) -> None:
    """Stop an instance that never ran (a refused change); its own error is logged, since
    the refusal being raised is the one that matters."""
    try:
        await _maybe_await(node.on_stop())
    except Exception:
        log.exception("on_stop of a refused instance failed")
