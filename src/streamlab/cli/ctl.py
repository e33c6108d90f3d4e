"""``streamlab ctl``: drive a running pipeline's control API (``streamlab run --ui/--control``).

Reads the URL and token from the token file the server wrote (``--file``, else
``$STREAMLAB_CONTROL_FILE``, ``$XDG_RUNTIME_DIR/streamlab/control.json`` or
``~/.streamlab/control.json``); ``--url`` and ``--token`` (or ``$STREAMLAB_TOKEN``) override
it. Subcommands:

* ``graph``: nodes (type, config version) and edges (queue depth/capacity, drops);
* ``stats``: per node rate, latency, queue and fates;
* ``config NODE``: the node's current configuration (JSON);
* ``set NODE key=value ...``: change settings (a value is read as JSON when it parses, else
  as a string: ``gain=2``, ``cutoff=[1,40]``, ``btype=lowpass``);
* ``stop``: stop the pipeline gracefully.

``--json`` prints the server's JSON as is. Exit codes: 0 ok; 1 the server refused (one
``error:`` line, then one line per problem with its JSON path); 2 bad usage or no server
reachable. No traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "cmd"]


class _Failed(Exception):
    def __init__(self, message: str, code: int, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.problems = problems or []


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ctl", help="control a running pipeline (its --ui/--control API)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", metavar="PATH", help="token file written by the running pipeline")
    p.add_argument("--url", help="the API's URL (default: from the token file)")
    p.add_argument("--token", help="the token (default: $STREAMLAB_TOKEN or the token file)")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="give up on a request after SECONDS (default 10)")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("graph", help="nodes and edges (queue depth, drops)")
    actions.add_parser("stats", help="per-node rates, latencies, queues and fates")
    c = actions.add_parser("config", help="a node's current configuration")
    c.add_argument("node")
    s = actions.add_parser("set", help="change settings of a node: set NODE key=value ...")
    s.add_argument("node")
    s.add_argument("assignments", nargs="+", metavar="key=value")
    actions.add_parser("stop", help="stop the pipeline gracefully")
    p.set_defaults(func=cmd)


def _target(args: argparse.Namespace) -> tuple[str, str]:
    from streamlab.web.server import default_token_file

    url, token = args.url, args.token or os.environ.get("STREAMLAB_TOKEN")
    if url and token:
        return url.rstrip("/"), token
    path = Path(args.file) if args.file else default_token_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        url, token = url or data["url"], token or data["token"]
    except FileNotFoundError:
        raise _Failed(f"no token file at {str(path)!r}: is a pipeline running with --ui or "
                      "--control? (or give --file, or --url and --token)", 2) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _Failed(f"cannot read the token file {str(path)!r}: {exc}", 2) from None
    return str(url).rstrip("/"), str(token)


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    url, token = _target(args)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())
        except ValueError:
            err = {"error": exc.reason}
        problems = [f"{p.get('path', '$')}: {p.get('message', '')}"
                    for p in err.get("problems", []) if isinstance(p, dict)]
        raise _Failed(f"{err.get('error', exc.reason)} (HTTP {exc.code})", 1, problems) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Failed(f"cannot reach {url}: {reason} (has the pipeline ended?)", 2) from None
    except ValueError as exc:
        raise _Failed(f"{url} answered something that is not JSON: {exc}", 1) from None


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _assignments(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _Failed(f"expected key=value, got {item!r}", 2)
        out[key.strip()] = _value(value)
    return out


def _fmt_s(s: Any) -> str:
    if s is None:
        return "-"
    return f"{s * 1e6:.0f}us" if s < 1e-3 else f"{s * 1e3:.2f}ms" if s < 1 else f"{s:.2f}s"


def _print_graph(g: dict[str, Any]) -> None:
    for n in g["nodes"]:
        print(f"node {n['id']:<16} {n['type']:<22} v{n.get('version', 0)}")
    for e in g["edges"]:
        queue = "fused" if e.get("fused") else f"queue {e['depth']}/{e['capacity']}"
        print(f"edge {e['from']} -> {e['to']}: {queue}, dropped {e['dropped']}")


def _print_stats(s: dict[str, Any]) -> None:
    print(f"pipeline {s['pipeline']!r}: {s['state']}, {s.get('duration_s', 0):.1f} s")
    print(f"  {'node':<16} {'rate/s':>9} {'p50':>9} {'p99':>9} {'queue':>7} {'drops':>6}  fates")
    for r in s["nodes"]:
        fates = ", ".join(f"{k} {v}" for k, v in r["fates"].items())
        queue = f"{r['queue_depth']}/{r['queue_capacity']}" if r.get("queue_capacity") else "-"
        print(f"  {r['node']:<16} {r['rate_hz']:>9.1f} {_fmt_s(r['p50_s']):>9} "
              f"{_fmt_s(r['p99_s']):>9} {queue:>7} {r['dropped']:>6}  {fates}")
    w = s.get("web", {})
    print(f"  browser updates: {w.get('sent', 0)} sent, {w.get('dropped', 0)} dropped, "
          f"{w.get('clients', 0)} client(s)")


def cmd(args: argparse.Namespace) -> int:
    if args.action is None:
        print("error: streamlab ctl needs an action: graph, stats, config, set or stop",
              file=sys.stderr)
        return 2
    try:
        if args.action == "graph":
            out = _request(args, "GET", "/api/graph")
            _print_graph(out) if not args.json else print(json.dumps(out, indent=2))
        elif args.action == "stats":
            out = _request(args, "GET", "/api/stats")
            _print_stats(out) if not args.json else print(json.dumps(out, indent=2))
        elif args.action == "config":
            out = _request(args, "GET", f"/api/nodes/{_quote(args.node)}/config")
            print(json.dumps(out if args.json else out["config"], indent=2))
        elif args.action == "set":
            changes = _assignments(args.assignments)
            out = _request(args, "PATCH", f"/api/nodes/{_quote(args.node)}/config", changes)
            if args.json:
                print(json.dumps(out, indent=2))
            else:
                print(f"{args.node}: applied {json.dumps(changes)} (config version "
                      f"{out.get('version')})")
        elif args.action == "stop":
            out = _request(args, "POST", "/api/stop")
            print(json.dumps(out) if args.json else f"stop requested (state {out['state']})")
    except _Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return exc.code
    return 0


def _quote(node: str) -> str:
    from urllib.parse import quote

    return quote(node, safe="")
