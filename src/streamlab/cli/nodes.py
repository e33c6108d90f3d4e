"""``streamlab nodes``: the registered node types with a one-line description each."""

from __future__ import annotations

import argparse
import json
from typing import Any

from streamlab.registry import node_types, plugin_errors


def add_parser(sub: Any) -> None:
    p = sub.add_parser("nodes", help="list node types", description=__doc__)
    p.add_argument("--json", action="store_true", help="machine-readable output with config schemas")
    p.set_defaults(func=cmd)


def cmd(args: argparse.Namespace) -> int:
    types = node_types()
    if args.json:
        data = [
            {"type": name, "description": cls.description(), "module": cls.__module__,
             "source": cls.is_source, "config_schema": cls.Config.model_json_schema()}
            for name, cls in types.items()
        ]
        print(json.dumps(data, indent=2))
        return 0
    width = max(len(n) for n in types)
    for name, cls in types.items():
        print(f"{name:<{width}}  {cls.description()}")
    for name, why in plugin_errors().items():
        print(f"{name:<{width}}  [plugin failed to load: {why}]")
    return 0
