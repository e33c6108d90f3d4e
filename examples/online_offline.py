"""The same graph online (from LSL) and offline (from its XDF recording), bit for bit.

    python examples/online_offline.py            # about 10 s; writes out/online_offline/

1. **Online.** A simulated 8-channel amplifier (500 Hz, float64) and a marker stream
   ("target"/"standard", some markers sent up to 0.35 s after their data, as a stimulus PC
   on another path would) are published with pylsl on 127.0.0.1. The pipeline reads them
   with ``LSLInlet`` + ``LSLMarkerInlet``, joins them with ``Attach``, band-passes
   (``IIRFilter``), cuts epochs (``Epoch``) and averages them per label (``Average``); it also
   records its two raw inputs with ``XdfSink`` (``session.xdf``).
2. **Offline.** The very same graph downstream of the sources (same node ids, same JSON) is
   fed by two ``XdfSource`` nodes reading ``session.xdf``: the data stream with
   ``frame_size: "chunks"`` (the frames the inlet pulled, as recorded) and
   ``dejitter_timestamps: false`` (the stamps as written), and the marker stream as marker
   frames (``markers: []`` on the data: the join stays ``Attach``'s job, as online).
3. Both runs' outputs are compared: filtered frames (timestamps, samples, events), epochs
   (samples, ``event_label``/``event_time``/``event_index``, events) and averages, with
   ``==`` on the sample bytes (NaN and -0.0 included) and on the rest. It prints ``online == offline: N epochs, M events,
   bit-identical`` or the first difference (exit status 1).

Stream discovery stays on this machine (an lsl_api.cfg in the output folder) unless
``LSLAPICFG`` is set. Needs ``streamlab[lsl,xdf]``. tests/test_online_offline.py runs this
module's functions and checks more (event ledger, late markers, the recording itself).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_CFG = "[ports]\nIPv6 = disable\n[multicast]\nResolveScope = machine\n" \
               "[lab]\nKnownPeers = {127.0.0.1}\n"
CHANNELS = ["Fp1", "Fp2", "C3", "C4", "P3", "P4", "O1", "O2"]
RATE = 500.0
#: The part of the graph that is the same online and offline (everything after the sources).
DOWNSTREAM: list[dict[str, Any]] = [
    {"id": "attach", "type": "Attach",
     "config": {"data": "eeg", "markers": "mk", "max_marker_delay_s": 1.0}},
    {"id": "filt", "type": "IIRFilter",
     "config": {"btype": "bandpass", "cutoff": [1.0, 30.0], "order": 2}},
    {"id": "epochs", "type": "Epoch",
     "config": {"tmin": -0.1, "tmax": 0.5, "baseline": [None, 0.0]}},
    {"id": "avg", "type": "Average", "config": {}},
    {"id": "filtered", "type": "Passthrough", "config": {}},
    {"id": "epoch_out", "type": "Passthrough", "config": {}}]
DOWNSTREAM_CONNECTIONS = [
    {"from": "eeg", "to": "attach"}, {"from": "mk", "to": "attach"},
    {"from": "attach", "to": "filt"}, {"from": "filt", "to": "epochs"},
    {"from": "filt", "to": "filtered"}, {"from": "epochs", "to": "epoch_out"},
    {"from": "epochs", "to": "avg"}]
OUTPUTS = ("filtered", "epoch_out", "avg")


def use_loopback(folder: Path) -> None:
    """Keep LSL discovery on 127.0.0.1 (must happen before pylsl is first used)."""
    if "LSLAPICFG" in os.environ:
        return
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "lsl_api.cfg"
    cfg.write_text(LOOPBACK_CFG)
    os.environ["LSLAPICFG"] = str(cfg.resolve())


def graph(sources: list[dict[str, Any]], xdf_out: Path, name: str) -> dict[str, Any]:
    """The pipeline: ``sources`` (ids ``eeg`` and ``mk``), DOWNSTREAM, and an XdfSink of the
    sources' frames (the raw inputs)."""
    return {"name": name, "pipeline_config": {"debug": True},
            "nodes": [*copy.deepcopy(sources), *copy.deepcopy(DOWNSTREAM),
                      {"id": "rec", "type": "XdfSink",
                       "config": {"path": str(xdf_out), "marker_stream": "mk",
                                  "units": dict.fromkeys(CHANNELS, "uV")}}],
            "connections": [*copy.deepcopy(DOWNSTREAM_CONNECTIONS),
                            {"from": "eeg", "to": "rec"}, {"from": "mk", "to": "rec"}]}


def online_sources(eeg: str, mk: str) -> list[dict[str, Any]]:
    return [{"id": "eeg", "type": "LSLInlet", "config": {"name": eeg, "resolve_timeout": 30}},
            {"id": "mk", "type": "LSLMarkerInlet", "config": {"name": mk,
                                                              "resolve_timeout": 30}}]


def offline_sources(path: Path) -> list[dict[str, Any]]:
    return [{"id": "eeg", "type": "XdfSource",
             "config": {"path": str(path), "stream": {"name": "eeg"}, "markers": [],
                        "frame_size": "chunks", "dejitter_timestamps": False}},
            {"id": "mk", "type": "XdfSource",
             "config": {"path": str(path), "stream": {"name": "mk"},
                        "dejitter_timestamps": False}}]


@dataclass
class Session:
    """What the simulated amplifier and stimulus PC send (seeded, so runs repeat)."""

    seconds: float = 12.0
    seed: int = 12
    #: If > 0: marker 3 is sent this many seconds after its data (test of late markers) ...
    force_lag: float = 0.0
    #: ... and the next marker is sent before it (True) or after it (False).
    overtaken: bool = True
    data: np.ndarray = field(init=False)              # samples x channels
    chunks: list[int] = field(init=False)             # samples per push_chunk
    markers: list[tuple[float, str, float]] = field(init=False)  # (s after start, label, lag s)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        n = int(self.seconds * RATE)
        t = np.arange(n) / RATE
        freqs = np.linspace(6.0, 13.0, len(CHANNELS))
        self.data = (10 * np.sin(2 * np.pi * freqs[None, :] * t[:, None])
                     + 50 * np.sin(2 * np.pi * 50.0 * t)[:, None]   # mains, filtered out
                     + rng.standard_normal((n, len(CHANNELS))) * 5)
        sizes = []
        while sum(sizes) < n:
            sizes.append(int(rng.integers(1, 40)))
        sizes[-1] -= sum(sizes) - n
        self.chunks = sizes
        # markers 0.5 .. 0.7 s apart, the last one 0.8 s before the end; lag: pushed that long
        # after the data at its time (negative: before it). Spacing >= 0.5 s > the lags' range,
        # so markers arrive in time order.
        marks, at = [], 0.4
        while True:
            at += float(rng.uniform(0.5, 0.7))
            if at > self.seconds - 0.8:
                break
            label = "target" if rng.random() < 0.3 else "standard"
            lag = float(rng.uniform(-0.1, 0.35))
            forced = self.force_lag > 0 and len(marks) == 3
            if forced:
                lag = self.force_lag
            marks.append((at, label, lag))
            if forced and not self.overtaken:
                at += lag  # the next marker comes after this one
            if label == "target":  # an evoked bump 300 ms after each target
                k = int(round((at + 0.3) * RATE))
                self.data[k - 25:k + 25] += 20 * np.hanning(50)[:, None]
        self.markers = marks


async def _wait(predicate: Any, what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` (bounded): an AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.002)


async def run_online(session: Session, xdf_path: Path) -> Any:
    """Publish the session on LSL and run the online graph on it; the finished pipeline."""
    import pylsl

    from streamlab.runtime import AsyncPipeline

    tag = uuid.uuid4().hex[:8]
    eeg_name, mk_name = f"onoff-eeg-{tag}", f"onoff-mk-{tag}"
    info = pylsl.StreamInfo(eeg_name, "EEG", len(CHANNELS), RATE, "double64", eeg_name)
    info.set_channel_labels(CHANNELS)
    outlet = pylsl.StreamOutlet(info)
    mk_outlet = pylsl.StreamOutlet(pylsl.StreamInfo(mk_name, "Markers", 1, pylsl.IRREGULAR_RATE,
                                                    "string", mk_name))
    pipe = AsyncPipeline(graph(online_sources(eeg_name, mk_name), xdf_path, "online"))
    await pipe.start()  # resolves and opens both inlets: every sample pushed now reaches them
    pipe.close_triggers()
    try:
        await _wait(lambda: outlet.have_consumers() and mk_outlet.have_consumers(),
                    "the inlets to connect")
        attach = pipe.metrics["attach"]
        eeg = pipe.built.nodes["eeg"].node
        to_attach = pipe.channels[("eeg", "attach")]
        base = pylsl.local_clock() + 0.1
        sent: list[tuple[float, str, float]] = []  # in the order sent
        start = 0
        for size in session.chunks:
            t0 = start / RATE
            due = [m for m in session.markers if m not in sent and m[0] + m[2] <= t0]
            if due:
                # Attach must hold every sample sent so far before the markers go, and the
                # markers before more data goes: a marker then reaches Attach exactly its lag
                # after (or before) its data, whatever the scheduler does (eeg._seq: the
                # frames the inlet made).
                await _wait(lambda n=start: eeg.samples_received >= n
                            and to_attach.sent == eeg._seq == to_attach.received,
                            "Attach to receive the data")
            for m in sorted(due, key=lambda m: m[0] + m[2]):
                at, label, _ = m
                sent.append(m)
                mk_outlet.push_sample([label], base + at)
            if due:
                n_sent = len(sent)
                await _wait(lambda n=n_sent: attach.events_received >= n,
                            "Attach to receive the markers")
            stop = start + size
            outlet.push_chunk(np.ascontiguousarray(session.data[start:stop]),
                              base + (stop - 1) / RATE)
            start = stop
            await asyncio.sleep(0.001)  # let the inlet pull: frames of varied sizes
        assert len(sent) == len(session.markers)
        n = len(session.data)
        await _wait(lambda: eeg.samples_received >= n, "the inlet to receive every sample")
    finally:
        await asyncio.wait_for(pipe.stop(), 60)
    return pipe


async def run_offline(xdf_path: Path, xdf_again: Path) -> Any:
    """Replay the recording through the same graph (recording its inputs again)."""
    from streamlab.runtime import AsyncPipeline

    pipe = AsyncPipeline(graph(offline_sources(xdf_path), xdf_again, "offline"))
    await asyncio.wait_for(pipe.run(), 120)
    return pipe


def differences(online: dict[str, list[Any]], offline: dict[str, list[Any]]) -> list[str]:
    """Every difference between two runs' outputs (empty: bit-identical)."""
    out: list[str] = []
    for node in OUTPUTS:
        a, b = online.get(node, []), offline.get(node, [])
        if len(a) != len(b):
            out.append(f"{node}: {len(a)} frames online, {len(b)} offline")
            continue
        for i, (fa, fb) in enumerate(zip(a, b, strict=True)):
            what = f"{node}[{i}]"
            if fa.timestamp != fb.timestamp:
                out.append(f"{what}: timestamp {fa.timestamp} online, {fb.timestamp} offline")
            if fa.sequence_id != fb.sequence_id:
                out.append(f"{what}: sequence_id {fa.sequence_id} / {fb.sequence_id}")
            # bytes, not np.array_equal: NaN (Average's first sem) and -0.0 compare too
            if fa.channels != fb.channels or fa.block().tobytes() != fb.block().tobytes():
                out.append(f"{what}: samples differ")
            if fa.events != fb.events:
                out.append(f"{what}: events {fa.events} online, {fb.events} offline")
            for key in ("event_label", "event_time", "event_index", "sample_rate", "tmin",
                        "count", "label"):
                if fa.metadata.get(key) != fb.metadata.get(key):
                    out.append(f"{what}: metadata {key} {fa.metadata.get(key)!r} / "
                               f"{fb.metadata.get(key)!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "online_offline",
                    help="folder for session.xdf and replay.xdf")
    ap.add_argument("--seconds", type=float, default=12.0, help="length of the session")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    use_loopback(args.out)
    session = Session(seconds=args.seconds)
    online = asyncio.run(run_online(session, args.out / "session.xdf"))
    offline = asyncio.run(run_offline(args.out / "session.xdf", args.out / "replay.xdf"))
    a, b = online.results, offline.results
    diffs = differences(a, b)
    if diffs:
        print(f"online != offline ({len(diffs)} differences):", *diffs[:20], sep="\n  ")
        return 1
    n_events = sum(len(f.events) for f in a["filtered"])
    print(f"recorded {args.out / 'session.xdf'}: {len(a['filtered'])} frames, "
          f"{len(session.markers)} markers")
    print(f"online == offline: {len(a['epoch_out'])} epochs, {n_events} events, bit-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
