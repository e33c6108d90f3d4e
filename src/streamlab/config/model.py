"""The pydantic models of the JSON pipeline format.

::

    {
      "name": "demo",                                   optional
      "pipeline_config": {"channel_capacity": 16, ...}, optional
      "nodes": [{"id": "src", "type": "SineGenerator", "config": {...},
                 "error_policy": {...}?, "restart": {...}?, "executor": "inline"?,
                 "deadline_ms": 5?, "dead_letter": "node id"?}],
      "connections": [{"from": "src", "to": "gain", "capacity": 8?, "overflow": "block"?}]
    }

The models describe shape only; :func:`streamlab.config.load_config` adds the checks that span
the document (ids, types, cycles) and validates each node's ``config`` against its type's model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

__all__ = [
    "LIMITS",
    "ConnectionSpec",
    "NodeSpec",
    "PipelineSettings",
    "PipelineSpec",
    "ErrorPolicySpec",
    "PropagateSpec",
    "SkipFrameSpec",
    "UseDefaultSpec",
    "RestartSpec",
    "NeverSpec",
    "ImmediateSpec",
    "ExponentialSpec",
    "CircuitBreakerSpec",
]


class Limits:
    """Sane upper bounds; each is a clear config error when exceeded."""

    max_capacity = 100_000          # frames per channel
    max_nodes = 10_000
    max_connections = 100_000
    max_fanout = 1_024
    max_file_bytes = 16 * 1024 * 1024
    max_depth = 64                   # JSON nesting
    max_id_length = 128


LIMITS = Limits()
_ID = Annotated[str, Field(min_length=1, max_length=LIMITS.max_id_length,
                           pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- error policies -------------------------------------------------------------------------
class _PolicyBase(_Strict):
    on: list[str] | None = Field(
        None, description="Exception type names this policy handles (default: all). Others propagate."
    )
    propagate_on: list[str] = Field(
        default_factory=list, description="Exception type names that always propagate."
    )


class PropagateSpec(_PolicyBase):
    """Stop the pipeline; run() raises a PipelineError whose cause is the node's exception."""

    policy: Literal["Propagate"] = "Propagate"


class SkipFrameSpec(_PolicyBase):
    """Drop the failing frame (counted as skipped) and go on."""

    policy: Literal["SkipFrame"]


class UseDefaultSpec(_PolicyBase):
    """Emit a substitute frame in place of the failing one (counted as defaulted)."""

    policy: Literal["UseDefault"]
    fill_value: float | None = Field(
        0.0, description="Every sample of the substitute (same channels and shape as the input)."
    )
    last_good: bool = Field(
        False, description="Repeat the last good output (re-stamped) instead of fill_value."
    )


ErrorPolicySpec = Annotated[
    PropagateSpec | SkipFrameSpec | UseDefaultSpec, Field(discriminator="policy")
]


# -- restart strategies ---------------------------------------------------------------------
class _RestartBase(_Strict):
    max_restarts: int = Field(
        10, ge=1, description="Intensity limit: more than this many restarts within "
        "'within_s' seconds escalates to a pipeline failure."
    )
    within_s: float = Field(60.0, gt=0, description="Intensity window in seconds.")
    healthy_after_s: float = Field(
        30.0, gt=0, description="Attempt counter resets after this long without a failure."
    )


class NeverSpec(_Strict):
    """Never restart: the node keeps its state (policy decides what happens to the frame)."""

    strategy: Literal["Never"] = "Never"


class ImmediateSpec(_RestartBase):
    """Restart (fresh instance via on_create) at once after a failure."""

    strategy: Literal["Immediate"]


class ExponentialSpec(_RestartBase):
    """Restart after min(max_ms, base_ms * 2**(k-1)) ms for attempt k; escalate after max_attempts."""

    strategy: Literal["Exponential"]
    base_ms: float = Field(10.0, gt=0)
    max_ms: float = Field(1000.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    jitter: float = Field(
        0.0, ge=0, le=1, description="Delay multiplied by a factor drawn from [1-jitter, 1+jitter], "
        "applied before the max_ms cap."
    )
    seed: int | None = Field(None, description="Seed of the jitter's random numbers.")

    @model_validator(mode="after")
    def _order(self) -> ExponentialSpec:
        if self.base_ms > self.max_ms:
            raise ValueError(f"base_ms ({self.base_ms}) must not exceed max_ms ({self.max_ms})")
        return self


class CircuitBreakerSpec(_RestartBase):
    """Open after failure_threshold consecutive failures; probe once per reset_timeout_ms."""

    strategy: Literal["CircuitBreaker"]
    failure_threshold: int = Field(5, ge=1)
    reset_timeout_ms: float = Field(1000.0, gt=0)


RestartSpec = Annotated[
    NeverSpec | ImmediateSpec | ExponentialSpec | CircuitBreakerSpec,
    Field(discriminator="strategy"),
]


# -- graph ----------------------------------------------------------------------------------
class NodeSpec(_Strict):
    """One node of the graph."""

    id: _ID
    type: Annotated[str, Field(min_length=1, max_length=200)]
    config: dict[str, Any] = Field(default_factory=dict)
    error_policy: ErrorPolicySpec | None = None
    restart: RestartSpec | None = None
    dead_letter: _ID | None = Field(
        None, description="Id of a node that receives failed frames (error type and message in metadata)."
    )
    executor: Literal["inline", "thread", "process"] = Field(
        "inline", description="Where process() runs: the event loop, a worker thread or a worker process."
    )
    deadline_ms: float | None = Field(None, gt=0, description="Latency budget of one process() call.")


class ConnectionSpec(_Strict):
    """A directed edge ``from`` -> ``to`` with its own bounded channel."""

    from_: _ID = Field(alias="from")
    to: _ID
    capacity: int | None = Field(None, ge=1, le=LIMITS.max_capacity, strict=True)
    overflow: Literal["block", "drop_oldest", "drop_newest"] = "block"


class PipelineSettings(_Strict):
    """Pipeline-wide settings (``pipeline_config``)."""

    channel_capacity: int = Field(16, ge=1, le=LIMITS.max_capacity, strict=True)
    error_policy: ErrorPolicySpec | None = None
    restart: RestartSpec | None = None
    deadline_ms: float | None = Field(None, gt=0, description="End-to-end latency budget.")
    fusion: bool = Field(True, description="Run linear chains of nodes inside one task.")
    debug: bool = Field(False, description="Check frame accounting at the end of every run.")


class PipelineSpec(_Strict):
    """A whole pipeline document."""

    name: Annotated[str, Field(max_length=200)] = "pipeline"
    pipeline_config: PipelineSettings = Field(default_factory=PipelineSettings)
    nodes: list[NodeSpec] = Field(min_length=1, max_length=LIMITS.max_nodes)
    connections: list[ConnectionSpec] = Field(default_factory=list, max_length=LIMITS.max_connections)

    _node_configs: dict[str, Any] = PrivateAttr(default_factory=dict)
    _node_types: dict[str, Any] = PrivateAttr(default_factory=dict)

    def node(self, node_id: str) -> NodeSpec:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def node_config(self, node_id: str) -> Any:
        """The validated config model instance of a node (after load_config)."""
        return self._node_configs[node_id]

    def node_type(self, node_id: str) -> Any:
        """The registered class of a node (after load_config)."""
        return self._node_types[node_id]

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
