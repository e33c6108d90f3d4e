"""Channel selection, renaming, arithmetic, and merging several streams into one (fan-in).

Selection nodes accept shell-style patterns (``"EEG*"``, ``"ch?"``) wherever they take channel
names; a name or pattern that matches nothing is an error unless ``missing="ignore"``. Each
resolves a frame's channel layout once and caches the plan, so per frame they make one numpy
call on the block (block-backed payloads) or share the channel arrays without copying.

Merge and fan-in
----------------
A node with several inputs learns which upstream sent a frame from ``self.context.current_input``
(the upstream node id, set by the runtime before ``process``); ``self.context.inputs`` lists all
input ids in config order. Merge keeps one bounded queue per input (``max_pending`` frames) and
merge-joins their heads: when every input has a frame and their keys match (equal sequence ids,
or timestamps within ``tolerance_us``) it emits one frame with every input's channels (in input
order); otherwise the head(s) with the smallest key can never match (streams are in order) and
are dropped as *unmatched*. A queue at its bound drops its oldest frame (*overflowed*). Both are
counted in :meth:`Merge.statistics` and logged (first drop, then at powers of two); frames still
queued when the input ends are counted as unmatched by ``on_stop``. Memory is bounded by
``max_pending`` frames per input.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamlab.errors import NodeError
from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.registry import register_node

__all__ = [
    "SelectChannels", "RenameChannels", "DropChannels", "ReorderChannels", "ChannelMath", "Merge",
    "MergeStatistics",
]

Missing = Literal["error", "ignore"]
_MISSING: Missing = Field("error", description="A name/pattern matching no channel: 'error' or 'ignore'.")


def _match(node: ProcessingNode, names: tuple[str, ...], patterns: Sequence[str],
           missing: str) -> list[int]:
    """Indices of channels matching ``patterns`` (pattern order, then frame order; no repeats)."""
    picked: list[int] = []
    for pat in patterns:
        hits = [i for i, n in enumerate(names) if n == pat or fnmatch.fnmatchcase(n, pat)]
        if not hits and missing == "error":
            raise NodeError(node.context.node_id, f"{type(node).__name__}: no channel matches "
                            f"{pat!r}; frame has {list(names)}")
        picked += [i for i in hits if i not in picked]
    return picked


def _take(frame: DataFrame, idx: list[int], names: Sequence[str]) -> DataFrame:
    """Frame with channels ``idx`` (in order) named ``names``: one numpy call or shared arrays."""
    p = frame.payload
    if p.is_block:
        block = p.block()
        n = len(p)
        if idx == list(range(n)):
            return frame.with_block(block, names)
        start = idx[0] if idx else 0
        if idx == list(range(start, start + len(idx))):
            return frame.with_block(block[start:start + len(idx)], names)
        return frame.with_block(block[idx], names)
    src = p.names
    return frame.with_payload({new: p[src[i]] for i, new in zip(idx, names)})


class _Planned(ProcessingNode):
    """Caches a per-layout plan (indices, output names)."""

    def on_create(self, config: Any) -> None:
        self.config = config
        self._layout: tuple[str, ...] | None = None
        self._plan: tuple[Any, list[str]] = ([], [])  # (indices or, in ChannelMath, an op; names)

    def plan(self, names: tuple[str, ...]) -> tuple[list[int], list[str]]:
        raise NotImplementedError

    def process(self, frame: DataFrame) -> DataFrame:
        names = frame.payload.names
        if names != self._layout:
            self._plan = self.plan(names)
            self._layout = names
        return _take(frame, *self._plan)


@register_node
class SelectChannels(_Planned):
    """Keep only the listed channels (names or patterns), in the listed order.

    >>> from streamlab.testing import run_node, make_frame
    >>> run_node(SelectChannels, {"channels": ["c", "a"]}, [make_frame(a=[1.0], b=[2.0], c=[3.0])])[0].channels
    ('c', 'a')
    """

    class Config(NodeConfig):
        channels: list[str] = Field(..., min_length=1, description="Names or patterns to keep.")
        missing: Missing = _MISSING

    def plan(self, names: tuple[str, ...]) -> tuple[list[int], list[str]]:
        idx = _match(self, names, self.config.channels, self.config.missing)
        return idx, [names[i] for i in idx]


@register_node
class DropChannels(_Planned):
    """Remove the listed channels (names or patterns); the rest keep their order.

    >>> from streamlab.testing import run_node, make_frame
    >>> run_node(DropChannels, {"channels": ["b*"]}, [make_frame(a=[1.0], b1=[2.0], b2=[3.0])])[0].channels
    ('a',)
    """

    class Config(NodeConfig):
        channels: list[str] = Field(..., min_length=1, description="Names or patterns to drop.")
        missing: Missing = _MISSING

    def plan(self, names: tuple[str, ...]) -> tuple[list[int], list[str]]:
        gone = set(_match(self, names, self.config.channels, self.config.missing))
        idx = [i for i in range(len(names)) if i not in gone]
        return idx, [names[i] for i in idx]


@register_node
class ReorderChannels(_Planned):
    """Put the listed channels first, in that order; the rest follow, are dropped, or are an error.

    >>> from streamlab.testing import run_node, make_frame
    >>> run_node(ReorderChannels, {"order": ["c"]}, [make_frame(a=[1.0], b=[2.0], c=[3.0])])[0].channels
    ('c', 'a', 'b')
    """

    class Config(NodeConfig):
        order: list[str] = Field(..., min_length=1, description="Names or patterns, in output order.")
        rest: Literal["append", "drop", "error"] = Field(
            "append", description="Channels not listed: append in frame order, drop, or error.")
        missing: Missing = _MISSING

    def plan(self, names: tuple[str, ...]) -> tuple[list[int], list[str]]:
        idx = _match(self, names, self.config.order, self.config.missing)
        others = [i for i in range(len(names)) if i not in idx]
        if others and self.config.rest == "error":
            raise NodeError(self.context.node_id, f"ReorderChannels: channels "
                            f"{[names[i] for i in others]} are not in 'order' (rest='error')")
        if self.config.rest == "append":
            idx = idx + others
        return idx, [names[i] for i in idx]


@register_node
class RenameChannels(_Planned):
    """Rename channels by a mapping, then add an optional prefix/suffix to every name.

    >>> from streamlab.testing import run_node, make_frame
    >>> run_node(RenameChannels, {"mapping": {"a": "Fz"}, "prefix": "eeg_"},
    ...          [make_frame(a=[1.0], b=[2.0])])[0].channels
    ('eeg_Fz', 'eeg_b')
    """

    class Config(NodeConfig):
        mapping: dict[str, str] = Field(default_factory=dict, description="Old name -> new name.")
        prefix: str = Field("", description="Prepended to every output name.")
        suffix: str = Field("", description="Appended to every output name.")
        missing: Missing = _MISSING

    def plan(self, names: tuple[str, ...]) -> tuple[list[int], list[str]]:
        c = self.config
        absent = [k for k in c.mapping if k not in names]
        if absent and c.missing == "error":
            raise NodeError(self.context.node_id, f"RenameChannels: no channels {absent}; frame "
                            f"has {list(names)}")
        new = [c.prefix + c.mapping.get(n, n) + c.suffix for n in names]
        if len(set(new)) != len(new):
            raise NodeError(self.context.node_id, f"RenameChannels: renaming {list(names)} gives "
                            f"duplicate names {new}")
        return list(range(len(names))), new


@register_node
class ChannelMath(_Planned):
    """Re-reference, common average reference, pairwise differences, or the mean of channels.

    * ``reference``: subtract channel ``reference`` from ``channels`` (default: all others);
      the reference channel itself is kept unchanged.
    * ``common_average``: subtract the mean of ``channels`` (default all) from each of them.
    * ``difference``: a channel ``"a-b"`` per pair ``[a, b]`` in ``pairs``.
    * ``mean``: a channel ``output`` with the mean of ``channels`` (default all).

    ``difference`` and ``mean`` add their channels after the inputs (or replace them when
    ``keep_inputs`` is false). One numpy expression per frame on the block.

    >>> from streamlab.testing import run_node, make_frame
    >>> out = run_node(ChannelMath, {"operation": "common_average"},
    ...                [make_frame(a=[1.0, 2.0], b=[3.0, 6.0])])
    >>> out[0].block().tolist()
    [[-1.0, -2.0], [1.0, 2.0]]
    """

    class Config(NodeConfig):
        operation: Literal["reference", "common_average", "difference", "mean"] = Field(
            ..., description="See the description.")
        channels: list[str] | None = Field(None, description="Channels operated on (names or patterns).")
        reference: str | None = Field(None, description="Reference channel ('reference').")
        pairs: list[tuple[str, str]] | None = Field(None, description="[a, b] pairs ('difference').")
        output: str = Field("mean", description="Name of the channel written by 'mean'.")
        keep_inputs: bool = Field(True, description="'difference'/'mean': keep the input channels.")

        @model_validator(mode="after")
        def _needs(self) -> ChannelMath.Config:
            if self.operation == "reference" and not self.reference:
                raise ValueError("operation 'reference' needs 'reference' (a channel name)")
            if self.operation == "difference" and not self.pairs:
                raise ValueError("operation 'difference' needs 'pairs', e.g. [[\"C3\", \"C4\"]]")
            return self

    def plan(self, names: tuple[str, ...]) -> Any:
        c = self.config
        sel = (_match(self, names, c.channels, "error") if c.channels is not None
               else list(range(len(names))))
        if c.operation == "reference":
            ref = _match(self, names, [c.reference or ""], "error")[0]
            sel = sel if c.channels is not None else [i for i in sel if i != ref]
            return ("reference", np.array(sel), ref), list(names)
        if c.operation == "common_average":
            return ("car", np.array(sel)), list(names)
        if c.operation == "difference":
            pairs = c.pairs or []
            a = [_match(self, names, [p[0]], "error")[0] for p in pairs]
            b = [_match(self, names, [p[1]], "error")[0] for p in pairs]
            new = [f"{p[0]}-{p[1]}" for p in pairs]
            return ("difference", np.array(a), np.array(b)), self._out_names(names, new)
        return ("mean", np.array(sel)), self._out_names(names, [c.output])

    def _out_names(self, names: tuple[str, ...], new: list[str]) -> list[str]:
        out = list(names) + new if self.config.keep_inputs else new
        if len(set(out)) != len(out):
            raise NodeError(self.context.node_id, f"ChannelMath: output names {out} collide")
        return out

    def process(self, frame: DataFrame) -> DataFrame:
        names = frame.payload.names
        if names != self._layout:
            self._plan = self.plan(names)
            self._layout = names
        op, out_names = self._plan
        try:
            x = frame.block()
        except ValueError as exc:
            raise NodeError(self.context.node_id, f"ChannelMath: {exc}") from None
        kind = op[0]
        if kind == "reference":
            y = np.array(x)
            y[op[1]] -= x[op[2]]
        elif kind == "car":
            y = np.array(x)
            y[op[1]] -= x[op[1]].mean(axis=0)
        else:
            new = x[op[1]] - x[op[2]] if kind == "difference" else x[op[1]].mean(axis=0)[None]
            y = np.concatenate([x, new]) if self.config.keep_inputs else new
        return frame.with_block(y, out_names)


@dataclass(frozen=True)
class MergeStatistics:
    """Counters of a Merge node."""

    merged: int
    unmatched: int
    overflowed: int
    pending: int


@register_node
class Merge(ProcessingNode):
    """Fan-in: merge frames from several inputs into one frame, aligned by sequence id or timestamp.

    The merged frame has every input's channels (input order; ``prefix`` names them
    ``"<input id><separator><name>"``), the timestamp and sequence id of the first input's frame,
    and the union of metadata (earlier inputs win). Bounded buffering and the fate of unmatched
    frames: see the module docs. Duplicate channel names without ``prefix`` are a NodeError.

    Events: the merged frame holds the events of every frame it joins, on the same samples
    (settled ``carried``); an event beyond the merged frame's samples (inputs of different
    lengths) is ``out_of_range``, and the events of a frame dropped unmatched or on overflow
    (or still queued at stop) are ``dropped``.

    >>> from streamlab.node import NodeContext
    >>> from streamlab.testing import make_frame
    >>> m = Merge.create({"prefix": True}, NodeContext(inputs=("a", "b")))
    >>> m.context.current_input = "a"; m.process(make_frame(x=[1.0], sequence_id=0)) is None
    True
    >>> m.context.current_input = "b"; m.process(make_frame(x=[2.0], sequence_id=0)).channels
    ('a.x', 'b.x')
    >>> m.statistics()
    MergeStatistics(merged=1, unmatched=0, overflowed=0, pending=0)
    """

    class Config(NodeConfig):
        align: Literal["sequence_id", "timestamp"] = Field(
            "sequence_id", description="Key that frames from different inputs must share.")
        tolerance_us: int = Field(0, ge=0, description="Timestamp alignment: max spread in µs.")
        prefix: bool = Field(False, description="Prefix channel names with the input node id.")
        separator: str = Field(".", description="Between the input id and the channel name.")
        max_pending: int = Field(64, ge=1, le=100_000, description="Frames queued per input at most.")

    #: frames are held across calls, so their events are settled here (not per call)
    handles_events = True

    def on_create(self, config: Any) -> None:
        self.config = config
        self._queues: dict[str, deque[DataFrame]] = {}
        self._merged = self._unmatched = self._overflowed = 0
        self._layout: tuple[Any, ...] | None = None

    def statistics(self) -> MergeStatistics:
        """Frames merged (outputs), dropped unmatched, dropped on overflow, and still queued."""
        return MergeStatistics(self._merged, self._unmatched, self._overflowed,
                               sum(len(q) for q in self._queues.values()))

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"<Merge id={self.context.node_id!r} merged={s.merged} unmatched={s.unmatched} "
                f"overflowed={s.overflowed} pending={s.pending}>")

    def _drop(self, kind: str, frame: DataFrame, source: str) -> None:
        if frame.events:
            self.context.settle_events("dropped", len(frame.events))
        if kind == "unmatched":
            self._unmatched += 1
            count = self._unmatched
        else:
            self._overflowed += 1
            count = self._overflowed
        if count & (count - 1) == 0:  # 1, 2, 4, 8, ...: visible but bounded logging
            self.context.logger.warning(
                "Merge %r dropped %s %s frame(s) so far (latest: seq %d t=%d from %r)",
                self.context.node_id, count, kind, frame.sequence_id, frame.timestamp, source)

    def process(self, frame: DataFrame) -> list[DataFrame] | DataFrame | None:
        inputs = self.context.inputs
        src = self.context.current_input
        if not self._queues:
            if not inputs:
                raise NodeError(self.context.node_id, "Merge needs its inputs (context.inputs); "
                                "run it inside a pipeline with connections into it")
            self._queues = {i: deque() for i in inputs}
        q = self._queues.get(src) if src is not None else None
        if q is None:
            raise NodeError(self.context.node_id, f"Merge: frame from unknown input {src!r}; "
                            f"inputs are {list(inputs)}")
        if len(q) >= self.config.max_pending:
            self._drop("overflowed", q.popleft(), src or "")
        q.append(frame)
        out = []
        while all(self._queues.values()):
            heads = [qq[0] for qq in self._queues.values()]
            if self.config.align == "sequence_id":
                keys = [h.sequence_id for h in heads]
                limit = max(keys)
            else:
                keys = [h.timestamp for h in heads]
                limit = max(keys) - self.config.tolerance_us
            if min(keys) >= limit:
                for qq in self._queues.values():
                    qq.popleft()
                out.append(self._combine(heads))
                continue
            for (name, qq), k in zip(self._queues.items(), keys):
                if k < limit:
                    self._drop("unmatched", qq.popleft(), name)
        self._merged += len(out)
        return out[0] if len(out) == 1 else (out or None)

    def _combine(self, heads: list[DataFrame]) -> DataFrame:
        layout = tuple((h.payload.names, h.n_samples, h.payload.is_block) for h in heads)
        if layout != self._layout:
            names: list[str] = []
            for src, h in zip(self._queues, heads):
                names += [f"{src}{self.config.separator}{n}" if self.config.prefix else n
                          for n in h.payload.names]
            if len(set(names)) != len(names):
                raise NodeError(self.context.node_id, f"Merge: duplicate channel names {names}; "
                                "set 'prefix': true or rename upstream")
            lengths = {h.n_samples for h in heads}
            stackable = len(lengths) == 1 and all(h.payload.is_block for h in heads)
            self._layout, self._names, self._stackable = layout, names, stackable
        first = heads[0]
        meta: dict[str, str] = {}
        for h in reversed(heads):
            meta.update(h.metadata)
        if self._stackable:
            block = np.concatenate([h.payload.block() for h in heads])
            out = DataFrame.from_block(self._names, block, timestamp=first.timestamp,
                                       sequence_id=first.sequence_id, metadata=meta)
        else:
            arrays = [a for h in heads for a in h.payload.values()]
            out = DataFrame(first.timestamp, first.sequence_id, dict(zip(self._names, arrays)),
                            MappingProxyType(meta))
        if any(h.events for h in heads):
            limit = max(1, out.n_samples)
            events = [e for h in heads for e in h.events]
            kept = [e for e in events if e.sample < limit]
            self.context.settle_events("carried", len(kept))
            self.context.settle_events("out_of_range", len(events) - len(kept))
            out = out.with_events(kept)
        return out

    def on_stop(self) -> None:
        for name, q in self._queues.items():
            while q:
                self._drop("unmatched", q.popleft(), name)
