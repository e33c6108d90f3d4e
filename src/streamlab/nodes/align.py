"""Align: join streams of different clocks and rates onto one time base, online (issue 12).

``Align`` takes several inputs (by upstream node id): *data* inputs (frames of samples, each
from its own device clock, regular or irregular rate) and optional *marker* inputs (frames
whose events are markers). Its output frames hold every data input's channels on one time
base: the samples of a **reference** input (``reference``), or a grid at a common **rate**
(``rate`` Hz). Other inputs are interpolated onto it (``linear``; ``nearest`` or
``previous`` for irregular or integer-like channels: ``methods`` per input).

**The time of each input sample** is corrected the way ``pyxdf.load_xdf`` corrects it
offline (``synchronize_clocks=True, dejitter_timestamps=True``), but online:

* *Clock offsets.* An input frame may carry new clock-offset measurements in its metadata
  ``clock_offsets``: ``"T:O;T:O..."``, each ``T`` the measurement time in the input's own
  timestamp domain (µs, like ``frame.timestamp``) and ``O`` the µs to add to that input's
  times to bring them onto this host's clock. They are exactly an XDF ``ClockOffset`` chunk
  (collection time, offset value) mapped to µs; ``LSLInlet`` with ``clock_offsets: true``
  emits them from LSL's ``time_correction()``. Per input, the measurements of the last
  ``clock_window_s`` seconds (default: all since the start) are fitted by a robust linear
  model ``O(T) = a + b*T`` (Huber loss with threshold ``winsor_threshold``, as pyxdf's
  ``_robust_fit``; solved by iteratively reweighted least squares, which reaches the same
  minimum), refitted at every new measurement, and every sample time ``T`` becomes
  ``T + O(T)``. **Difference to pyxdf:** pyxdf fits all measurements of the recording, before
  and after each sample; online, a sample is corrected with the measurements made up to its
  emission (the line is extrapolated from the last measurement: with a clock drift of ``d``
  ppm and measurements every ``s`` seconds the error is at most about ``d * s`` µs), and
  pyxdf's clock *reset* detection (``handle_clock_resets``) is not done online.
* *Dejitter* (regular inputs, ``dejitter: true``): the time of the ``k``-th sample of a
  segment is a least-squares line ``t0 + a + (P + c) * k`` fitted on the sample times of the
  segment (the last ``dejitter_window_s`` seconds of it; default the whole segment), updated
  with every frame (exact running sums, not an approximation). A segment ends where two
  samples are more than ``max(jitter_break_threshold_seconds, jitter_break_threshold_samples
  / rate)`` apart (pyxdf's rule): the fit starts again. **Difference to pyxdf:** pyxdf fits
  each segment with all its samples; online, samples are placed with the fit of the samples
  received so far (they are placed when they leave, so held samples profit from later data).
  The **sync residual** of an input is the RMS of its sample times minus the fitted line
  (µs), the jitter that dejitter removes.

Per-sample times come from ``sample_times(frame)`` (``timestamp + round(i * 1e6 / rate)``)
or, if the frame has a channel named ``time_channel`` (``LSLInlet``'s ``timestamp_channel``:
each sample's own LSL time in seconds), from ``timestamp + (t_i - t_0) * 1e6``; that channel
is not copied to the output.

**Holding.** A reference frame (or grid sample) leaves once every input has data up to its
last sample time plus ``min_delay_s`` (so it is interpolated, not extrapolated, and with
``min_delay_s`` > 0 the fits place it with samples on both sides), or once the reference (in
rate mode: the most advanced input) has moved ``max_delay_s`` of data time past it, or at the
end of the inputs. Output samples an input does not cover are ``NaN`` (``linear``,
``nearest``), or the last value (``previous``; ``NaN`` before the first one). Samples of an
input that arrive after output frames covering their time have left are **late**: counted per
input (``statistics()``) and logged (the first, then one in ``late_log_every``), still used as
neighbours of later output samples. An input keeps at most ``max_buffer_s`` seconds of data
beyond what it was used for; older samples are counted ``expired``.

**Events** of every input leave on the output: those of the reference keep their sample;
the others land, by their clock-corrected time, on the first output sample at or after it
(``carried``); before the first output sample they are ``out_of_range``, behind output that
already left ``late``, after the last sample at the end ``out_of_range``. Held events at a
failure are ``dropped``. The output event's ``time`` is the clock-corrected time.

**Metrics.** The runtime has no API for node-specific metrics, so the sync residual and the
clock model are in ``statistics()`` (per input) and on each output frame's metadata:
``sync_residual_us.<input>`` (dejitter residual RMS, µs) and ``clock_offset_us.<input>``.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamlab.errors import EndOfStream
from streamlab.events import Event
from streamlab.frame import DataFrame, Payload
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.nodes.attach import sample_times, send_carrying
from streamlab.nodes.clock_sync import ClockModel, Dejitter, parse_clock_offsets
from streamlab.registry import register_node

__all__ = ["Align", "AlignConfig", "Aligner", "InputStats"]

Method = Literal["linear", "nearest", "previous"]


# -- the joining state machine ---------------------------------------------------------------
@dataclass
class _Chunk:
    raw: np.ndarray                 # raw sample times, µs relative to the origin
    segs: np.ndarray | None         # dejitter segment ids (None: not dejittered)
    idx: np.ndarray | None
    block: np.ndarray               # channels x samples
    last: float = 0.0               # aligned time of the last sample when last computed


@dataclass
class InputStats:
    """Per-input counters and sync quality (see :meth:`Aligner.statistics`)."""

    frames: int = 0
    samples: int = 0
    late_samples: int = 0
    expired_samples: int = 0
    segments: int = 0
    sync_residual_us: float = 0.0
    effective_rate: float = 0.0
    clock_offset_us: float = 0.0
    clock_drift_ppm: float = 0.0
    clock_residual_us: float = 0.0
    clock_measurements: int = 0


@dataclass
class _Input:
    name: str
    kind: Literal["data", "markers"]
    method: Method
    clock: ClockModel
    names: tuple[str, ...] | None = None
    rate: float = 0.0
    dejit: Dejitter | None = None
    chunks: deque[_Chunk] = field(default_factory=deque)
    head: _Chunk | None = None             # the first chunk received (its first sample)
    tail: _Chunk | None = None             # the latest chunk received
    marker_newest: float | None = None     # markers: the latest corrected event time
    last_value: np.ndarray | None = None   # 'previous': the value before the held chunks
    ended: bool = False
    stats: InputStats = field(default_factory=InputStats)


class Aligner:
    """The joining logic of :class:`Align`, without I/O (a pure state machine).

    ``add(input, frame)`` and ``end(input)`` return the output frames that may leave now, in
    order; ``flush()`` returns the rest at the end. Events that cannot be placed are reported
    through ``settle(fate, n)``; events on returned frames are the caller's to settle
    (``carried``). ``held_events()`` counts the events still inside.
    """

    def __init__(self, inputs: Sequence[str], *, reference: str | None = None,
                 rate: float | None = None, markers: Iterable[str] = (),
                 methods: Mapping[str, Method] | None = None, default_method: Method = "linear",
                 prefix: bool = False, separator: str = ".", max_delay_s: float = 1.0,
                 min_delay_s: float = 0.0,
                 max_buffer_s: float = 10.0, dejitter: bool = True,
                 dejitter_window_s: float | None = None, break_seconds: float = 1.0,
                 break_samples: int = 500, synchronize_clocks: bool = True,
                 clock_window_s: float | None = None, winsor_threshold: float = 0.0001,
                 time_channel: str | None = None, max_frame_samples: int = 4096,
                 settle: Callable[[str, int], None] = lambda fate, n: None,
                 on_late: Callable[[str, str], None] = lambda name, what: None,
                 node_id: str = "align") -> None:
        if (reference is None) == (rate is None):
            raise ValueError("give exactly one of reference or rate")
        markers = set(markers)
        methods = dict(methods or {})
        self.node_id = node_id
        self.reference = reference
        self.rate = rate
        self.prefix, self.separator = prefix, separator
        self.max_delay = max_delay_s * 1e6
        self.min_delay = min(min_delay_s, max_delay_s) * 1e6
        self.max_buffer = max_buffer_s * 1e6
        self.dejitter, self.dejitter_window_s = dejitter, dejitter_window_s
        self.break_seconds, self.break_samples = break_seconds, break_samples
        self.synchronize_clocks = synchronize_clocks
        self.time_channel = time_channel
        self.max_frame_samples = max_frame_samples
        self._settle = settle
        self._on_late = on_late
        win = None if clock_window_s is None else clock_window_s * 1e6
        self.inputs: dict[str, _Input] = {
            n: _Input(n, "markers" if n in markers else "data", methods.get(n, default_method),
                      ClockModel(winsor_threshold * 1e6, win)) for n in inputs}
        self.origin: int | None = None
        self.held: deque[tuple[DataFrame, _Chunk]] = deque()   # reference frames
        self.pending: list[Event] = []          # events by corrected time, not yet placed
        self.emitted_until: float | None = None  # aligned time of the last output sample
        self.first_output: float | None = None
        self.grid_next: float | None = None     # rate mode: time of the next grid sample
        self.grid_start = 0.0
        self.grid_k = 0
        self.names: tuple[str, ...] | None = None
        self.seq = 0
        self.frames_out = 0

    # -- inputs ------------------------------------------------------------------------------
    def add(self, name: str, frame: DataFrame) -> list[DataFrame]:
        inp = self.inputs.get(name)
        if inp is None:
            raise ValueError(f"Align {self.node_id!r}: frame from {name!r}, which is not one of "
                             f"its inputs {sorted(self.inputs)}")
        if self.origin is None:
            self.origin = frame.timestamp
        inp.stats.frames += 1
        text = frame.metadata.get("clock_offsets")
        if text and self.synchronize_clocks:
            try:
                pairs = parse_clock_offsets(text)
            except ValueError as exc:
                raise ValueError(f"Align {self.node_id!r}: input {name!r} frame "
                                 f"{frame.sequence_id}: metadata 'clock_offsets': {exc}") from None
            for t, o in pairs:
                inp.clock.add(t - self.origin, o)
        if inp.kind == "data" and frame.n_samples:
            self._add_samples(inp, frame)
        elif inp.kind == "markers" and frame.n_samples:
            raise ValueError(f"Align {self.node_id!r}: input {name!r} is listed in markers but "
                             f"frame {frame.sequence_id} has {frame.n_samples} samples")
        if inp.kind == "markers":
            t = self._corrected_event_time(inp, frame.timestamp)
            inp.marker_newest = t if inp.marker_newest is None else max(inp.marker_newest, t)
        if frame.events and not (name == self.reference and frame.n_samples):
            self._add_events(inp, frame.events)
        return self._release(final=False)

    def end(self, name: str) -> list[DataFrame]:
        self.inputs[name].ended = True
        return self._release(final=False)

    def flush(self) -> list[DataFrame]:
        """End of the inputs: every held output, then events after the end: out_of_range."""
        out = self._release(final=True)
        if self.pending:
            self._fate("out_of_range", len(self.pending))
            self.pending.clear()
        return out

    def held_events(self) -> int:
        return len(self.pending) + sum(len(f.events) for f, _ in self.held)

    def clear(self) -> int:
        n = self.held_events()
        self.held.clear()
        self.pending.clear()
        return n

    def statistics(self) -> dict[str, InputStats]:
        """Per input: frames, samples, late/expired samples, sync residual, clock model."""
        for inp in self.inputs.values():
            s = inp.stats
            if inp.dejit is not None:
                s.sync_residual_us = inp.dejit.residual_rms()
                s.effective_rate = inp.dejit.effective_rate()
                s.segments = inp.dejit.segments
            c = inp.clock
            s.clock_offset_us = float(c.offset(self._now(inp))) if c.measurements else 0.0
            s.clock_drift_ppm = c.b * 1e6
            s.clock_residual_us = c.residual_rms
            s.clock_measurements = c.measurements
        return {n: i.stats for n, i in self.inputs.items()}

    # -- internals ---------------------------------------------------------------------------
    def _fate(self, fate: str, n: int) -> None:
        if n:
            self._settle(fate, n)

    def _now(self, inp: _Input) -> float:
        if inp.chunks:
            return float(inp.chunks[-1].raw[-1])
        return inp.clock.times[-1] if inp.clock.times else 0.0

    def _rate_of(self, inp: _Input, frame: DataFrame) -> float:
        """The input's nominal rate: ``metadata["sample_rate"]``, 0 (irregular) if absent.

        ValueError naming the input and frame if it is there but not a finite number >= 0
        (taking it as irregular would silently change how the input is timed).
        """
        text = frame.metadata.get("sample_rate")
        if text is None:
            return 0.0
        try:
            rate = float(text)
        except ValueError:
            rate = math.nan
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"Align {self.node_id!r}: input {inp.name!r} frame "
                             f"{frame.sequence_id}: metadata 'sample_rate' must be a finite "
                             f"number >= 0 (0 or absent: irregular), got {text!r}")
        return rate

    def _add_samples(self, inp: _Input, frame: DataFrame) -> None:
        assert self.origin is not None
        names = frame.channels
        block = frame.block()
        tc = self.time_channel
        if tc is not None and tc in names:
            col = names.index(tc)
            ts = block[col]
            raw = (frame.timestamp - self.origin) + (ts - ts[0]) * 1e6
            keep = [i for i in range(len(names)) if i != col]
            block = block[keep]
            names = tuple(names[i] for i in keep)
        else:
            raw = (sample_times(frame) - self.origin).astype(np.float64)
        if inp.names is None:
            inp.names = names
            inp.rate = self._rate_of(inp, frame)
            if self.dejitter and inp.rate > 0:
                period = 1e6 / inp.rate
                window = (None if self.dejitter_window_s is None
                          else max(2, round(self.dejitter_window_s * inp.rate)))
                inp.dejit = Dejitter(period, max(self.break_seconds * 1e6,
                                                 self.break_samples * period), window)
        elif names != inp.names:
            raise ValueError(f"Align {self.node_id!r}: input {inp.name!r} frame "
                             f"{frame.sequence_id} has channels {list(names)}, earlier frames "
                             f"had {list(inp.names)}")
        segs = idx = None
        if inp.dejit is not None:
            segs, idx = inp.dejit.add(raw)
        ch = _Chunk(raw, segs, idx, block)
        t = self._times(inp, ch)
        ch.last = float(t[-1])
        inp.stats.samples += len(raw)
        if inp.head is None:
            inp.head = ch
        inp.tail = ch
        if inp.name == self.reference:
            self.held.append((frame, ch))
        else:
            if self.emitted_until is not None:
                late = int(np.count_nonzero(t <= self.emitted_until))
                if late:
                    inp.stats.late_samples += late
                    self._on_late(inp.name, f"{late} samples")
            inp.chunks.append(ch)
            self._expire(inp)

    def _times(self, inp: _Input, ch: _Chunk) -> np.ndarray:
        """Aligned times (µs from the origin) of a chunk's samples, with the current fits."""
        if inp.dejit is not None and ch.segs is not None and ch.idx is not None:
            t = inp.dejit.times(ch.segs, ch.idx)
        else:
            t = ch.raw
        if inp.clock.measurements:
            t = t + inp.clock.offset(t)
        return t

    def _corrected_event_time(self, inp: _Input, t: int) -> float:
        assert self.origin is not None
        x = float(t - self.origin)
        return x + float(inp.clock.offset(x)) if inp.clock.measurements else x

    def _add_events(self, inp: _Input, events: Iterable[Event]) -> None:
        assert self.origin is not None
        for e in events:
            t = round(self._corrected_event_time(inp, e.time))
            moved = Event(t + self.origin, e.label, e.value, e.duration)
            if self.emitted_until is not None and t <= self.emitted_until:
                self._fate("late", 1)
                self._on_late(inp.name, f"event {e.label!r}")
            else:
                bisect.insort_right(self.pending, moved, key=lambda ev: ev.time)

    def _expire(self, inp: _Input) -> None:
        """Bound the input's buffer: drop what was used, count what was never used."""
        chunks = inp.chunks
        e = self.emitted_until
        if e is not None:  # keep one sample before the output frontier for interpolation
            while len(chunks) >= 2 and chunks[1].last <= e:
                self._keep_last_value(inp, chunks.popleft())
            if len(chunks) >= 2 and float(self._times(inp, chunks[1])[0]) <= e:
                self._keep_last_value(inp, chunks.popleft())
        newest = self._newest(inp)
        assert newest is not None
        while len(chunks) >= 2 and newest - chunks[0].last > self.max_buffer:
            ch = chunks.popleft()
            t = self._times(inp, ch)
            unused = len(t) if e is None else int(np.count_nonzero(t > e))
            inp.stats.expired_samples += unused
            self._keep_last_value(inp, ch)
        if inp.dejit is not None and chunks and chunks[0].segs is not None:
            inp.dejit.forget_before(int(chunks[0].segs[0]))

    def _keep_last_value(self, inp: _Input, ch: _Chunk) -> None:
        inp.last_value = ch.block[:, -1].copy()

    def _newest(self, inp: _Input) -> float | None:
        """Aligned time of the input's latest sample (or marker), with the current fits."""
        if inp.kind == "markers":
            return inp.marker_newest
        return None if inp.tail is None else float(self._times(inp, inp.tail)[-1])

    def _first(self, inp: _Input) -> float:
        assert inp.head is not None
        return float(self._times(inp, inp.head)[0])

    def _data_inputs(self) -> list[_Input]:
        return [i for i in self.inputs.values() if i.kind == "data"]

    def _others_cover(self, t: float) -> bool:
        for inp in self.inputs.values():
            if inp.name == self.reference or inp.ended:
                continue
            newest = self._newest(inp)
            if newest is None or newest < t:
                return False
        return True

    def _layout(self) -> tuple[str, ...]:
        if self.names is None:
            names: list[str] = []
            order = self._data_inputs()
            if self.reference is not None:
                order.sort(key=lambda i: i.name != self.reference)
            for inp in order:
                if inp.names is None:
                    raise ValueError(
                        f"Align {self.node_id!r}: input {inp.name!r} has sent no data by the "
                        "first output, so its channels are unknown; raise max_delay_s or list "
                        "it in markers if it carries only events")
                names += [f"{inp.name}{self.separator}{n}" if self.prefix else n
                          for n in inp.names]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"Align {self.node_id!r}: channel names {dup} occur in several "
                                 "inputs; set prefix: true or rename them upstream")
            self.names = tuple(names)
        return self.names

    def _release(self, final: bool) -> list[DataFrame]:
        if self.reference is not None:
            return self._release_reference(final)
        return self._release_rate(final)

    def _release_reference(self, final: bool) -> list[DataFrame]:
        out: list[DataFrame] = []
        ref = self.inputs[self.reference]  # type: ignore[index]
        while self.held:
            frame, ch = self.held[0]
            t = self._times(ref, ch)
            last = float(t[-1])
            newest = self._newest(ref)
            assert newest is not None
            settled = newest - last >= self.min_delay and self._others_cover(
                last + self.min_delay)
            if not final and not settled and newest - last < self.max_delay:
                break
            self.held.popleft()
            ts = round(float(t[0])) + self.origin  # type: ignore[operator]
            out.append(self._output(ts, ch.block.shape[1], ref.rate, ch.block, frame.events))
        return out

    def _release_rate(self, final: bool) -> list[DataFrame]:
        assert self.rate is not None
        data = self._data_inputs()
        newest = {i.name: self._newest(i) for i in self.inputs.values()}
        heads = [t for i in data if (t := newest[i.name]) is not None]
        started = [i for i in data if newest[i.name] is not None]
        if not started:
            return []
        lead = max(heads)
        if self.grid_next is None:
            firsts = [self._first(i) for i in started]
            if len(started) < len(data) and not final and lead - min(firsts) < self.max_delay:
                return []
            self.grid_next = max(firsts)
            self.grid_start = self.grid_next
        if final:
            limit = lead
        else:
            covered = [newest[i.name] for i in self.inputs.values() if not i.ended]
            known = [c for c in covered if c is not None]
            limit = (min(known) - self.min_delay if len(known) == len(covered) and known
                     else -math.inf)
            limit = max(limit, lead - self.max_delay)
        period = 1e6 / self.rate
        out: list[DataFrame] = []
        while True:
            t0 = self.grid_start + self.grid_k * period
            if t0 > limit:
                break
            n = min(self.max_frame_samples, int(math.floor((limit - t0) / period)) + 1)
            ts = round(t0) + self.origin  # type: ignore[operator]
            out.append(self._output(ts, n, self.rate, None, ()))
            self.grid_k += n
        return out

    def _output(self, ts: int, n: int, rate: float, ref_block: np.ndarray | None,
                ref_events: Iterable[Event]) -> DataFrame:
        assert self.origin is not None
        names = self._layout()
        if rate > 0:
            rel = np.rint(np.arange(n, dtype=np.float64) * 1e6 / rate).astype(np.int64) + ts
        else:
            rel = np.full(n, ts, dtype=np.int64)
        times = (rel - self.origin).astype(np.float64)
        parts = [] if ref_block is None else [ref_block]
        for inp in self._data_inputs():
            if inp.name == self.reference:
                continue
            parts.append(self._interpolate(inp, times))
        block = np.ascontiguousarray(np.concatenate(parts)) if parts else np.zeros((0, n))
        last = float(times[-1])
        if self.first_output is None:
            self.first_output = float(times[0])
            early = bisect.bisect_left(self.pending, ts, key=lambda ev: ev.time)
            if early:
                del self.pending[:early]
                self._fate("out_of_range", early)
        self.emitted_until = last if self.emitted_until is None else max(self.emitted_until, last)
        events = [self._moved_ref_event(e) for e in ref_events]
        k = bisect.bisect_right(self.pending, int(rel[-1]), key=lambda ev: ev.time)
        if k:
            take = self.pending[:k]
            del self.pending[:k]
            at = np.searchsorted(rel, np.array([e.time for e in take], dtype=np.int64), "left")
            events += [e.at(int(i)) for e, i in zip(take, at)]
        meta = {"sample_rate": repr(float(rate))} if rate > 0 else {}
        for name, s in self.statistics().items():
            if self.inputs[name].dejit is not None:
                meta[f"sync_residual_us.{name}"] = f"{s.sync_residual_us:.3f}"
            if s.clock_measurements:
                meta[f"clock_offset_us.{name}"] = f"{s.clock_offset_us:.3f}"
        for inp in self._data_inputs():
            if inp.name != self.reference and inp.chunks:
                self._expire(inp)
        out = DataFrame(ts, self.seq, Payload.from_block(names, block), meta, events)
        self.seq += 1
        self.frames_out += 1
        return out

    def _moved_ref_event(self, e: Event) -> Event:
        assert self.reference is not None
        t = round(self._corrected_event_time(self.inputs[self.reference], e.time))
        return Event(t + self.origin, e.label, e.value, e.duration, e.sample)  # type: ignore[operator]

    def _interpolate(self, inp: _Input, t: np.ndarray) -> np.ndarray:
        nch = len(inp.names or ())
        out = np.full((nch, len(t)), np.nan)
        if not inp.chunks:
            if inp.method == "previous" and inp.last_value is not None:
                out[:] = inp.last_value[:, None]
            return out
        chunks = inp.chunks
        if len(chunks) == 1:
            x = self._times(inp, chunks[0])
            v = chunks[0].block
        else:  # one vectorised evaluation of the fits for every held sample
            raw = np.concatenate([c.raw for c in chunks])
            if inp.dejit is not None:
                segs = np.concatenate([c.segs for c in chunks])
                idx = np.concatenate([c.idx for c in chunks])
                x = self._times(inp, _Chunk(raw, segs, idx, chunks[0].block))
            else:
                x = self._times(inp, _Chunk(raw, None, None, chunks[0].block))
            v = np.concatenate([c.block for c in chunks], axis=1)
        order = np.argsort(x, kind="stable")  # late samples may be out of order
        if np.any(order != np.arange(len(x))):
            x, v = x[order], v[:, order]
        i = np.searchsorted(x, t, side="right") - 1   # last sample at or before t
        before = i < 0
        inside = (~before) & (t <= x[-1])
        if inp.method == "previous":
            ok = ~before
            out[:, ok] = v[:, i[ok]]
            if inp.last_value is not None and before.any():
                out[:, before] = inp.last_value[:, None]
            return out
        if inp.method == "nearest":
            j = np.clip(i + 1, 0, len(x) - 1)
            ii = np.clip(i, 0, len(x) - 1)
            pick = np.where(np.abs(x[j] - t) < np.abs(t - x[ii]), j, ii)
            out[:, inside] = v[:, pick[inside]]
            return out
        ii = np.clip(i, 0, len(x) - 1)
        j = np.clip(i + 1, 0, len(x) - 1)
        dx = x[j] - x[ii]
        w = np.where(dx > 0, (t - x[ii]) / np.where(dx > 0, dx, 1.0), 0.0)
        val = v[:, ii] * (1.0 - w) + v[:, j] * w
        out[:, inside] = val[:, inside]
        return out


# -- the node --------------------------------------------------------------------------------
class AlignConfig(NodeConfig):
    """Settings of Align."""

    reference: str | None = Field(None, min_length=1, description="Id of the input whose "
                                  "(corrected) sample times are the output's time base.")
    rate: float | None = Field(None, gt=0, le=1e6, description="Or: a common output rate (Hz); "
                               "the grid starts at the latest first sample of the inputs.")
    markers: list[str] = Field(default_factory=list, description="Inputs that carry only "
                               "events (marker frames); their events land on output samples.")
    interpolation: Method = Field("linear", description="How inputs are resampled onto the "
                                  "time base: linear, nearest or previous (sample and hold).")
    methods: dict[str, Method] = Field(default_factory=dict, description="Per input id: "
                                       "interpolation overriding the default.")
    prefix: bool = Field(False, description="Name channels '<input id><separator><name>'.")
    separator: str = Field(".", description="Between the input id and the channel name.")
    max_delay_s: float = Field(1.0, ge=0, le=3600, description="Hold output for the slowest "
                               "input at most this much data time (s).")
    min_delay_s: float = Field(0.0, ge=0, le=3600, description="Hold every output at least "
                               "this much data time, so the dejitter and clock fits include "
                               "samples after it (better placement, more latency).")
    max_buffer_s: float = Field(10.0, gt=0, le=3600, description="Data held per input beyond "
                                "its use at most (s); older samples are counted expired.")
    synchronize_clocks: bool = Field(True, description="Apply the inputs' clock_offsets "
                                     "metadata (robust linear fit, as pyxdf).")
    clock_window_s: float | None = Field(None, gt=0, description="Fit the clock offsets of "
                                         "the last this many seconds (default: all).")
    winsor_threshold: float = Field(0.0001, gt=0, description="Huber threshold of the clock "
                                    "fit (s), as pyxdf's winsor_threshold.")
    dejitter: bool = Field(True, description="Fit a line of sample time on sample index per "
                           "segment for regular inputs (as pyxdf's dejitter_timestamps).")
    dejitter_window_s: float | None = Field(None, gt=0, description="Fit the last this many "
                                            "seconds of a segment (default: all of it).")
    jitter_break_threshold_seconds: float = Field(1.0, gt=0, description="A gap longer than "
                                                  "this starts a new segment (pyxdf's rule).")
    jitter_break_threshold_samples: int = Field(500, ge=1, description="... or longer than "
                                                "this many sample periods.")
    time_channel: str | None = Field(None, min_length=1, description="Channel holding each "
                                     "sample's own time in seconds (LSLInlet timestamp_channel);"
                                     " used for timing, not copied to the output.")
    max_frame_samples: int = Field(4096, ge=1, description="Rate mode: samples per output "
                                   "frame at most.")
    late_log_every: int = Field(100, ge=1, description="Log the first late input, then one "
                                "in this many.")

    @model_validator(mode="after")
    def _check(self) -> AlignConfig:
        if (self.reference is None) == (self.rate is None):
            raise ValueError("give exactly one of reference (an input id) or rate (Hz)")
        if self.min_delay_s > self.max_delay_s:
            raise ValueError(f"min_delay_s ({self.min_delay_s}) must not exceed max_delay_s "
                             f"({self.max_delay_s})")
        if self.reference is not None and self.reference in self.markers:
            raise ValueError(f"reference {self.reference!r} cannot be a markers input")
        return self


@register_node
class Align(ProcessingNode):
    """Join streams of different clocks and rates onto one time base (clock sync, dejitter).

    >>> cfg = Align.Config(reference="eeg", max_delay_s=0.5, prefix=True)
    >>> cfg.interpolation, cfg.dejitter
    ('linear', True)
    """

    Config = AlignConfig
    handles_events = True

    def on_create(self, config: AlignConfig) -> None:
        self.config = config
        self.aligner: Aligner | None = None
        self._late_count = 0

    def on_start(self) -> None:
        inputs = tuple(self.context.inputs)
        cfg = self.config
        if inputs:
            known = set(inputs)
            named = {"reference": [cfg.reference] if cfg.reference else [],
                     "markers": cfg.markers, "methods": list(cfg.methods)}
            for key, ids in named.items():
                for i in ids:
                    if i not in known:
                        raise ValueError(f"Align {self.node_id!r}: config.{key} names {i!r}, "
                                         f"which is not one of its inputs {sorted(known)}")
        self.aligner = self._make(inputs)

    def _make(self, inputs: Sequence[str]) -> Aligner:
        cfg = self.config
        return Aligner(
            inputs, reference=cfg.reference, rate=cfg.rate, markers=cfg.markers,
            methods=cfg.methods, default_method=cfg.interpolation, prefix=cfg.prefix,
            separator=cfg.separator, max_delay_s=cfg.max_delay_s, min_delay_s=cfg.min_delay_s,
            max_buffer_s=cfg.max_buffer_s,
            dejitter=cfg.dejitter, dejitter_window_s=cfg.dejitter_window_s,
            break_seconds=cfg.jitter_break_threshold_seconds,
            break_samples=cfg.jitter_break_threshold_samples,
            synchronize_clocks=cfg.synchronize_clocks, clock_window_s=cfg.clock_window_s,
            winsor_threshold=cfg.winsor_threshold, time_channel=cfg.time_channel,
            max_frame_samples=cfg.max_frame_samples, settle=self.context.settle_events,
            on_late=self._late, node_id=self.node_id)

    def statistics(self) -> dict[str, InputStats]:
        """Per input: frames, samples, late and expired samples, sync residual (µs), clock."""
        return {} if self.aligner is None else self.aligner.statistics()

    def _late(self, name: str, what: str) -> None:
        self._late_count += 1
        if (self._late_count - 1) % self.config.late_log_every == 0:
            self.context.logger.warning(
                "Align %r: input %r delivered %s after the output covering them left "
                "(%d late deliveries so far; raise max_delay_s?)", self.node_id, name, what,
                self._late_count)

    def _received(self, n: int) -> None:
        m = self.context.metrics
        if m is not None:  # the runtime counts received events for process(), not run()
            m.events_received += n

    async def run(self, rx: Any, tx: Any) -> None:
        """Receive from every input until all end, then flush; see the module docstring."""
        if self.aligner is None:
            self.aligner = self._make(tuple(self.context.inputs) or tuple(rx.sources))
        al = self.aligner
        outs: list[DataFrame] = []
        in_hand = 0
        try:
            while True:
                try:
                    src, frame = await rx.receive_from()
                except EndOfStream:
                    break
                in_hand = len(frame.events)
                if in_hand:
                    self._received(in_hand)
                outs = al.add(src, frame)
                in_hand = 0
                await send_carrying(self.context, tx, outs)
            outs = al.flush()
            await send_carrying(self.context, tx, outs)
        except BaseException:
            lost = in_hand + al.clear() + sum(len(f.events) for f in outs)
            if lost:
                self.context.settle_events("dropped", lost)
            raise

    def __repr__(self) -> str:
        a = self.aligner
        held = 0 if a is None else len(a.held)
        return f"<Align id={self.node_id!r} held={held}>"
