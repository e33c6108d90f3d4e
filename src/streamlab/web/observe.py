"""``streamlab run --ui [PORT]`` and ``--control [PORT]``: serve the control API (and with
``--ui`` the dashboard) while the pipeline runs.

Imported by :mod:`streamlab.cli.run` (its optional features); adds the options to
``ARGUMENTS`` and one observer to ``OBSERVERS``. The server starts before the pipeline, prints
its URL, a one-time login URL for a browser, the token and where the token file is, and
stops after the run (``--ui-linger SECONDS`` keeps it serving the final state that long). A
port that cannot be bound is a usage error (exit 2) before the pipeline starts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from streamlab.cli import run as run_cli
from streamlab.errors import BackendError

__all__ = ["add_arguments", "serve"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("live control (pip install 'streamlab[web]')")
    g.add_argument("--ui", nargs="?", type=int, const=0, metavar="PORT",
                   help="serve the web dashboard and the control API (PORT: default any free)")
    g.add_argument("--control", nargs="?", type=int, const=0, metavar="PORT",
                   help="serve the control API only (for streamlab ctl)")
    g.add_argument("--ui-host", default="127.0.0.1", metavar="ADDR",
                   help="address the dashboard binds (default 127.0.0.1)")
    g.add_argument("--control-file", metavar="PATH",
                   help="where to write the URL and token (mode 0600; default "
                   "$XDG_RUNTIME_DIR/streamlab/control.json or ~/.streamlab/control.json)")
    g.add_argument("--ui-linger", type=float, default=0.0, metavar="SECONDS",
                   help="keep serving this long after the run ended (default 0)")


@asynccontextmanager
async def serve(args: argparse.Namespace, pipe: Any) -> AsyncIterator[None]:
    """The run observer: see the module docstring."""
    ui, control = getattr(args, "ui", None), getattr(args, "control", None)
    if ui is None and control is None:
        yield
        return
    port: int = ui if ui is not None else control  # type: ignore[assignment]
    if not 0 <= port <= 65535:
        print(f"error: --{'ui' if ui is not None else 'control'} port must be 0..65535, "
              f"got {port}", file=sys.stderr)
        raise SystemExit(2)
    try:
        from streamlab.web.server import ControlServer

        server = ControlServer(pipe, host=args.ui_host, port=port, ui=ui is not None,
                               token_file=args.control_file)
        await server.start()
    except BackendError as exc:
        print(f"error: --ui: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"error: cannot serve on {args.ui_host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        raise SystemExit(2) from None
    what = "dashboard" if ui is not None else "control API"
    print(f"serving the {what} on {server.url}", file=sys.stderr)
    if ui is not None:
        print(f"  open (one-time link): {server.login_url()}", file=sys.stderr)
    print(f"  token file: {server.token_file} (streamlab ctl reads it)", file=sys.stderr)
    print(f"  token: {server.token}", file=sys.stderr)
    if args.ui_host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: the {what} listens on {args.ui_host}: anyone who can reach it and "
              "has the token controls the pipeline (no TLS)", file=sys.stderr)
    completed = False
    try:
        yield
        completed = True
    finally:
        if completed and args.ui_linger > 0:
            await asyncio.sleep(args.ui_linger)
        await server.stop()


def _register() -> None:
    if add_arguments not in run_cli.ARGUMENTS:
        run_cli.ARGUMENTS.append(add_arguments)
    if serve not in run_cli.OBSERVERS:
        run_cli.OBSERVERS.append(serve)


_register()
