"""Helpers shared by subcommands: loading a config and printing its problems."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from streamlab.config import PipelineSpec, load_config, parse_json
from streamlab.errors import ConfigError

__all__ = ["add_config_arguments", "load_or_report", "print_problems"]


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """The CONFIG argument and ``--set`` (repeatable), shared by run, validate and graph."""
    p.add_argument("config", help="path to the pipeline JSON file ('-': read it from stdin; "
                   "its relative paths are then relative to the working directory)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="override one config value before validation, e.g. "
                   "nodes.r_peaks.config.height=0.5 (nodes by id; VALUE is JSON, else a "
                   "string); repeatable")


def print_problems(err: ConfigError) -> None:
    """Each problem on its own line, starting with its JSON path."""
    if err.source:
        print(f"{err.source}: {len(err.problems)} problem(s)", file=sys.stderr)
    for p in err.problems:
        print(str(p), file=sys.stderr)


def load_or_report(path: str, overrides: Sequence[str] = (), *,
                   check_files: bool = True) -> PipelineSpec | None:
    """The validated config, or None after printing its problems (exit 2 for the caller).

    ``path`` '-' reads the config from stdin (relative paths: the working directory). With
    ``check_files`` input files must exist and outputs be writable (what can be checked
    without running).
    """
    try:
        # deprecated config names: one "warning:" line each on stderr, no traceback
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            if path == "-":
                data = parse_json(sys.stdin.buffer.read(), source="<stdin>")
                spec = load_config(data, check_files=check_files, overrides=overrides)
            else:
                spec = load_config(path, check_files=check_files, overrides=overrides)
        _show_deprecations(caught)
        return spec
    except ConfigError as err:
        _show_deprecations(caught)
        if path == "-" and not err.source:
            err.source = "<stdin>"
        print_problems(err)
        return None


def _show_deprecations(caught: list[warnings.WarningMessage]) -> None:
    """Each distinct deprecation of the config once, as a ``warning:`` line on stderr."""
    seen: set[str] = set()
    for w in caught:
        text = str(w.message)
        if issubclass(w.category, DeprecationWarning) and text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)
