"""``streamlab graph CONFIG [--set KEY=VALUE ...]``: the pipeline graph as Mermaid or Graphviz dot.

The config is validated like ``validate`` does, except that files are not checked (drawing a
graph needs no input file).
"""

from __future__ import annotations

import argparse
from typing import Any

from streamlab.cli.common import add_config_arguments, load_or_report
from streamlab.graph import Graph


def add_parser(sub: Any) -> None:
    p = sub.add_parser("graph", help="draw a pipeline graph (mermaid or dot)", description=__doc__)
    add_config_arguments(p)
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    p.set_defaults(func=cmd)


def cmd(args: argparse.Namespace) -> int:
    spec = load_or_report(args.config, args.overrides, check_files=False)
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
