"""``streamlab run CONFIG``: run a pipeline with the async runtime.

Sends ``--triggers`` trigger frames (default 1) to the triggered sources, lets free-running
sources (files, free generators) run to their end, drains every frame in flight, prints a
summary of frame fates per node, and exits 0.

* ``--output FILE.jsonl`` writes every frame that reaches a terminal node as one JSON line:
  ``{"node", "timestamp", "sequence_id", "payload": {channel: [floats]}, "metadata"}``, plus
  ``"events"`` (a list of ``Event.to_dict()``: exact, as ``DataFrame.from_dict`` reads it back)
  when the frame carries events. Also when the run fails or is forced: the file holds exactly the report's ``outputs``.
  A write error (a full disk) forces the run: exit 1, one line.
* ``--summary FILE.json`` writes the run report (per-node metrics and fates, event counts and
  event fates, channels).
* Both paths are checked before the run (a directory or an unwritable path: exit 2, one
  line); missing parent directories are created.
* Ctrl-C (or SIGTERM) stops gracefully: the sources stop, what is in flight drains, exit 0,
  state "stopped". A second one forces the stop (exit 130). No traceback.
* ``--timeout SECONDS`` bounds the stop: it is forced SECONDS after it began, that is after
  the first Ctrl-C/SIGTERM or once the input ended (every trigger sent and every
  free-running source at its end), whichever comes first. While triggers are still being
  sent, a trigger that waits SECONDS with no frame moving anywhere in the pipeline (a hung
  node) forces the run at once. A forced run counts every frame it drops
  (``dropped_shutdown``), names the forced nodes and exits 1 with one line. Without
  ``--timeout`` nothing is forced except by a second Ctrl-C. (A free-running source held
  up by a hung node is not detected: Ctrl-C, then ``--timeout``, ends it.)
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
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from streamlab.cli.common import add_config_arguments, load_or_report
from streamlab.errors import PipelineError, PipelineStopped, StreamLabError
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
                   help="force the stop SECONDS after Ctrl-C or after the input ended, and "
                   "force a run whose trigger waited SECONDS with no frame moving; dropped "
                   "frames are counted, exit 1 (default: wait)")
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
    with contextlib.suppress(ImportError):
        import streamlab.web.observe  # noqa: F401


def cmd(args: argparse.Namespace) -> int:
    if args.triggers < 0:
        print("error: --triggers must be >= 0", file=sys.stderr)
        return 2
    spec = load_or_report(args.config, args.overrides)
    if spec is None:
        return 2
    if args.timeout is not None and not 0 <= args.timeout < math.inf:
        print(f"error: --timeout must be a number of seconds >= 0, got {args.timeout}",
              file=sys.stderr)
        return 2
    for option, path in (("--output", args.output), ("--summary", args.summary)):
        problem = check_output_path(option, path) if path else None
        if problem is not None:  # before the run: a run's results are never lost at the end
            print(f"error: {problem}", file=sys.stderr)
            return 2
    # Until the run installs its handlers, SIGTERM is Ctrl-C too (KeyboardInterrupt below).
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            return runner.run(_run(args, spec))
    except KeyboardInterrupt:  # a signal arrived before our handlers were installed
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


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
    return uvloop.new_event_loop


async def _run(args: argparse.Namespace, spec: Any) -> int:
    try:
        pipe = AsyncPipeline(spec, outputs="stream" if args.output else "discard",
                             debug=args.debug or None)
    except StreamLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if not isinstance(exc, ValueError) else 2
    try:
        # Line-buffered: a frame written is in the file at once (a live tail, a killed run).
        out_file: IO[str] | None = (open(args.output, "w", encoding="utf-8", buffering=1)
                                    if args.output else None)
    except OSError as exc:
        print(f"error: --output {args.output!r}: cannot open: {exc.strerror or exc}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    signals = _Signals(pipe)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        # SIGTERM (kill, a service manager) is the same request as Ctrl-C.
        loop.add_signal_handler(signal.SIGINT, signals.on_signal)
        loop.add_signal_handler(signal.SIGTERM, signals.on_signal)

    outcome = _Outcome()
    writer: asyncio.Task[None] | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            for observer in OBSERVERS:
                await stack.enter_async_context(observer(args, pipe))
            await pipe.start()
            if out_file is not None:
                writer = asyncio.create_task(_write_outputs(pipe, out_file, args.output))
            try:
                await _drive(pipe, args, signals, writer, outcome)
            finally:
                if writer is not None:
                    # The run is over, so the output stream is closed: the writer takes what
                    # is queued and ends (it never waits on a pipeline that failed).
                    await asyncio.wait({writer})
                    if not writer.cancelled() and writer.exception() is not None:
                        outcome.write_error = outcome.write_error or str(writer.exception())
    finally:
        if out_file is not None:
            try:
                out_file.close()  # flushes: a full disk can show up only here
            except OSError as exc:
                outcome.write_error = outcome.write_error or _write_error(args.output, exc)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)

    report = outcome.report or pipe.report
    if report is not None:
        if not args.quiet and not getattr(args, "report_printed", False):
            print(format_fates(report), file=sys.stderr)
        if args.summary:
            data = {**report.to_dict(), **getattr(args, "summary_extras", {})}
            try:
                with open(args.summary, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=2, default=str)
            except OSError as exc:
                outcome.write_error = outcome.write_error or (
                    f"cannot write --summary {args.summary!r}: {exc.strerror or exc}")
    # One error line: what stopped the run first.
    if outcome.write_error is not None:
        print(f"error: {outcome.write_error}", file=sys.stderr)
        return 1
    if outcome.failure is not None:
        print(f"error: {outcome.failure}", file=sys.stderr)
        return 1
    if signals.forced.is_set():
        return 130
    if outcome.timed_out is not None:
        print(f"error: {outcome.timed_out}", file=sys.stderr)
        return 1
    return 0


class _Signals:
    """SIGINT/SIGTERM: the first asks for a graceful stop, the second forces it."""

    def __init__(self, pipe: AsyncPipeline) -> None:
        self.pipe = pipe
        self.count = 0
        self.stopping = asyncio.Event()
        self.forced = asyncio.Event()

    def on_signal(self) -> None:
        self.count += 1
        if self.count == 1:
            print("\nstopping gracefully (Ctrl-C again to force)", file=sys.stderr)
            self.pipe.request_stop()
            self.stopping.set()
        else:
            print("\nforcing stop", file=sys.stderr)
            self.forced.set()


class _Outcome:
    """How the run ended, filled in by :func:`_drive` and the writer."""

    def __init__(self) -> None:
        self.report: RunReport | None = None
        self.failure: str | None = None      # the pipeline failed (its PipelineError)
        self.write_error: str | None = None  # --output or --summary could not be written
        self.timed_out: str | None = None    # forced by --timeout


class _Stalled(Exception):
    """A trigger waited --timeout seconds while no frame moved anywhere in the pipeline."""


async def _drive(pipe: AsyncPipeline, args: argparse.Namespace, signals: _Signals,
                 writer: asyncio.Task[None] | None, outcome: _Outcome) -> None:
    """Feed the run, then let it drain; force it when --timeout, a second signal or a failed
    writer says so. Fills ``outcome``; never leaves a task of its own behind.

    ``--timeout T`` (see the module docstring): the input phase (triggers, free-running
    sources) has no deadline, except that a trigger waiting T seconds while no frame moves
    anywhere is a stall: the run is forced at once. The stop phase (after the input ended or
    the first Ctrl-C/SIGTERM, whichever comes first) is forced T seconds after it began.
    """
    timeout = args.timeout
    loop = asyncio.get_running_loop()
    feeder = asyncio.create_task(_feed(pipe, args.triggers, timeout))
    force = asyncio.create_task(signals.forced.wait())
    stopping = asyncio.create_task(signals.stopping.wait())
    watch: set[asyncio.Task[Any]] = {force} | ({writer} if writer is not None else set())
    joiner: asyncio.Task[RunReport] | None = None
    forcing = False
    try:
        # Input phase: until the input ended, a stop was asked, or something forces.
        while not forcing and not (feeder.done() or stopping.done()):
            done, _ = await asyncio.wait({feeder, stopping, *watch},
                                         return_when=asyncio.FIRST_COMPLETED)
            forcing = _forcing(done, force, writer, watch, outcome)
        if not forcing and feeder.done() and isinstance(feeder.exception(), _Stalled):
            forcing = True
            outcome.timed_out = (f"no frame moved for --timeout {timeout:g} s while a trigger "
                                 f"was waiting")
        if not forcing:
            # Stop phase: the pipeline drains on its own, for at most --timeout seconds.
            deadline = None if timeout is None else loop.time() + timeout
            joiner = asyncio.create_task(pipe.join())
            while not forcing and not joiner.done():
                left = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait({joiner, *watch}, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                forcing = _forcing(done, force, writer, watch, outcome)
                if not done:
                    forcing = True
                    outcome.timed_out = f"stop forced after --timeout {timeout:g} s"
        if forcing:
            if joiner is not None:
                joiner.cancel()
                await asyncio.wait({joiner})
            try:
                outcome.report = await pipe.stop(timeout=0)
            except PipelineError as exc:
                outcome.failure = str(exc)
        else:
            assert joiner is not None
            try:
                outcome.report = joiner.result()
            except PipelineError as exc:
                outcome.failure = str(exc)
        report = outcome.report or pipe.report
        if outcome.timed_out is not None and report is not None:
            outcome.timed_out += _forced_detail(report)
    finally:
        for t in (feeder, force, stopping, joiner):
            if t is not None and not t.done():
                t.cancel()
        await asyncio.wait({t for t in (feeder, force, stopping, joiner) if t is not None})
    if not feeder.cancelled():
        unexpected = feeder.exception()  # retrieved: _Stalled, PipelineError handled above
        if unexpected is not None and not isinstance(unexpected, (_Stalled, PipelineError)):
            raise unexpected


def _forcing(done: set[Any], force: asyncio.Task[Any], writer: asyncio.Task[None] | None,
             watch: set[asyncio.Task[Any]], outcome: _Outcome) -> bool:
    """True on a second Ctrl-C/SIGTERM or a failed --output writer (recorded in ``outcome``).

    A writer that ended normally (every output stream ended) is no longer watched.
    """
    if force in done:
        return True
    if writer is not None and writer in done:
        watch.discard(writer)
        if not writer.cancelled() and writer.exception() is not None:
            outcome.write_error = str(writer.exception())
            return True
    return False


def _forced_detail(report: RunReport) -> str:
    dropped = sum(s.fates.get("dropped_shutdown", 0) for s in report.nodes.values())
    nodes = ", ".join(repr(n) for n in report.forced_nodes) or "none"
    return f": forced node(s) {nodes}; {dropped} frame(s) dropped"


async def _feed(pipe: AsyncPipeline, triggers: int, timeout: float | None) -> None:
    """The input phase: ``triggers`` trigger frames, then the end of the free-running sources.

    Ends early (without error) when a stop closes the triggers; raises :class:`_Stalled` when
    a trigger waits ``timeout`` seconds while no frame moves; PipelineError if the run failed.
    """
    triggered = [s for s in pipe.sources if not _free_running(pipe, s)]
    try:
        if triggered:
            for _ in range(triggers):
                if pipe._stop_requested.is_set():
                    break
                if timeout is None or not any(ch.full for ch in pipe.trigger_channels.values()):
                    await pipe.trigger()
                else:
                    await _trigger_watched(pipe, timeout)
    except PipelineStopped:
        if pipe._failure is not None:  # not a stop: the pipeline failed (join() says how)
            raise
        # else a stop closed the triggers while this one waited: the input is over
    finally:
        pipe.close_triggers()
    await pipe.wait_free_sources()


async def _trigger_watched(pipe: AsyncPipeline, timeout: float) -> None:
    """One trigger, given up (:class:`_Stalled`) once nothing moved for ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    sent = asyncio.ensure_future(pipe.trigger())
    last, since = _progress(pipe), loop.time()
    try:
        while True:
            done, _ = await asyncio.wait({sent}, timeout=min(0.1, timeout))
            if done:
                sent.result()
                return
            now = _progress(pipe)
            if now != last:
                last, since = now, loop.time()
            elif loop.time() - since >= timeout:
                raise _Stalled()
    finally:
        if not sent.done():
            sent.cancel()
            await asyncio.wait({sent})
        if not sent.cancelled():
            sent.exception()  # retrieved (PipelineStopped if a stop came meanwhile: no error)


def _progress(pipe: AsyncPipeline) -> int:
    """A number that grows whenever a frame moves anywhere in the pipeline."""
    return sum(m.received + m.frames_out for m in pipe.metrics.values())


def _free_running(pipe: AsyncPipeline, node_id: str) -> bool:
    node = pipe.built.nodes[node_id].node
    return isinstance(node, SourceNode) and node.free_running()


def _write_error(path: str, exc: OSError) -> str:
    return f"cannot write --output {path!r}: {exc.strerror or exc}"


async def _write_outputs(pipe: AsyncPipeline, out: IO[str], path: str) -> None:
    """Write every frame of the output stream; ends with the stream (after a failure too: the
    failure is reported by the run). An OSError (a full disk) raises a one-line message."""
    try:
        async for node_id, frame in pipe.outputs():
            d = frame.to_dict()
            out.write(json.dumps({"node": node_id, **d}) + "\n")
    except PipelineError:
        pass  # the frames before the failure are written; _drive reports the failure
    except OSError as exc:
        raise _WriteFailed(_write_error(path, exc)) from None


class _WriteFailed(Exception):
    """The --output file could not be written (the message is the one error line)."""


def check_output_path(option: str, path: str) -> str | None:
    """None if ``path`` can be written, else the one-line problem (``--output 'x': ...``).

    Missing parent directories are created (as the file sinks do). A file that did not exist
    is not left behind by the check.
    """
    p = Path(path)
    if p.is_dir():
        return f"{option} {path!r}: is a directory, expected a file path"
    for parent in p.parents:  # the nearest existing ancestor must be a directory
        if parent.exists():
            if not parent.is_dir():
                return f"{option} {path!r}: {str(parent)!r} is a file, not a directory"
            break
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{option} {path!r}: cannot create directory {str(p.parent)!r}: {exc.strerror or exc}"
    existed = p.exists()
    try:
        with open(p, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        return f"{option} {path!r}: cannot write: {exc.strerror or exc}"
    if not existed:
        with contextlib.suppress(OSError):
            p.unlink()
    return None


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
