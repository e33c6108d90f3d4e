"""The pydantic models of the JSON pipeline format.

::

    {
      "name": "demo",                                   optional
      "pipeline_config": {"channel_capacity": 16, ...}, optional
      "nodes": [{"id": "src", "type": "SineGenerator", "config": {...},
                 "error_policy": {...}?, "restart": {...}?, "breaker": {...}?,
                 "executor": "inline"?, "deadline_s": 0.005?, "dead_letter": "node id"?}],
      "connections": [{"from": "src", "to": "gain", "capacity": 8?, "overflow": "block"?}]
    }

The models describe shape, and the resilience rules of one node (:meth:`PipelineSpec.resilience`,
the settings a node gets after the pipeline-wide defaults, checked by :meth:`PipelineSpec.resilience_problems`);
:func:`streamlab.config.load_config` adds the checks that span the document (ids, types, cycles)
and validates each node's ``config`` against its type's model. Every duration is in seconds
(``*_s``, a float); see :mod:`streamlab.config.resilience` for the deprecated millisecond names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import Field, PrivateAttr

from streamlab.config.resilience import (
    CircuitBreakerSettings,
    ErrorPolicy,
    ErrorPolicySetting,
    Never,
    Propagate,
    RestartSetting,
    RestartStrategy,
    Setting,
    SkipFrame,
)

__all__ = [
    "LIMITS",
    "ConnectionSpec",
    "NodeSpec",
    "PipelineSettings",
    "PipelineSpec",
    "NodeResilience",
    "node_resilience",
    "resilience_problems",
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


# -- graph ----------------------------------------------------------------------------------
class NodeSpec(Setting):
    """One node of the graph."""

    id: _ID
    type: Annotated[str, Field(min_length=1, max_length=200)]
    config: dict[str, Any] = Field(default_factory=dict)
    error_policy: ErrorPolicySetting | None = None
    restart: RestartSetting | None = None
    breaker: CircuitBreakerSettings | None = Field(
        default=None, description="Guard the node with a circuit breaker (the instance is kept)."
    )
    dead_letter: _ID | None = Field(
        default=None, description="Id of a node that receives failed frames (error type and message in metadata)."
    )
    executor: Literal["inline", "thread", "process"] = Field(
        default="inline", description="Where process() runs: the event loop, a worker thread or a worker process."
    )
    deadline_s: float | None = Field(
        default=None, gt=0, description="Latency budget of one process() call, in seconds."
    )

    @property
    def deadline_ms(self) -> float | None:
        """``deadline_s`` in milliseconds (read-only, for code written before the rename)."""
        return None if self.deadline_s is None else self.deadline_s * 1000


class ConnectionSpec(Setting):
    """A directed edge ``from`` -> ``to`` with its own bounded channel."""

    from_: _ID = Field(alias="from")
    to: _ID
    capacity: int | None = Field(default=None, ge=1, le=LIMITS.max_capacity, strict=True)
    overflow: Literal["block", "drop_oldest", "drop_newest"] = "block"


class PipelineSettings(Setting):
    """Pipeline-wide settings (``pipeline_config``)."""

    channel_capacity: int = Field(default=16, ge=1, le=LIMITS.max_capacity, strict=True)
    error_policy: ErrorPolicySetting | None = Field(default=None, description="Default of every node.")
    restart: RestartSetting | None = Field(default=None, description="Default of every node.")
    breaker: CircuitBreakerSettings | None = Field(default=None, description="Default of every node.")
    deadline_s: float | None = Field(default=None, gt=0, description="End-to-end latency budget, in seconds.")
    fusion: bool = Field(default=True, description="Run linear chains of nodes inside one task.")
    debug: bool = Field(default=False, description="Check frame accounting at the end of every run.")
    stamp_config_version: bool = Field(
        default=False, description="Live changes: every node's outputs carry metadata "
        "'config_version.<node>' (its config version; docs/live.md).")

    @property
    def deadline_ms(self) -> float | None:
        """``deadline_s`` in milliseconds (read-only, for code written before the rename)."""
        return None if self.deadline_s is None else self.deadline_s * 1000


class NodeResilience(NamedTuple):
    """The resilience settings a node runs with (its own, else the pipeline's defaults)."""

    policy: ErrorPolicy
    strategy: RestartStrategy
    breaker: CircuitBreakerSettings | None


def _needs_recovery(policy: ErrorPolicy | None, strategy: RestartStrategy | None,
                    breaker: CircuitBreakerSettings | None) -> str | None:
    """Why an explicit Propagate contradicts a restart or breaker setting (None: it does not)."""
    if not isinstance(policy, Propagate):
        return None
    if strategy is not None and strategy.restarts:
        what = f"restart strategy {strategy.name}"
    elif breaker is not None:
        what = "a circuit breaker"
    else:
        return None
    return (f"{what} needs error_policy SkipFrame or UseDefault "
            "(Propagate stops the pipeline on the first error)")


def node_resilience(s: PipelineSettings, node: NodeSpec) -> NodeResilience:
    """The node's error policy, restart strategy and breaker, after the pipeline defaults.

    Without an error policy (on the node or the pipeline), a node that restarts or has a
    breaker gets SkipFrame (a restart is pointless if the first error stops the run);
    otherwise Propagate.
    """
    given = node.error_policy or s.error_policy
    strategy = node.restart or s.restart or Never()
    breaker = node.breaker or s.breaker
    if given is not None:
        policy: ErrorPolicy = given
    elif strategy.restarts or breaker is not None:
        policy = SkipFrame()
    else:
        policy = Propagate()
    return NodeResilience(policy, strategy, breaker)


def resilience_problems(s: PipelineSettings,
                        nodes: Iterable[tuple[int, NodeSpec]]) -> list[tuple[str, str]]:
    """``(JSON path, message)`` of each node whose settings contradict each other.

    A contradiction in the pipeline defaults alone is reported once, at
    ``$.pipeline_config``; a node is reported (at the setting it gives itself) when one of
    the two contradicting settings is its own.
    """
    out: list[tuple[str, str]] = []
    msg = _needs_recovery(s.error_policy, s.restart, s.breaker)
    if msg is not None:
        key = "restart" if s.restart is not None and s.restart.restarts else "breaker"
        out.append((f"$.pipeline_config.{key}", msg))
    for i, n in nodes:
        if n.error_policy is None and n.restart is None and n.breaker is None:
            continue  # the defaults' problem, reported above
        r = node_resilience(s, n)
        msg = _needs_recovery(n.error_policy or s.error_policy, r.strategy, r.breaker)
        if msg is None:
            continue
        if n.restart is not None and n.restart.restarts:
            key = "restart"
        elif n.breaker is not None:
            key = "breaker"
        else:
            key = "error_policy"
            msg += " (restart or breaker from pipeline_config)"
        out.append((f"$.nodes[{i}].{key}", msg))
    return out


class PipelineSpec(Setting):
    """A whole pipeline document."""

    name: Annotated[str, Field(max_length=200)] = "pipeline"
    pipeline_config: PipelineSettings = Field(default_factory=lambda: PipelineSettings())
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

    def resilience(self, node: NodeSpec) -> NodeResilience:
        """The node's error policy, restart strategy and breaker (see :func:`node_resilience`)."""
        return node_resilience(self.pipeline_config, node)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
