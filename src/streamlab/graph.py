"""Graph topology: topological order, sources, sinks, inputs and outputs, cycles, chains.

Pure functions over node ids and ``(from, to)`` edges: no tasks, no I/O, no config parsing.
Orders are stable: among nodes that could go next, the one declared first goes first.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Graph", "find_cycle"]


def find_cycle(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """A cycle as ``[a, b, ..., a]`` if the graph has one, else None."""
    adj: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, [])
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(adj, white)
    for start in adj:
        if color[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        color[start] = grey
        while stack:
            node, i = stack[-1]
            succ = adj[node]
            if i < len(succ):
                stack[-1] = (node, i + 1)
                nxt = succ[i]
                if color[nxt] == grey:
                    return path[path.index(nxt):] + [nxt]
                if color[nxt] == white:
                    color[nxt] = grey
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                color[node] = black
                stack.pop()
                path.pop()
    return None


@dataclass(frozen=True)
class Graph:
    """A DAG of node ids."""

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    outputs: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def build(cls, nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> Graph:
        ins: dict[str, list[str]] = {n: [] for n in nodes}
        outs: dict[str, list[str]] = {n: [] for n in nodes}
        for a, b in edges:
            outs[a].append(b)
            ins[b].append(a)
        cycle = find_cycle(nodes, edges)
        if cycle:
            raise ValueError("cycle: " + " -> ".join(cycle))
        return cls(tuple(nodes), tuple(edges),
                   {k: tuple(v) for k, v in ins.items()}, {k: tuple(v) for k, v in outs.items()})

    @property
    def sources(self) -> tuple[str, ...]:
        """Nodes without inputs (they receive trigger frames)."""
        return tuple(n for n in self.nodes if not self.inputs[n])

    @property
    def sinks(self) -> tuple[str, ...]:
        """Nodes without outputs (their output is the pipeline's output)."""
        return tuple(n for n in self.nodes if not self.outputs[n])

    def topological_order(self) -> list[str]:
        """Kahn's algorithm; ties broken by declaration order."""
        pos = {n: i for i, n in enumerate(self.nodes)}
        indeg = {n: len(self.inputs[n]) for n in self.nodes}
        ready = [pos[n] for n in self.nodes if indeg[n] == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            n = self.nodes[heapq.heappop(ready)]
            order.append(n)
            for m in self.outputs[n]:
                indeg[m] -= 1
                if indeg[m] == 0:
                    heapq.heappush(ready, pos[m])
        return order

    def chains(
        self,
        can_fuse: set[str] | None = None,
        can_join: Callable[[str, str], bool] | None = None,
    ) -> list[list[str]]:
        """Partition nodes into maximal linear chains that may run in one task.

        ``a -> b`` joins a chain when ``a`` has exactly one output, ``b`` exactly one input,
        both are in ``can_fuse`` (default: every node) and ``can_join(a, b)`` allows the edge.
        Chains are in topological order.
        """
        fusable = set(self.nodes) if can_fuse is None else can_fuse

        def joins(a: str, b: str) -> bool:
            return (a in fusable and b in fusable and len(self.outputs[a]) == 1
                    and len(self.inputs[b]) == 1 and (can_join is None or can_join(a, b)))

        chains: list[list[str]] = []
        placed: set[str] = set()
        for n in self.topological_order():
            if n in placed:
                continue
            preds = self.inputs[n]
            if len(preds) == 1 and joins(preds[0], n):
                continue  # placed when its chain head is reached
            chain = [n]
            placed.add(n)
            while len(self.outputs[chain[-1]]) == 1:
                nxt = self.outputs[chain[-1]][0]
                if not joins(chain[-1], nxt):
                    break
                chain.append(nxt)
                placed.add(nxt)
            chains.append(chain)
        return chains

    def to_mermaid(self, labels: dict[str, str] | None = None) -> str:
        labels = labels or {}
        lines = ["flowchart LR"]
        for n in self.nodes:
            text = labels.get(n, n).replace('"', "'")
            lines.append(f'    {_safe(n)}["{text}"]')
        for a, b in self.edges:
            lines.append(f"    {_safe(a)} --> {_safe(b)}")
        return "\n".join(lines) + "\n"

    def to_dot(self, labels: dict[str, str] | None = None, name: str = "pipeline") -> str:
        labels = labels or {}
        lines = [f'digraph "{name}" {{', "    rankdir=LR;", "    node [shape=box];"]
        for n in self.nodes:
            text = labels.get(n, n).replace('"', '\\"')
            lines.append(f'    "{n}" [label="{text}"];')
        for a, b in self.edges:
            lines.append(f'    "{a}" -> "{b}";')
        lines.append("}")
        return "\n".join(lines) + "\n"


def _safe(node_id: str) -> str:
    return "n_" + "".join(c if c.isalnum() or c == "_" else f"_{ord(c):x}_" for c in node_id)
