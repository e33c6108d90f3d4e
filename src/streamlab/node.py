"""ProcessingNode: the base class of every node, and the context the runtime gives it.

A node type is a subclass of :class:`ProcessingNode` with a pydantic ``Config`` model (frozen,
unknown keys rejected) whose fields are the node's ``"config"`` object in the JSON pipeline.

Lifecycle, in order:

1. ``on_create(config)``: the validated config; set up state. Called again on a fresh
   instance when a restart strategy restarts the node.
2. ``on_start()``: the run is starting (sync or async).
3. ``process(frame)`` per input frame, or ``run(rx, tx)`` for nodes that need the whole stream.
   While running, a live change (``AsyncPipeline.update``, docs/live.md) calls
   ``on_update(old, new)`` between two batches: return True if the node took the new config
   in place (keeping its state); False (the default) makes the runtime build a fresh instance
   from the new config (``on_create``, ``on_start``) and stop this one. Fields named in
   ``rebuild_on`` (or marked ``json_schema_extra={"live": "rebuild"}``) always rebuild.
4. ``on_stop()``: the node's input ended or the run is stopping (sync or async); called
   after a failure too.

``process`` may be a plain ``def`` (no coroutine is created per frame) or an ``async def``.
It returns the output frame, ``None`` to drop the frame, or a list of frames to emit several.
Raising an exception fails the frame; what then happens is the node's error policy
(``Propagate`` by default: the pipeline stops and raises a PipelineError naming the node).

Source nodes (no incoming connections) receive trigger frames as their input. A source that
produces on its own (files, devices, free-running generators) subclasses :class:`SourceNode`
and raises :class:`~streamlab.errors.EndOfStream` from ``process`` when it has no more data.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from streamlab.buffers import BufferPool
from streamlab.clock import SYSTEM_CLOCK, Clock
from streamlab.errors import EndOfStream
from streamlab.frame import DataFrame

if TYPE_CHECKING:
    import asyncio

    from streamlab.channel import Inlet, Outlet
    from streamlab.metrics.node_metrics import NodeMetrics

__all__ = [
    "NodeConfig",
    "NodeContext",
    "ProcessingNode",
    "SourceNode",
    "SourceConfig",
    "ProcessResult",
    "is_async_process",
]

ProcessResult = DataFrame | None | Sequence[DataFrame]


class NodeConfig(BaseModel):
    """Base of node config models: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(NodeConfig):
    """Settings shared by sources."""

    mode: Literal["triggered", "free"] = Field(
        "triggered",
        description="'triggered': one output per trigger frame; 'free': produce on its own "
        "until the data ends or the pipeline stops.",
    )
    realtime: bool = Field(
        False, description="Pace output to the sample rate (free mode) instead of as fast as possible."
    )
    max_frames: int | None = Field(
        None, ge=1, description="Free mode: stop after this many frames (None: until stopped or exhausted)."
    )


@dataclass
class NodeContext:
    """What the runtime tells a node about where it runs.

    ``node_id`` is the id from the config; ``clock`` is the pipeline's clock; ``stop_requested``
    is set when a graceful stop begins (free-running sources stop producing). A node with
    several inputs reads ``current_input`` in ``process`` to know which upstream node sent the
    frame (``inputs`` lists them in config order).
    """

    node_id: str = "node"
    pipeline: str = "pipeline"
    clock: Clock = SYSTEM_CLOCK
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("streamlab.node"))
    stop_requested: asyncio.Event | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    #: Id of the upstream node whose frame is being processed (fan-in nodes read this).
    current_input: str | None = None
    #: The pipeline's BufferPool, for nodes that produce large arrays of a recurring shape.
    buffers: BufferPool = field(default_factory=BufferPool)
    #: The node's metrics (set by the runtime): the ledger ``settle_events`` writes to.
    metrics: NodeMetrics | None = None
    #: For node types with ``uses_upstream = True`` (Decoder): canonical JSON of the graph
    #: before this node (types, configs and connections of its ancestors; sources only as
    #: placeholders), set by the runtime; "" when the node runs on its own.
    upstream: str = ""

    @property
    def stopping(self) -> bool:
        return self.stop_requested is not None and self.stop_requested.is_set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` on the pipeline clock, ending early when a graceful stop is
        requested (a paced source must not hold a stop up for a long gap in its data).

        Returns False if a stop was requested (before or during the sleep), else True.
        Cancellation cancels the sleep and propagates.
        """
        import asyncio  # here, not at import time: node.py is imported by validate

        stop = self.stop_requested
        if stop is None:
            await self.clock.sleep(seconds)
            return True
        if stop.is_set():
            return False
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
        return not stop.is_set()

    def settle_events(self, fate: str, n: int = 1) -> None:
        """Give ``n`` events this node received their fate (nodes with ``handles_events``).

        ``fate`` is one of :data:`streamlab.events.EVENT_FATES`; the runtime has already
        counted the events as received. Without metrics (a node used on its own) it does
        nothing.
        """
        if self.metrics is not None:
            self.metrics.settle_events(fate, n, received=0)


class ProcessingNode:
    """Base class of all nodes. Subclass it, set ``Config``, implement ``process`` (or ``run``)."""

    Config: ClassVar[type[NodeConfig]] = NodeConfig
    #: True for nodes that produce frames on their own (see SourceNode).
    is_source: ClassVar[bool] = False
    #: True for nodes that give the events they receive their fates themselves
    #: (``context.settle_events``): nodes that hold, consume or move events (Epoch, Attach,
    #: Window...). Otherwise the runtime settles them: ``carried`` when they leave on an
    #: output frame, ``dropped`` when they do not.
    handles_events: ClassVar[bool] = False
    #: Config fields whose live change needs a fresh instance (on_update is not asked).
    rebuild_on: ClassVar[frozenset[str]] = frozenset()

    config: Any
    context: NodeContext

    def __init__(self) -> None:
        self.config = None
        self.context = NodeContext()

    @classmethod
    def description(cls) -> str:
        """First line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def create(
        cls, config: NodeConfig | Mapping[str, Any] | None = None, context: NodeContext | None = None
    ) -> ProcessingNode:
        """Instantiate, attach ``context`` and call ``on_create`` with a validated config."""
        node = cls()
        if context is not None:
            node.context = context
        if config is None or isinstance(config, Mapping):
            config = cls.Config.model_validate(dict(config or {}))
        node.on_create(config)
        return node

    @property
    def node_id(self) -> str:
        return self.context.node_id

    def on_create(self, config: Any) -> None:
        """Receive the validated config. Override to set up state (call super or set self.config)."""
        self.config = config

    def on_start(self) -> None | Awaitable[None]:
        """The run is starting."""
        return None

    def on_update(self, old: Any, new: Any) -> bool:
        """A live change of the config from ``old`` to ``new`` (validated models), called
        between two batches. Return True once the node runs with ``new`` (set ``self.config``
        and adapt state in place); False to have the runtime rebuild the node from ``new``.
        Must change nothing before it knows it can succeed: an exception refuses the change
        and the node keeps ``old``. The default returns False (a fresh instance).
        """
        return False

    def on_stop(self) -> None | Awaitable[None]:
        """The node's input has ended, or the run is stopping or failed."""
        return None

    def process(self, frame: DataFrame) -> ProcessResult | Awaitable[ProcessResult]:
        """Transform one frame: return a frame, None (drop) or a list of frames."""
        raise NotImplementedError(f"{type(self).__name__} implements neither process() nor run()")

    async def run(self, rx: Inlet, tx: Outlet) -> None:
        """Stream processing: receive from ``rx`` until it ends, send results on ``tx``.

        The default calls ``process`` per frame. The runtime normally uses its own equivalent
        loop (with metrics and error policies); override this only for nodes that need the whole
        stream (the runtime then calls it instead).
        """
        is_async = is_async_process(self)
        while True:
            try:
                batch = await rx.receive_batch()
            except EndOfStream:
                return
            for frame in batch:
                out = self.process(frame)
                if is_async:
                    out = await out  # type: ignore[misc]
                if out is None:
                    continue
                if isinstance(out, DataFrame):
                    await tx.send(out)
                else:
                    for f in out:  # type: ignore[union-attr]
                        await tx.send(f)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.context.node_id!r}>"


class SourceNode(ProcessingNode):
    """A node that can produce frames without input.

    In ``"triggered"`` mode each trigger frame yields one ``process(trigger)`` call. In
    ``"free"`` mode the runtime calls ``process(None)`` repeatedly until it raises
    EndOfStream, ``max_frames`` is reached or a graceful stop is requested; with
    ``realtime`` it paces frames with :meth:`frame_period` on the pipeline clock.
    """

    Config: ClassVar[type[NodeConfig]] = SourceConfig
    is_source: ClassVar[bool] = True

    def free_running(self) -> bool:
        return getattr(self.config, "mode", "triggered") == "free"

    def frame_period(self) -> float | None:
        """Seconds between frames when paced in real time (None: no pacing)."""
        return None

    def process(self, frame: DataFrame | None) -> ProcessResult:
        raise NotImplementedError(f"{type(self).__name__} must implement process()")


def is_async_process(node: ProcessingNode) -> bool:
    """True if the node's ``process`` is a coroutine function."""
    return inspect.iscoroutinefunction(node.process)


def overrides_run(node: ProcessingNode) -> bool:
    """True if the node type has its own ``run`` (the runtime then calls it)."""
    return type(node).run is not ProcessingNode.run


def rebuild_fields(cls: type[ProcessingNode]) -> frozenset[str]:
    """Config fields of a node type whose live change needs a fresh instance: the class's
    ``rebuild_on`` plus fields marked ``json_schema_extra={"live": "rebuild"}``."""
    marked = {name for name, f in cls.Config.model_fields.items()
              if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("live") == "rebuild"}
    return frozenset(cls.rebuild_on) | frozenset(marked)


def updates_in_place(node: ProcessingNode) -> bool:
    """True if the node type overrides ``on_update`` (it may take a change in place)."""
    return type(node).on_update is not ProcessingNode.on_update


def node_config_fields(cls: type[ProcessingNode]) -> dict[str, Any]:
    """The JSON Schema of a node type's config."""
    return cls.Config.model_json_schema()


__all__ += ["overrides_run", "node_config_fields", "rebuild_fields", "updates_in_place", "EndOfStream"]
