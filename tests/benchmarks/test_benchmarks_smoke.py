"""Smoke tests of the benchmark suite: it runs end to end on tiny sizes, and the baselines
compute what StreamLab computes. Correctness only: no timing is ever asserted here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from benchmarks.memory import measure_memory
from benchmarks.nodes import BENCH_NODE_TYPES, node_types_available, unregister_bench_nodes
from benchmarks.suite import CASES, per_channel_variants, run_suite
from benchmarks.workloads import (
    SLOptions,
    Tree,
    measure_loop,
    measure_plain,
    measure_pool,
    measure_streamlab,
)

from benchmarks import run as bench_run
from streamlab import node_types

TINY = {"W1": 300, "W1p": 20, "W2": 200, "W2base": 200, "W3": 200, "W4": 6, "W5": 300,
        "Pool": 40, "Memory": 20, "copies": 40}


@pytest.fixture(autouse=True)
def _clean_registry():
    yield
    unregister_bench_nodes()


def _outputs(m):
    assert m.outputs is not None
    return {k: v for k, v in sorted(m.outputs.items())}


def _assert_same(a, b, what):
    assert list(a) == list(b), what
    for sink in a:
        assert len(a[sink]) == len(b[sink]), (what, sink)
        for k, (x, y) in enumerate(zip(a[sink], b[sink], strict=True)):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{what}: sink {sink} frame {k}")


@pytest.mark.parametrize("case", [c for c in CASES if c.tree.period is None],
                         ids=lambda c: c.key)
def test_baselines_compute_what_streamlab_computes(case):
    tree = Tree(case.tree.channels, min(case.tree.samples, 512), case.tree.branches)
    n = 9  # more frames than source variants, so the cycle and the IIR state are exercised
    sl = _outputs(measure_streamlab(tree, n, keep=True))
    plain = _outputs(measure_plain(tree, n, keep=True))
    loop = _outputs(measure_loop(tree, n, keep=True))
    assert all(len(v) == n for v in sl.values())
    _assert_same(sl, plain, "streamlab vs plain asyncio")
    _assert_same(sl, loop, "streamlab vs single loop")
    first = next(iter(sl.values()))
    assert not np.allclose(first[0], first[1])  # frames differ: the check is not vacuous


@pytest.mark.parametrize("case", [c for c in CASES if c.tree.period is None],
                         ids=lambda c: c.key)
def test_per_channel_layout_computes_what_the_per_channel_loop_computes(case):
    tree = Tree(case.tree.channels, min(case.tree.samples, 512), case.tree.branches)
    n = 9
    loop = _outputs(measure_loop(tree, n, keep=True, layout="dict"))
    _assert_same(loop, _outputs(measure_plain(tree, n, keep=True)), "per-channel loop vs plain")
    for label, opts in per_channel_variants(case).items():
        assert opts.layout == "dict"
        sl = _outputs(measure_streamlab(tree, n, opts, keep=True))
        if "process" not in opts.executors.values():  # (a process node's output is a block)
            for outs in sl.values():  # the sinks got per-channel payloads, not blocks
                assert all(isinstance(o, list) for o in outs)
        _assert_same(sl, loop, f"per-channel {label} vs per-channel loop")


def test_streamlab_variants_compute_the_same():
    tree = Tree(4, 64, ((("gain", 3.0),),))
    ref = _outputs(measure_streamlab(tree, 7, keep=True))
    for opts in (SLOptions(mode="triggered"), SLOptions(fusion=False), SLOptions(layout="dict"),
                 SLOptions(executors={"gain": "thread"}), SLOptions(gain_node="BenchChannelGain"),
                 SLOptions(layout="dict", gain_node="BenchChannelGain")):
        _assert_same(ref, _outputs(measure_streamlab(tree, 7, opts, keep=True)), repr(opts))


@pytest.mark.skipif(not node_types_available("IIRFilter", "FFT"),
                    reason="library IIRFilter/FFT not available")
def test_library_dsp_nodes_match_the_loop():
    tree = Tree(3, 256, ((("iir",), ("fft",)),))
    lib = _outputs(measure_streamlab(tree, 6, SLOptions(real_dsp=True), keep=True))
    _assert_same(lib, _outputs(measure_loop(tree, 6, keep=True)), "library nodes vs loop")


def test_pool_counts_every_frame_of_every_instance():
    tree = Tree(2, 8, ((("gain", 2.0),),))
    for impl in ("streamlab", "plain", "loop"):
        for layout in ("block", "dict"):
            m = measure_pool(impl, tree, 25, instances=3, max_concurrent=2, layout=layout)
            assert m.frames == 75 and m.seconds > 0


def test_memory_child_reports_peak_and_bound():
    rep = measure_memory("streamlab", 12, channels=4, samples=256, capacity=2, delay=0.0)
    assert rep["frames"] == 12
    assert rep["frame_bytes"] == 4 * 256 * 8
    assert rep["peak_rss"] >= rep["baseline_rss"] > 0
    assert rep["bound_frames"] == 2 * 2 + 3
    plain = measure_memory("plain", 12, channels=4, samples=256, capacity=2, delay=0.0)
    assert plain["frames"] == 12


def test_quick_suite_runs_end_to_end_and_fanout_shares_payloads():
    logs: list[str] = []
    res = run_suite(TINY, repeat=1, log=logs.append)
    assert set(res["cases"]) == {c.key for c in CASES} | {"Pool"}
    for key, case in res["cases"].items():
        assert not case["errors"] or key == "W4", case["errors"]
        for impl, summary in case["impls"].items():
            assert summary["fps"] > 0, (key, impl)
    assert res["cases"]["W1"]["impls"]["free source"]["p50_us"] > 0
    assert res["copies"] == {"checked": 4 * TINY["copies"], "copies": 0, "sinks": 4,
                             "layout": "block"}
    assert res["copies_per_channel"] == {"checked": 4 * TINY["copies"], "copies": 0, "sinks": 4,
                                         "layout": "per-channel"}
    # every workload runs in both layouts, each against the loop of its own layout
    for key in ("W1", "W1p", "W2", "W3", "W4", "W5", "Pool"):
        case = res["cases"][key]
        assert set(case["layouts"].values()) == {"block", "per-channel"}, key
        assert {"plain", "loop", "loop per-channel"} <= set(case["impls"]), key
        for variant, layout in case["layouts"].items():
            assert case["loop_of"][variant] == ("loop" if layout == "block"
                                                else "loop per-channel")
    assert set(res["memory"]) == {"streamlab", "plain"}
    rows = bench_run.build_table(res)
    text = bench_run.format_table(rows)
    for key in ("W1", "W1p", "W2", "W3", "W4", "W5", "Pool", "Memory"):
        assert any(r["workload"] == key for r in rows), key
    assert "us/hop" in text and "SL/plain" in text and "per-channel" in text
    pc = {r["variant"]: r for r in rows if r["workload"] == "W1" and r["layout"] == "per-channel"
          and r["metric"] == "frames/s"}
    assert pc["free source"]["target"] == ">= 1.5x plain, >= 0.9x loop"
    assert "node written per channel (with_channels)" in pc
    w4 = [r for r in rows if r["workload"] == "W4" and r["layout"] == "per-channel"
          and r["metric"] == "frames/s"]
    assert w4 and w4[0]["target"] == ">= 1.2x plain"

    def key(r):
        return r["workload"], r["layout"], r["variant"], r["metric"]

    best = {key(r): r for r in bench_run.build_table(res, "best")}
    assert len(best) == len(rows)  # rows are told apart by their layout
    for r in rows:
        if r["metric"] == "frames/s" and r["streamlab"] is not None:
            assert best[key(r)]["streamlab"] >= r["streamlab"]
    assert logs


def test_cli_writes_json_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert bench_run.main(["--quick", "--only", "W1,W5", "--scale", "0.05", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "W1" in printed and "W5" in printed and "frames/s" in printed
    data = json.loads(out.read_text())
    assert set(data["results"]["cases"]) == {"W1", "W5"}
    assert data["environment"]["event_loop"] == "asyncio"
    assert any(r["workload"] == "W5" and r["target"] for r in data["table"])
    assert {r["layout"] for r in data["table"]} == {"block", "per-channel"}
    assert "per-channel" in printed and "layout" in printed
    capsys.readouterr()
    one = tmp_path / "one.json"
    assert bench_run.main(["--quick", "--only", "W5", "--scale", "0.05",
                           "--layout", "per-channel", "--out", str(one)]) == 0
    assert "per-channel" in capsys.readouterr().out
    assert {r["layout"] for r in json.loads(one.read_text())["table"]} == {"per-channel"}
    assert bench_run.main(["--table-from", str(out), "--stat", "best"]) == 0
    assert "W5" in capsys.readouterr().out


def test_bench_nodes_leave_the_registry_clean():
    measure_streamlab(Tree(1, 4, ((("gain", 2.0),),)), 3)
    assert "BenchSource" in node_types()
    unregister_bench_nodes()
    assert not set(BENCH_NODE_TYPES) & set(node_types())
