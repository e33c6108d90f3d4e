"""``streamlab batch CONFIG --inputs GLOB --out-dir DIR``: one run of a pipeline per recording.

For every file matching ``--inputs`` (a glob, ``**`` allowed; repeatable; sorted, duplicates
once), the config is run with the file as its source's path and its outputs under
``DIR/<stem>/``:

* **The source.** The node whose config has a file-input field (an
  :data:`~streamlab.config.InputPath` field: FileSource's, Replay's, any node type's ``path``
  marked so). With several such nodes, ``--input-node ID`` names the one; with none, or an id
  that reads no file, the command exits 2 saying which nodes there are.
* **Outputs.** Every output-file field of every node (:data:`~streamlab.config.OutputPath`:
  the sinks' ``path``) is rewritten to ``DIR/<stem>/<its file name>``, where ``stem`` is the
  input's file name without its suffix (``-2``, ``-3``... added when two inputs share one).
  Each recording's run report is ``DIR/<stem>/summary.json`` (``input``, ``state``
  ``ok``/``failed``, ``error``, ``duration_s``, ``report``: as ``streamlab run --summary``);
  ``DIR/batch.json`` lists every recording's row.
* **Failures are isolated.** A recording whose run fails (a node error, an unreadable file, a
  dead worker) is counted and reported; the others run on. Exit 0 if every run succeeded, 1
  if any failed (the summary table on stderr names each), 2 for bad arguments or config
  (nothing run), 130 on Ctrl-C (the runs still going are stopped and counted ``cancelled``).
* **Where runs happen.** In this process by default, ``--workers N`` at once (one event
  loop: concurrency for waiting pipelines, not more cores). ``--backend ray`` runs them on
  ``--workers`` Ray actors (``streamlab[ray]``; a private local cluster, or the cluster at
  ``--address``), one CPU each: CPU-bound graphs use as many cores as actors. Both go
  through :class:`~streamlab.runtime.pool.PipelinePool`.
* **Progress.** A progress bar on stderr (``rich``, extra ``ui``) when stderr is a terminal,
  or with ``--progress``; ``--no-progress`` turns it off.

Sources in triggered mode get ``--triggers`` trigger frames (default 1), as in ``run``.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamlab.cli.common import add_config_arguments, load_or_report
from streamlab.config import PipelineSpec, load_config
from streamlab.config.paths import path_fields
from streamlab.errors import ConfigError, StreamLabError
from streamlab.registry import get_node_type

__all__ = ["add_parser", "cmd", "plan_batch", "BatchItem", "BatchError"]


class BatchError(ValueError):
    """Bad batch arguments (exit 2): no input, no or several source nodes."""


@dataclass
class BatchItem:
    """One recording of a batch: its input, output folder, config and (after the run) result."""

    input: Path
    stem: str
    out_dir: Path
    config: dict[str, Any]
    state: str = "pending"  # "ok", "failed", "cancelled"
    error: str | None = None
    duration_s: float = 0.0
    worker: str | None = None  #: where it ran ("local", "ray-worker-0 (pid 4242)")
    report: dict[str, Any] | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        return {"input": str(self.input), "out_dir": str(self.out_dir), "state": self.state,
                "error": self.error, "duration_s": round(self.duration_s, 6),
                "worker": self.worker}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("batch", help="run a pipeline once per recording (files matching a glob)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument("--inputs", action="append", required=True, metavar="GLOB",
                   help="recordings to run, a glob (quote it); repeatable")
    p.add_argument("--out-dir", required=True, metavar="DIR",
                   help="outputs and summaries go to DIR/<input stem>/")
    p.add_argument("--input-node", metavar="ID",
                   help="the source node whose file is replaced (needed when several read files)")
    p.add_argument("--triggers", type=int, default=1, metavar="N",
                   help="trigger frames for triggered sources, per run (default 1)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="runs at once (default 1); with --backend ray, the number of actors")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: Ray actors (streamlab[ray])")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="with --backend ray: join this Ray cluster (default: a private local one)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary table on stderr")
    p.set_defaults(func=cmd)


# -- planning: which files, which node, which config per file ---------------------------------
def expand_inputs(patterns: list[str]) -> list[Path]:
    """The regular files matching the globs, sorted, each once; BatchError if a glob finds none."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        matches = sorted(m for m in glob.glob(os.path.expanduser(pattern), recursive=True)
                         if os.path.isfile(m))
        if not matches:
            raise BatchError(f"--inputs {pattern!r}: no file matches")
        for m in matches:
            found.setdefault(os.path.realpath(m), Path(m).absolute())
    return sorted(found.values())


def find_input_node(spec: PipelineSpec, chosen: str | None) -> tuple[str, str]:
    """``(node id, field)`` of the node whose input file a batch replaces."""
    readers: dict[str, list[str]] = {}
    for node in spec.nodes:
        fields = path_fields(get_node_type(node.type).Config)
        inputs = [name for name, kind in fields.items() if kind == "input"]
        if inputs:
            readers[node.id] = inputs
    if chosen is not None:
        if chosen not in {n.id for n in spec.nodes}:
            raise BatchError(f"--input-node {chosen!r}: no such node; nodes that read files: "
                             f"{sorted(readers) or 'none'}")
        if chosen not in readers:
            raise BatchError(f"--input-node {chosen!r}: node type "
                             f"{spec.node(chosen).type!r} reads no file; nodes that read "
                             f"files: {sorted(readers) or 'none'}")
        node_id = chosen
    elif not readers:
        raise BatchError("no node of the config reads a file (an input-path field such as "
                         "FileSource's or Replay's 'path'): nothing to substitute")
    elif len(readers) > 1:
        raise BatchError(f"several nodes read files: {sorted(readers)}; choose the one to "
                         "substitute with --input-node ID")
    else:
        node_id = next(iter(readers))
    names = readers[node_id]
    if len(names) != 1:
        raise BatchError(f"node {node_id!r} has several input-file fields {names}; batch "
                         "substitutes a node with exactly one")
    return node_id, names[0]


def plan_batch(spec: PipelineSpec, inputs: list[Path], out_dir: Path,
               input_node: str | None = None) -> list[BatchItem]:
    """One item per input: the config with its source path and every output path replaced.

    Raises BatchError (bad arguments) before anything runs.
    """
    node_id, in_field = find_input_node(spec, input_node)
    base = spec.to_json_dict()
    outputs = []
    for k, node in enumerate(spec.nodes):
        for name, kind in path_fields(get_node_type(node.type).Config).items():
            value = base["nodes"][k].get("config", {}).get(name)
            if kind == "output" and isinstance(value, str):
                outputs.append((k, name, Path(value).name))
    seen: set[str] = set()
    items = []
    for path in inputs:
        stem, n = path.stem or path.name, 1
        while stem.lower() in seen:  # lower: a case-insensitive file system would merge them
            n += 1
            stem = f"{path.stem}-{n}"
        seen.add(stem.lower())
        folder = out_dir / stem
        data = json.loads(json.dumps(base))  # a deep copy of plain JSON
        for node in data["nodes"]:
            if node["id"] == node_id:
                node.setdefault("config", {})[in_field] = str(path)
        for k, name, filename in outputs:
            data["nodes"][k]["config"][name] = str(folder / filename)
        items.append(BatchItem(path, stem, folder, data))
    return items


# -- running ----------------------------------------------------------------------------------
async def run_batch(items: list[BatchItem], *, workers: int, triggers: int,
                    backend: Any = None, on_done: Any = None) -> None:
    """Run every item, at most ``workers`` at once; fills in each item's state and report.

    A failing run is recorded on its item (never raised); cancelling cancels every run still
    going (their items end ``cancelled``).
    """
    from streamlab.runtime.pool import PipelinePool

    limit = asyncio.Semaphore(workers)

    async def one(item: BatchItem) -> None:
        async with limit:
            t0 = time.perf_counter()
            pool: PipelinePool | None = None
            try:
                spec = load_config(item.config, check_files=True)
                pool = PipelinePool(spec, 1, backend=backend, outputs="discard")
                result = await pool.execute(triggers=triggers)
                report = result.report
                item.worker = result.worker
                item.report = report if isinstance(report, dict) else report.to_dict()
                item.state = "ok"
            except asyncio.CancelledError:
                item.state, item.error = "cancelled", "cancelled (Ctrl-C)"
                raise
            except ConfigError as exc:
                item.state = "failed"
                item.error = "; ".join(str(p) for p in exc.problems) or str(exc)
            except Exception as exc:  # isolated: counted on the item, the batch goes on
                item.state = "failed"
                item.error = str(exc) if isinstance(exc, StreamLabError) else (
                    f"{type(exc).__name__}: {exc}")
            finally:
                item.duration_s = time.perf_counter() - t0
                if pool is not None:
                    await pool.aclose()
                if on_done is not None and item.state != "cancelled":
                    on_done(item)

    tasks = [asyncio.ensure_future(one(item)) for item in items]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for item in items:
            if item.state == "pending":
                item.state, item.error = "cancelled", "not run (Ctrl-C)"


def write_summaries(items: list[BatchItem], out_dir: Path) -> list[str]:
    """Each item's summary.json and DIR/batch.json; returns the problems (cannot write)."""
    problems = []
    for item in items:
        try:
            item.out_dir.mkdir(parents=True, exist_ok=True)
            with open(item.out_dir / "summary.json", "w", encoding="utf-8") as f:
                json.dump({**item.row(), "report": item.report}, f, indent=2, default=str)
        except OSError as exc:
            problems.append(f"cannot write {str(item.out_dir / 'summary.json')!r}: "
                            f"{exc.strerror or exc}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "batch.json", "w", encoding="utf-8") as f:
            json.dump({"recordings": [i.row() for i in items],
                       "counts": _counts(items)}, f, indent=2)
    except OSError as exc:
        problems.append(f"cannot write {str(out_dir / 'batch.json')!r}: {exc.strerror or exc}")
    return problems


def _counts(items: list[BatchItem]) -> dict[str, int]:
    counts = {"total": len(items), "ok": 0, "failed": 0, "cancelled": 0}
    for item in items:
        counts[item.state] = counts.get(item.state, 0) + 1
    return counts


def format_table(items: list[BatchItem]) -> str:
    """One line per recording (state, seconds, error), then the counts."""
    width = max([len(i.stem) for i in items] + [9])
    lines = [f"  {'recording':<{width}} {'state':<9} {'seconds':>8}  error"]
    for i in items:
        lines.append(f"  {i.stem:<{width}} {i.state:<9} {i.duration_s:>8.2f}  {i.error or ''}")
    c = _counts(items)
    lines.append(f"batch: {c['total']} recording(s): {c['ok']} ok, {c['failed']} failed"
                 + (f", {c['cancelled']} cancelled" if c["cancelled"] else ""))
    return "\n".join(lines)


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                             console=Console(file=sys.stderr), transient=False)
        self._task = self._bar.add_task("batch", total=total, failed=0)
        self._failed = 0

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def done(self, item: BatchItem) -> None:
        if self._bar is not None:
            self._failed += item.state == "failed"
            self._bar.update(self._task, advance=1, failed=self._failed)


def option_problems(args: argparse.Namespace) -> list[str]:
    """Every problem of the command line options, one line each (empty: none)."""
    problems = []
    if args.workers < 1:
        problems.append(f"--workers must be >= 1, got {args.workers}")
    if args.triggers < 0:
        problems.append(f"--triggers must be >= 0, got {args.triggers}")
    if args.address is not None and args.backend != "ray":
        problems.append("--address needs --backend ray")
    if args.config == "-":
        problems.append("batch reads CONFIG from a file ('-' is not supported)")
    return problems


def cmd(args: argparse.Namespace) -> int:
    problems = option_problems(args)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 2
    # The template: the source's own file need not exist (check_files=False).
    spec = load_or_report(args.config, args.overrides, check_files=False)
    if spec is None:
        return 2
    out_dir = Path(args.out_dir).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        print(f"error: --out-dir {args.out_dir!r}: is a file, expected a directory",
              file=sys.stderr)
        return 2
    try:
        items = plan_batch(spec, expand_inputs(args.inputs), out_dir, args.input_node)
    except (BatchError, StreamLabError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    if progress:
        try:
            import rich  # noqa: F401
        except ImportError:
            if args.progress:
                print("error: --progress needs rich: pip install 'streamlab[ui]'",
                      file=sys.stderr)
                return 2
            progress = False
    interrupted = False
    try:
        asyncio.run(_main(items, args, progress))
    except KeyboardInterrupt:
        interrupted = True
    except StreamLabError as exc:  # the backend could not start (Ray missing, no cluster)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problems = write_summaries(items, out_dir)
    if not args.quiet:
        print(format_table(items), file=sys.stderr)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if interrupted:
        return 130
    failed = sum(i.state != "ok" for i in items)
    if failed:
        print(f"error: {failed} of {len(items)} recording(s) failed (see {str(out_dir)!r})",
              file=sys.stderr)
    return 1 if problems or failed else 0


async def _main(items: list[BatchItem], args: argparse.Namespace, progress: bool) -> None:
    backend = None
    if args.backend == "ray":
        try:
            from streamlab.distributed import RayBackend

            backend = RayBackend(args.workers, address=args.address)
            await backend.start()
        except ImportError as exc:
            raise StreamLabError(f"--backend ray needs Ray: pip install 'streamlab[ray]' "
                                 f"({exc})") from None
    try:
        with _Progress(len(items), progress) as bar:
            await run_batch(items, workers=args.workers, triggers=args.triggers,
                            backend=backend, on_done=bar.done)
    finally:
        if backend is not None:
            await backend.aclose()
