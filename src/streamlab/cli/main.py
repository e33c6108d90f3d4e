"""``streamlab``: entry point and argument parsing (argparse: fast start-up)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from streamlab import __version__

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamlab",
        description="Run, check and inspect StreamLab pipelines (JSON node graphs).",
    )
    parser.add_argument("--version", action="version", version=f"streamlab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from streamlab.cli import batch, ctl, graph, nodes, repair, run, schema, validate

    for module in (run, batch, repair, validate, nodes, schema, graph, ctl):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # e.g. `streamlab schema | head`
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
