"""``streamlab validate CONFIG [--set KEY=VALUE ...]``: exit 0 if valid, else 2 with one problem
per line, each starting with its JSON path.

Checks everything that can be checked without running: the document's shape, node types and
their configs, the graph, and the files (input files exist and are readable regular files,
output files can be created). Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import argparse
from typing import Any

from streamlab.cli.common import add_config_arguments, load_or_report


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a pipeline config", description=__doc__)
    add_config_arguments(p)
    p.set_defaults(func=cmd)


def cmd(args: argparse.Namespace) -> int:
    spec = load_or_report(args.config, args.overrides)
    if spec is None:
        return 2
    print(f"ok: {args.config}: {len(spec.nodes)} nodes, {len(spec.connections)} connections")
    return 0
