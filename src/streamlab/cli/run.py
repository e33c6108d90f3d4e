"""``streamlab run CONFIG``: run a pipeline with the async runtime.

Sends ``--triggers`` trigger frames (default 1) to the triggered sources, lets free-running
sources (files, free generators) run to their end, drains every frame in flight, prints a
summary of frame fates per node, and exits 0.

* ``--output FILE.jsonl`` writes every frame that reaches a terminal node as one JSON line:
  ``{"node", "timestamp", "sequence_id", "payload": {channel: [floats]}, "metadata"}``.
* ``--summary FILE.json`` writes the run report (per-node metrics and fates, channels).
* Ctrl-C stops gracefully (exit 0); a second Ctrl-C forces the stop (exit 130). No traceback.
* A node failure exits 1 with one line naming the node and the error.

Observers (the live monitor, the Prometheus exporter) hook in through :data:`OBSERVERS`:
each is a callable ``(args, pipeline) -> async context manager`` that runs alongside the run.
An observer that prints its own final report sets ``args.report_printed`` (the plain fate
table is then not printed); ``args.summary_extras`` (a dict) is merged into ``--summary``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from typing import IO, Any

from streamlab.cli.common import add_config_arguments, load_or_report
from streamlab.errors import PipelineError, StreamLabError
from streamlab.node import SourceNode
from streamlab.runtime.async_pipeline import AsyncPipeline, RunReport

__all__ = ["add_parser", "cmd", "OBSERVERS", "ARGUMENTS", "format_fates"]

#: Extra ``add_argument`` callbacks and run observers registered by optional features.
ARGUMENTS: list[Callable[[argparse.ArgumentParser], None]] = []
OBSERVERS: list[Callable[[argparse.Namespace, AsyncPipeline], Any]] = []


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run a pipeline", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument("--triggers", type=int, default=1, metavar="N",
                   help="trigger frames sent to triggered sources (default 1)")
    p.add_argument("--output", metavar="FILE.jsonl", help="write terminal nodes' frames as JSON lines")
    p.add_argument("--summary", metavar="FILE.json", help="write the run report as JSON")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="after Ctrl-C or at the end, force the stop after this long")
    p.add_argument("--debug", action="store_true", help="check frame accounting at the end")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary on stderr")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="event loop: uvloop when installed (auto, the default), or asyncio's")
    _load_optional_features()
    for add in ARGUMENTS:
        add(p)
    p.set_defaults(func=cmd)


def _load_optional_features() -> None:
    """Let optional features register their arguments and observers (imported lazily)."""
    with contextlib.suppress(ImportError):
        import streamlab.cli.observe  # noqa: F401


def cmd(args: argparse.Namespace) -> int:
    if args.triggers < 0:
        print("error: --triggers must be >= 0", file=sys.stderr)
        return 2
    spec = load_or_report(args.config, args.overrides)
    if spec is None:
        return 2
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            return runner.run(_run(args, spec))
    except KeyboardInterrupt:  # a signal arrived before our handlers were installed
        print("interrupted", file=sys.stderr)
        return 130


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop if asked for or (auto) installed; None means asyncio's default."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("error: --loop uvloop needs uvloop: pip install 'streamlab[fast]'") from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


async def _run(args: argparse.Namespace, spec: Any) -> int:
    try:
        pipe = AsyncPipeline(spec, outputs="stream" if args.output else "discard",
                             debug=args.debug or None)
    except StreamLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if not isinstance(exc, ValueError) else 2
    loop = asyncio.get_running_loop()
    interrupts = 0
    forced = asyncio.Event()

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print("\nstopping gracefully (Ctrl-C again to force)", file=sys.stderr)
            pipe.request_stop()
        else:
            print("\nforcing stop", file=sys.stderr)
            forced.set()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, on_sigint)

    out_file: IO[str] | None = open(args.output, "w", encoding="utf-8") if args.output else None
    report: RunReport | None = None
    failure: PipelineError | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            for observer in OBSERVERS:
                await stack.enter_async_context(observer(args, pipe))
            await pipe.start()
            writer = asyncio.create_task(_write_outputs(pipe, out_file)) if out_file else None
            try:
                report = await _drive(pipe, args, forced)
            except PipelineError as exc:
                failure = exc
            if writer is not None:
                try:
                    await writer
                except PipelineError as exc:
                    failure = failure or exc
    finally:
        if out_file is not None:
            out_file.close()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)

    report = report or pipe.report
    if report is not None:
        if not args.quiet and not getattr(args, "report_printed", False):
            print(format_fates(report), file=sys.stderr)
        if args.summary:
            data = {**report.to_dict(), **getattr(args, "summary_extras", {})}
            with open(args.summary, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, default=str)
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    if forced.is_set():
        return 130
    return 0


async def _drive(pipe: AsyncPipeline, args: argparse.Namespace, forced: asyncio.Event) -> RunReport:
    """Send triggers, let sources finish, stop; force if a second Ctrl-C comes."""

    async def feed_and_join() -> RunReport:
        triggered = [s for s in pipe.sources if not _free_running(pipe, s)]
        if triggered:
            for _ in range(args.triggers):
                if pipe._stop_requested.is_set():
                    break
                await pipe.trigger()
        pipe.close_triggers()
        return await pipe.join()

    main = asyncio.create_task(feed_and_join())
    force = asyncio.create_task(forced.wait())
    try:
        done, _ = await asyncio.wait({main, force}, return_when=asyncio.FIRST_COMPLETED,
                                     timeout=None)
        if main in done:
            return main.result()
        await pipe.stop(timeout=0)
        return await main
    finally:
        force.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await force


def _free_running(pipe: AsyncPipeline, node_id: str) -> bool:
    node = pipe.built.nodes[node_id].node
    return isinstance(node, SourceNode) and node.free_running()


async def _write_outputs(pipe: AsyncPipeline, out: IO[str]) -> None:
    async for node_id, frame in pipe.outputs():
        d = frame.to_dict()
        out.write(json.dumps({"node": node_id, **d}) + "\n")


def format_fates(report: RunReport) -> str:
    """A short table: per node, frames received and their fates (zero columns hidden)."""
    fates = report.fates()
    cols = ["received"] + [c for c in next(iter(fates.values()), {}) if c != "received"
                           and any(f[c] for f in fates.values())]
    cols += ["out", "errors"]
    width = max([len(n) for n in fates] + [4])
    lines = [f"run {report.pipeline!r}: {report.state} in {report.duration_s:.3f} s"]
    lines.append(f"  {'node':<{width}} " + " ".join(f"{c:>16}" for c in cols))
    for node, f in fates.items():
        snap = report.nodes[node]
        vals = [f.get(c, 0) for c in cols[:-2]] + [snap.frames_out, snap.errors]
        lines.append(f"  {node:<{width}} " + " ".join(f"{v:>16}" for v in vals))
    if report.forced_nodes:
        lines.append(f"  forced: {', '.join(report.forced_nodes)}")
    if report.failed_node:
        lines.append(f"  failed: node {report.failed_node!r}: {report.error}")
    return "\n".join(lines)
