"""``streamlab validate CONFIG``: exit 0 if valid, else 2 with one problem per line."""

from __future__ import annotations

import argparse
from typing import Any

from streamlab.cli.common import load_or_report


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a pipeline config", description=__doc__)
    p.add_argument("config", help="path to the pipeline JSON file")
    p.set_defaults(func=cmd)


def cmd(args: argparse.Namespace) -> int:
    spec = load_or_report(args.config)
    if spec is None:
        return 2
    print(f"ok: {args.config}: {len(spec.nodes)} nodes, {len(spec.connections)} connections")
    return 0
