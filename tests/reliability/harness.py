"""Shared harness of the reliability suite (``shared/RELIABILITY.md``).

* stamped frames: a sequence number plus a checksum in metadata (:func:`stamp`, :func:`intact`);
* test-only node types, registered once under ``Rel*`` names (:func:`register_test_nodes`):
  a FaultInjector that writes every injection into :data:`INJECTIONS` (so injections survive
  restarts), a node failing on the value 3, a running sum failing on 3, a slow sink, a node
  that swallows one cancellation;
* a ledger check (:func:`check_ledger`): per node ``received == sum of fates``, and per edge
  what the senders emitted equals what the receivers received;
* a guarded event loop (:func:`run_guarded`) that fails on leaked tasks and on
  "exception was never retrieved" reports.

The scenario builders here are shared by the tests and by ``scripts/reliability.py``.
"""

from __future__ import annotations

import asyncio
import gc
import zlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from pydantic import Field

from streamlab import AsyncPipeline, DataFrame, ProcessingNode, RunReport
from streamlab.node import NodeConfig
from streamlab.nodes.fault import FaultInjector
from streamlab.registry import register_node, unregister_node

T = TypeVar("T")

#: (pipeline name, node id) -> sequence ids of the frames a RelFault node injected a fault on.
INJECTIONS: dict[tuple[str, str], list[int]] = defaultdict(list)

FILL = -1.0  # UseDefault fill value in scenarios: never a stamped value (stamps are >= 1)


# -- stamped frames ---------------------------------------------------------------------------
def _crc(seq: int, value: float) -> str:
    return format(zlib.crc32(f"{seq}:{value!r}".encode()), "08x")


def stamp(seq: int) -> DataFrame:
    """A frame carrying ``x = [seq + 1]``, its sequence number and a checksum in metadata."""
    value = float(seq + 1)
    return DataFrame(seq * 1000, seq, {"x": np.array([value])},
                     {"seq": str(seq), "crc": _crc(seq, value)})


def intact(frame: DataFrame) -> bool:
    """True if ``frame`` is a stamped frame whose payload, seq and checksum still agree."""
    meta = frame.metadata
    if "seq" not in meta or "crc" not in meta:
        return False
    seq = int(meta["seq"])
    value = float(frame.payload["x"][0])
    return seq == frame.sequence_id and value == seq + 1 and meta["crc"] == _crc(seq, value)


def is_substitute(frame: DataFrame) -> bool:
    """True for a UseDefault substitute of a stamped frame (filled with :data:`FILL`)."""
    return "seq" in frame.metadata and bool(np.all(frame.payload["x"] == FILL))


def values(frames: list[DataFrame], channel: str = "x") -> list[float]:
    return [float(f.payload[channel][0]) for f in frames]


def value_frames(vals: list[float]) -> list[DataFrame]:
    """Trigger frames carrying ``x = [v]``, sequence ids 0, 1, ..."""
    return [DataFrame(i * 1000, i, {"x": np.array([float(v)])}) for i, v in enumerate(vals)]


# -- test-only node types ---------------------------------------------------------------------
class RelFault(FaultInjector):
    """FaultInjector that also records each injection in the harness ledger."""

    def _selects(self, frame: DataFrame) -> bool:
        hit = super()._selects(frame)
        if hit:
            INJECTIONS[(self.context.pipeline, self.context.node_id)].append(frame.sequence_id)
        return hit


class RelFailOn3(ProcessingNode):
    """Fail on frames whose first sample is 3; pass others through."""

    def process(self, frame: DataFrame) -> DataFrame:
        if frame.payload["x"][0] == 3.0:
            raise ValueError("value 3")
        return frame


class RelRunSum(ProcessingNode):
    """Running sum of x; fails on the value 3 (state is lost only when restarted)."""

    def on_create(self, config: Any) -> None:
        self.config = config
        self.total = 0.0

    def process(self, frame: DataFrame) -> DataFrame:
        v = float(frame.payload["x"][0])
        if v == 3.0:
            raise ValueError("value 3")
        self.total += v
        return frame.with_channels(x=np.array([self.total]))


class RelAsyncFailOn3(ProcessingNode):
    """Async twin of RelFailOn3 (exercises the runtime's async path)."""

    async def process(self, frame: DataFrame) -> DataFrame:
        await asyncio.sleep(0)
        if frame.payload["x"][0] == 3.0:
            raise ValueError("value 3")
        return frame


class RelSleep(ProcessingNode):
    """Sleep ``delay`` seconds per frame on the pipeline clock (a slow consumer)."""

    class Config(NodeConfig):
        delay: float = Field(0.001, ge=0)

    async def process(self, frame: DataFrame) -> DataFrame:
        await self.context.clock.sleep(self.config.delay)
        return frame


class RelStubborn(ProcessingNode):
    """Hang on frame ``at``, swallowing the first cancellation and then hanging again."""

    class Config(NodeConfig):
        at: int = 0

    async def process(self, frame: DataFrame) -> DataFrame:
        if frame.sequence_id == self.config.at:
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                pass  # swallowed on purpose: a misbehaving node
            await asyncio.get_running_loop().create_future()
        return frame


TEST_NODES: dict[str, type[ProcessingNode]] = {
    "RelFault": RelFault,
    "RelFailOn3": RelFailOn3,
    "RelRunSum": RelRunSum,
    "RelAsyncFailOn3": RelAsyncFailOn3,
    "RelSleep": RelSleep,
    "RelStubborn": RelStubborn,
}


def register_test_nodes() -> None:
    for name, cls in TEST_NODES.items():
        register_node(cls, name=name)


def unregister_test_nodes() -> None:
    for name in TEST_NODES:
        unregister_node(name)


# -- configs ----------------------------------------------------------------------------------
def chain_config(node: dict[str, Any], *, name: str = "chain",
                 settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """src (Passthrough) -> node -> sink (Passthrough)."""
    return {
        "name": name,
        "pipeline_config": settings or {},
        "nodes": [{"id": "src", "type": "Passthrough"}, {"id": "n", **node},
                  {"id": "sink", "type": "Passthrough"}],
        "connections": [{"from": "src", "to": "n"}, {"from": "n", "to": "sink"}],
    }


DIAMOND = ("src", "a", "b", "j", "sink")

#: The policy x strategy combinations of the accounting test (policy spec, restart spec or
#: ``{"breaker": ...}``).
COMBOS: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "skip-never": ({"policy": "SkipFrame"}, None),
    "default-never": ({"policy": "UseDefault", "fill_value": FILL}, None),
    "skip-immediate": ({"policy": "SkipFrame"},
                       {"strategy": "Immediate", "max_restarts": 100_000, "within_s": 1.0}),
    "default-exponential": ({"policy": "UseDefault", "fill_value": FILL},
                            {"strategy": "Exponential", "base_s": 1e-06, "max_s": 4e-06,
                             "max_attempts": 100_000, "max_restarts": 100_000,
                             "within_s": 1.0, "healthy_after_s": 0.001}),
    "skip-breaker": ({"policy": "SkipFrame"},
                     {"breaker": {"failure_threshold": 2, "reset_timeout_s": 5e-05}}),
    "propagate-never": ({"policy": "Propagate"}, None),
}


def diamond_config(combo: str, seed: int, *, p: float = 0.01, name: str | None = None,
                   debug: bool = False, capacity: int = 16) -> dict[str, Any]:
    """src -> {a, b} -> j -> sink, a seeded RelFault (probability p) at every node."""
    policy, restart = COMBOS[combo]
    nodes = []
    for k, nid in enumerate(DIAMOND):
        spec: dict[str, Any] = {"id": nid, "type": "RelFault",
                                "config": {"probability": p, "seed": seed * 101 + k},
                                "error_policy": policy}
        if restart is not None:
            spec.update(restart if "breaker" in restart else {"restart": restart})
        nodes.append(spec)
    return {
        "name": name or f"diamond-{combo}-{seed}",
        "pipeline_config": {"channel_capacity": capacity, "debug": debug},
        "nodes": nodes,
        "connections": [{"from": "src", "to": "a"}, {"from": "src", "to": "b"},
                        {"from": "a", "to": "j"}, {"from": "b", "to": "j"},
                        {"from": "j", "to": "sink"}],
    }


# -- ledger -----------------------------------------------------------------------------------
def check_ledger(pipe: AsyncPipeline, report: RunReport, sent: int) -> dict[str, int]:
    """Assert the accounting identities of a finished run; returns summary figures.

    * every node: ``received == sum of fates``;
    * every source received exactly the ``sent`` trigger frames;
    * every node received exactly what its upstream nodes emitted (fan-out included);
    * every terminal node's outputs equal its ``frames_out``.
    """
    g = pipe.built.graph
    nodes = report.nodes
    for nid, snap in nodes.items():
        total = sum(snap.fates.values())
        assert snap.received == total, f"{nid}: received {snap.received} != fates {snap.fates}"
    for nid in g.nodes:
        inputs = g.inputs[nid]
        if inputs:
            expected = sum(nodes[a].frames_out for a in inputs)
        else:  # triggers sent (a failed run stops sending early)
            expected = pipe._next_trigger
            assert expected <= sent
        assert nodes[nid].received == expected, (
            f"{nid}: received {nodes[nid].received}, upstream emitted {expected}")
    for nid, n_out in report.outputs.items():
        assert n_out == nodes[nid].frames_out, f"{nid}: {n_out} outputs vs frames_out"
    return {"received": sum(s.received for s in nodes.values())}


def expected_copies_skip(pipe_name: str, sent: int) -> Counter[int]:
    """Copies of each seq that reach the diamond's sink under SkipFrame, from the injections."""
    inj = {n: Counter(INJECTIONS.get((pipe_name, n), [])) for n in DIAMOND}
    out: Counter[int] = Counter()
    for s in range(sent):
        if inj["src"][s]:
            continue
        copies = (1 - inj["a"][s]) + (1 - inj["b"][s]) - inj["j"][s] - inj["sink"][s]
        if copies:
            out[s] = copies
    return out


def reset_injections(pipe_name: str) -> None:
    for key in [k for k in INJECTIONS if k[0] == pipe_name]:
        del INJECTIONS[key]


# -- asyncio hygiene ----------------------------------------------------------------------------
class LoopGuard:
    """Records loop exception reports ("Task exception was never retrieved", ...)."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.reports.append(str(context.get("message")) + ": " + repr(context.get("exception")))


def run_guarded(factory: Callable[[], Awaitable[T]], *, allow_reports: bool = False) -> T:
    """Run ``factory()`` on a fresh loop; fail on leaked tasks or unretrieved exceptions."""
    guard = LoopGuard()
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(guard.handler)

    async def main() -> T:
        before = asyncio.all_tasks()
        result = await factory()
        await asyncio.sleep(0)
        leaked = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
        assert not leaked, f"leaked tasks: {leaked}"
        return result

    try:
        result = loop.run_until_complete(main())
        gc.collect()  # unretrieved exceptions are reported when their futures are collected
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    gc.collect()
    if not allow_reports:
        assert not guard.reports, f"loop reported: {guard.reports}"
    return result


async def run_diamond(combo: str, seed: int, frames: int, *, p: float = 0.01,
                      debug: bool = False, fusion: bool = True) -> dict[str, Any]:
    """Run one accounting scenario and check it; returns its figures (lost, duplicated, ...)."""
    cfg = diamond_config(combo, seed, p=p, debug=debug)
    name = cfg["name"]
    reset_injections(name)
    pipe = AsyncPipeline(cfg, fusion=fusion)
    stamped = [stamp(s) for s in range(frames)]
    failed = None
    try:
        report = await pipe.run(frames=stamped)
    except Exception as exc:  # PipelineError under Propagate: checked below
        failed = exc
        report = pipe.report
        assert report is not None
    check_ledger(pipe, report, frames)
    out = pipe.results["sink"]
    injected = {n: len(INJECTIONS.get((name, n), [])) for n in DIAMOND}
    # every injected fault accounted once, at the node that injected it
    unaccounted = 0
    for n in DIAMOND:
        s = report.nodes[n]
        f = s.fates
        handled = f["skipped"] + f["defaulted"] + f["aborted"]
        if combo.startswith("propagate"):
            handled = s.errors
        unaccounted += abs(injected[n] - handled)
        assert s.errors == injected[n], f"{n}: errors {s.errors} != injected {injected[n]}"
    corrupt = sum(1 for f in out if not intact(f) and not is_substitute(f))
    seen = Counter(f.sequence_id for f in out)
    lost = duplicated = 0
    if combo.startswith("skip") and "breaker" not in combo:
        want = expected_copies_skip(name, frames)
        for s in set(want) | set(seen):
            d = seen[s] - want[s]
            lost += max(0, -d)
            duplicated += max(0, d)
    elif combo.startswith("default"):
        for s in range(frames):
            d = seen[s] - 2  # UseDefault keeps both copies of every frame
            lost += max(0, -d)
            duplicated += max(0, d)
    else:  # breaker rejections / propagate: bounded by what was sent, never more
        duplicated = sum(max(0, c - 2) for c in seen.values())
    reset_injections(name)
    return {
        "combo": combo, "seed": seed, "frames": frames, "state": report.state,
        "failed": failed is not None, "lost": lost, "duplicated": duplicated,
        "corrupt": corrupt, "injected": sum(injected.values()), "unaccounted": unaccounted,
        "delivered_at_sink": len(out),
        "restarts": sum(s.restarts for s in report.nodes.values()),
    }
