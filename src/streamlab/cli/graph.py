"""``streamlab graph CONFIG``: the pipeline graph as Mermaid or Graphviz dot."""

from __future__ import annotations

import argparse
from typing import Any

from streamlab.cli.common import load_or_report
from streamlab.graph import Graph


def add_parser(sub: Any) -> None:
    p = sub.add_parser("graph", help="draw a pipeline graph (mermaid or dot)", description=__doc__)
    p.add_argument("config", help="path to the pipeline JSON file")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    p.set_defaults(func=cmd)


def cmd(args: argparse.Namespace) -> int:
    spec = load_or_report(args.config)
    if spec is None:
        return 2
    edges = [(c.from_, c.to) for c in spec.connections]
    graph = Graph.build([n.id for n in spec.nodes], edges)
    labels = {n.id: f"{n.id}: {n.type}" for n in spec.nodes}
    if args.format == "dot":
        print(graph.to_dot(labels, spec.name), end="")
    else:
        print(graph.to_mermaid(labels), end="")
    return 0
