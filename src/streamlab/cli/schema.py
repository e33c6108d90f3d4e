"""``streamlab schema``: print the JSON Schema of the pipeline format (all node configs included)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from streamlab.config import pipeline_json_schema


def add_parser(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of pipeline configs", description=__doc__)
    p.set_defaults(func=cmd)


def cmd(args: argparse.Namespace) -> int:
    print(json.dumps(pipeline_json_schema(), indent=2))
    return 0
