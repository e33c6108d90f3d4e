"""Align and its clock model (nodes/align.py, nodes/clock_sync.py) against pyxdf offline.

The streams are simulated (no LSL): two amplifiers at 500 Hz and 300 Hz, the second with a
clock offset and drift, chunk timestamps with jitter, clock-offset measurements every second
with noise and an outlier. The offline reference is pyxdf's own ``_clock_sync`` and
``_jitter_removal`` run on the same timestamps and measurements, followed by ``np.interp``.
"""

from __future__ import annotations

import asyncio
import doctest
import types

import numpy as np
import pytest

import streamlab.nodes.align as align_module
import streamlab.nodes.clock_sync as clock_sync_module
from streamlab.events import Event
from streamlab.frame import DataFrame
from streamlab.nodes.align import Align, Aligner
from streamlab.nodes.clock_sync import (
    ClockModel,
    Dejitter,
    format_clock_offsets,
    huber_line,
    parse_clock_offsets,
)

pyxdf_mod = pytest.importorskip("pyxdf.pyxdf")

OFF_US = 1_764_000_000_000_000.0 - 1000e6  # pipeline µs minus LSL seconds * 1e6 (arbitrary)


# -- simulation -------------------------------------------------------------------------------
def amplifier(rate: float, duration: float, chunk: int, clock_offset: float, drift: float,
              jitter: float, rng: np.random.Generator, start: float = 1000.0):
    """Chunks of an amplifier: (true arrival time s, device stamps s, values).

    True sample times ``start + i / rate`` (receiver clock); the device clock reads
    ``t + clock_offset + drift * (t - start)``; each chunk's stamp (last sample) gets
    Gaussian jitter, earlier samples are back-computed at the nominal rate (as liblsl does).
    Channel 0 is the sample's true time (s), so an interpolated value reveals timing errors.
    """
    n = int(duration * rate)
    out = []
    for k in range(0, n - chunk + 1, chunk):
        i = np.arange(k, k + chunk)
        true = start + i / rate
        dev_last = true[-1] + clock_offset + drift * (true[-1] - start) + rng.normal(0, jitter)
        stamps = dev_last - (chunk - 1 - np.arange(chunk)) / rate
        values = np.vstack([true, np.sin(2 * np.pi * 3 * true)])
        out.append((true[-1] + 0.002, stamps, values))
    return out


def offsets(duration: float, every: float, clock_offset: float, drift: float, noise: float,
            rng: np.random.Generator, start: float = 1000.0, outlier: bool = False):
    """Clock-offset measurements as an XDF ClockOffset chunk holds them: (receiver time of
    the measurement, collection time in the device clock, value to add to device stamps)."""
    out = []
    # the first measurement is made when the inlet connects, before any data (as LSLInlet)
    for j, now in enumerate(np.arange(start - 0.01, start + duration, every)):
        value = -(clock_offset + drift * (now - start)) + rng.normal(0, noise)
        if outlier and j == 8:
            value += 0.004  # a slow time_correction reply: far beyond the winsor threshold
        out.append((now, now - value, value))
    return out


def frame_of(stamps, values, seq, rate, names=("t", "sin")):
    """A frame as LSLInlet emits it with timestamp_channel 'lsl_t'."""
    block = np.vstack([values, stamps[None, :]])
    return DataFrame.from_block([*names, "lsl_t"], block,
                                timestamp=round(stamps[0] * 1e6 + OFF_US), sequence_id=seq,
                                metadata={"sample_rate": repr(float(rate)),
                                          "lsl_timestamp": repr(float(stamps[0]))})


def session(duration=20.0, seed=3):
    rng = np.random.default_rng(seed)
    a = amplifier(500.0, duration, 10, 0.0, 0.0, 300e-6, rng)
    b = amplifier(300.0, duration, 6, 2.5, 20e-6, 300e-6, rng)
    oa = offsets(duration, 1.0, 0.0, 0.0, 5e-6, rng)
    ob = offsets(duration, 1.0, 2.5, 20e-6, 5e-6, rng, outlier=True)
    return a, b, oa, ob


def arrival_order(a, b, oa, ob):
    """Everything as it reaches the node: (arrival time, input, kind, payload)."""
    items = [(t, "A", "data", (s, v)) for t, s, v in a] + [(t, "B", "data", (s, v))
                                                           for t, s, v in b]
    items += [(now, "A", "offset", (c, v)) for now, c, v in oa]
    items += [(now, "B", "offset", (c, v)) for now, c, v in ob]
    return sorted(items, key=lambda x: x[0])


def run_online(items, **kw):
    """Feed the arrival sequence to an Aligner; clock offsets ride on the next data frame."""
    al = Aligner(["A", "B"], reference="A", time_channel="lsl_t", prefix=True, **kw)
    pending = {"A": [], "B": []}
    seqs = {"A": 0, "B": 0}
    rates = {"A": 500.0, "B": 300.0}
    out = []
    for _, name, kind, payload in items:
        if kind == "offset":
            c, v = payload
            pending[name].append((c * 1e6 + OFF_US, v * 1e6))
            continue
        stamps, values = payload
        f = frame_of(stamps, values, seqs[name], rates[name])
        if pending[name]:
            f = f.with_metadata(clock_offsets=format_clock_offsets(pending[name]))
            pending[name] = []
        seqs[name] += 1
        out += al.add(name, f)
    out += al.flush()
    return al, out


def pyxdf_offline(chunks, offs, rate):
    """pyxdf's synchronize_clocks + dejitter_timestamps on the same stamps and offsets."""
    s = types.SimpleNamespace(
        time_stamps=np.concatenate([c[1] for c in chunks]).astype(np.float64),
        clock_times=[c for _, c, _ in offs], clock_values=[v for _, _, v in offs],
        clock_segments=[], segments=[], srate=rate, tdiff=1.0 / rate, effective_srate=0)
    pyxdf_mod._clock_sync({1: s})
    pyxdf_mod._jitter_removal({1: s})
    return s.time_stamps, np.concatenate([c[2] for c in chunks], axis=1)


def output_times(frames):
    """Each output sample's time in LSL seconds (the frame contract: timestamp + i/rate)."""
    parts = []
    for f in frames:
        rate = float(f.metadata["sample_rate"])
        rel = np.rint(np.arange(f.n_samples) * 1e6 / rate)
        parts.append(((f.timestamp + rel) - OFF_US) / 1e6)
    return np.concatenate(parts)


def rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


# -- against pyxdf ----------------------------------------------------------------------------
@pytest.mark.parametrize("min_delay", [0.0, 0.5])
def test_online_alignment_matches_pyxdf_offline_within_0_1_ms(min_delay):
    a, b, oa, ob = session()
    al, out = run_online(arrival_order(a, b, oa, ob), max_delay_s=1.0, min_delay_s=min_delay)
    ta_off, va = pyxdf_offline(a, oa, 500.0)
    tb_off, vb = pyxdf_offline(b, ob, 300.0)

    got_t = output_times(out)
    block = np.concatenate([f.block() for f in out], axis=1)
    assert out[0].channels == ("A.t", "A.sin", "B.t", "B.sin")
    assert len(got_t) == len(ta_off)  # every reference sample leaves exactly once
    assert np.array_equal(block[0], va[0])  # the reference's own samples, unchanged
    err_ref = got_t - ta_off
    # B's channel 0 is its true time: the interpolated value shows where B's samples were put
    off_b = np.interp(ta_off, tb_off, vb[0])
    ok = ~np.isnan(block[2]) & (ta_off >= tb_off[0]) & (ta_off <= tb_off[-1])
    err_b = block[2][ok] - off_b[ok]
    assert ok.sum() > 0.95 * len(ok)
    print(f"min_delay {min_delay}: reference timestamps: RMS {rms(err_ref) * 1e6:.2f} µs, max "
          f"{np.abs(err_ref).max() * 1e6:.2f} µs; B interpolated: RMS {rms(err_b) * 1e6:.2f} µs, "
          f"max {np.abs(err_b).max() * 1e6:.2f} µs")
    assert rms(err_ref) < 1e-4 and rms(err_b) < 1e-4
    # and against the truth: B's 2.5 s offset and 20 ppm drift are gone
    assert rms(block[2][ok] - ta_off[ok]) < 1e-4
    stats = al.statistics()
    assert stats["B"].clock_measurements == len(ob)
    assert abs(stats["B"].clock_drift_ppm + 20) < 1
    assert 50 < stats["A"].sync_residual_us < 500  # chunk jitter 300 µs spread over chunks
    assert stats["B"].late_samples == stats["B"].expired_samples == 0
    assert "sync_residual_us.B" in out[-1].metadata and "clock_offset_us.B" in out[-1].metadata


def test_without_correction_the_offset_shows():
    """The same session without clock sync: B is 2.5 s off (the test can fail)."""
    a, b, oa, ob = session(duration=8.0)
    _, out = run_online(arrival_order(a, b, oa, ob), max_delay_s=0.5, synchronize_clocks=False)
    block = np.concatenate([f.block() for f in out], axis=1)
    ok = ~np.isnan(block[2])
    assert np.isnan(block[2][:1000]).all()  # B's uncorrected samples start 2.5 s late
    assert np.allclose(block[0][ok] - block[2][ok], 2.5, atol=0.01)


def test_huber_line_equals_pyxdf_robust_fit():
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(5000, 5600, 40))
    y = 0.25 - 3e-5 * (t - 5000) + rng.normal(0, 20e-6, 40)
    y[[5, 17]] += [0.01, -0.003]  # outliers
    w = 0.0001
    X = np.column_stack([np.ones(40), t / w])
    ref = pyxdf_mod._robust_fit(X, y / w)
    ref[0] *= w
    a, b, xc = huber_line(t, y, w)
    # pyxdf's ADMM stops after 1000 iterations: equal within a fraction of a µs
    assert abs(b - ref[1]) < 1e-9
    assert abs((a - b * xc) - ref[0]) < 2e-7


def test_dejitter_online_equals_batch_least_squares_per_segment():
    rng = np.random.default_rng(2)
    period = 1e6 / 250
    t = np.arange(3000) * period + rng.normal(0, 150, 3000)
    t[1700:] += 3e6  # a 3 s gap: a new segment (pyxdf: > max(1 s, 500 samples))
    d = Dejitter(period, max(1e6, 500 * period))
    parts = [d.add(t[k:k + 37]) for k in range(0, 3000, 37)]
    segs = np.concatenate([p[0] for p in parts])
    idx = np.concatenate([p[1] for p in parts])
    assert d.segments == 2 and segs[1699] == 0 and segs[1700] == 1 and idx[1700] == 0
    got = d.times(segs[1700:], idx[1700:])
    k = np.arange(1300.0)
    coef = np.linalg.lstsq(np.column_stack([np.ones(1300), k]), t[1700:], rcond=None)[0]
    assert np.max(np.abs(got - (coef[0] + coef[1] * k))) < 1e-3  # µs
    resid = t[1700:] - (coef[0] + coef[1] * k)
    assert abs(d.residual_rms() - rms(resid)) < 1e-3


def test_clock_model_windows_and_extrapolates():
    m = ClockModel(winsor_us=100.0, window_us=10e6)
    assert float(m.offset(5.0)) == 0.0  # no measurement: no correction
    m.add(0.0, 1000.0)
    assert float(m.offset(1e9)) == 1000.0  # one measurement: a constant
    for s in range(1, 30):
        m.add(s * 1e6, 1000.0 + 2.0 * s)  # 2 ppm drift
    assert len(m.times) <= 12 and abs(m.b * 1e6 - 2.0) < 1e-9
    assert abs(float(m.offset(40e6)) - 1080.0) < 1e-6


def test_clock_offsets_metadata_round_trip_and_errors():
    pairs = [(1.764e15 + 0.5, -12.25), (1.764e15 + 5e6, 3.0)]
    assert parse_clock_offsets(format_clock_offsets(pairs)) == pairs
    with pytest.raises(ValueError, match="time_us:offset_us"):
        parse_clock_offsets("12;3")
    al = Aligner(["A"], reference="A", node_id="al")
    f = frame_of(np.arange(3) / 100.0, np.zeros((2, 3)), 0, 100.0)
    with pytest.raises(ValueError, match=r"Align 'al': input 'A' frame 0: metadata "
                                         r"'clock_offsets'"):
        al.add("A", f.with_metadata(clock_offsets="x:y"))


# -- joining behaviour ------------------------------------------------------------------------
def ramp(name_rate, start_us, n, seq=0, names=("x",), step=1.0, events=()):
    rate = name_rate
    block = np.vstack([np.arange(n) * step + start_us / 1e6 * rate * step for _ in names])
    return DataFrame.from_block(list(names), block, timestamp=start_us, sequence_id=seq,
                                metadata={"sample_rate": repr(float(rate))}).with_events(events)


def test_rate_mode_linear_interpolation_of_ramps_is_exact():
    al = Aligner(["a", "b"], rate=200.0, prefix=True, dejitter=False, max_delay_s=0.1)
    out = []
    for k in range(10):  # a: 1 kHz, value = time in ms; b: 300 Hz, value = time in ms
        out += al.add("a", ramp(1000.0, k * 100_000, 100, k, step=1.0))
        out += al.add("b", ramp(300.0, k * 100_000, 30, k, step=1000 / 300))
    out += al.flush()
    assert out[0].channels == ("a.x", "b.x")
    assert all(f.metadata["sample_rate"] == "200.0" for f in out)
    t = output_times_us(out)
    assert np.all(np.diff(t) == 5000) and t[0] == 0
    block = np.concatenate([f.block() for f in out], axis=1)
    ok = ~np.isnan(block[1])
    assert np.allclose(block[0], t / 1000) and np.allclose(block[1][ok], t[ok] / 1000)
    assert ok.sum() >= len(t) - 2  # only past b's last sample (at 999.67 ms) is uncovered


def output_times_us(frames):
    return np.concatenate([f.timestamp + np.rint(np.arange(f.n_samples) * 1e6 / float(
        f.metadata["sample_rate"])) for f in frames])


def test_nearest_and_previous_for_an_irregular_stream():
    al = Aligner(["eeg", "state"], reference="eeg", methods={"state": "previous"},
                 dejitter=False, max_delay_s=10.0)
    al2 = Aligner(["eeg", "state"], reference="eeg", default_method="nearest",
                  dejitter=False, max_delay_s=10.0)
    state = [DataFrame.from_block(["s"], np.array([[v]]), timestamp=t, sequence_id=i)
             for i, (t, v) in enumerate([(2_500, 1.0), (6_400, 2.0), (12_000, 3.0)])]
    eeg = ramp(1000.0, 0, 10)
    outs = []
    for a in (al, al2):
        o = a.add("eeg", eeg)
        for f in state:
            o += a.add("state", f)
        outs.append(np.concatenate([f.block() for f in o + a.flush()], axis=1)[1])
    prev, near = outs
    nan = np.nan
    assert np.array_equal(prev, [nan, nan, nan, 1, 1, 1, 1, 2, 2, 2], equal_nan=True)
    assert np.array_equal(near, [nan, nan, nan, 1, 1, 2, 2, 2, 2, 2], equal_nan=True)


def test_channel_clash_is_a_clear_error_and_prefix_solves_it():
    al = Aligner(["a", "b"], reference="a", node_id="al", max_delay_s=0.0)
    al.add("b", ramp(100.0, 0, 10))
    with pytest.raises(ValueError, match=r"Align 'al': channel names \['x'\] occur in several "
                                         "inputs; set prefix: true"):
        al.add("a", ramp(100.0, 0, 10))
    al = Aligner(["a", "b"], reference="a", prefix=True, separator="/")
    al.add("b", ramp(100.0, 0, 10))
    assert al.add("a", ramp(100.0, 0, 10))[0].channels == ("a/x", "b/x")


def test_late_input_is_counted_not_dropped_silently():
    al = Aligner(["a", "b"], reference="a", prefix=True, dejitter=False, max_delay_s=0.05)
    out = al.add("b", ramp(100.0, 0, 2))
    for k in range(4):  # then b stalls: a moves 0.4 s on, more than max_delay
        out += al.add("a", ramp(100.0, k * 100_000, 10, k))
    late = al.add("b", ramp(100.0, 20_000, 38, seq=1))  # samples for output that already left
    out += late + al.flush()
    s = al.statistics()["b"]
    assert s.samples == 40 and s.late_samples > 0
    block = np.concatenate([f.block() for f in out], axis=1)
    assert block.shape[1] == 40  # every reference sample left once
    gap = np.isnan(block[1])
    assert gap.sum() == s.late_samples  # emitted before b came: past its last sample, NaN
    assert not gap[:2].any() and not gap[-5:].any()  # later output uses b's late samples


def test_events_land_on_the_first_output_sample_at_or_after_their_corrected_time():
    fates = {}

    def settle(fate, n):
        fates[fate] = fates.get(fate, 0) + n

    al = Aligner(["a", "b", "stim"], reference="a", markers=["stim"], prefix=True,
                 dejitter=False, max_delay_s=0.05, settle=settle)
    out = []
    # b's clock is 1000 µs ahead: its measurements say add -1000 µs
    b0 = ramp(100.0, 1000, 10, events=[Event(31_000, "b-ev", sample=3)])
    b0 = b0.with_metadata(clock_offsets=format_clock_offsets([(1000.0, -1000.0)]))
    out += al.add("b", b0)
    out += al.add("stim", DataFrame(-5_000, 0, None, {"stream": "markers"},
                                    [Event(-5_000, "too-early")]))
    out += al.add("a", ramp(100.0, 0, 10, events=[Event(20_000, "a-ev", sample=2)]))
    out += al.add("stim", DataFrame(45_500, 1, None, {"stream": "markers"},
                                    [Event(45_500, "go")]))
    out += al.add("a", ramp(100.0, 100_000, 10, seq=1))
    out += al.add("stim", DataFrame(50_000, 2, None, {}, [Event(50_000, "late")]))
    out += al.add("stim", DataFrame(900_000, 3, None, {}, [Event(900_000, "after-end")]))
    out += al.flush()
    placed = {e.label: (f.sequence_id, e.sample, e.time) for f in out for e in f.events}
    assert placed["a-ev"] == (0, 2, 20_000)
    assert placed["b-ev"] == (0, 3, 30_000)  # corrected by the clock offset
    assert placed["go"] == (0, 5, 45_500)  # first sample at or after 45.5 ms: 50 ms
    assert fates == {"out_of_range": 2, "late": 1}
    assert al.held_events() == 0


# -- the node in a pipeline -------------------------------------------------------------------
def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="exactly one of reference"):
        Align.Config()
    with pytest.raises(ValueError, match="exactly one of reference"):
        Align.Config(reference="a", rate=100.0)
    with pytest.raises(ValueError, match="cannot be a markers input"):
        Align.Config(reference="a", markers=["a"])


def test_pipeline_two_generators_event_ledger_balances():
    from streamlab.runtime import AsyncPipeline

    config = {"name": "align", "pipeline_config": {"debug": True}, "nodes": [
        {"id": "eeg", "type": "SineGenerator",
         "config": {"mode": "free", "sample_rate": 500.0, "samples_per_frame": 50,
                    "max_frames": 20, "frequency": 5.0, "channels": ["c1", "c2"]}},
        {"id": "emg", "type": "SineGenerator",
         "config": {"mode": "free", "sample_rate": 300.0, "samples_per_frame": 30,
                    "max_frames": 20, "frequency": 5.0, "channels": ["c1"]}},
        {"id": "stim", "type": "MarkerGenerator",
         "config": {"mode": "free", "probabilities": {"std": 0.8, "odd": 0.2},
                    "isi_s": [0.2, 0.4], "count": 6}},
        {"id": "al", "type": "Align",
         "config": {"reference": "eeg", "markers": ["stim"], "prefix": True,
                    "max_delay_s": 0.2}},
        {"id": "out", "type": "Passthrough", "config": {}}],
        "connections": [{"from": "eeg", "to": "al"}, {"from": "emg", "to": "al"},
                        {"from": "stim", "to": "al"}, {"from": "al", "to": "out"}]}

    async def go():
        pipe = AsyncPipeline(config)
        report = await asyncio.wait_for(pipe.run(), 30)
        return pipe.results["out"], report

    out, report = asyncio.run(go())
    assert out[0].channels == ("eeg.c1", "eeg.c2", "emg.c1")
    assert sum(f.n_samples for f in out) == 1000  # every reference sample, once
    block = np.concatenate([f.block() for f in out], axis=1)
    assert np.isfinite(block[2]).mean() > 0.9  # the sources start a few ms apart
    m = report.nodes["al"]
    assert m.events_received == 6 and sum(m.event_fates.values()) == 6  # debug checked it too
    assert m.event_fates["carried"] == sum(len(f.events) for f in out) > 0


@pytest.mark.parametrize("bad", ["abc", "-100.0", "inf", "nan"])
def test_a_bad_sample_rate_is_an_error_not_an_irregular_input(bad):
    """With a time channel the rate is not needed to time the samples, so a bad one used to be
    taken as 0 (irregular) without a word, switching dejitter off."""
    al = Aligner(["A"], reference="A", time_channel="lsl_t", node_id="al")
    f = frame_of(np.arange(3) / 100.0, np.zeros((2, 3)), 4, 100.0)
    with pytest.raises(ValueError, match=rf"Align 'al': input 'A' frame 4: metadata 'sample_rate' "
                                         rf"must be a finite number >= 0 .*got '{bad}'"):
        al.add("A", f.with_metadata(sample_rate=bad))
    ok = Aligner(["A"], reference="A", time_channel="lsl_t")
    ok.add("A", f.replace(metadata={}))  # absent: irregular, as LSL's nominal_srate 0
    assert ok.inputs["A"].rate == 0.0 and ok.statistics()["A"].samples == 3


@pytest.mark.parametrize("module", [align_module, clock_sync_module], ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
