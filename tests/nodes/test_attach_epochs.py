"""Attach -> Epoch, the whole chain, against ``mne.Epochs`` (issue 11, item 5).

A data stream and a SEPARATE marker stream: each marker is stamped somewhere in the sample
period before the sample it belongs to (it lands on the first sample at or after its time),
markers arrive late (by up to ``max_marker_delay_s`` of data time) and out of order, some
outside the data, some later than the delay. The real ``Attach.run`` loop is driven by a
scripted inlet (the arrival order is part of the Hypothesis example, so nothing depends on
scheduling or the wall clock), its output frames go straight into ``Epoch.process``.

Checked per example: every marker within the delay lands and its epoch equals
``mne.Epochs`` on the same continuous data and events (same epochs kept, rejected (reject,
flat) and dropped at the edges, samples within 1e-9); every marker later than the delay (or
outside the data) is counted ``late`` (``out_of_range``), and reported in the log; both
nodes' event ledgers balance.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from streamlab.errors import EndOfStream
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.node import NodeContext
from streamlab.nodes.attach import Attach, sample_times
from streamlab.nodes.epochs import Epoch
from tests.nodes.test_epochs import T0, assert_same, frames_of, mne_epochs, signal

pytest.importorskip("mne")

LABELS = {"a", "b"}  # "c" is asked for by neither Epoch nor mne: unmatched / IGNORED


class _ScriptedInlet:
    """``receive_from`` of a node's inlet, replaying (input id, frame) pairs in order."""

    def __init__(self, items: list[tuple[str, DataFrame]]) -> None:
        self._items = deque(items)

    async def receive_from(self) -> tuple[str, DataFrame]:
        if not self._items:
            raise EndOfStream
        await asyncio.sleep(0)  # a real inlet yields to the loop
        return self._items.popleft()


class _IntoEpoch:
    """The outlet of Attach: every frame sent is processed by the Epoch node at once."""

    def __init__(self, epoch: Epoch) -> None:
        self.epoch = epoch
        self.frames: list[DataFrame] = []
        self.outs: list[DataFrame] = []

    async def send(self, frame: DataFrame) -> None:
        self.frames.append(frame)
        self.outs += self.epoch.process(frame)


class _Keep(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


class Chain:
    """Attach (``run`` on a scripted arrival order) -> Epoch, with both event ledgers.

    Offers what ``tests.nodes.test_epochs.assert_same`` reads of its ``Run``: ``outs``,
    ``kept``, ``stats``, ``fates`` (Epoch's) and ``dropped(reason)``.
    """

    def __init__(self, attach_cfg: dict[str, Any], epoch_cfg: dict[str, Any],
                 arrivals: list[tuple[str, DataFrame]]) -> None:
        self.attach_fates: dict[str, int] = {}
        self.fates: dict[str, int] = {}
        self.log: list[logging.LogRecord] = []
        logger = logging.getLogger("streamlab.test.attach_epochs")
        logger.propagate = False  # the records are kept here, checked by the test
        logger.handlers[:] = [_Keep(self.log)]
        actx = NodeContext(node_id="att", logger=logger)
        actx.settle_events = self._counter(self.attach_fates)  # type: ignore[method-assign]
        ectx = NodeContext(node_id="ep")
        ectx.settle_events = self._counter(self.fates)  # type: ignore[method-assign]
        self.attach = Attach.create(attach_cfg, actx)
        self.epoch = Epoch.create(epoch_cfg, ectx)
        out = _IntoEpoch(self.epoch)
        asyncio.run(self.attach.run(_ScriptedInlet(arrivals), out))
        self.epoch.on_stop()
        self.frames, self.outs = out.frames, out.outs
        self.stats = self.epoch.statistics()

    @staticmethod
    def _counter(into: dict[str, int]) -> Any:
        def settle(fate: str, n: int = 1) -> None:
            into[fate] = into.get(fate, 0) + n
        return settle

    @property
    def kept(self) -> list[int]:
        return [int(o.metadata["event_index"]) for o in self.outs]

    def dropped(self, reason: str) -> list[int]:
        return sorted(i for i, _, r, _ in self.stats.drop_log if r == reason)


def deadline_slot(lasts: list[int], t: int) -> int:
    """Index of the first data frame whose last sample is at or after ``t`` (len: none)."""
    return next((k for k, last in enumerate(lasts) if last >= t), len(lasts))


@st.composite
def layouts(draw: Any) -> dict[str, Any]:
    fs = draw(st.sampled_from([100.0, 250.0, 1000.0 / 3, 500.0]))
    n = draw(st.integers(30, 800))
    sizes = draw(st.lists(st.integers(1, 70), min_size=1, max_size=5))
    tmin = draw(st.sampled_from([-0.2, -0.1, -0.05, 0.0, 0.02]))
    tmax = tmin + draw(st.sampled_from([0.03, 0.1, 0.25, 0.5]))
    # events: near both edges (epochs cut short), close together (overlapping epochs), anywhere
    anywhere = st.integers(0, n - 1)
    near = st.one_of(st.integers(0, 8), st.integers(n - 9, n - 1), anywhere, anywhere, anywhere)
    samples = sorted(set(draw(st.lists(near, min_size=2, max_size=14))))
    labels = [draw(st.sampled_from("aabbc")) for _ in samples]
    delay_s = draw(st.sampled_from([0.0, 0.03, 0.2, 1.0]))
    detrend = draw(st.sampled_from([None, 0, 1]))
    baseline = draw(st.sampled_from([None, (None, None), (None, 0.0)]))
    if baseline == (None, 0.0) and not tmin < 0 <= tmax:
        baseline = (None, None)
    reject = draw(st.sampled_from([None, 5e-5, 8e-5]))
    flat = draw(st.sampled_from([None, 1e-6, 3e-5, 4.5e-5]))
    seed = draw(st.integers(0, 10_000))
    return dict(fs=fs, n=n, sizes=sizes, tmin=tmin, tmax=tmax, samples=samples, labels=labels,
                delay_s=delay_s, detrend=detrend, baseline=baseline, reject=reject, flat=flat,
                seed=seed)


def schedule(draw: Any, frames: list[DataFrame], markers: list[Event], lags: list[int],
             delay_us: int, in_order: bool, fixed: set[int]) -> tuple[list[tuple[str, DataFrame]], set[int]]:
    """The arrival order: marker i arrives before the first data frame whose last sample is at
    or after ``time + lag`` (its deadline) and, out of order, up to 3 frames earlier, in any
    order among the markers of the same slot (markers in ``fixed`` arrive at their deadline).
    In order: markers arrive sorted by time (each no earlier than the one before it), so a
    marker behind a late one in the stream arrives late too. Returns the arrivals and the
    markers that were held up that way (they may be late)."""
    lasts = [int(sample_times(f)[-1]) for f in frames]
    slots = [deadline_slot(lasts, e.time + lag) for e, lag in zip(markers, lags, strict=True)]
    # a marker arriving before the first frame whose last sample is at or after time + delay
    # must land (the frame holding its sample is still held); later ones may be late
    in_time = [deadline_slot(lasts, e.time + delay_us) for e in markers]
    if in_order:
        by_time = sorted(range(len(markers)), key=lambda i: markers[i].time)
        for a, b in zip(by_time, by_time[1:]):
            slots[b] = max(slots[b], slots[a])
    else:
        slots = [s if i in fixed else draw(st.integers(max(0, s - 3), s))
                 for i, s in enumerate(slots)]
    items: list[tuple[str, DataFrame]] = []
    seq = 0
    for k in range(len(frames) + 1):
        here = [i for i in range(len(markers)) if slots[i] == k]
        if in_order:
            here.sort(key=lambda i: (markers[i].time, i))
        else:
            here = draw(st.permutations(here))
        while here:  # one marker per frame, sometimes two (a chunk of an LSL inlet)
            take = here[:draw(st.integers(1, 2))] if in_order else here[:1]
            here = here[len(take):]
            evs = [markers[i] for i in take]
            items.append(("stim", DataFrame(evs[0].time, seq, None, {"stream": "markers"}, evs)))
            seq += 1
        if k < len(frames):
            items.append(("eeg", frames[k]))
    return items, {i for i in range(len(markers)) if slots[i] > in_time[i]}


# Bounded: 40 examples per order, derandomized (the same examples every run); no shrinking
# (it can take minutes with mne in the loop): a failure prints the example as generated.
@pytest.mark.parametrize("in_order", [True, False], ids=["markers-in-order", "out-of-order"])
@settings(max_examples=40, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lay=layouts(), data=st.data())
def test_attach_then_epoch_equals_mne_with_late_and_out_of_order_markers(lay, data, in_order):
    fs, n, samples, labels = lay["fs"], lay["n"], lay["samples"], lay["labels"]
    sig = signal(2, n, lay["seed"])
    frames = frames_of(sig, fs, [], [], lay["sizes"])
    times = np.concatenate([sample_times(f) for f in frames])
    period = int(np.diff(times).max()) if n > 1 else 1
    span = max(int(sample_times(f)[-1] - sample_times(f)[0]) for f in frames)
    delay_us = round(lay["delay_s"] * 1e6)
    draw = data.draw

    # each event's marker: stamped anywhere in (previous sample, its sample]; value = its id
    markers: list[Event] = []
    for i, (s, lab) in enumerate(zip(samples, labels, strict=True)):
        before = int(times[s] - times[s - 1]) - 1 if s else 0
        markers.append(Event(int(times[s]) - draw(st.integers(0, before)), lab, float(i)))
    # markers outside the data: out_of_range
    outside = [Event(int(times[0]) - draw(st.integers(1, 3 * period)), "a", -1.0),
               Event(int(times[-1]) + draw(st.integers(1, 3 * period)), "b", -2.0)]
    outside = draw(st.lists(st.sampled_from(outside), max_size=2, unique=True))
    # lags: within the delay, or (some) later than any hold can absorb
    too_late = delay_us + 2 * span + 2 * period
    lags = [draw(st.integers(0, max(0, delay_us - 1))) for _ in markers]
    late_ids = set(draw(st.lists(st.sampled_from(range(len(markers))), max_size=3))
                   if markers else [])
    for i in late_ids:
        lags[i] = too_late
    everything = markers + outside
    arrivals, held_up = schedule(draw, frames, everything, lags + [0] * len(outside), delay_us,
                                 in_order,
                        late_ids)

    epoch_cfg = {"tmin": lay["tmin"], "tmax": lay["tmax"], "baseline": lay["baseline"],
                 "detrend": lay["detrend"], "reject": lay["reject"], "flat": lay["flat"],
                 "labels": sorted(LABELS)}
    attach_cfg = {"data": "eeg", "markers": "stim", "max_marker_delay_s": lay["delay_s"],
                  "late_log_every": 1}
    if not in_order:  # else a later marker would release the data early
        attach_cfg["markers_in_order"] = False
    chain = Chain(attach_cfg, epoch_cfg, arrivals)

    # Attach: the data frames leave unchanged and in order; the markers' fates
    assert [f.sequence_id for f in chain.frames] == [f.sequence_id for f in frames]
    starts = np.cumsum([0] + [f.n_samples for f in frames])
    landed = {int(e.value): int(starts[k] + e.sample)  # type: ignore[arg-type]
              for k, f in enumerate(chain.frames) for e in f.events}
    late = {i for i in range(len(markers)) if i not in landed}
    must_be_late = {i for i in late_ids
                    if deadline_slot([int(sample_times(f)[-1]) for f in frames],
                                     markers[i].time + too_late) < len(frames)}
    assert must_be_late <= late <= late_ids | held_up  # every marker within the delay landed
    assert all(landed[i] == samples[i] for i in landed if i >= 0)  # on its sample
    assert not any(i < 0 for i in landed)
    af = chain.attach_fates
    assert af.get("late", 0) == len(late) and af.get("out_of_range", 0) == len(outside)
    assert af.get("carried", 0) == len(landed)
    assert sum(af.values()) == len(everything)
    reported = [r for r in chain.log if "arrived after its data left" in r.getMessage()]
    assert len(reported) == len(late)  # late_log_every = 1: each one is reported
    event(f"late: {min(len(late), 2)}")

    # Epoch on the landed events = mne.Epochs on the same data and events
    kept = sorted(landed)
    ev_samples, ev_labels = [samples[i] for i in kept], [labels[i] for i in kept]
    if lay["detrend"] == 1:
        i0 = round(lay["tmin"] * fs)
        if any(s + i0 >= n for s in ev_samples):
            return  # mne crashes detrending an epoch that starts after the data ends
    if not LABELS & set(ev_labels):
        assert chain.outs == [] and chain.stats.unmatched == len(ev_samples)
        return
    ep = mne_epochs(sig, fs, ev_samples, ev_labels, tmin=lay["tmin"], tmax=lay["tmax"],
                    baseline=lay["baseline"], detrend=lay["detrend"],
                    reject=None if lay["reject"] is None else {"eeg": lay["reject"]},
                    flat=None if lay["flat"] is None else {"eeg": lay["flat"]})
    assert_same(chain, ep, len(ev_samples))  # type: ignore[arg-type]
    event(f"kept {min(len(chain.outs), 1)}, rejected {min(len(chain.dropped('reject')), 1)}, "
          f"flat {min(len(chain.dropped('flat')), 1)}, edge "
          f"{min(len(chain.dropped('start')) + len(chain.dropped('end')), 1)}")
    for o in chain.outs:  # the marker's own time and value ride to the epoch
        assert o.events[0].time == markers[int(o.events[0].value)].time  # type: ignore[arg-type]
    assert T0 == int(times[0])
