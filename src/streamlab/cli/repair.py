"""``streamlab repair FILE...``: cut recordings left by a killed run back to their last
complete record (see :func:`streamlab.nodes.record.repair_recording`).

Prints one line per file (``FILE: N records kept, M bytes of a cut-short record removed``,
or ``complete``). Exit 0 if every file was repaired or complete, 2 if a file is missing or of
a kind it does not know (one ``error:`` line each, the others are still repaired), 1 if a file
could not be rewritten.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "cmd"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("repair", help="cut recordings of a killed run back to complete records",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE",
                   help=".slrec, .npy, .csv, .jsonl, .xdf, .edf or .bdf files written by "
                   "StreamLab's sinks")
    p.set_defaults(func=cmd)


def cmd(args: argparse.Namespace) -> int:
    from streamlab.nodes.record import repair_recording

    code = 0
    for name in args.files:
        try:
            r = repair_recording(name)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = max(code, 2)
            continue
        except OSError as exc:
            print(f"error: {name!r}: {exc.strerror or exc}", file=sys.stderr)
            code = 2 if isinstance(exc, FileNotFoundError) else max(code, 1)
            continue
        if r.bytes_removed:
            print(f"{name}: {r.records} records kept, {r.bytes_removed} bytes of a cut-short "
                  "record removed")
        else:
            print(f"{name}: complete ({r.records} records)")
    return code
