"""Observability options of ``streamlab run``: live monitor, Prometheus exporter, run summary.

Imported by :mod:`streamlab.cli.run` when present; it adds its options to ``ARGUMENTS`` and
one observer to ``OBSERVERS``. The observer registers the pipeline with a
:class:`~streamlab.metrics.MetricsCollector` before it starts and, around the run:

* ``--monitor``: a live rich table on a terminal, refreshed every ``--monitor-interval``
  seconds (default 0.25), with a progress bar when the length is known (``--triggers`` for
  triggered sources, ``max_frames`` for free-running ones); elsewhere (not a TTY, or rich
  missing) one plain line per pipeline on stderr every interval (default 1 s).
* ``--metrics-port PORT``: serves Prometheus ``/metrics`` on ``--metrics-addr`` (default
  127.0.0.1; another address only when given) during the run and ``--metrics-linger``
  seconds after it, so a last scrape can see the final counts. A port that cannot be bound
  is a usage error (exit 2) before the pipeline starts.
* Deadline misses (a node's ``deadline_ms``, the pipeline's end-to-end ``deadline_ms``) are
  logged as warnings at most once per ``--deadline-log-interval`` seconds (default 5; 0: off).
* At the end the monitor's final report is printed on stderr (unless ``--quiet``) in place
  of ``run``'s plain fate table, and ``--summary FILE.json`` gets a ``"monitor"`` key (the
  report's rows) next to the run report (``args.summary_extras``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

from streamlab.cli import run as run_cli
from streamlab.metrics.collector import MetricsCollector
from streamlab.metrics.monitor import PipelineMonitor
from streamlab.node import SourceNode
from streamlab.runtime.async_pipeline import AsyncPipeline

__all__ = ["add_arguments", "observe", "progress_of"]

log = logging.getLogger("streamlab.metrics")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The observability options of ``streamlab run``."""
    g = p.add_argument_group("observability")
    g.add_argument("--monitor", action="store_true",
                   help="show a live table of per-node rates, latencies and queues")
    g.add_argument("--monitor-interval", type=float, metavar="SECONDS",
                   help="monitor refresh period (default 0.25 on a terminal, 1 otherwise)")
    g.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on this port (/metrics)")
    g.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR",
                   help="address the metrics server binds (default 127.0.0.1)")
    g.add_argument("--metrics-linger", type=float, default=0.0, metavar="SECONDS",
                   help="keep serving metrics this long after the run (default 0)")
    g.add_argument("--deadline-log-interval", type=float, default=5.0, metavar="SECONDS",
                   help="log deadline misses at most this often (default 5; 0: never)")


def progress_of(pipe: AsyncPipeline, triggers: int) -> tuple[int, int, str] | None:
    """``(done, total, unit)`` when the run's length is known, else None.

    Triggered sources: trigger frames taken by the slowest source out of ``triggers``.
    Otherwise free-running sources with ``max_frames``: frames produced out of the sum.
    """
    triggered: list[str] = []
    free: list[str] = []
    for s in pipe.sources:
        node = pipe.built.nodes[s].node
        (free if isinstance(node, SourceNode) and node.free_running() else triggered).append(s)
    if triggered and triggers > 0:
        done = min(pipe.trigger_channels[s].received for s in triggered)
        return done, triggers, "triggers"
    limits = [getattr(pipe.built.nodes[s].node.config, "max_frames", None) for s in free]
    if free and all(isinstance(n, int) and n > 0 for n in limits):
        done = sum(pipe.metrics[s].frames_out for s in free)
        return done, sum(limits), "frames"  # type: ignore[arg-type]
    return None


def _has_deadlines(pipe: AsyncPipeline) -> bool:
    spec = pipe.spec
    return bool(spec.pipeline_config.deadline_ms) or any(n.deadline_ms for n in spec.nodes)


class _LiveView:
    """The rich Live display, or plain lines when stderr is not a terminal or rich is missing."""

    def __init__(self, monitor: PipelineMonitor, pipe: AsyncPipeline, triggers: int) -> None:
        self.monitor = monitor
        self.pipe = pipe
        self.triggers = triggers
        self.live: Any = None
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:
            print("monitor: rich is not installed (pip install 'streamlab[ui]'); "
                  "printing plain lines", file=sys.stderr)
            return
        console = Console(stderr=True)
        self.console = console
        if console.is_terminal:
            self.live = Live(console=console, auto_refresh=False, transient=False,
                             redirect_stderr=True, redirect_stdout=True)

    @property
    def is_live(self) -> bool:
        return self.live is not None

    def start(self) -> None:
        if self.live is not None:
            self.live.start()

    def tick(self) -> None:
        report = self.monitor.update()
        if self.live is None:
            print(self.monitor.format_line(report), file=sys.stderr, flush=True)
            return
        self.live.update(self._view(report), refresh=True)

    def finish(self, final: Any) -> None:
        """Show the final report in place of the live table, and stop."""
        if self.live is None:
            return
        self.live.update(self._view(final), refresh=True)
        self.live.stop()

    def _view(self, report: Any) -> Any:
        prog = progress_of(self.pipe, self.triggers)
        return self.monitor.renderable(report, prog[:2] if prog else None,
                                       prog[2] if prog else "triggers",
                                       compact=self.console.width < 130)


async def _tick_loop(view: _LiveView | None, monitor: PipelineMonitor, interval: float,
                     deadline_every: float) -> None:
    """Refresh the view every ``interval`` s; log deadline misses every ``deadline_every`` s."""
    loop = asyncio.get_running_loop()
    next_deadline_log = loop.time() + deadline_every if deadline_every > 0 else None
    while True:
        await asyncio.sleep(interval)
        if view is not None:
            view.tick()
        if next_deadline_log is not None and loop.time() >= next_deadline_log:
            if view is None:
                monitor.update()
            for msg in monitor.deadline_messages():
                if view is not None and view.is_live:  # printed above the live table
                    view.console.print(f"[yellow]WARNING[/] {msg}", highlight=False)
                else:
                    log.warning("%s", msg)
            next_deadline_log = loop.time() + deadline_every


@contextlib.asynccontextmanager
async def observe(args: argparse.Namespace, pipe: AsyncPipeline) -> AsyncIterator[None]:
    """The run observer: see the module docstring."""
    collector = MetricsCollector()
    collector.register(pipe)
    monitor = PipelineMonitor(collector)
    exporter = None
    if args.metrics_port is not None:
        from streamlab.metrics.prometheus import MetricsExporter

        if not 0 <= args.metrics_port <= 65535:  # the socket layer would raise OverflowError
            print(f"error: --metrics-port must be 0..65535, got {args.metrics_port}",
                  file=sys.stderr)
            raise SystemExit(2)
        try:
            exporter = MetricsExporter(collector, args.metrics_port, args.metrics_addr).start()
        except (OSError, OverflowError, ValueError) as exc:
            print(f"error: cannot serve metrics on {args.metrics_addr}:{args.metrics_port}: {exc}",
                  file=sys.stderr)
            raise SystemExit(2) from None
        print(f"serving metrics on {exporter.url}", file=sys.stderr)
    view = _LiveView(monitor, pipe, args.triggers) if args.monitor else None
    default_interval = 0.25 if view is not None and view.is_live else 1.0
    interval = max(0.05, args.monitor_interval or default_interval)
    deadline_every = args.deadline_log_interval if _has_deadlines(pipe) else 0.0
    ticker = None
    if view is not None or deadline_every > 0:
        if view is not None:
            view.start()
        ticker = asyncio.create_task(_tick_loop(view, monitor, interval, deadline_every),
                                     name="streamlab:monitor")
    completed = False
    try:
        yield
        completed = True
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        final = monitor.final()
        if view is not None and view.is_live:
            view.finish(final)
            args.report_printed = True
        elif not args.quiet:
            print(monitor.format_text(final), file=sys.stderr)
            args.report_printed = True
        if deadline_every > 0:
            for msg in monitor.deadline_messages():
                log.warning("%s", msg)
        if exporter is not None:
            if completed and args.metrics_linger > 0:
                await asyncio.sleep(args.metrics_linger)
            exporter.stop()
    # ``run`` adds these to the --summary file, next to the run report.
    args.summary_extras = {**getattr(args, "summary_extras", {}), "monitor": final.to_dict()}


def _register() -> None:
    if add_arguments not in run_cli.ARGUMENTS:
        run_cli.ARGUMENTS.append(add_arguments)
    if observe not in run_cli.OBSERVERS:
        run_cli.OBSERVERS.append(observe)


_register()
