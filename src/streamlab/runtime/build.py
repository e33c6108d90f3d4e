"""Turn a validated PipelineSpec into node instances wrapped in ResilientNode, and a Graph.

Shared by :class:`~streamlab.runtime.Pipeline` and :class:`~streamlab.runtime.AsyncPipeline`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from streamlab.buffers import BufferPool
from streamlab.clock import Clock
from streamlab.config.model import NodeSpec, PipelineSpec
from streamlab.errors import ConfigError, ConfigProblem, NodeError
from streamlab.graph import Graph, find_cycle
from streamlab.metrics.node_metrics import NodeMetrics
from streamlab.node import NodeContext, ProcessingNode
from streamlab.resilience.resilient import ResilientNode

__all__ = ["BuiltGraph", "build_graph", "upstream_description"]


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
    """Instantiate every node (``on_create``) in declaration order.

    The spec's resilience settings were validated by :func:`~streamlab.config.load_config`;
    an ``on_create`` failure raises NodeError naming the node.
    """
    graph, dead, edge_settings = _graph(spec)
    nodes: dict[str, ResilientNode] = {}
    contexts: dict[str, NodeContext] = {}
    buffers = BufferPool()  # one per pipeline instance, shared by its nodes
    for n in spec.nodes:
        ctx = NodeContext(
            node_id=n.id, pipeline=pipeline_name, clock=clock,
            logger=logging.getLogger(f"streamlab.node.{n.id}"),
            inputs=graph.inputs[n.id], outputs=graph.outputs[n.id], buffers=buffers,
        )
        if getattr(spec.node_type(n.id), "uses_upstream", False):
            ctx.upstream = upstream_description(spec, graph, n.id)
        contexts[n.id] = ctx
        m = (metrics or {}).get(n.id) or NodeMetrics(n.id, pipeline_name, n.type)
        budget = spec.pipeline_config.deadline_s
        if budget and not graph.outputs[n.id]:  # end-to-end budget, at sinks
            m.set_end_to_end_budget(budget)
        nodes[n.id] = _wrap(spec, n, ctx, m, clock)
    return BuiltGraph(spec, graph, nodes, contexts, dead, edge_settings)


def upstream_description(spec: PipelineSpec, graph: Graph, node_id: str) -> str:
    """Canonical JSON of what feeds ``node_id``: its ancestors' types and validated configs
    and the edges between them (ids replaced by positions in topological order).

    Sources appear as ``{"source": true}`` only: the same processing fed live or from a file
    describes the same graph (a model checks channels and sample rate itself).
    """
    import json

    seen: set[str] = set()
    stack = list(graph.inputs[node_id])
    while stack:
        a = stack.pop()
        if a not in seen:
            seen.add(a)
            stack.extend(graph.inputs[a])
    order = [x for x in graph.topological_order() if x in seen] + [node_id]
    pos = {x: i for i, x in enumerate(order)}
    nodes: list[dict[str, Any]] = []
    for x in order[:-1]:
        if not graph.inputs[x]:
            nodes.append({"source": True})
        else:
            cfg = spec.node_config(x)
            nodes.append({"type": spec.node_type(x).__name__,
                          "config": cfg.model_dump(mode="json")})
    edges = sorted([pos[a], pos[b]] for a, b in graph.edges if a in pos and b in pos)
    return json.dumps({"nodes": nodes, "edges": edges}, sort_keys=True, separators=(",", ":"))


def _graph(spec: PipelineSpec) -> tuple[Graph, dict[str, str], dict[tuple[str, str], Any]]:
    """The graph (connections plus dead-letter edges), the dead letters and per-edge settings."""
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
    return graph, dead, edge_settings


def _wrap(spec: PipelineSpec, n: NodeSpec, ctx: NodeContext, m: NodeMetrics,
          clock: Clock) -> ResilientNode:
    """The node built by its factory, wrapped with its resilience settings."""
    cls: type[ProcessingNode] = spec.node_type(n.id)
    cfg = spec.node_config(n.id)

    def factory() -> ProcessingNode:
        if n.executor == "process":
            from streamlab.runtime.executor import ProcessNode

            return ProcessNode(cls, cfg, ctx)
        try:
            return cls.create(cfg, ctx)
        except Exception as exc:
            raise NodeError(n.id, f"on_create failed: {type(exc).__name__}: {exc}") from exc

    r = spec.resilience(n)
    return ResilientNode(
        factory, policy=r.policy, strategy=r.strategy, breaker=r.breaker, metrics=m,
        clock=clock, deadline_s=n.deadline_s, collect_dead_letters=n.dead_letter is not None,
    )
