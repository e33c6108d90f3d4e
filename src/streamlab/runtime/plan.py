"""The plan of a pipeline run: which nodes fuse into one task, which channels exist, which
executor drives each task. Plain data, computed from a built graph without starting anything.

:func:`make_plan` decides:

* **Fusion**: a linear run of inline, synchronous nodes joined by default edges (no own
  capacity, ``block`` overflow, not a dead-letter edge) becomes one task; frames pass between
  its stages without a channel. Thread and process executors, async nodes, nodes that own their
  loop (``run`` overridden) and nodes with a dead-letter edge are never fused.
* **Channels**: one bounded channel per edge that is not inside a fused chain, with the edge's
  capacity and overflow policy; one trigger channel per triggered source (a free-running
  source takes no triggers).
* **Drivers**: per task, how frames come in (``feed``: an inlet of channels, or the task's own
  free-running source) and how its stages run (``executor``: inline, thread, process, async,
  or a node that owns its loop).

:class:`~streamlab.runtime.AsyncPipeline` wires channels and drivers from the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streamlab.node import SourceNode, overrides_run
from streamlab.runtime.build import BuiltGraph

__all__ = ["EdgePlan", "TaskPlan", "Plan", "make_plan", "TRIGGER"]

#: The upstream name of a trigger channel in a task's inputs.
TRIGGER = "trigger"

Executor = Literal["inline", "thread", "process", "async", "custom"]
Feed = Literal["inlet", "source"]


@dataclass(frozen=True)
class EdgePlan:
    """A channel between two tasks (``source`` is :data:`TRIGGER` for a trigger channel)."""

    source: str
    target: str
    capacity: int
    overflow: str = "block"

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target}"


@dataclass(frozen=True)
class TaskPlan:
    """One task: a node or a fused chain, where its frames come from and go to."""

    nodes: tuple[str, ...]
    feed: Feed
    executor: Executor
    inputs: tuple[str, ...]            # upstream node ids (or TRIGGER), one channel each
    outputs: tuple[str, ...]           # downstream node ids of the tail, one channel each
    dead_letters: tuple[tuple[int, str], ...] = ()  # (stage index, dead-letter node id)

    @property
    def name(self) -> str:
        return "+".join(self.nodes)

    @property
    def terminal(self) -> bool:
        """The tail has no outputs: its frames leave the pipeline (results, stream, discard)."""
        return not self.outputs


@dataclass(frozen=True)
class Plan:
    tasks: tuple[TaskPlan, ...]
    edges: tuple[EdgePlan, ...]      # channels between tasks
    triggers: tuple[EdgePlan, ...]   # trigger channels into triggered sources

    @property
    def chains(self) -> list[list[str]]:
        return [list(t.nodes) for t in self.tasks]

    def task_of(self, node_id: str) -> TaskPlan:
        for t in self.tasks:
            if node_id in t.nodes:
                return t
        raise KeyError(node_id)


def _executor(built: BuiltGraph, node_id: str) -> Executor:
    st = built.nodes[node_id]
    declared = built.spec.node(node_id).executor
    if declared == "process":
        return "process"
    if overrides_run(st.node):
        return "custom"
    if st.is_async:
        return "async"
    return "thread" if declared == "thread" else "inline"


def _free_source(built: BuiltGraph, node_id: str) -> bool:
    node = built.nodes[node_id].node
    return isinstance(node, SourceNode) and node.free_running()


def make_plan(built: BuiltGraph, *, fusion: bool, capacity: int) -> Plan:
    """The plan of ``built`` (see the module docstring)."""
    g = built.graph
    dead = built.dead_letter_edges
    dead_edges = set(dead.items())
    executors = {n: _executor(built, n) for n in g.nodes}

    def joinable(a: str, b: str) -> bool:
        conn = built.edge_settings.get((a, b))
        return (conn is not None and conn.capacity is None and conn.overflow == "block"
                and (a, b) not in dead_edges)

    fusable = {n for n in g.nodes if executors[n] == "inline" and n not in dead} if fusion else set()
    chains = g.chains(fusable, joinable)
    internal = {(c[i], c[i + 1]) for c in chains for i in range(len(c) - 1)}
    edges = []
    for a, b in g.edges:
        if (a, b) in internal:
            continue
        conn = built.edge_settings.get((a, b))
        edges.append(EdgePlan(a, b, conn.capacity if conn is not None and conn.capacity else capacity,
                              conn.overflow if conn is not None else "block"))
    triggers = tuple(EdgePlan(TRIGGER, s, capacity) for s in g.sources if not _free_source(built, s))
    triggered = {t.target for t in triggers}
    tasks = []
    for chain in chains:
        head, tail = chain[0], chain[-1]
        inputs = tuple(g.inputs[head]) or ((TRIGGER,) if head in triggered else ())
        tasks.append(TaskPlan(
            nodes=tuple(chain),
            feed="source" if _free_source(built, head) else "inlet",
            executor=executors[head] if len(chain) == 1 else "inline",
            inputs=inputs,
            outputs=tuple(c for c in g.outputs[tail] if c != dead.get(tail)),
            dead_letters=tuple((k, dead[n]) for k, n in enumerate(chain) if n in dead),
        ))
    return Plan(tuple(tasks), tuple(edges), triggers)
