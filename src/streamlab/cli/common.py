"""Helpers shared by subcommands: loading a config and printing its problems."""

from __future__ import annotations

import sys

from streamlab.config import PipelineSpec, load_config
from streamlab.errors import ConfigError

__all__ = ["load_or_report", "print_problems"]


def print_problems(err: ConfigError) -> None:
    """Each problem on its own line, starting with its JSON path."""
    if err.source:
        print(f"{err.source}: {len(err.problems)} problem(s)", file=sys.stderr)
    for p in err.problems:
        print(str(p), file=sys.stderr)


def load_or_report(path: str) -> PipelineSpec | None:
    try:
        return load_config(path)
    except ConfigError as err:
        print_problems(err)
        return None


