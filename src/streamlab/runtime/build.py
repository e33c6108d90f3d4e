"""Turn a validated PipelineSpec into node instances wrapped in ResilientNode, and a Graph.

Shared by :class:`~streamlab.runtime.Pipeline` and :class:`~streamlab.runtime.AsyncPipeline`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from streamlab.buffers import BufferPool
from streamlab.clock import Clock
from streamlab.config.model import PipelineSpec
from streamlab.errors import ConfigError, ConfigProblem, NodeError
from streamlab.graph import Graph, find_cycle
from streamlab.metrics.node_metrics import NodeMetrics
from streamlab.node import NodeContext, ProcessingNode
from streamlab.resilience.policy import (
    Propagate,
    SkipFrame,
    policy_from_spec,
    strategy_from_spec,
)
from streamlab.resilience.resilient import ResilientNode

__all__ = ["BuiltGraph", "build_graph"]


@dataclass
class BuiltGraph:
    """The runtime's view of a spec: the graph, its wrapped nodes and per-edge settings."""

    spec: PipelineSpec
    graph: Graph
    nodes: dict[str, ResilientNode]
    contexts: dict[str, NodeContext]
    dead_letter_edges: dict[str, str]          # failing node -> dead-letter node
    edge_settings: dict[tuple[str, str], Any]  # (from, to) -> ConnectionSpec (None: dead letter)


def build_graph(
    spec: PipelineSpec,
    *,
    clock: Clock,
    pipeline_name: str,
    metrics: dict[str, NodeMetrics] | None = None,
) -> BuiltGraph:
    """Instantiate every node (``on_create``) in declaration order."""
    settings = spec.pipeline_config
    edges = [(c.from_, c.to) for c in spec.connections]
    dead = {n.id: n.dead_letter for n in spec.nodes if n.dead_letter}
    all_edges = edges + [(a, b) for a, b in dead.items() if (a, b) not in edges]
    cycle = find_cycle([n.id for n in spec.nodes], all_edges)
    if cycle:
        raise ConfigError(ConfigProblem("$.nodes", "cycle through a dead_letter: " + " -> ".join(cycle)))
    graph = Graph.build([n.id for n in spec.nodes], all_edges)
    edge_settings: dict[tuple[str, str], Any] = {(c.from_, c.to): c for c in spec.connections}
    for a, b in dead.items():
        edge_settings.setdefault((a, b), None)

    nodes: dict[str, ResilientNode] = {}
    contexts: dict[str, NodeContext] = {}
    buffers = BufferPool()  # one per pipeline instance, shared by its nodes
    for i, n in enumerate(spec.nodes):
        cls: type[ProcessingNode] = spec.node_type(n.id)
        cfg = spec.node_config(n.id)
        ctx = NodeContext(
            node_id=n.id, pipeline=pipeline_name, clock=clock,
            logger=logging.getLogger(f"streamlab.node.{n.id}"),
            inputs=graph.inputs[n.id], outputs=graph.outputs[n.id], buffers=buffers,
        )
        contexts[n.id] = ctx
        policy_spec = n.error_policy or settings.error_policy
        strategy = strategy_from_spec(n.restart or settings.restart)
        policy = policy_from_spec(policy_spec)
        if policy_spec is None and (strategy.restarts or strategy.name == "CircuitBreaker"):
            policy = SkipFrame()
        if isinstance(policy, Propagate) and (strategy.restarts or strategy.name == "CircuitBreaker"):
            raise ConfigError(ConfigProblem(
                f"$.nodes[{i}].restart",
                f"restart strategy {strategy.name} needs error_policy SkipFrame or UseDefault "
                "(Propagate stops the pipeline on the first error)"))

        def factory(cls: type[ProcessingNode] = cls, cfg: Any = cfg, ctx: NodeContext = ctx,
                    node_id: str = n.id, executor: str = n.executor) -> ProcessingNode:
            if executor == "process":
                from streamlab.runtime.executor import ProcessNode

                return ProcessNode(cls, cfg, ctx)
            try:
                return cls.create(cfg, ctx)
            except Exception as exc:
                raise NodeError(node_id, f"on_create failed: {type(exc).__name__}: {exc}") from exc

        m = (metrics or {}).get(n.id) or NodeMetrics(n.id, pipeline_name, n.type)
        if settings.deadline_ms and not graph.outputs[n.id]:  # end-to-end budget, at sinks
            m.set_end_to_end_budget(settings.deadline_ms / 1000)
        nodes[n.id] = ResilientNode(
            factory, policy=policy, strategy=strategy, metrics=m, clock=clock,
            deadline_s=(n.deadline_ms / 1000) if n.deadline_ms else None,
            collect_dead_letters=n.dead_letter is not None,
        )
    return BuiltGraph(spec, graph, nodes, contexts, dead, edge_settings)
